/* Unit tests for the frontend's shadow table, free list and push helper
 * (frontend/xbdf-ring.c).  The test plays the backend on a ring in
 * ordinary memory. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-ring.h"
#include "tap.h"

static int notified;

static int
count_notify(void *arg)
{
    (void)arg;
    notified++;
    return 0;
}

static void *
ring_mem(unsigned int pages)
{
    void *p = NULL;

    if (posix_memalign(&p, XBD_PAGE_SIZE, (size_t)pages * XBD_PAGE_SIZE) != 0)
        bail_out("out of memory");
    memset(p, 0xa5, (size_t)pages * XBD_PAGE_SIZE);    /* garbage first */
    return p;
}

static void
test_free_list(void)
{
    struct xbdf_shadow s;
    uint64_t id, ids[32];
    int idx;
    bool seen[32] = { false };
    int all_distinct = 1;

    is_int(xbdf_shadow_init(&s, 0), -EINVAL, "a shadow of size 0 is refused");
    is_int(xbdf_shadow_init(&s, 32), 0, "shadow of 32 entries");
    for (unsigned int i = 0; i < 32; i++) {
        idx = xbdf_shadow_get(&s, 1000 + i, &ids[i]);
        if (idx < 0 || idx >= 32 || seen[idx] || (uint32_t)ids[i] != (uint32_t)idx)
            all_distinct = 0;
        else
            seen[idx] = true;
    }
    ok(all_distinct, "32 gets give 32 distinct indexes, each encoded in its id");
    is_int(s.in_use, 32, "all 32 in use");
    is_int(xbdf_shadow_get(&s, 0, &id), -ENOSPC, "the 33rd get fails with ENOSPC");

    /* LIFO reuse, and a new generation on each reuse. */
    xbdf_shadow_put(&s, 7);
    idx = xbdf_shadow_get(&s, 42, &id);
    is_int(idx, 7, "a put entry is the next one got");
    ok(id != ids[7], "its id differs from the previous use (generation)");
    is_int((uint32_t)id, 7, "and still encodes index 7");
    is_int(s.ent[7].tag, 42, "the tag is the new owner's");

    /* Put everything back in a scrambled order and take it all again. */
    for (unsigned int i = 0; i < 32; i++)
        xbdf_shadow_put(&s, (i * 13) % 32);
    is_int(s.in_use, 0, "all entries back on the free list");
    is_int(xbdf_shadow_next_in_use(&s, 0), XBDF_SHADOW_NONE, "none in use");
    memset(seen, 0, sizeof(seen));
    all_distinct = 1;
    for (unsigned int i = 0; i < 32; i++) {
        idx = xbdf_shadow_get(&s, i, &id);
        if (idx < 0 || seen[idx])
            all_distinct = 0;
        else
            seen[idx] = true;
    }
    ok(all_distinct, "after scrambled puts, 32 gets are still distinct");
    xbdf_shadow_put(&s, 3);
    xbdf_shadow_put(&s, 20);
    is_int(xbdf_shadow_next_in_use(&s, 3), 4, "next in use skips a free entry");
    is_int(xbdf_shadow_next_in_use(&s, 31), 31, "last entry in use");
    xbdf_shadow_fini(&s);
}

static void
test_push_notify(void)
{
    struct xbdf_ring r;
    void *mem = ring_mem(2);
    struct blkif_sring *sr = mem;
    uint64_t id;
    int idx, n;

    is_int(xbdf_ring_init(&r, mem, 3, count_notify, NULL), -EINVAL,
           "3 ring pages (not a power of two) refused");
    is_int(xbdf_ring_init(&r, mem, 2, count_notify, NULL), 0, "2-page ring");
    is_int(RING_SIZE(&r.front), 64, "2 pages hold 64 requests");
    is_int(r.shadow.size, 64, "the shadow is the size of the ring");
    is_int(sr->req_prod, 0, "shared header initialised: req_prod 0");
    is_int(sr->req_event, 1, "req_event 1");
    is_int(sr->rsp_event, 1, "rsp_event 1");
    is_int(xbdf_ring_free(&r), 64, "64 free slots");

    /* The private copy is what reaches the ring. */
    idx = xbdf_shadow_get(&r.shadow, 1, &id);
    r.shadow.ent[idx].req.rw.operation = BLKIF_OP_READ;
    r.shadow.ent[idx].req.rw.id = id;
    r.shadow.ent[idx].req.rw.sector_number = 77;
    xbdf_ring_queue(&r, (uint32_t)idx);
    is_int(sr->req_prod, 0, "queued requests are not yet visible");
    notified = 0;
    n = xbdf_ring_push(&r);
    is_int(n, 1, "first push notifies (backend waits at req_event 1)");
    is_int(notified, 1, "the notify function ran once");
    is_int(sr->req_prod, 1, "req_prod published");
    ok(sr->ring[0].req.id == id && sr->ring[0].req.sector_number == 77,
       "the ring slot holds the private copy");

    /* The backend has not re-armed req_event: no notification. */
    for (int i = 0; i < 3; i++) {
        idx = xbdf_shadow_get(&r.shadow, 2, &id);
        r.shadow.ent[idx].req.rw.operation = BLKIF_OP_WRITE;
        r.shadow.ent[idx].req.rw.id = id;
        xbdf_ring_queue(&r, (uint32_t)idx);
    }
    is_int(xbdf_ring_push(&r), 0, "no notification while the backend is busy");
    is_int(notified, 1, "notify did not run");
    /* Backend consumed all 4 and waits for the 5th. */
    sr->req_event = 5;
    idx = xbdf_shadow_get(&r.shadow, 3, &id);
    r.shadow.ent[idx].req.rw.operation = BLKIF_OP_READ;
    xbdf_ring_queue(&r, (uint32_t)idx);
    is_int(xbdf_ring_push(&r), 1, "notification when req_event falls in the new batch");
    is_int(r.notify_sent, 2, "two notifications counted");
    is_int(xbdf_ring_free(&r), 59, "59 slots left");
    xbdf_ring_fini(&r);
    free(mem);
}

int
main(void)
{
    test_free_list();
    test_push_notify();
    return done_testing();
}
