/* Unit tests for a frontend queue (frontend/xbdf-queue.c): caller requests
 * split into ring requests through a granted page pool, data bounced both
 * ways, every callback exactly once (even on errors, a broken backend or
 * teardown), never for a refused request nor one given up on.  The test plays the backend on
 * ordinary memory: grant reference 1000+i is pool page i. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-queue.h"
#include "tap.h"

#define REF0 1000u

/* ---- a backend ---------------------------------------------------------- */

enum be_mode { BE_OK, BE_FAIL_WRITES, BE_BAD_ID };

struct be {
    struct blkif_sring *sr;
    unsigned int size;
    RING_IDX cons, rsp;
    char *disk;
    uint64_t disk_size;
    char *pool;
    uint32_t pool_pages;
    enum be_mode mode;
    uint32_t ref0;              /* grant reference of pool page 0 */
    unsigned int limit;         /* answer at most this many (0: all) */
    unsigned int flushes, discards, indirects, bad;
};

static char *
be_page(struct be *b, uint32_t ref)
{
    if (ref < b->ref0 || ref - b->ref0 >= b->pool_pages) {
        b->bad++;
        return NULL;
    }
    return b->pool + (size_t)(ref - b->ref0) * XBD_PAGE_SIZE;
}

/* Data of one request: copy between the disk and the granted pages. */
static int
be_rw(struct be *b, int write, uint64_t sector,
      const struct blkif_request_segment *seg, unsigned int nseg)
{
    uint64_t pos = sector * 512;

    for (unsigned int i = 0; i < nseg; i++) {
        char *page = be_page(b, seg[i].gref);
        uint64_t n = (uint64_t)(seg[i].last_sect - seg[i].first_sect + 1) * 512;

        if (page == NULL || seg[i].last_sect > 7 ||
            seg[i].first_sect > seg[i].last_sect || pos + n > b->disk_size) {
            b->bad++;
            return BLKIF_RSP_ERROR;
        }
        if (write)
            memcpy(b->disk + pos, page + seg[i].first_sect * 512, n);
        else
            memcpy(page + seg[i].first_sect * 512, b->disk + pos, n);
        pos += n;
    }
    return BLKIF_RSP_OKAY;
}

static void
be_process(struct be *b)
{
    RING_IDX prod = b->sr->req_prod;

    xen_rmb();
    while (b->cons != prod) {
        if (b->limit != 0 && b->rsp >= b->limit)
            break;
        union xbdf_req r;
        struct blkif_response *rsp;
        int16_t st = BLKIF_RSP_OKAY;
        uint8_t op;

        memcpy(&r, &b->sr->ring[b->cons++ % b->size].req, sizeof(r.rw));
        op = r.rw.operation;
        switch (op) {
        case BLKIF_OP_READ:
        case BLKIF_OP_WRITE:
        case BLKIF_OP_WRITE_BARRIER:
            if (op != BLKIF_OP_READ && b->mode == BE_FAIL_WRITES)
                st = BLKIF_RSP_ERROR;
            else if (r.rw.nr_segments == 0 ||
                     r.rw.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST)
                st = BLKIF_RSP_ERROR, b->bad++;
            else
                st = (int16_t)be_rw(b, op != BLKIF_OP_READ, r.rw.sector_number,
                                    r.rw.seg, r.rw.nr_segments);
            break;
        case BLKIF_OP_INDIRECT: {
            struct blkif_request_segment segs[XBD_MAX_INDIRECT_SEGMENTS];
            unsigned int n = r.indirect.nr_segments;

            b->indirects++;
            if (n == 0 || n > XBD_MAX_INDIRECT_SEGMENTS) {
                st = BLKIF_RSP_ERROR, b->bad++;
                break;
            }
            for (unsigned int p = 0; p * XBD_SEGS_PER_INDIRECT_PAGE < n; p++) {
                char *page = be_page(b, r.indirect.indirect_grefs[p]);
                unsigned int k = n - p * XBD_SEGS_PER_INDIRECT_PAGE;

                if (page == NULL)
                    break;
                if (k > XBD_SEGS_PER_INDIRECT_PAGE)
                    k = XBD_SEGS_PER_INDIRECT_PAGE;
                memcpy(&segs[p * XBD_SEGS_PER_INDIRECT_PAGE], page,
                       k * sizeof(segs[0]));
            }
            if (r.indirect.indirect_op == BLKIF_OP_WRITE &&
                b->mode == BE_FAIL_WRITES)
                st = BLKIF_RSP_ERROR;
            else
                st = (int16_t)be_rw(b, r.indirect.indirect_op == BLKIF_OP_WRITE,
                                    r.indirect.sector_number, segs, n);
            break;
        }
        case BLKIF_OP_FLUSH_DISKCACHE:
            b->flushes++;
            break;
        case BLKIF_OP_DISCARD:
            b->discards++;
            memset(b->disk + r.discard.sector_number * 512, 0,
                   r.discard.nr_sectors * 512);
            break;
        default:
            st = BLKIF_RSP_EOPNOTSUPP;
        }
        rsp = &b->sr->ring[b->rsp++ % b->size].rsp;
        rsp->id = b->mode == BE_BAD_ID ? r.rw.id ^ (UINT64_C(1) << 40) : r.rw.id;
        rsp->operation = op;
        rsp->status = st;
    }
    xen_wmb();
    b->sr->rsp_prod = b->rsp;
}

/* ---- the frontend side -------------------------------------------------- */

struct cb { int calls, err; };

static void
on_done(void *ud, int err)
{
    struct cb *c = ud;

    c->calls++;
    c->err = err;
}

static struct xbdf_queue q;
static struct be be;
static struct xbdf_geom geom;
static void *ring_mem;
static uint32_t refs[1024];    /* identity: refs[i] is page i of be.pool */

/* The queue's view of the pool, in chunks of 8 pages laid out in reverse
 * order in be.pool, as a pool shared in several pieces is: nothing may
 * assume that consecutive pool pages are adjacent in memory. */
#define CHUNK_SHIFT 3u
#define CHUNK_PAGES (1u << CHUNK_SHIFT)
static char *chunks[1024 / CHUNK_PAGES];
static uint32_t qrefs[1024];
static struct xbdf_pool qpool;

static void
setup(unsigned int ring_pages, uint32_t pool_pages, uint32_t indirect)
{
    static char *disk;

    memset(&geom, 0, sizeof(geom));
    geom.size = 8 << 20;
    geom.sector_size = 512;
    geom.max_indirect_segs = indirect;
    geom.flush = true;
    geom.discard = true;
    geom.discard_granularity = 4096;
    free(disk);
    disk = calloc(1, geom.size);
    free(ring_mem);
    free(be.pool);
    if (posix_memalign(&ring_mem, XBD_PAGE_SIZE, ring_pages * XBD_PAGE_SIZE) ||
        disk == NULL)
        bail_out("out of memory");
    uint32_t nchunks = (pool_pages + CHUNK_PAGES - 1) / CHUNK_PAGES;

    memset(&be, 0, sizeof(be));
    if (posix_memalign((void **)&be.pool, XBD_PAGE_SIZE,
                       (size_t)nchunks * CHUNK_PAGES * XBD_PAGE_SIZE))
        bail_out("out of memory");
    for (uint32_t i = 0; i < 1024; i++)
        refs[i] = REF0 + i;
    for (uint32_t c = 0; c < nchunks; c++)
        chunks[c] = be.pool + (size_t)(nchunks - 1 - c) * CHUNK_PAGES *
                              XBD_PAGE_SIZE;
    for (uint32_t i = 0; i < pool_pages; i++)
        qrefs[i] = REF0 + (nchunks - 1 - (i >> CHUNK_SHIFT)) * CHUNK_PAGES +
                   (i & (CHUNK_PAGES - 1));
    qpool = (struct xbdf_pool){ chunks, CHUNK_SHIFT, qrefs, pool_pages };
    be.sr = ring_mem;
    be.disk = disk;
    be.disk_size = geom.size;
    be.pool_pages = nchunks * CHUNK_PAGES;
    be.ref0 = REF0;
    if (xbdf_queue_init(&q, ring_mem, ring_pages, &geom, 51712, &qpool, NULL,
                        NULL, 0) < 0)
        bail_out("queue init");
    be.size = RING_SIZE(&q.ring.front);
}

/* Drive both sides until nothing is in flight (bounded). */
static int
run(void)
{
    int rounds = 0, n = 0;

    while (xbdf_queue_in_flight(&q) > 0 && rounds++ < 100000) {
        be_process(&be);
        n += xbdf_queue_process(&q, 0);
    }
    return n;
}

static void
fill(char *p, size_t n, unsigned int seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 16);
    }
}

static void
test_big_direct(void)
{
    size_t len = 1 << 20;
    char *w = malloc(len), *r = calloc(1, len);
    struct cb c1 = { 0, 1 }, c2 = { 0, 1 };

    setup(1, 16, 0);
    fill(w, len, 1);
    is_int(xbdf_queue_submit(&q, XBDF_IO_WRITE, w, len, 65536, 0, on_done, &c1),
           0, "1 MiB write accepted (1-page ring, 16-page pool, no indirect)");
    run();
    ok(c1.calls == 1 && c1.err == 0, "its callback ran once with 0");
    ok(memcmp(be.disk + 65536, w, len) == 0, "the backend has the data");
    ok(q.stats.ring_requests >= 24, "split into %llu ring requests of <= 44 KiB",
       (unsigned long long)q.stats.ring_requests);
    is_int(be.bad, 0, "the backend saw no malformed request");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, r, len, 65536, 0, on_done, &c2),
           0, "1 MiB read accepted");
    run();
    ok(c2.calls == 1 && c2.err == 0, "read callback once with 0");
    ok(memcmp(r, w, len) == 0, "read back what was written");
    is_int(q.pool_nfree, 16, "every pool page back");
    is_int(q.ring.shadow.in_use, 0, "every shadow entry free");
    xbdf_queue_fini(&q, -ECANCELED);
    free(w);
    free(r);
}

static void
test_many(void)
{
    enum { N = 100 };
    static char w[N][4096], r[N][4096];
    struct cb c[N], d[N];
    int good = 1;

    setup(1, 64, 0);
    memset(c, 0, sizeof(c));
    memset(d, 0, sizeof(d));
    for (int i = 0; i < N; i++) {
        fill(w[i], 4096, (unsigned int)i + 7);
        if (xbdf_queue_submit(&q, XBDF_IO_WRITE, w[i], 4096, (uint64_t)i * 8192,
                              0, on_done, &c[i]) != 0)
            good = 0;
    }
    ok(good, "100 writes accepted on a ring of 32");
    ok(q.ring.shadow.in_use <= 32, "no more than 32 on the ring at once");
    run();
    for (int i = 0; i < N; i++)
        if (c[i].calls != 1 || c[i].err != 0)
            good = 0;
    ok(good, "each write's callback ran exactly once with 0");
    for (int i = 0; i < N; i++)
        xbdf_queue_submit(&q, XBDF_IO_READ, r[i], 4096, (uint64_t)i * 8192, 0,
                          on_done, &d[i]);
    run();
    for (int i = 0; i < N; i++)
        if (d[i].calls != 1 || d[i].err != 0 || memcmp(r[i], w[i], 4096) != 0)
            good = 0;
    ok(good, "each read once, with the data written");
    is_int(q.stats.completed, 2 * N, "completed counter");
    is_int(q.stats.errors, 0, "error counter");
    xbdf_queue_fini(&q, -ECANCELED);
}

static void
test_indirect(void)
{
    size_t len = 3 << 20;
    char *w = malloc(len), *r = calloc(1, len);
    struct cb c1 = { 0, 1 }, c2 = { 0, 1 };

    setup(2, 300, 256);
    fill(w, len, 3);
    xbdf_queue_submit(&q, XBDF_IO_WRITE, w, len, 4096, 0, on_done, &c1);
    run();
    ok(c1.calls == 1 && c1.err == 0, "3 MiB write through indirect: once, 0");
    ok(be.indirects > 0, "the backend saw %u indirect requests", be.indirects);
    xbdf_queue_submit(&q, XBDF_IO_READ, r, len, 4096, 0, on_done, &c2);
    run();
    ok(c2.calls == 1 && c2.err == 0 && memcmp(r, w, len) == 0,
       "3 MiB read back through indirect");
    is_int(be.bad, 0, "no malformed request");
    is_int(q.pool_nfree, 300, "every pool page back");
    xbdf_queue_fini(&q, -ECANCELED);
    free(w);
    free(r);
}

static void
test_errors(void)
{
    static char buf[256 * 1024];
    struct cb c = { 0, 0 }, never = { 0, 0 }, c2[40];
    int r;

    setup(1, 16, 0);
    be.mode = BE_FAIL_WRITES;
    xbdf_queue_submit(&q, XBDF_IO_WRITE, buf, sizeof(buf), 0, 0, on_done, &c);
    run();
    ok(c.calls == 1 && c.err == -EIO, "a failing multi-piece write: one callback, "
       "-EIO (%d calls, err %d)", c.calls, c.err);
    is_int(q.pool_nfree, 16, "pool pages back after the error");

    /* Refused requests never call back. */
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, buf, 1000, 0, 0, on_done, &never),
           -EINVAL, "partial sector refused");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, buf, 4096, geom.size, 0, on_done,
                             &never), -EINVAL, "beyond the end refused");
    is_int(xbdf_queue_submit(&q, XBDF_IO_WRITE, buf, 4096, 0,
                             XBDFRONT_WRITE_BARRIER, on_done, &never),
           -EOPNOTSUPP, "barrier not offered");
    is_int(xbdf_queue_submit(&q, XBDF_IO_DISCARD, NULL, 4096, 0,
                             XBDFRONT_DISCARD_SECURE, on_done, &never),
           -EOPNOTSUPP, "secure discard not offered");
    run();
    is_int(never.calls, 0, "no callback for any refused request");
    xbdf_queue_fini(&q, -ECANCELED);

    /* A lying backend: everything outstanding fails once with -ENODEV. */
    setup(1, 16, 0);
    be.mode = BE_BAD_ID;
    memset(c2, 0, sizeof(c2));
    for (int i = 0; i < 40; i++)
        xbdf_queue_submit(&q, XBDF_IO_READ, buf + i * 4096, 4096, 0, 0, on_done,
                          &c2[i]);
    be_process(&be);
    xbdf_queue_process(&q, 0);
    r = 1;
    for (int i = 0; i < 40; i++)
        if (c2[i].calls != 1 || c2[i].err != -ENODEV)
            r = 0;
    ok(r, "broken backend: all 40 requests called back once with -ENODEV");
    is_int(xbdf_queue_in_flight(&q), 0, "nothing left in flight");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, buf, 4096, 0, 0, on_done, &never),
           -ENODEV, "new requests refused with -ENODEV");
    ok(q.ring.broken, "the ring says broken");
    xbdf_queue_fini(&q, -ECANCELED);
    is_int(never.calls, 0, "and never called back");
}

static void
test_flush_discard_close(void)
{
    static char buf[4096 * 8];
    struct cb f = { 0, 1 }, d = { 0, 1 }, z = { 0, 1 }, nf = { 0, 1 }, x[50];
    uint64_t before;
    int good = 1;

    setup(1, 16, 0);
    memset(be.disk, 0x55, 65536);
    xbdf_queue_submit(&q, XBDF_IO_FLUSH, NULL, 0, 0, 0, on_done, &f);
    xbdf_queue_submit(&q, XBDF_IO_DISCARD, NULL, 16384, 4096, 0, on_done, &d);
    before = q.stats.ring_requests;
    xbdf_queue_submit(&q, XBDF_IO_DISCARD, NULL, 2048, 1024, 0, on_done, &z);
    is_int(q.stats.ring_requests, before, "a discard smaller than a granule "
           "does not reach the ring");
    run();
    ok(f.calls == 1 && f.err == 0 && be.flushes == 1, "flush went to the backend");
    ok(d.calls == 1 && d.err == 0 && be.discards == 1, "discard went to the backend");
    ok(be.disk[4096] == 0 && be.disk[4096 + 16383] == 0 && be.disk[4095] == 0x55 &&
       be.disk[4096 + 16384] == 0x55, "exactly the range was discarded");
    ok(z.calls == 1 && z.err == 0, "the empty discard completed with 0");
    geom.flush = false;
    xbdf_queue_submit(&q, XBDF_IO_FLUSH, NULL, 0, 0, 0, on_done, &nf);
    run();
    ok(nf.calls == 1 && nf.err == 0 && be.flushes == 1,
       "no flush feature: completes with 0 without the backend");

    /* Limits and teardown. */
    q.max_pending = 50;
    memset(x, 0, sizeof(x));
    for (int i = 0; i < 50; i++)
        if (xbdf_queue_submit(&q, XBDF_IO_READ, buf, 4096, 0, 0, on_done, &x[i]))
            good = 0;
    ok(good, "50 requests accepted");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, buf, 4096, 0, 0, on_done, &nf),
           -EAGAIN, "the 51st: -EAGAIN");
    xbdf_queue_fini(&q, -ECANCELED);
    for (int i = 0; i < 50; i++)
        if (x[i].calls != 1 || x[i].err != -ECANCELED)
            good = 0;
    ok(good, "teardown called each back once with -ECANCELED");
    is_int(nf.calls, 1, "the refused one never");
}

/* The backend goes away with requests on the ring (some answered, some
 * taken but unanswered, some not even taken); a new one comes with a
 * different ring size, pool and indirect limit.  Every request completes
 * once, without error, with the right data. */
static void
test_reconnect(void)
{
    enum { N = 30 };
    size_t len = 1 << 20;
    char *w = malloc(len), *rb = calloc(1, len);
    static char r[N][4096];
    static uint32_t refs2[400];
    struct cb cw = { 0, 1 }, cr[N], cw2 = { 0, 1 }, crb = { 0, 1 };
    void *ring2 = NULL;
    char *pool2 = NULL;
    unsigned int on_ring;
    int good = 1;

    setup(1, 64, 0);
    fill(w, len, 9);
    fill(be.disk + (4 << 20), N * 4096, 11);
    memset(cr, 0, sizeof(cr));
    for (int i = 0; i < N; i++)
        xbdf_queue_submit(&q, XBDF_IO_READ, r[i], 4096,
                          (4 << 20) + (uint64_t)i * 4096, 0, on_done, &cr[i]);
    xbdf_queue_submit(&q, XBDF_IO_WRITE, w, len, 0, 0, on_done, &cw);
    be.limit = 3;               /* answers 3, then stops answering */
    for (int i = 0; i < 5; i++) {
        be_process(&be);
        xbdf_queue_process(&q, 0);
    }
    is_int(xbdf_queue_in_flight(&q), N + 1 - 3,
           "backend stalled after 3 answers: %d requests in flight", N + 1 - 3);
    on_ring = q.ring.shadow.in_use;
    ok(on_ring >= 20, "%u requests on the ring, unanswered", on_ring);

    xbdf_queue_detach(&q);
    is_int(q.stats.reissued, on_ring, "detach: each of them to be re-issued");
    /* Requests submitted while detached wait. */
    xbdf_queue_submit(&q, XBDF_IO_WRITE, w, 65536, 2 << 20, 0, on_done, &cw2);
    is_int(xbdf_queue_process(&q, 0), 0, "no callback while detached");

    /* The new backend: 4 ring pages, 400 pool pages, indirect 256. */
    if (posix_memalign(&ring2, XBD_PAGE_SIZE, 4 * XBD_PAGE_SIZE) ||
        posix_memalign((void **)&pool2, XBD_PAGE_SIZE, 400 * XBD_PAGE_SIZE))
        bail_out("out of memory");
    for (uint32_t i = 0; i < 400; i++)
        refs2[i] = 5000 + i;
    geom.max_indirect_segs = 256;
    free(be.pool);              /* the old pool: nobody maps it in this test */
    be.sr = ring2;
    be.cons = be.rsp = 0;
    be.limit = 0;
    be.pool = pool2;
    be.pool_pages = 400;
    be.ref0 = 5000;
    qpool = (struct xbdf_pool){ &pool2, XBDF_POOL_ONE_CHUNK, refs2, 400 };
    is_int(xbdf_queue_attach(&q, ring2, 4, &qpool), 0,
           "attach to the new backend's ring");
    be.size = RING_SIZE(&q.ring.front);
    run();
    ok(cw.calls == 1 && cw.err == 0, "the 1 MiB write completed once, no error");
    for (int i = 0; i < N; i++)
        if (cr[i].calls != 1 || cr[i].err != 0 ||
            memcmp(r[i], be.disk + (4 << 20) + i * 4096, 4096) != 0)
            good = 0;
    ok(good, "each read completed once with the backend's data");
    ok(cw2.calls == 1 && cw2.err == 0, "the write submitted while detached too");
    ok(memcmp(be.disk, w, len) == 0, "the disk holds the whole write");
    xbdf_queue_submit(&q, XBDF_IO_READ, rb, len, 0, 0, on_done, &crb);
    run();
    ok(crb.calls == 1 && memcmp(rb, w, len) == 0, "and reads it back");
    ok(be.indirects > 0, "under the new indirect limit");
    is_int(be.bad, 0, "the new backend saw no malformed request");
    xbdf_queue_fini(&q, -ECANCELED);
    /* setup() frees the globals; these are ours. */
    free(ring2);
    free(pool2);
    be.pool = NULL;
    free(w);
    free(rb);
}

/* The device went away for good (its backend directory vanished, or the
 * backend came back with fewer queues): a detached queue is failed.  What
 * waited completes once with -ENODEV; new requests are refused with the
 * reason. */
static void
test_fail(void)
{
    static char r[4][4096];
    struct cb c[4], nf = { 0, 1 };
    int good = 1;

    setup(1, 64, 0);
    memset(c, 0, sizeof(c));
    be.limit = 1;               /* answers one, then stalls */
    for (int i = 0; i < 4; i++)
        xbdf_queue_submit(&q, XBDF_IO_READ, r[i], 4096, (uint64_t)i * 4096,
                          0, on_done, &c[i]);
    be_process(&be);
    xbdf_queue_process(&q, 0);
    xbdf_queue_detach(&q);
    xbdf_queue_fail(&q, -ENODEV, "the device was removed");
    is_int(xbdf_queue_process(&q, 0), 3, "the 3 unanswered complete now");
    for (int i = 0; i < 4; i++)
        if (c[i].calls != 1 || c[i].err != (i == 0 ? 0 : -ENODEV))
            good = 0;
    ok(good, "each once: the answered one with 0, the rest with -ENODEV");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, r[0], 4096, 0, 0, on_done, &nf),
           -ENODEV, "a new request is refused with -ENODEV");
    ok(strstr(xbdfront_get_error(), "the device was removed") != NULL,
       "with the reason: %s", xbdfront_get_error());
    is_int(xbdf_queue_in_flight(&q), 0, "nothing in flight");
    xbdf_queue_fini(&q, -ECANCELED);
    is_int(nf.calls, 0, "the refused one never called back");
}

/* Zero-copy: the caller's buffer lies in pages already granted to the
 * backend (here pool pages 64.. of the test backend, outside the 64 the
 * queue owns), starting 512 bytes into a page.  Data goes straight from
 * and to it, nothing is bounced, the pieces crossing 11 pages go indirect
 * through the queue's own pages, and the buffer's in-flight count drops
 * back to 0 before the callback. */
static void
test_zero_copy(void)
{
    size_t len = (1 << 20) - 4096;
    char *zbuf, *back = malloc(len);
    atomic_int busy = 0;
    struct cb cw = { 0, 1 }, cr = { 0, 1 };

    setup(1, 400, 256);
    xbdf_queue_fini(&q, -ECANCELED);
    qpool = (struct xbdf_pool){ &be.pool, XBDF_POOL_ONE_CHUNK, refs, 64 };
    if (xbdf_queue_init(&q, ring_mem, 1, &geom, 51712, &qpool, NULL, NULL,
                        0) < 0 || back == NULL)
        bail_out("queue init");
    zbuf = be.pool + 64 * XBD_PAGE_SIZE + 512;
    fill(zbuf, len, 5);
    memcpy(back, zbuf, len);
    is_int(xbdf_queue_submit_zc(&q, XBDF_IO_WRITE, zbuf, len, 1 << 20, 0,
                                &refs[64], &busy, on_done, &cw), 0,
           "a zero-copy write of %zu bytes, 512 into a page", len);
    is_int(atomic_load(&busy), 1, "the buffer counts one request in flight");
    run();
    ok(cw.calls == 1 && cw.err == 0, "it completed once, no error");
    is_int(atomic_load(&busy), 0, "and the count dropped");
    ok(memcmp(be.disk + (1 << 20), back, len) == 0,
       "the disk holds the buffer's bytes");
    memset(zbuf, 0, len);
    is_int(xbdf_queue_submit_zc(&q, XBDF_IO_READ, zbuf, len, 1 << 20, 0,
                                &refs[64], &busy, on_done, &cr), 0,
           "a zero-copy read back");
    run();
    ok(cr.calls == 1 && cr.err == 0 && memcmp(zbuf, back, len) == 0,
       "it lands in the buffer itself");
    is_int(q.stats.bounced_bytes, 0, "not one byte bounced");
    ok(be.indirects > 0, "pieces went indirect");
    is_int(be.bad, 0, "the backend saw no malformed request");
    xbdf_queue_fini(&q, -ECANCELED);
    free(back);
}

/* A queue without a ring (b, the owner) has its requests carried by one
 * with a ring (q, the carrier), as after a reconnect to a backend with
 * fewer rings than queues: they go out on q's ring, and when they finish
 * they are delivered to b, whose own run_io runs the callbacks; b keeps
 * its counts.  When q loses its ring, b's requests go back to b whole. */
static int delivered;

static void
test_deliver(void *arg, struct xbdf_queue *owner, struct xbdf_io *io)
{
    (void)arg;
    delivered++;
    xbdf_queue_inbox_push(owner, io);
}

static void
test_carry(void)
{
    enum { N = 12 };
    static struct xbdf_queue b;
    static char w[N][8192], r[N][8192];
    struct cb cw[N], cr[N], cq = { 0, 1 };
    struct xbdf_pool bpool;
    char *bmem = NULL, *qmem, qbuf[4096];
    void *bring = NULL;
    struct xbdf_io *io;
    int good = 1, ran = 0, owned = 0;

    setup(1, 64, 0);
    q.deliver = test_deliver;
    /* b: its own ring once, then detached (the backend took it away). */
    if (posix_memalign(&bring, XBD_PAGE_SIZE, XBD_PAGE_SIZE) ||
        posix_memalign((void **)&bmem, XBD_PAGE_SIZE, 16 * XBD_PAGE_SIZE))
        bail_out("out of memory");
    bpool = (struct xbdf_pool){ &bmem, XBDF_POOL_ONE_CHUNK, refs, 16 };
    if (xbdf_queue_init(&b, bring, 1, &geom, 51712, &bpool, NULL, NULL,
                        0) < 0)
        bail_out("queue init");
    xbdf_queue_detach(&b);
    memset(cw, 0, sizeof(cw));
    memset(cr, 0, sizeof(cr));
    for (int i = 0; i < N; i++) {
        memset(w[i], 'A' + i, sizeof(w[i]));
        xbdf_queue_submit(&b, XBDF_IO_WRITE, w[i], sizeof(w[i]),
                          (uint64_t)i * 8192, 0, on_done, &cw[i]);
    }
    is_int(xbdf_queue_in_flight(&b), N, "%d writes waiting on a queue "
           "without a ring", N);
    xbdf_queue_move_pending(&b, &q);
    ok(q.ring.shadow.in_use > 0, "moved: issued on the carrier's ring");
    for (int i = 0; i < N; i++)
        is_int(xbdf_queue_submit_as(&q, &b, XBDF_IO_READ, r[i], sizeof(r[i]),
                                    (uint64_t)i * 8192, 0, NULL, NULL,
                                    on_done, &cr[i], NULL), 0,
               "read %d submitted on the carrier for b", i);
    xbdf_queue_submit(&q, XBDF_IO_READ, qbuf, sizeof(qbuf), 0, 0, on_done,
                      &cq);
    is_int(xbdf_queue_in_flight(&b), 2 * N, "b counts its %d requests",
           2 * N);
    is_int(xbdf_queue_in_flight(&q), 1, "q counts only its own");
    for (int i = 0; i < 1000 && delivered < 2 * N; i++) {
        be_process(&be);
        ran += xbdf_queue_process(&q, 0);
    }
    is_int(ran, 1, "q ran only its own callback");
    is_int(delivered, 2 * N, "b's %d requests were delivered to it", 2 * N);
    ok(cw[0].calls == 0 && cr[0].calls == 0, "no callback of b's ran yet");
    while ((io = xbdf_queue_inbox_pop(&b)) != NULL) {
        xbdf_queue_run_io(&b, io);
        owned++;
    }
    is_int(owned, 2 * N, "b runs them");
    for (int i = 0; i < N; i++)
        if (cw[i].calls != 1 || cw[i].err != 0 || cr[i].calls != 1 ||
            cr[i].err != 0 || memcmp(r[i], w[i], sizeof(r[i])) != 0)
            good = 0;
    ok(good, "each once, with 0, the reads returning what was written");
    is_int(xbdf_queue_in_flight(&b), 0, "b: nothing in flight");
    is_int(b.stats.completed, 2 * N, "b counted its completions");

    /* The carrier loses its ring with b's requests on it (and waiting). */
    delivered = 0;
    memset(cr, 0, sizeof(cr));
    be.limit = 2;
    for (int i = 0; i < N; i++)
        xbdf_queue_submit_as(&q, &b, XBDF_IO_READ, r[i], sizeof(r[i]),
                             (uint64_t)i * 8192, 0, NULL, NULL, on_done,
                             &cr[i], NULL);
    xbdf_queue_submit(&q, XBDF_IO_READ, qbuf, sizeof(qbuf), 0, 0, on_done,
                      &cq);
    be_process(&be);
    xbdf_queue_process(&q, 0);
    xbdf_queue_detach(&q);
    xbdf_queue_give_back(&q);
    is_int(xbdf_queue_in_flight(&b), N - delivered, "%d of b's requests "
           "unfinished", N - delivered);
    ok(b.pending_head != NULL, "they wait on b again");
    is_int(xbdf_queue_in_flight(&q), 1, "q keeps its own");
    /* b gets a ring back: they go out there, and finish on b itself. */
    qmem = be.pool;
    be.sr = bring;
    be.cons = be.rsp = 0;
    be.limit = 0;
    be.pool = bmem;
    be.pool_pages = 16;
    memset(bring, 0, XBD_PAGE_SIZE);
    is_int(xbdf_queue_attach(&b, bring, 1, &bpool), 0, "b attached again");
    be.size = RING_SIZE(&b.ring.front);
    for (int i = 0; i < 1000 && xbdf_queue_in_flight(&b) > 0; i++) {
        be_process(&be);
        xbdf_queue_process(&b, 0);
        while ((io = xbdf_queue_inbox_pop(&b)) != NULL)
            xbdf_queue_run_io(&b, io);
    }
    good = 1;
    for (int i = 0; i < N; i++)
        if (cr[i].calls != 1 || cr[i].err != 0 ||
            memcmp(r[i], w[i], sizeof(r[i])) != 0)
            good = 0;
    ok(good, "each of b's reads completed once, with the data");
    xbdf_queue_fini(&b, -ECANCELED);
    xbdf_queue_fini(&q, -ECANCELED);
    ok(cq.calls == 2 && cq.err == -ECANCELED,
       "q's own: the first completed, the one q kept cancelled at the end");
    be.pool = qmem;             /* main() frees it */
    free(bring);
    free(bmem);
}

/* A request given up on (a synchronous call that timed out): nothing of it
 * touches the caller's memory again, its slot and pool pages stay taken
 * until the backend answers, the late response is dropped without
 * breaking the ring, a reconnect drops it rather than re-issuing it, and a
 * zero-copy buffer stays busy until the backend answered. */
static void
test_abandon(void)
{
    size_t big = 1 << 20;
    char *rbuf = malloc(8192), *wbuf = malloc(big), *back = malloc(8192);
    struct xbdf_io *io = NULL;
    struct cb c = { 0, 1 }, c2 = { 0, 1 };
    uint64_t before;
    int good = 1;

    if (rbuf == NULL || wbuf == NULL || back == NULL)
        bail_out("out of memory");
    setup(1, 64, 0);
    fill(be.disk + (3 << 20), 8192, 21);

    /* A read, abandoned before the backend looked at it. */
    memset(rbuf, 0x5a, 8192);
    is_int(xbdf_queue_submit_as(&q, &q, XBDF_IO_READ, rbuf, 8192, 3 << 20, 0,
                                NULL, NULL, on_done, &c, &io), 0,
           "abandon: a read submitted");
    ok(io != NULL && q.ring.shadow.in_use == 1, "it is on the ring");
    xbdf_queue_abandon(&q, io, -ETIMEDOUT);
    xbdf_queue_drop_abandoned(&q);
    is_int(q.stats.abandoned, 1, "abandon: counted");
    ok(q.ring.shadow.in_use == 1 && q.pool_nfree == 64 - 2,
       "its ring slot and 2 pool pages stay taken (%u in use, %u free)",
       q.ring.shadow.in_use, q.pool_nfree);
    is_int(xbdf_queue_in_flight(&q), 1, "it still counts in flight");
    /* The backend answers late, writing the data into the pool pages. */
    be_process(&be);
    is_int(xbdf_queue_process(&q, 0), 1, "the late response is consumed");
    is_int(c.calls, 0, "the caller's callback never runs");
    good = 1;
    for (size_t i = 0; i < 8192; i++)
        if (rbuf[i] != 0x5a)
            good = 0;
    ok(good, "the caller's buffer was not touched");
    ok(xbdf_ring_broken(&q.ring) == NULL, "the ring is not broken");
    is_int(q.stats.late_responses, 1, "late_responses counts it");
    ok(q.ring.shadow.in_use == 0 && q.pool_nfree == 64,
       "slot and pages free once the backend answered");
    is_int(xbdf_queue_in_flight(&q), 0, "nothing in flight");
    is_int(xbdf_queue_submit(&q, XBDF_IO_READ, back, 8192, 3 << 20, 0,
                             on_done, &c2), 0, "the next read is accepted");
    run();
    ok(c2.calls == 1 && c2.err == 0 &&
       memcmp(back, be.disk + (3 << 20), 8192) == 0,
       "and returns the data");

    /* A write too big for the pool: part on the ring, the rest waiting.
     * Abandoned, the rest is never issued nor copied from the buffer. */
    memset(&c, 0, sizeof(c));
    fill(wbuf, big, 22);
    memset(be.disk, 0, big);
    xbdf_queue_submit_as(&q, &q, XBDF_IO_WRITE, wbuf, big, 0, 0, NULL, NULL,
                         on_done, &c, &io);
    ok(q.pending_head != NULL, "a 1 MiB write: part of it waits for the pool");
    xbdf_queue_abandon(&q, io, -ETIMEDOUT);
    xbdf_queue_drop_abandoned(&q);
    ok(q.pending_head == NULL, "what waited is dropped");
    before = q.stats.ring_requests;
    memset(wbuf, 0x77, big);    /* the caller reuses its buffer */
    run();
    is_int(c.calls, 0, "no callback");
    good = 1;
    memset(back, 0x77, 512);
    for (size_t i = 0; i < big; i += 512)
        if (memcmp(be.disk + i, back, 512) == 0)
            good = 0;
    ok(good, "nothing copied from the buffer after it was abandoned");
    is_int(q.stats.ring_requests, before, "no ring request after it");
    ok(xbdf_queue_in_flight(&q) == 0 && q.pool_nfree == 64,
       "in flight 0, every pool page back");

    /* On the ring when the backend goes away: dropped, not re-issued. */
    memset(&c, 0, sizeof(c));
    xbdf_queue_submit_as(&q, &q, XBDF_IO_READ, rbuf, 4096, 0, 0, NULL, NULL,
                         on_done, &c, &io);
    xbdf_queue_abandon(&q, io, -ETIMEDOUT);
    xbdf_queue_drop_abandoned(&q);
    before = q.stats.reissued;
    xbdf_queue_detach(&q);
    is_int(q.stats.reissued, before, "a reconnect does not re-issue it");
    is_int(xbdf_queue_process(&q, 0), 1, "it is finished at once");
    ok(c.calls == 0 && xbdf_queue_in_flight(&q) == 0,
       "without the caller's callback; nothing in flight");
    xbdf_queue_fini(&q, -ECANCELED);

    /* Zero-copy: the buffer stays busy until the backend answered. */
    {
        atomic_int busy = 0;
        char *zbuf;

        setup(1, 400, 0);
        xbdf_queue_fini(&q, -ECANCELED);
        qpool = (struct xbdf_pool){ &be.pool, XBDF_POOL_ONE_CHUNK, refs, 64 };
        if (xbdf_queue_init(&q, ring_mem, 1, &geom, 51712, &qpool, NULL, NULL,
                            0) < 0)
            bail_out("queue init");
        zbuf = be.pool + 64 * XBD_PAGE_SIZE;
        memset(&c, 0, sizeof(c));
        xbdf_queue_submit_as(&q, &q, XBDF_IO_READ, zbuf, 8192, 0, 0,
                             &refs[64], &busy, on_done, &c, &io);
        xbdf_queue_abandon(&q, io, -ETIMEDOUT);
        xbdf_queue_drop_abandoned(&q);
        xbdf_queue_process(&q, 0);
        is_int(atomic_load(&busy), 1,
               "zero-copy: the buffer stays busy after abandon");
        run();
        is_int(atomic_load(&busy), 0, "until the backend answered");
        is_int(c.calls, 0, "no callback");
        xbdf_queue_fini(&q, -ECANCELED);
    }
    free(rbuf);
    free(wbuf);
    free(back);
}

int
main(void)
{
    test_big_direct();
    test_many();
    test_indirect();
    test_errors();
    test_flush_discard_close();
    test_reconnect();
    test_fail();
    test_zero_copy();
    test_carry();
    test_abandon();
    free(ring_mem);
    free(be.pool);
    return done_testing();
}
