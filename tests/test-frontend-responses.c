/* Unit tests for response validation (frontend/xbdf-ring.c): a lying
 * backend (bad, reused, stale and out-of-range ids, wrong operation echo,
 * unknown status, more responses than requests) marks the ring broken and
 * never completes the wrong request.  The test plays the backend. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-ring.h"
#include "tap.h"

#define MAXDONE 64
static struct { uint64_t tag; uint8_t op; int err; } done[MAXDONE];
static int ndone;

static void
on_done(void *arg, uint64_t tag, uint8_t op, int err)
{
    (void)arg;
    if (ndone < MAXDONE) {
        done[ndone].tag = tag;
        done[ndone].op = op;
        done[ndone].err = err;
    }
    ndone++;
}

static struct xbdf_ring r;
static void *mem;

static void
setup(void)
{
    if (mem == NULL && posix_memalign(&mem, XBD_PAGE_SIZE, XBD_PAGE_SIZE) != 0)
        bail_out("out of memory");
    memset(mem, 0, XBD_PAGE_SIZE);
    if (xbdf_ring_init(&r, mem, 1, NULL, NULL) < 0)
        bail_out("ring init");
    ndone = 0;
}

/* Submit a request; returns its id. */
static uint64_t
submit(uint8_t op, uint64_t tag)
{
    uint64_t id;
    int idx = xbdf_shadow_get(&r.shadow, tag, &id);

    if (idx < 0)
        bail_out("shadow full");
    r.shadow.ent[idx].req.rw.operation = op;
    r.shadow.ent[idx].req.rw.id = id;
    if (op == BLKIF_OP_INDIRECT)
        r.shadow.ent[idx].req.indirect.indirect_op = BLKIF_OP_READ;
    xbdf_ring_queue(&r, (uint32_t)idx);
    xbdf_ring_push(&r);
    return id;
}

/* The backend's side: write one response and publish it. */
static void
respond(uint64_t id, uint8_t op, int16_t status)
{
    struct blkif_sring *sr = r.front.sring;
    struct blkif_response *rsp = &sr->ring[sr->rsp_prod % RING_SIZE(&r.front)].rsp;

    rsp->id = id;
    rsp->operation = op;
    rsp->status = status;
    sr->rsp_prod++;
}

static void
test_good(void)
{
    uint64_t a, b, c, d;

    setup();
    a = submit(BLKIF_OP_READ, 10);
    b = submit(BLKIF_OP_WRITE, 11);
    c = submit(BLKIF_OP_FLUSH_DISKCACHE, 12);
    d = submit(BLKIF_OP_INDIRECT, 13);
    /* Out of order, every status. */
    respond(c, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RSP_EOPNOTSUPP);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    respond(b, BLKIF_OP_WRITE, BLKIF_RSP_ERROR);
    respond(d, BLKIF_OP_READ, BLKIF_RSP_OKAY);    /* indirect: inner op echoed */
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 4, "4 valid responses");
    ok(done[0].tag == 12 && done[0].err == -EOPNOTSUPP, "flush: EOPNOTSUPP");
    ok(done[1].tag == 10 && done[1].err == 0, "read: OK");
    ok(done[2].tag == 11 && done[2].err == -EIO, "write: EIO");
    ok(done[3].tag == 13 && done[3].err == 0 && done[3].op == BLKIF_OP_READ,
       "indirect read echoed as READ: OK");
    is_int(r.shadow.in_use, 0, "every entry freed");
    is_int(r.front.sring->rsp_event, r.front.rsp_cons + 1,
           "rsp_event re-armed for the next response");
    ok(xbdf_ring_broken(&r) == NULL, "ring not broken");

    /* An indirect request answered with BLKIF_OP_INDIRECT is fine too. */
    d = submit(BLKIF_OP_INDIRECT, 14);
    respond(d, BLKIF_OP_INDIRECT, BLKIF_RSP_OKAY);
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 1,
           "indirect request echoed as INDIRECT accepted");
    xbdf_ring_fini(&r);
}

/* The backend's side of notification: publish n more responses the way
 * a backend does (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: notify when
 * rsp_event lies among the new ones).  Returns 1 when it would notify. */
static int
respond_and_check(const uint64_t *ids, int n)
{
    struct blkif_sring *sr = r.front.sring;
    RING_IDX old = sr->rsp_prod, new = old + (RING_IDX)n;

    for (int i = 0; i < n; i++) {
        struct blkif_response *rsp = &sr->ring[(old + (RING_IDX)i) %
                                               RING_SIZE(&r.front)].rsp;

        rsp->id = ids[i];
        rsp->operation = BLKIF_OP_READ;
        rsp->status = BLKIF_RSP_OKAY;
    }
    sr->rsp_prod = new;
    return (RING_IDX)(new - sr->rsp_event) < (RING_IDX)(new - old);
}

/* Busy-polling does not re-arm rsp_event, so a backend does not notify
 * for what the poller collects; collecting before a sleep does. */
static void
test_poll_no_rearm(void)
{
    uint64_t id[8];
    int notified = 0;

    setup();
    /* First an ordinary collect: armed for the next response. */
    id[0] = submit(BLKIF_OP_READ, 0);
    notified += respond_and_check(id, 1);
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 1, "collect: 1 response");
    is_int(notified, 1, "the first response notifies (rsp_event was armed)");
    /* Now 6 rounds of submit, respond, poll. */
    notified = 0;
    for (int i = 0; i < 6; i++) {
        id[0] = submit(BLKIF_OP_READ, (uint64_t)i);
        notified += respond_and_check(id, 1);
        is_int(xbdf_ring_poll(&r, 0, on_done, NULL), 1, "poll %d: 1 response",
               i);
    }
    is_int(notified, 1, "polling: 6 responses, only the first (armed before) "
           "notified");
    ok(r.front.sring->rsp_event != r.front.rsp_cons + 1,
       "rsp_event left behind while polling");
    /* Before sleeping: collect re-arms, the next response notifies. */
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 0, "collect: nothing new");
    is_int(r.front.sring->rsp_event, r.front.rsp_cons + 1,
           "collect re-armed rsp_event");
    id[0] = submit(BLKIF_OP_READ, 9);
    is_int(respond_and_check(id, 1), 1, "so the next response notifies");
    is_int(xbdf_ring_poll(&r, 0, on_done, NULL), 1, "and is polled");
    xbdf_ring_fini(&r);
}

static void
test_budget(void)
{
    uint64_t id[5];

    setup();
    for (int i = 0; i < 5; i++)
        id[i] = submit(BLKIF_OP_READ, (uint64_t)i);
    for (int i = 0; i < 5; i++)
        respond(id[i], BLKIF_OP_READ, BLKIF_RSP_OKAY);
    is_int(xbdf_ring_collect(&r, 2, on_done, NULL), 2, "budget 2: 2 completed");
    is_int(xbdf_ring_collect(&r, 2, on_done, NULL), 2, "budget 2 again: 2 more");
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 1, "the last one");
    is_int(ndone, 5, "5 callbacks in all");
    xbdf_ring_fini(&r);
}

/* Each lie: the ring breaks, the message says why, nothing is completed by
 * the lie, and later calls stay broken. */
static void
expect_broken(const char *what, const char *needle, int want_done)
{
    const char *why;

    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), -ENODEV, "%s: -ENODEV", what);
    why = xbdf_ring_broken(&r);
    ok(why != NULL && strstr(why, needle) != NULL, "%s: message says \"%s\" (%s)",
       what, needle, why ? why : "none");
    is_int(ndone, want_done, "%s: %d request(s) completed", what, want_done);
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), -ENODEV,
           "%s: the ring stays broken", what);
    xbdf_ring_fini(&r);
}

static void
test_lies(void)
{
    uint64_t a, b;

    setup();
    submit(BLKIF_OP_READ, 1);
    respond(1000, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("out-of-range id", "out of range", 0);

    setup();
    submit(BLKIF_OP_READ, 1);
    respond((uint64_t)1 << 40 | 0, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("id with a bogus generation", "matches no request", 0);

    setup();
    submit(BLKIF_OP_READ, 1);
    respond(((uint64_t)1 << 32) | 5, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("id of an entry never issued", "matches no request", 0);

    setup();
    a = submit(BLKIF_OP_READ, 1);
    submit(BLKIF_OP_READ, 2);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("the same id twice", "matches no request", 1);

    /* A stale id: its entry was reused by a new request since. */
    setup();
    a = submit(BLKIF_OP_READ, 1);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), 1, "first use completed");
    b = submit(BLKIF_OP_WRITE, 2);
    ok((uint32_t)a == (uint32_t)b, "the entry was reused (same index)");
    respond(a, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
    expect_broken("a stale id for a reused entry", "matches no request", 1);

    setup();
    a = submit(BLKIF_OP_READ, 1);
    respond(a, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
    expect_broken("wrong operation echo", "echoes operation 1", 0);

    setup();
    a = submit(BLKIF_OP_INDIRECT, 1);
    respond(a, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
    expect_broken("indirect read echoed as write", "echoes operation", 0);

    setup();
    a = submit(BLKIF_OP_READ, 1);
    respond(a, BLKIF_OP_READ, 5);
    expect_broken("unknown status 5", "unknown status 5", 0);

    setup();
    a = submit(BLKIF_OP_READ, 1);
    respond(a, BLKIF_OP_READ, -3);
    expect_broken("unknown status -3", "unknown status -3", 0);

    setup();
    a = submit(BLKIF_OP_READ, 1);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("more responses than requests", "only 1 requests outstanding", 0);

    setup();
    respond(0, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect_broken("a response with nothing outstanding", "only 0 requests", 0);

    setup();
    submit(BLKIF_OP_READ, 1);
    r.front.sring->rsp_prod = 0x80000000u;
    expect_broken("rsp_prod far beyond the ring", "responses with only", 0);

    setup();
    submit(BLKIF_OP_READ, 1);
    r.front.sring->rsp_prod = 0xffffffffu;      /* "backwards" */
    expect_broken("rsp_prod moved backwards", "responses with only", 0);

    /* A lie after good responses: the good ones complete, the lie does not
     * complete anything, and the entries of requests still in flight stay
     * allocated (not handed to a new request). */
    setup();
    a = submit(BLKIF_OP_READ, 1);
    b = submit(BLKIF_OP_READ, 2);
    respond(a, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    respond(b, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
    is_int(xbdf_ring_collect(&r, 0, on_done, NULL), -ENODEV, "good then lie: -ENODEV");
    is_int(ndone, 1, "only the good response completed");
    ok(done[0].tag == 1, "and it was the right request");
    is_int(r.shadow.in_use, 1, "the lied-about request stays in flight");
    xbdf_ring_fini(&r);
}

int
main(void)
{
    test_good();
    test_budget();
    test_poll_no_rearm();
    test_lies();
    free(mem);
    return done_testing();
}
