/* xbd-evil-front — a malicious blkif frontend, one attack per run, for tests.
 *
 *   xbd-evil-front --list
 *   xbd-evil-front --case NAME FRONTEND-DIR
 *
 * Run as a guest (xbdctl run-as) against a device the backend serves.  Each
 * case is one item of PROTOCOL.md §4.4 lists 1-4: ring index lies, requests
 * mutated while the backend reads them, every opcode, bad segments and
 * sectors, indirect abuse, bad grant references, event-channel storms,
 * nonsense in xenstore, watch and state floods, state flapping, a guest
 * destroyed with I/O in flight.  Each case knows what a sound backend answers (the status
 * of every request, or the device failing into Closing with an `error`
 * node) and checks exactly that; every response's padding must be zero
 * (XSA-216) and every id one we issued, answered once.
 *
 * Exit status: 0 the backend behaved, 1 it did not (a line says how),
 * 2 usage.  --case destroy-inflight never ends by itself: it prints "ready"
 * once requests are flowing and keeps them flowing until the domain dies.
 * What it shared is left to the sim to reclaim at exit.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbd-ring.h"

#define NDATA 8                 /* writable data pages granted to the backend */
#define RSP_NONE 0x7fff         /* "no response" in a status array */
#define MAXREQ 64

static struct {
    struct xs_handle *xs;
    struct xbd_platform *p;
    struct xbd_gntshr *gs;
    struct xbd_evtchn *ev;
    const char *fe, *name;
    char *be;
    uint32_t bdom, self;
    int port;
    uint32_t ring_ref;
    blkif_front_ring_t ring;
    /* pages */
    uint32_t data_ref[NDATA], ro_ref, foreign_ref, ind_ref[2];
    char *data, *ro;
    struct blkif_request_segment *ind;      /* two indirect pages */
    /* what the backend advertised / published */
    uint64_t sectors;
    uint32_t max_indirect, max_queues, max_order;
    bool flush, barrier, discard;
    uint64_t next_id;
    const struct abi *abi;      /* the protocol we announce and speak */
} E;

/* ---- small helpers ------------------------------------------------------- */

__attribute__((format(printf, 2, 0))) static void
say(const char *tag, const char *fmt, va_list ap)
{
    fprintf(stderr, "xbd-evil-front: %s: %s", E.name, tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* The backend misbehaved: say how; returns 1 (a failed check). */
__attribute__((format(printf, 1, 2))) static int
bad(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    say("FAIL: ", fmt, ap);
    va_end(ap);
    return 1;
}

/* We could not even attack (no sim, no backend): exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    say("", fmt, ap);
    va_end(ap);
    exit(1);
}

/* ---- the three request layouts ---------------------------------------------
 *
 * blkif.h defines one set of structs, laid out by the compiler's ABI; a
 * frontend announces which ABI its ring uses in `protocol`
 * (io/protocols.h).  Requests are built here with blkif.h's native structs
 * and put on the ring in the announced layout:
 *
 * - x86_64-abi is the native layout of an x86_64 build (asserted below),
 *   and XEN_IO_PROTO_ABI_NATIVE names it: every case announces it unless
 *   told otherwise, so there is no separate x86_64 variant;
 * - x86_32-abi aligns uint64_t to 4 bytes, so the 4-byte hole after the
 *   first 32-bit word (operation, nr_segments/flag/indirect_op, handle or
 *   nr_segments) is gone and every later field sits 4 bytes lower: id at
 *   4, sector_number at 12, seg[] / nr_sectors / indirect handle at 20,
 *   indirect_grefs at 24.  The slot is 108 bytes (the largest request);
 *   a response is id, operation, status in 12 bytes.
 *
 * The ring header is the same for all; only the slot size differs.
 */
struct abi {
    const char *protocol;       /* the `protocol` node's value */
    size_t req_size;            /* bytes per ring slot */
    size_t rsp_size;            /* bytes of a response */
    bool drop_hole;             /* x86_32: drop native bytes 4..7 */
};

#if defined(__x86_64__)
_Static_assert(offsetof(struct blkif_request, id) == 8 &&
               offsetof(struct blkif_request, sector_number) == 16 &&
               offsetof(struct blkif_request, seg) == 24 &&
               offsetof(struct blkif_request_discard, nr_sectors) == 24 &&
               offsetof(struct blkif_request_indirect, handle) == 24 &&
               offsetof(struct blkif_request_indirect, indirect_grefs) == 28 &&
               sizeof(union blkif_sring_entry) == 112 &&
               sizeof(struct blkif_response) == 16 &&
               offsetof(struct blkif_response, status) == 10,
               "native blkif is the x86_64 layout");
#define HOLE 4                  /* bytes x86_32 does not have */
static const struct abi abis[] = {
    { XEN_IO_PROTO_ABI_NATIVE, sizeof(union blkif_sring_entry),
      sizeof(struct blkif_response), false },
    { XEN_IO_PROTO_ABI_X86_32, sizeof(struct blkif_request) - HOLE,
      offsetof(struct blkif_response, status) + sizeof(int16_t), true },
};
#else
static const struct abi abis[] = {
    { XEN_IO_PROTO_ABI_NATIVE, sizeof(union blkif_sring_entry),
      sizeof(struct blkif_response), false },
};
#endif

/* Entries of a ring of `bytes` in our layout: (bytes - header) / slot,
 * rounded down to a power of two, as the backend computes it. */
static unsigned int
abi_ring_entries(size_t bytes)
{
    size_t n = (bytes - offsetof(struct blkif_sring, ring)) / E.abi->req_size;
    unsigned int p2 = 1;

    while ((size_t)p2 * 2 <= n)
        p2 *= 2;
    return p2;
}

/* The ring slot of index idx, requests and responses alike. */
static unsigned char *
slot_at(RING_IDX idx)
{
    return (unsigned char *)E.ring.sring + offsetof(struct blkif_sring, ring) +
           (size_t)(idx & (RING_SIZE(&E.ring) - 1)) * E.abi->req_size;
}

/* A native request (with its id set) into the slot, in our layout. */
static void
encode_request(const union blkif_sring_entry *native, unsigned char *slot)
{
    const unsigned char *b = (const unsigned char *)native;

    if (!E.abi->drop_hole) {
        memcpy(slot, b, E.abi->req_size);
        return;
    }
#ifdef HOLE
    memcpy(slot, b, HOLE);
    memcpy(slot + HOLE, b + 2 * HOLE, E.abi->req_size - HOLE);
#endif
}

static char *
get(const char *dir, const char *key)
{
    char path[256];
    unsigned int len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_read(E.xs, XBT_NULL, path, &len);
}

static uint64_t
get_u64(const char *dir, const char *key, uint64_t dflt)
{
    char *v = get(dir, key);
    uint64_t x;

    if (v == NULL || xbd_parse_u64(v, &x) < 0)
        x = dflt;
    free(v);
    return x;
}

/* Write a frontend node verbatim (the value may be any junk). */
static void
put_str(const char *key, const char *val)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", E.fe, key);
    if (!xs_write(E.xs, XBT_NULL, path, val, (unsigned int)strlen(val)))
        die("writing %s: %s", path, strerror(errno));
}

static void
put(const char *key, uint64_t v)
{
    char val[24];

    snprintf(val, sizeof(val), "%" PRIu64, v);
    put_str(key, val);
}

static void
rm_node(const char *key)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", E.fe, key);
    xs_rm(E.xs, XBT_NULL, path);
}

static bool
fe_gone(void)
{
    unsigned int len;
    char *v = xs_read(E.xs, XBT_NULL, E.fe, &len);

    free(v);
    return v == NULL;
}

static int
be_state(void)
{
    return (int)get_u64(E.be, XBDK_STATE, 0);
}

/* Wait up to `secs` for the backend's state to become `want`. */
static int
wait_state(int want, int secs)
{
    for (int i = 0; i < secs * 100; i++) {
        if (be_state() == want)
            return 0;
        usleep(10000);
    }
    return -1;
}

/* The device failed the way a broken frontend should make it: Closing (or
 * Closed, once it saw us close) with a non-empty `error` node. */
static int
expect_failed(const char *what)
{
    char *err;
    int r = 0;

    if (wait_state(XenbusStateClosing, 10) < 0)
        return bad("%s: the backend did not fail the device (state %d)", what,
                   be_state());
    err = get(E.be, XBDK_ERROR);
    if (err == NULL || err[0] == '\0')
        r = bad("%s: Closing but no error node", what);
    else
        printf("%s: error node: %s\n", what, err);
    free(err);
    return r;
}

/* ---- setting up ---------------------------------------------------------- */

static void
open_all(void)
{
    char *v;
    int r;

    E.xs = xs_open(0);
    if (E.xs == NULL)
        die("xs_open: %s", strerror(errno));
    E.be = get(E.fe, XBDK_BACKEND);
    v = get(E.fe, XBDK_BACKEND_ID);
    if (E.be == NULL || v == NULL || xbd_parse_u32_range(v, 0, 0x7fef, &E.bdom) < 0)
        die("%s has no backend", E.fe);
    free(v);
    if (wait_state(XenbusStateInitWait, 10) < 0)
        die("the backend never reached InitWait");
    E.max_indirect = (uint32_t)get_u64(E.be, "feature-max-indirect-segments", 0);
    E.max_queues = (uint32_t)get_u64(E.be, "multi-queue-max-queues", 1);
    E.max_order = (uint32_t)get_u64(E.be, "max-ring-page-order", 0);

    if ((r = xbd_platform_open(&E.p, NULL)) < 0 ||
        (r = xbd_gntshr_open(E.p, &E.gs)) < 0 ||
        (r = xbd_evtchn_open(E.p, &E.ev)) < 0)
        die("platform: %s", xbd_platform_error());
    E.self = xbd_platform_domid(E.p);
}

/* Everything we shared, to check at the end that the backend let go. */
struct region {
    void *addr;
    uint32_t count;
};
static struct region shared[16];
static unsigned int nshared;

/* xbd_gntshr_share, remembered; dies on failure. */
static void *
share(uint32_t dom, uint32_t count, int writable, uint32_t *refs)
{
    void *a;

    if (xbd_gntshr_share(E.gs, dom, count, writable, refs, &a) < 0)
        die("share: %s", xbd_platform_error());
    if (nshared < sizeof(shared) / sizeof(shared[0]))
        shared[nshared++] = (struct region){ a, count };
    return a;
}

/* After the backend closed: it must have unmapped (or finished copying)
 * every page we shared - rings, data, indirect pages, persistent grants.
 * A page still in use gets 2 s; then it is a leak (XSA-371's class). */
static int
check_released(void)
{
    int fails = 0;

    for (unsigned int i = 0; i < nshared; i++) {
        int r = -EBUSY;

        for (int t = 0; t < 200 && (r = xbd_gntshr_unshare(E.gs, shared[i].addr,
                                                           shared[i].count)) == -EBUSY; t++)
            usleep(10000);
        if (r < 0)
            fails += bad("%u page(s) we shared are still in use by the backend "
                         "after it closed: %s", shared[i].count, xbd_platform_error());
    }
    return fails != 0;
}

/* Share what the requests use: data pages, a read-only page, a page
 * granted to another domain (ourselves), two indirect pages. */
static void
share_pages(void)
{
    E.data = share(E.bdom, NDATA, 1, E.data_ref);
    E.ro = share(E.bdom, 1, 0, &E.ro_ref);
    share(E.self, 1, 1, &E.foreign_ref);
    E.ind = share(E.bdom, 2, 0, E.ind_ref);
}

/* A fresh ring of `bytes` in shared memory, sized for our layout. */
static void
init_ring(void *page, size_t bytes)
{
    SHARED_RING_INIT((struct blkif_sring *)page);
    FRONT_RING_INIT(&E.ring, (struct blkif_sring *)page, bytes);
    E.ring.nr_ents = abi_ring_entries(bytes);
}

/* An honest one-page ring and event channel; nodes written, not yet
 * Initialised. */
static void
share_ring(void)
{
    void *page = share(E.bdom, 1, 1, &E.ring_ref);

    init_ring(page, XBD_PAGE_SIZE);
    E.port = xbd_evtchn_bind_unbound(E.ev, E.bdom);
    if (E.port < 0)
        die("bind: %s", xbd_platform_error());
    put(XBDK_RING_REF, E.ring_ref);
    put(XBDK_EVENT_CHANNEL, (uint64_t)E.port);
    put_str(XBDK_PROTOCOL, E.abi->protocol);
}

static int
go_connected(void)
{
    put(XBDK_STATE, XenbusStateInitialised);
    if (wait_state(XenbusStateConnected, 10) < 0)
        return bad("the backend did not connect an honest ring (state %d)", be_state());
    E.sectors = get_u64(E.be, "sectors", 0);
    E.flush = get_u64(E.be, "feature-flush-cache", 0) == 1;
    E.barrier = get_u64(E.be, "feature-barrier", 0) == 1;
    E.discard = get_u64(E.be, "feature-discard", 0) == 1;
    return 0;
}

/* The usual start of a ring case. */
static int
connect_honestly(void)
{
    share_pages();
    share_ring();
    return go_connected();
}

/* ---- requests and responses ---------------------------------------------- */

static void
notify(void)
{
    xbd_evtchn_notify(E.ev, (uint32_t)E.port);
}

/* Put a request (any layout, 64 bytes at most of it are ours) on the ring
 * with a fresh id, which it returns. */
static uint64_t
submit(const void *req, size_t len)
{
    union blkif_sring_entry native;
    uint64_t id = E.next_id++;

    memset(&native, 0, sizeof(native));
    memcpy(&native, req, len < sizeof(native) ? len : sizeof(native));
    /* id sits at the same offset in every request shape of one ABI */
    memcpy((char *)&native + offsetof(struct blkif_request, id), &id, sizeof(id));
    encode_request(&native, slot_at(E.ring.req_prod_pvt));
    E.ring.req_prod_pvt++;
    return id;
}

static void
push(void)
{
    int n;

    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&E.ring, n);
    (void)n;
    notify();       /* always: a lost wakeup must not look like a hang */
}

/* Collect responses to ids [first, first+n) into st[] (checks padding, id
 * range, duplicates).  Returns 0 when all came, 1 on a protocol violation
 * by the backend, -1 when it failed the device or timed out.  Loose (the
 * mutate case): our own scribbling over request bytes 0-1 lands on the low
 * bytes of the response ids written in those slots, so ids are not
 * matched; responses are counted and st[] filled in arrival order. */
static int
collect_ex(uint64_t first, unsigned int n, int16_t *st, int secs, bool loose)
{
    unsigned int got = 0;

    for (unsigned int i = 0; i < n; i++)
        st[i] = RSP_NONE;
    for (int t = 0; got < n && t < secs * 1000; t++) {
        RING_IDX rp = E.ring.sring->rsp_prod, rc = E.ring.rsp_cons;

        xen_rmb();
        if (rp - rc > RING_SIZE(&E.ring))
            return bad("rsp_prod %u is beyond the ring (cons %u)", rp, rc);
        for (; rc != rp; rc++) {
            /* id, operation and status sit at the same offsets in every
             * ABI; only the tail padding differs (rsp_size). */
            unsigned char raw[sizeof(struct blkif_response)] = { 0 };
            struct blkif_response r;

            memcpy(raw, slot_at(rc), E.abi->rsp_size);
            memcpy(&r, raw, sizeof(r));
            for (size_t b = offsetof(struct blkif_response, operation) + 1;
                 b < offsetof(struct blkif_response, status); b++)
                if (raw[b] != 0)
                    return bad("response padding byte %zu is %#x", b, raw[b]);
            for (size_t b = offsetof(struct blkif_response, status) + 2;
                 b < E.abi->rsp_size; b++)
                if (raw[b] != 0)
                    return bad("response padding byte %zu is %#x", b, raw[b]);
            if (loose)
                r.id = first + got;
            if (r.id < first || r.id - first >= n)
                return bad("response id %" PRIu64 " was never issued", r.id);
            if (st[r.id - first] != RSP_NONE)
                return bad("id %" PRIu64 " answered twice", r.id);
            if (r.status != BLKIF_RSP_OKAY && r.status != BLKIF_RSP_ERROR &&
                r.status != BLKIF_RSP_EOPNOTSUPP)
                return bad("id %" PRIu64 ": status %d", r.id, r.status);
            st[r.id - first] = r.status;
            got++;
        }
        E.ring.rsp_cons = rc;
        if (got < n) {
            if (t % 100 == 99 && be_state() != XenbusStateConnected)
                return -1;
            usleep(1000);
        }
    }
    return got == n ? 0 : -1;
}

static int
collect(uint64_t first, unsigned int n, int16_t *st, int secs)
{
    return collect_ex(first, n, st, secs, false);
}

/* Send `n` requests (each `len` bytes at reqs + i*len), expect the
 * statuses want[i]; "what" names the batch. */
static int
expect_batch(const char *what, const void *reqs, size_t len, unsigned int n,
             const int16_t *want)
{
    int16_t st[MAXREQ];
    uint64_t first = E.next_id;
    int r, fails = 0;

    for (unsigned int i = 0; i < n; i++)
        submit((const char *)reqs + i * len, len);
    push();
    r = collect(first, n, st, 10);
    if (r > 0)
        return 1;
    if (r < 0)
        return bad("%s: no answer (backend state %d)", what, be_state());
    for (unsigned int i = 0; i < n; i++)
        if (st[i] != want[i])
            fails += bad("%s [%u]: status %d, expected %d", what, i, st[i], want[i]);
    return fails != 0;
}

static int
expect1(const char *what, const void *req, size_t len, int16_t want)
{
    return expect_batch(what, req, len, 1, &want);
}

/* A one-segment read or write of sectors [sector, sector+8) in data page 0. */
static struct blkif_request
rw(uint8_t op, uint64_t sector)
{
    struct blkif_request r;

    memset(&r, 0, sizeof(r));
    r.operation = op;
    r.nr_segments = 1;
    r.sector_number = sector;
    r.seg[0].gref = E.data_ref[0];
    r.seg[0].first_sect = 0;
    r.seg[0].last_sect = 7;
    return r;
}

static int
sanity(const char *after)
{
    struct blkif_request r = rw(BLKIF_OP_READ, 0);
    char what[64];

    snprintf(what, sizeof(what), "a valid read after %s", after);
    return expect1(what, &r, sizeof(r), BLKIF_RSP_OKAY);
}

/* ---- ring cases (list 1) ------------------------------------------------- */

static int
c_prod_far_ahead(void)
{
    if (connect_honestly())
        return 1;
    E.ring.sring->req_prod = E.ring.rsp_cons + 1000;    /* 1000 in 32 slots */
    xen_wmb();
    notify();
    return expect_failed("req_prod 1000 ahead");
}

static int
c_prod_backwards(void)
{
    struct blkif_request r[4];

    if (connect_honestly())
        return 1;
    for (int i = 0; i < 4; i++)
        r[i] = rw(BLKIF_OP_READ, (uint64_t)i * 8);
    if (expect_batch("4 honest reads", r, sizeof(r[0]), 4,
                     (int16_t[]){ 0, 0, 0, 0 }))
        return 1;
    E.ring.sring->req_prod = E.ring.req_prod_pvt - 2;
    xen_wmb();
    notify();
    return expect_failed("req_prod moved back by 2");
}

static int
c_prod_wrap(void)
{
    if (connect_honestly())
        return 1;
    /* 0 - 16: as unsigned, 2^32 - 16 requests ahead; a signed or
     * "prod < cons" comparison would take it for 16 behind. */
    E.ring.sring->req_prod = (RING_IDX)0 - 16;
    xen_wmb();
    notify();
    return expect_failed("req_prod wrapped to 2^32 - 16");
}

/* A thread that keeps scribbling over every request slot while the main
 * thread submits honest reads: the backend must use one private copy. */
static volatile int mutate_stop;

static void *
mutator(void *arg)
{
    uint32_t x = 12345;
    (void)arg;

    while (!mutate_stop) {
        for (unsigned int i = 0; i < RING_SIZE(&E.ring); i++) {
            volatile struct blkif_request *s =
                (volatile struct blkif_request *)&E.ring.sring->ring[i].req;

            x = x * 1103515245u + 12345u;
            switch ((x >> 16) % 6) {
            case 0: s->operation = (uint8_t)(x >> 8); break;
            case 1: s->nr_segments = (uint8_t)(x >> 4); break;
            case 2: s->sector_number = ((uint64_t)x << 32) | x; break;
            case 3: s->seg[0].gref = x; break;
            case 4: s->seg[x % 11].last_sect = (uint8_t)x; break;
            default: s->operation = (x & 1) ? BLKIF_OP_INDIRECT : BLKIF_OP_READ; break;
            }
        }
        /* and the indirect pages, which the backend must copy out once */
        if (E.ind != NULL) {
            volatile struct blkif_request_segment *g =
                (volatile struct blkif_request_segment *)&E.ind[x % 64];

            switch ((x >> 8) % 3) {
            case 0: g->gref = x; break;
            case 1: g->last_sect = (uint8_t)(x >> 3); break;
            default: g->first_sect = (uint8_t)(x >> 5); break;
            }
        }
    }
    return NULL;
}

static int
c_mutate(void)
{
    pthread_t t;
    unsigned int batches = 100, per = 16;
    uint64_t counts[4] = { 0 };
    int r = 0;

    if (connect_honestly())
        return 1;
    for (unsigned int i = 0; i < XBD_SEGS_PER_INDIRECT_PAGE; i++)
        E.ind[i] = (struct blkif_request_segment){ E.data_ref[i % NDATA], 0, 7 };
    if (pthread_create(&t, NULL, mutator, NULL) != 0)
        die("pthread_create");
    for (unsigned int b = 0; b < batches && r == 0; b++) {
        int16_t st[MAXREQ];
        uint64_t first = E.next_id;

        for (unsigned int i = 0; i < per; i++) {
            struct blkif_request q = rw(BLKIF_OP_READ, (uint64_t)i * 8);
            struct blkif_request_indirect iq;

            if (E.max_indirect >= 64 && i % 2) {
                /* ind() would rewrite the pages under the mutator: build
                 * the request only; the pages keep what they have */
                memset(&iq, 0, sizeof(iq));
                iq.operation = BLKIF_OP_INDIRECT;
                iq.indirect_op = BLKIF_OP_READ;
                iq.nr_segments = 64;
                iq.sector_number = (uint64_t)i * 8;
                iq.indirect_grefs[0] = E.ind_ref[0];
                submit(&iq, sizeof(iq));
            } else {
                submit(&q, sizeof(q));
            }
        }
        push();
        r = collect_ex(first, per, st, 10, true);
        if (r < 0)
            r = bad("batch %u: not answered (backend state %d)", b, be_state());
        for (unsigned int i = 0; r == 0 && i < per; i++)
            counts[st[i] == 0 ? 0 : st[i] == -1 ? 1 : 2]++;
    }
    mutate_stop = 1;
    pthread_join(t, NULL);
    if (r)
        return r;
    printf("mutated requests: %" PRIu64 " okay, %" PRIu64 " error, %" PRIu64
           " eopnotsupp\n", counts[0], counts[1], counts[2]);
    return sanity("the mutations");
}

static int
c_evtchn_storm(void)
{
    RING_IDX before;

    if (connect_honestly())
        return 1;
    before = E.ring.sring->rsp_prod;
    for (int i = 0; i < 200000; i++)
        notify();
    usleep(100000);
    if (E.ring.sring->rsp_prod != before)
        return bad("responses appeared for an empty ring");
    return sanity("200000 notifications on an empty ring");
}

/* ---- request cases (list 2) ---------------------------------------------- */

/* Every opcode 0..255 in a read's layout (discard and indirect in theirs):
 * the ones blkif defines and we were offered work; every other answers
 * EOPNOTSUPP. */
static int
c_opcodes(void)
{
    int fails = 0;

    if (connect_honestly())
        return 1;
    for (unsigned int op = 0; op < 256; op++) {
        union { struct blkif_request rw; struct blkif_request_discard d;
                struct blkif_request_indirect ind; } q;
        int16_t want = BLKIF_RSP_EOPNOTSUPP;
        char what[32];

        q.rw = rw((uint8_t)op, 0);
        switch (op) {
        case BLKIF_OP_READ:
        case BLKIF_OP_WRITE:
            want = BLKIF_RSP_OKAY;
            break;
        case BLKIF_OP_WRITE_BARRIER:
            want = E.barrier ? BLKIF_RSP_OKAY : BLKIF_RSP_EOPNOTSUPP;
            break;
        case BLKIF_OP_FLUSH_DISKCACHE:
            want = E.flush ? BLKIF_RSP_OKAY : BLKIF_RSP_EOPNOTSUPP;
            break;
        case BLKIF_OP_DISCARD:
            memset(&q, 0, sizeof(q));
            q.d.operation = BLKIF_OP_DISCARD;
            q.d.sector_number = 64;
            q.d.nr_sectors = 8;
            want = E.discard ? BLKIF_RSP_OKAY : BLKIF_RSP_EOPNOTSUPP;
            break;
        case BLKIF_OP_INDIRECT:
            memset(&q, 0, sizeof(q));
            q.ind.operation = BLKIF_OP_INDIRECT;
            q.ind.indirect_op = BLKIF_OP_READ;
            q.ind.nr_segments = 1;
            q.ind.indirect_grefs[0] = E.ind_ref[0];
            E.ind[0] = (struct blkif_request_segment){ E.data_ref[0], 0, 7 };
            want = E.max_indirect ? BLKIF_RSP_OKAY : BLKIF_RSP_EOPNOTSUPP;
            break;
        default:
            break;
        }
        snprintf(what, sizeof(what), "opcode %u", op);
        fails += expect1(what, &q, sizeof(q), want);
    }
    return fails ? 1 : sanity("every opcode");
}

static int
c_seg_counts(void)
{
    static const uint8_t counts[] = { 0, 12, 255 };
    int fails = 0;

    if (connect_honestly())
        return 1;
    for (unsigned int i = 0; i < sizeof(counts); i++)
        for (uint8_t op = BLKIF_OP_READ; op <= BLKIF_OP_WRITE; op++) {
            struct blkif_request q = rw(op, 0);
            char what[48];

            for (int s = 0; s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++)
                q.seg[s] = q.seg[0];
            q.nr_segments = counts[i];
            snprintf(what, sizeof(what), "op %u with %u segments", op, counts[i]);
            fails += expect1(what, &q, sizeof(q), BLKIF_RSP_ERROR);
        }
    return fails ? 1 : sanity("bad segment counts");
}

/* One-segment reads and writes: where, which part of the page, and the
 * status a sound backend gives each. */
struct seg_case {
    const char *what;
    uint64_t sector;
    uint8_t first, last;
    int16_t want;
};

static int
expect_seg_cases(const struct seg_case *t, size_t n)
{
    int fails = 0;

    for (size_t i = 0; i < n; i++)
        for (uint8_t op = BLKIF_OP_READ; op <= BLKIF_OP_WRITE; op++) {
            struct blkif_request q = rw(op, t[i].sector);
            char what[96];

            q.seg[0].first_sect = t[i].first;
            q.seg[0].last_sect = t[i].last;
            snprintf(what, sizeof(what), "%s %s", op ? "write" : "read", t[i].what);
            fails += expect1(what, &q, sizeof(q), t[i].want);
        }
    return fails;
}

static int
c_sector_fields(void)
{
    struct seg_case t[] = {
        { "first_sect > last_sect", 0, 3, 2, BLKIF_RSP_ERROR },
        { "last_sect 8", 0, 0, 8, BLKIF_RSP_ERROR },
        { "last_sect 255", 0, 0, 255, BLKIF_RSP_ERROR },
        { "first_sect 8 last_sect 8", 0, 8, 8, BLKIF_RSP_ERROR },
        { "sector 2^64 - 4 (+8 wraps)", UINT64_MAX - 3, 0, 7, BLKIF_RSP_ERROR },
        { "sector 2^64 - 1", UINT64_MAX, 0, 0, BLKIF_RSP_ERROR },
        { "sector at the end of the device", 0, 0, 0, BLKIF_RSP_ERROR },
        { "8 sectors from end - 4", 0, 0, 7, BLKIF_RSP_ERROR },
        { "sector 2^63", UINT64_C(1) << 63, 0, 7, BLKIF_RSP_ERROR },
    };
    int fails = 0;

    if (connect_honestly())
        return 1;
    t[6].sector = E.sectors;
    t[7].sector = E.sectors - 4;
    fails += expect_seg_cases(t, sizeof(t) / sizeof(t[0]));
    /* the second segment crosses the end */
    {
        struct blkif_request q = rw(BLKIF_OP_READ, E.sectors - 8);

        q.nr_segments = 2;
        q.seg[1] = q.seg[0];
        fails += expect1("read whose second segment crosses the end", &q,
                         sizeof(q), BLKIF_RSP_ERROR);
    }
    /* discards that wrap or cross the end */
    {
        struct { uint64_t sector, n; } d[] = {
            { 8, UINT64_MAX - 3 }, { UINT64_MAX, 2 }, { 0, 0 }, { 0, 0 },
        };

        d[2].sector = E.sectors - 1;
        d[2].n = 2;
        d[3].sector = 0;
        d[3].n = E.sectors + 1;
        for (unsigned int i = 0; i < 4; i++) {
            struct blkif_request_discard q;
            char what[96];

            memset(&q, 0, sizeof(q));
            q.operation = BLKIF_OP_DISCARD;
            q.sector_number = d[i].sector;
            q.nr_sectors = d[i].n;
            snprintf(what, sizeof(what), "discard %" PRIu64 "+%" PRIu64,
                     d[i].sector, d[i].n);
            fails += expect1(what, &q, sizeof(q),
                             E.discard ? BLKIF_RSP_ERROR : BLKIF_RSP_EOPNOTSUPP);
        }
    }
    return fails ? 1 : sanity("bad sector fields");
}

/* Run on a device attached mode=r. */
static int
c_write_readonly(void)
{
    struct blkif_request w = rw(BLKIF_OP_WRITE, 0);
    struct blkif_request_discard d;
    int fails = 0;

    if (connect_honestly())
        return 1;
    fails += expect1("write to a read-only device", &w, sizeof(w), BLKIF_RSP_ERROR);
    memset(&d, 0, sizeof(d));
    d.operation = BLKIF_OP_DISCARD;
    d.nr_sectors = 8;
    fails += expect1("discard on a read-only device", &d, sizeof(d),
                     E.discard ? BLKIF_RSP_ERROR : BLKIF_RSP_EOPNOTSUPP);
    if (E.max_indirect) {
        struct blkif_request_indirect q;

        memset(&q, 0, sizeof(q));
        q.operation = BLKIF_OP_INDIRECT;
        q.indirect_op = BLKIF_OP_WRITE;
        q.nr_segments = 1;
        q.indirect_grefs[0] = E.ind_ref[0];
        E.ind[0] = (struct blkif_request_segment){ E.data_ref[0], 0, 7 };
        fails += expect1("indirect write to a read-only device", &q, sizeof(q),
                         BLKIF_RSP_ERROR);
    }
    return fails ? 1 : sanity("writes to a read-only device");
}

/* Run on a device whose sector-size is 4096 (null:sector-size=4096):
 * offsets and lengths must be multiples of 8 of blkif's 512-byte sectors. */
static int
c_unaligned_4k(void)
{
    static const struct seg_case t[] = {
        { "8 sectors at sector 1", 1, 0, 7, BLKIF_RSP_ERROR },
        { "8 sectors at sector 4", 4, 0, 7, BLKIF_RSP_ERROR },
        { "4 sectors at sector 0", 0, 0, 3, BLKIF_RSP_ERROR },
        { "sectors 1..7 of the page at sector 0", 0, 1, 7, BLKIF_RSP_ERROR },
        { "8 sectors at sector 8", 8, 0, 7, BLKIF_RSP_OKAY },
    };
    uint64_t ss;
    int fails = 0;

    if (connect_honestly())
        return 1;
    ss = get_u64(E.be, "sector-size", 0);
    if (ss != 4096)
        return bad("sector-size is %" PRIu64 ", not 4096: attach the wrong disk?", ss);
    fails += expect_seg_cases(t, sizeof(t) / sizeof(t[0]));
    {
        struct blkif_request_discard q;

        memset(&q, 0, sizeof(q));
        q.operation = BLKIF_OP_DISCARD;
        q.sector_number = 4;
        q.nr_sectors = 8;
        fails += expect1("discard 8 sectors at sector 4", &q, sizeof(q),
                         E.discard ? BLKIF_RSP_ERROR : BLKIF_RSP_EOPNOTSUPP);
        q.sector_number = 8;
        q.nr_sectors = 12;
        fails += expect1("discard 12 sectors at sector 8", &q, sizeof(q),
                         E.discard ? BLKIF_RSP_ERROR : BLKIF_RSP_EOPNOTSUPP);
    }
    return fails ? 1 : sanity("unaligned requests");
}

/* Writes, flushes and discards in one batch, then the data is what the
 * order says: a discard after a write zeroes, a write after a discard
 * stands. */
static int
c_flush_discard_mix(void)
{
    union { struct blkif_request rw; struct blkif_request_discard d; } q[8];
    int16_t want[8];
    int fails = 0;

    if (connect_honestly())
        return 1;
    memset(q, 0, sizeof(q));
    memset(E.data, 0x11, XBD_PAGE_SIZE);
    q[0].rw = rw(BLKIF_OP_WRITE, 800);          /* 0x11 at 800 */
    q[1].rw = rw(BLKIF_OP_FLUSH_DISKCACHE, 0);
    q[1].rw.nr_segments = 0;
    q[2].d.operation = BLKIF_OP_DISCARD;        /* 800 discarded */
    q[2].d.sector_number = 800;
    q[2].d.nr_sectors = 8;
    q[3].rw = rw(BLKIF_OP_FLUSH_DISKCACHE, 808);  /* a flush carrying a write */
    for (int i = 0; i < 4; i++)
        want[i] = BLKIF_RSP_OKAY;
    if (!E.flush)
        want[1] = want[3] = BLKIF_RSP_EOPNOTSUPP;
    if (!E.discard)
        want[2] = BLKIF_RSP_EOPNOTSUPP;
    /* One at a time: blkif does not order requests in flight. */
    for (int i = 0; i < 4; i++) {
        char what[32];

        snprintf(what, sizeof(what), "mixed request %d", i);
        fails += expect1(what, &q[i], sizeof(q[i]), want[i]);
    }
    if (fails)
        return 1;
    memset(E.data + XBD_PAGE_SIZE, 0x77, 2 * XBD_PAGE_SIZE);
    q[0].rw = rw(BLKIF_OP_READ, 800);
    q[0].rw.seg[0].gref = E.data_ref[1];
    q[1].rw = rw(BLKIF_OP_READ, 808);
    q[1].rw.seg[0].gref = E.data_ref[2];
    if (expect_batch("read back", q, sizeof(q[0]), 2, (int16_t[]){ 0, 0 }))
        return 1;
    for (unsigned int b = 0; b < XBD_PAGE_SIZE; b++) {
        unsigned char d = (unsigned char)E.data[XBD_PAGE_SIZE + b];
        unsigned char w = (unsigned char)E.data[2 * XBD_PAGE_SIZE + b];

        if (E.discard && d != 0)
            return bad("byte %u of the discarded range reads %#x, not 0", b, d);
        if (!E.discard && d != 0x11)
            return bad("byte %u written then not discarded reads %#x", b, d);
        if (E.flush && w != 0x11)
            return bad("byte %u written with the flush reads %#x", b, w);
    }
    return 0;
}

static struct blkif_request_indirect
ind(uint8_t inner, unsigned int nsegs)
{
    struct blkif_request_indirect q;

    memset(&q, 0, sizeof(q));
    q.operation = BLKIF_OP_INDIRECT;
    q.indirect_op = inner;
    q.nr_segments = (uint16_t)nsegs;
    q.indirect_grefs[0] = E.ind_ref[0];
    q.indirect_grefs[1] = E.ind_ref[1];
    for (unsigned int i = 0; i < 2 * XBD_SEGS_PER_INDIRECT_PAGE; i++)
        E.ind[i] = (struct blkif_request_segment){ E.data_ref[i % NDATA], 0, 7 };
    return q;
}

static int
c_indirect(void)
{
    struct blkif_request_indirect q;
    int16_t err;
    int fails = 0;

    if (connect_honestly())
        return 1;
    err = E.max_indirect ? BLKIF_RSP_ERROR : BLKIF_RSP_EOPNOTSUPP;
    printf("feature-max-indirect-segments = %u\n", E.max_indirect);
    q = ind(BLKIF_OP_READ, 0);
    fails += expect1("indirect with 0 segments", &q, sizeof(q), err);
    q = ind(BLKIF_OP_READ, E.max_indirect + 1);
    fails += expect1("indirect with max + 1 segments", &q, sizeof(q), err);
    q = ind(BLKIF_OP_READ, 8 * XBD_SEGS_PER_INDIRECT_PAGE + 1);
    fails += expect1("indirect needing 9 pages", &q, sizeof(q), err);
    q = ind(BLKIF_OP_READ, 0xffff);
    fails += expect1("indirect with 65535 segments", &q, sizeof(q), err);
    q = ind(BLKIF_OP_INDIRECT, 1);
    fails += expect1("indirect inside indirect", &q, sizeof(q), err);
    q = ind(BLKIF_OP_DISCARD, 1);
    fails += expect1("indirect discard", &q, sizeof(q), err);
    q = ind(0x99, 1);
    fails += expect1("indirect with inner op 0x99", &q, sizeof(q), err);
    if (E.max_indirect > 0) {
        q = ind(BLKIF_OP_READ, 1);
        q.indirect_grefs[0] = 0xdeadbeef;
        fails += expect1("indirect page gref 0xdeadbeef", &q, sizeof(q), err);
        q = ind(BLKIF_OP_READ, 1);
        q.indirect_grefs[0] = E.foreign_ref;
        fails += expect1("indirect page granted to another domain", &q, sizeof(q), err);
        if (E.max_indirect > XBD_SEGS_PER_INDIRECT_PAGE) {
            q = ind(BLKIF_OP_READ, XBD_SEGS_PER_INDIRECT_PAGE + 1);
            q.indirect_grefs[1] = 0xfffffff0u;
            fails += expect1("second indirect page gref bad", &q, sizeof(q), err);
        }
        q = ind(BLKIF_OP_READ, 3);
        E.ind[2].last_sect = 9;
        fails += expect1("indirect segment last_sect 9", &q, sizeof(q), err);
        q = ind(BLKIF_OP_READ, 3);
        E.ind[1].first_sect = 5;
        E.ind[1].last_sect = 4;
        fails += expect1("indirect segment first > last", &q, sizeof(q), err);
        q = ind(BLKIF_OP_READ, 2);
        q.sector_number = E.sectors - 8;
        fails += expect1("indirect crossing the end", &q, sizeof(q), err);
        q = ind(BLKIF_OP_READ, 2);
        E.ind[1].gref = 0xdeadbeef;
        fails += expect1("indirect segment gref bad", &q, sizeof(q), err);
        q = ind(BLKIF_OP_READ, E.max_indirect < 16 ? E.max_indirect : 16);
        fails += expect1("a valid indirect read", &q, sizeof(q), BLKIF_RSP_OKAY);
    }
    return fails ? 1 : sanity("indirect abuse");
}

static int
c_bad_grefs(void)
{
    static const struct { const char *what; int which; uint8_t op; int16_t want; } t[] = {
        { "read into gref 0xffffffff", 0, BLKIF_OP_READ, BLKIF_RSP_ERROR },
        { "write from gref 0xffffffff", 0, BLKIF_OP_WRITE, BLKIF_RSP_ERROR },
        { "read into gref 100000", 1, BLKIF_OP_READ, BLKIF_RSP_ERROR },
        { "read into a gref granted to another domain", 2, BLKIF_OP_READ, BLKIF_RSP_ERROR },
        { "write from a gref granted to another domain", 2, BLKIF_OP_WRITE, BLKIF_RSP_ERROR },
        { "read into a read-only gref", 3, BLKIF_OP_READ, BLKIF_RSP_ERROR },
        { "write from a read-only gref", 3, BLKIF_OP_WRITE, BLKIF_RSP_OKAY },
        { "read into a revoked gref", 4, BLKIF_OP_READ, BLKIF_RSP_ERROR },
        { "write from the ring's own gref", 5, BLKIF_OP_WRITE, BLKIF_RSP_OKAY },
    };
    uint32_t revoked;
    void *a;
    int fails = 0;

    if (connect_honestly())
        return 1;
    if (xbd_gntshr_share(E.gs, E.bdom, 1, 1, &revoked, &a) < 0 ||
        xbd_gntshr_unshare(E.gs, a, 1) < 0)
        die("share/unshare: %s", xbd_platform_error());
    for (unsigned int i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const uint32_t refs[] = { 0xffffffffu, 100000, E.foreign_ref, E.ro_ref,
                                  revoked, E.ring_ref };
        struct blkif_request q = rw(t[i].op, 0);

        q.seg[0].gref = refs[t[i].which];
        fails += expect1(t[i].what, &q, sizeof(q), t[i].want);
        /* the same bad gref as the last of three segments */
        if (t[i].want == BLKIF_RSP_ERROR) {
            char what[96];

            q.nr_segments = 3;
            q.seg[2] = q.seg[0];
            q.seg[0].gref = E.data_ref[0];
            q.seg[1].gref = E.data_ref[1];
            q.seg[1].first_sect = 0;
            q.seg[1].last_sect = 7;
            snprintf(what, sizeof(what), "%s (3rd segment)", t[i].what);
            fails += expect1(what, &q, sizeof(q), t[i].want);
        }
    }
    return fails ? 1 : sanity("bad grefs");
}

/* The same gref in every segment of every request of a full ring, reads
 * and then writes; and the data written that way reads back. */
static int
c_dup_grefs(void)
{
    struct blkif_request q[MAXREQ];
    int16_t ok[MAXREQ] = { 0 };
    unsigned int n;
    int fails = 0;

    /* With persistent grants, where one gref in many requests matters. */
    share_pages();
    share_ring();
    put("feature-persistent", 1);
    if (go_connected())
        return 1;
    n = RING_SIZE(&E.ring);
    for (uint8_t op = BLKIF_OP_READ; op <= BLKIF_OP_WRITE; op++) {
        for (unsigned int i = 0; i < n; i++) {
            q[i] = rw(op, (uint64_t)i * 88);
            q[i].nr_segments = BLKIF_MAX_SEGMENTS_PER_REQUEST;
            for (int s = 0; s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++)
                q[i].seg[s] = q[i].seg[0];
            q[i].handle = (blkif_vdev_t)(i * 977);     /* and any handle */
        }
        if (op == BLKIF_OP_WRITE)
            memset(E.data, 0xa5, XBD_PAGE_SIZE);
        fails += expect_batch(op ? "full ring of writes, one gref" :
                              "full ring of reads, one gref", q, sizeof(q[0]), n, ok);
    }
    memset(E.data + XBD_PAGE_SIZE, 0, XBD_PAGE_SIZE);
    q[0] = rw(BLKIF_OP_READ, 88 * 5 + 80);
    q[0].seg[0].gref = E.data_ref[1];
    fails += expect1("read back", &q[0], sizeof(q[0]), BLKIF_RSP_OKAY);
    for (unsigned int b = 0; b < XBD_PAGE_SIZE; b++)
        if ((unsigned char)E.data[XBD_PAGE_SIZE + b] != 0xa5)
            return bad("read back byte %u is %#x, not 0xa5", b,
                       (unsigned char)E.data[XBD_PAGE_SIZE + b]);
    return fails ? 1 : 0;
}

/* ---- xenstore cases (list 3) --------------------------------------------- */

/* Closed, then Initialising: the backend follows to Closed and then waits
 * in InitWait for our next transport. */
static int
start_over(void)
{
    put(XBDK_STATE, XenbusStateClosed);
    if (wait_state(XenbusStateClosed, 10) < 0)
        return bad("backend state %d, not Closed, after we closed", be_state());
    put(XBDK_STATE, XenbusStateInitialising);
    if (wait_state(XenbusStateInitWait, 10) < 0)
        return bad("backend state %d, not InitWait, after we started over", be_state());
    return 0;
}

/* Write the honest transport, then the given junk over it (value NULL:
 * remove the node), go Initialised: the backend must refuse with an error
 * node, never connect. */
static int
xs_case(const char *const *kv)
{
    share_pages();
    share_ring();
    for (; kv[0] != NULL; kv += 2) {
        if (kv[1] == NULL)
            rm_node(kv[0]);
        else
            put_str(kv[0], kv[1]);
    }
    put(XBDK_STATE, XenbusStateInitialised);
    return expect_failed("junk in xenstore");
}

#define XS_CASE(fn, ...) \
    static int fn(void) { return xs_case((const char *const[]){ __VA_ARGS__, NULL }); }

XS_CASE(c_xs_order_junk, "ring-page-order", "1x")
XS_CASE(c_xs_order_overflow, "ring-page-order", "99999999999999999999999")
XS_CASE(c_xs_order_negative, "ring-page-order", "-1")
XS_CASE(c_xs_order_huge, "ring-page-order", "200")
XS_CASE(c_xs_pages_disagree, "ring-page-order", "1", "num-ring-pages", "4",
        "ring-ref0", "8", "ring-ref1", "9", "ring-ref2", "10", "ring-ref3", "11")
XS_CASE(c_xs_pages_not_pow2, "num-ring-pages", "3", "ring-ref0", "8",
        "ring-ref1", "9", "ring-ref2", "10")
XS_CASE(c_xs_ringref_missing, "ring-page-order", "1", "ring-ref0", "8")
XS_CASE(c_xs_ringref_junk, "ring-ref", "0x10")
XS_CASE(c_xs_ringref_overflow, "ring-ref", "4294967296")
XS_CASE(c_xs_evtchn_junk, "event-channel", "7 ")
XS_CASE(c_xs_evtchn_missing, "event-channel", NULL)
XS_CASE(c_xs_queues_zero, "multi-queue-num-queues", "0")
XS_CASE(c_xs_queues_huge, "multi-queue-num-queues", "1000000000")
XS_CASE(c_xs_queues_junk, "multi-queue-num-queues", "two")
XS_CASE(c_xs_protocol_junk, "protocol", "x86_128-abi")
XS_CASE(c_xs_protocol_empty, "protocol", "")

/* ring-ref and ring-ref0 for a one-page ring (no ring-page-order): the
 * backend takes either (QEMU reads ring-ref0 with order 0, Linux ring-ref
 * without an order); both present must agree, and neither may be junk. */
static int
c_xs_ringref_both(void)
{
    int r;

    share_pages();
    share_ring();
    put("ring-ref0", E.ring_ref + 1);
    put(XBDK_STATE, XenbusStateInitialised);
    r = expect_failed("ring-ref and ring-ref0 disagree");
    if (r)
        return r;
    if (start_over())       /* now with ring-ref0 alone */
        return 1;
    rm_node(XBDK_RING_REF);
    put("ring-ref0", E.ring_ref);
    if (go_connected())
        return 1;
    return sanity("ring-ref0 alone");
}

XS_CASE(c_xs_ringref0_junk, "ring-ref0", "junk")

/* Queues: one more than the backend allows, with every queue-N dir. */
static int
c_xs_queues_over_max(void)
{
    char key[64], val[16];

    share_pages();
    share_ring();
    for (uint32_t i = 0; i <= E.max_queues && i < 128; i++) {
        snprintf(key, sizeof(key), "queue-%u/ring-ref", i);
        put(key, E.ring_ref);
        snprintf(key, sizeof(key), "queue-%u/event-channel", i);
        put(key, (uint64_t)E.port);
    }
    snprintf(val, sizeof(val), "%u", E.max_queues + 1);
    put_str("multi-queue-num-queues", val);
    put(XBDK_STATE, XenbusStateInitialised);
    return expect_failed("one queue more than multi-queue-max-queues");
}

/* Two queues announced, only queue-0's directory written. */
static int
c_xs_queue_dir_missing(void)
{
    if (E.max_queues < 2) {
        printf("backend offers %u queue(s): nothing to check\n", E.max_queues);
        return 0;
    }
    share_pages();
    share_ring();
    put("queue-0/ring-ref", E.ring_ref);
    put("queue-0/event-channel", (uint64_t)E.port);
    put_str("multi-queue-num-queues", "2");
    put(XBDK_STATE, XenbusStateInitialised);
    return expect_failed("queue-1 missing");
}

/* State values blkif does not define, before an honest connection: the
 * backend may ignore them but must then connect and serve. */
static int
c_xs_state_values(void)
{
    static const char *const v[] = { "0", "7", "8", "9", "255", "-1", "junk", "" };

    share_pages();
    share_ring();
    for (unsigned int i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        put_str(XBDK_STATE, v[i]);
        usleep(20000);
    }
    put(XBDK_STATE, XenbusStateInitialising);
    usleep(20000);
    if (go_connected())
        return 1;
    return sanity("undefined state values");
}

/* Watch floods on our own nodes: rewrite the state node and a node the
 * backend watches thousands of times, then connect and do I/O. */
static int
c_watch_flood(void)
{
    share_pages();
    share_ring();
    for (int i = 0; i < 20000; i++) {
        put(XBDK_STATE, XenbusStateInitialising);
        put("feature-persistent", (uint64_t)(i & 1));
    }
    put_str("feature-persistent", "1");
    if (go_connected())
        return 1;
    return sanity("20000 writes of our state node");
}

/* The state node rewritten 2000 times as fast as the store takes it,
 * cycling Initialising, Initialised, Closing, Closed and 9 (a value blkif
 * does not define) before any ring node exists, then Closed: the backend
 * follows to Closed (each Initialised fails the device for want of a ring,
 * each Initialising starts it over), and is still sound enough to start
 * over, connect an honest ring and serve it. */
static int
c_state_flood(void)
{
    static const int cycle[] = { XenbusStateInitialising, XenbusStateInitialised,
                                 XenbusStateClosing, XenbusStateClosed, 9 };

    for (int i = 0; i < 2000; i++)
        put(XBDK_STATE, (uint64_t)cycle[i % 5]);
    if (start_over() || connect_honestly())     /* start_over: Closed first */
        return 1;
    return sanity("2000 writes of our state node with no ring");
}

/* State flapping while a thread keeps requests in flight. */
static volatile int flap_stop;

static void *
flap_io(void *arg)
{
    (void)arg;
    while (!flap_stop) {
        struct blkif_request q = rw(BLKIF_OP_READ, 0);

        if (!RING_FULL(&E.ring))
            submit(&q, sizeof(q));
        push();
        E.ring.rsp_cons = E.ring.sring->rsp_prod;   /* answers: don't care */
        usleep(100);
    }
    return NULL;
}

static int
c_state_flap(void)
{
    static const int seq[] = { XenbusStateInitialised, XenbusStateClosing,
                               XenbusStateClosed, XenbusStateInitialising,
                               XenbusStateConnected, XenbusStateInitialised,
                               XenbusStateClosed };
    pthread_t t;

    if (connect_honestly())
        return 1;
    if (pthread_create(&t, NULL, flap_io, NULL) != 0)
        die("pthread_create");
    for (int i = 0; i < 300; i++)
        put(XBDK_STATE, (uint64_t)seq[i % 7]);
    flap_stop = 1;
    pthread_join(t, NULL);
    /* Settle: we are Closed now; a sound backend follows us there. */
    put(XBDK_STATE, XenbusStateClosed);
    if (wait_state(XenbusStateClosed, 10) < 0)
        return bad("backend state %d, not Closed, after the frontend closed", be_state());
    return 0;
}

/* ---- lifecycle (list 4) -------------------------------------------------- */

/* The frontend removes its own directory while the backend connects. */
static int
c_fe_dir_removed(void)
{
    share_pages();
    share_ring();
    put(XBDK_STATE, XenbusStateInitialised);
    if (!xs_rm(E.xs, XBT_NULL, E.fe))
        die("removing %s: %s", E.fe, strerror(errno));
    /* A backend whose frontend vanished closes; it must not stay up. */
    for (int i = 0; i < 1000; i++) {
        int s = be_state();

        if (s == XenbusStateClosing || s == XenbusStateClosed)
            return 0;
        usleep(10000);
    }
    return bad("backend state %d 10 s after the frontend directory went", be_state());
}

/* Point our `backend` node at another guest's backend directory (the
 * test passes it in XBD_EVIL_VICTIM), then close: whatever detaches us
 * must read the backend from the toolstack's own records; the victim's
 * disk must not be touched.  Our own device is checked still Connected
 * until we close. */
static int
c_backend_lie(void)
{
    const char *victim = getenv("XBD_EVIL_VICTIM");

    if (victim == NULL)
        die("XBD_EVIL_VICTIM: the backend directory to point at");
    if (connect_honestly() || sanity("connecting"))
        return 1;
    put_str(XBDK_BACKEND, victim);
    put_str(XBDK_BACKEND_ID, "0");
    usleep(100000);
    if (be_state() != XenbusStateConnected)
        return bad("our backend left Connected (state %d) when we lied about it",
                   be_state());
    return sanity("rewriting our backend node");
}

/* Connect with one page, do I/O, close; come back with a two-page ring
 * (ring-page-order 1) and do I/O again. */
static int
c_reconnect_bigger(void)
{
    uint32_t refs[2];
    void *page;

    if (connect_honestly() || sanity("the first connection"))
        return 1;
    put(XBDK_STATE, XenbusStateClosing);
    if (wait_state(XenbusStateClosing, 10) < 0)
        return bad("backend state %d, not Closing, after we did", be_state());
    if (start_over())
        return 1;
    if (E.max_order < 1) {
        printf("backend offers one ring page: reconnecting with one\n");
        share_ring();
    } else {
        page = share(E.bdom, 2, 1, refs);
        init_ring(page, 2 * XBD_PAGE_SIZE);
        rm_node(XBDK_RING_REF);
        put("ring-page-order", 1);
        put("ring-ref0", refs[0]);
        put("ring-ref1", refs[1]);
    }
    if (go_connected())
        return 1;
    {
        struct blkif_request q[MAXREQ];
        int16_t ok[MAXREQ] = { 0 };
        unsigned int n = RING_SIZE(&E.ring);

        if (n > MAXREQ)
            n = MAXREQ;
        for (unsigned int i = 0; i < n; i++)
            q[i] = rw(BLKIF_OP_READ, (uint64_t)i * 8);
        printf("second connection: %u-slot ring\n", RING_SIZE(&E.ring));
        return expect_batch("a full two-page ring of reads", q, sizeof(q[0]), n, ok);
    }
}

/* Keep a full ring of reads and writes in flight until killed: the test
 * destroys this domain meanwhile. */
static int
c_destroy_inflight(void)
{
    bool said = false;

    if (connect_honestly())
        return 1;
    for (uint64_t n = 0;; n++) {
        for (int k = 0; !RING_FULL(&E.ring); k++) {
            struct blkif_request q = rw(k & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ,
                                        (uint64_t)(k % 64) * 8);

            q.nr_segments = BLKIF_MAX_SEGMENTS_PER_REQUEST;
            for (int s = 1; s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++)
                q.seg[s] = q.seg[0];
            submit(&q, sizeof(q));
        }
        push();
        E.ring.rsp_cons = E.ring.sring->rsp_prod;
        if (!said && n > 100) {
            printf("ready\n");
            fflush(stdout);
            said = true;
        }
        usleep(200);
    }
}

/* ---- the case table ------------------------------------------------------ */

/* F_ABI: the case attacks request fields, so it also runs with every
 * other layout abis[] knows (NAME/PROTOCOL, e.g. opcodes/x86_32-abi). */
#define F_ABI 1u

static const struct evil_case {
    const char *name;
    int (*fn)(void);
    const char *expect;
    unsigned flags;
} cases[] = {
    { "prod-far-ahead", c_prod_far_ahead, "Closing + error" },
    { "prod-backwards", c_prod_backwards, "Closing + error" },
    { "prod-wrap", c_prod_wrap, "Closing + error" },
    { "mutate", c_mutate, "every response well-formed; ring stays up" },
    { "evtchn-storm", c_evtchn_storm, "no response; ring stays up" },
    { "opcodes", c_opcodes, "defined ops served, others EOPNOTSUPP", F_ABI },
    { "seg-counts", c_seg_counts, "ERROR", F_ABI },
    { "sector-fields", c_sector_fields, "ERROR", F_ABI },
    { "write-readonly", c_write_readonly, "ERROR (attach mode=r)", F_ABI },
    { "indirect", c_indirect, "ERROR (EOPNOTSUPP without indirect)", F_ABI },
    { "bad-grefs", c_bad_grefs, "ERROR; read-only gref fine for writes", F_ABI },
    { "dup-grefs", c_dup_grefs, "OKAY, data verified (persistent grants)", F_ABI },
    { "unaligned-4k", c_unaligned_4k, "ERROR (attach null:sector-size=4096)", F_ABI },
    { "flush-discard-mix", c_flush_discard_mix, "OKAY, data as ordered", F_ABI },
    { "xs-order-junk", c_xs_order_junk, "Closing + error" },
    { "xs-order-overflow", c_xs_order_overflow, "Closing + error" },
    { "xs-order-negative", c_xs_order_negative, "Closing + error" },
    { "xs-order-huge", c_xs_order_huge, "Closing + error" },
    { "xs-pages-disagree", c_xs_pages_disagree, "Closing + error" },
    { "xs-pages-not-pow2", c_xs_pages_not_pow2, "Closing + error" },
    { "xs-ringref-missing", c_xs_ringref_missing, "Closing + error" },
    { "xs-ringref-junk", c_xs_ringref_junk, "Closing + error" },
    { "xs-ringref-overflow", c_xs_ringref_overflow, "Closing + error" },
    { "xs-evtchn-junk", c_xs_evtchn_junk, "Closing + error" },
    { "xs-evtchn-missing", c_xs_evtchn_missing, "Closing + error" },
    { "xs-ringref-both", c_xs_ringref_both, "disagreeing: Closing + error; ring-ref0 alone serves" },
    { "xs-ringref0-junk", c_xs_ringref0_junk, "Closing + error" },
    { "xs-queues-zero", c_xs_queues_zero, "Closing + error" },
    { "xs-queues-huge", c_xs_queues_huge, "Closing + error" },
    { "xs-queues-junk", c_xs_queues_junk, "Closing + error" },
    { "xs-queues-over-max", c_xs_queues_over_max, "Closing + error" },
    { "xs-queue-dir-missing", c_xs_queue_dir_missing, "Closing + error" },
    { "xs-protocol-junk", c_xs_protocol_junk, "Closing + error" },
    { "xs-protocol-empty", c_xs_protocol_empty, "Closing + error" },
    { "xs-state-values", c_xs_state_values, "ignored; then connects and serves" },
    { "watch-flood", c_watch_flood, "then connects and serves" },
    { "state-flood", c_state_flood, "ends Closed; then connects and serves" },
    { "state-flap", c_state_flap, "ends Closed" },
    { "fe-dir-removed", c_fe_dir_removed, "Closing or Closed" },
    { "backend-lie", c_backend_lie, "victim (XBD_EVIL_VICTIM) untouched by detach" },
    { "reconnect-bigger", c_reconnect_bigger, "serves the new ring" },
    { "destroy-inflight", c_destroy_inflight, "(run until the domain dies)" },
};

int
main(int argc, char **argv)
{
    const struct evil_case *c = NULL;
    int r;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("Usage: xbd-evil-front --list | --case NAME[/PROTOCOL] FRONTEND-DIR\n\n"
               "A malicious blkif frontend for tests: run as a guest (xbdctl run-as)\n"
               "against a disk attached to it; each case attacks the backend one way\n"
               "and checks its answer.  Exit 0: the backend behaved; 1: it did not\n"
               "(a line says how); 2: usage.  --list prints each case and what a\n"
               "sound backend does.  Cases that attack request fields also run with\n"
               "a foreign ring layout: NAME/x86_32-abi announces that protocol and\n"
               "writes every request in its layout (plain NAME announces %s, the\n"
               "native one).  Case backend-lie reads XBD_EVIL_VICTIM.\n",
               XEN_IO_PROTO_ABI_NATIVE);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            printf("%-22s %s\n", cases[i].name, cases[i].expect);
            for (size_t a = 1; (cases[i].flags & F_ABI) && a < sizeof(abis) / sizeof(abis[0]); a++) {
                char n[64];

                snprintf(n, sizeof(n), "%s/%s", cases[i].name, abis[a].protocol);
                printf("%-22s %s\n", n, cases[i].expect);
            }
        }
        return 0;
    }
    E.abi = &abis[0];
    if (argc == 4 && strcmp(argv[1], "--case") == 0) {
        const char *slash = strchr(argv[2], '/');
        size_t nl = slash ? (size_t)(slash - argv[2]) : strlen(argv[2]);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            if (strlen(cases[i].name) == nl && strncmp(argv[2], cases[i].name, nl) == 0)
                c = &cases[i];
        if (c != NULL && slash != NULL) {
            E.abi = NULL;
            for (size_t a = 1; (c->flags & F_ABI) && a < sizeof(abis) / sizeof(abis[0]); a++)
                if (strcmp(slash + 1, abis[a].protocol) == 0)
                    E.abi = &abis[a];
            if (E.abi == NULL)
                c = NULL;
        }
    }
    if (c == NULL) {
        fprintf(stderr, "usage: xbd-evil-front --list | --case NAME[/PROTOCOL] FRONTEND-DIR\n");
        return 2;
    }
    E.name = argv[2];
    E.fe = argv[3];
    open_all();
    r = c->fn();
    /* Leave Closed, as a frontend that gives up would: the backend follows
     * to Closed and lets go of every page we shared.  A frontend that
     * removed its own directory cannot write there again (device/vbd is
     * the toolstack's); its backend closes by itself. */
    if (!fe_gone())
        put(XBDK_STATE, XenbusStateClosed);
    if (r == 0 && wait_state(XenbusStateClosed, 10) < 0)
        r = bad("backend state %d, not Closed, after we closed", be_state());
    if (r == 0)
        r = check_released();
    printf("%s %s\n", r == 0 ? "ok" : "FAIL", E.name);
    xs_close(E.xs);
    return r == 0 ? 0 : 1;
}
