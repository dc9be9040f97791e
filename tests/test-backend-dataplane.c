/* The data path end to end on a captive xbd-sim: this process plays both
 * dom0 (xbd_queue_* under test) and the frontend domain 1, whose handles
 * are opened with XBD_SIM_DOMID=1.  The frontend half shares ring and data
 * pages, writes requests in the chosen ABI's layout (offsets written down
 * here, independently of backend/request.c), notifies, and checks the
 * responses and the data — in its pages and in the backing file. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "request.h"
#include "sim-test.h"
#include "xbd-backd.h"
#include "xbd-ring.h"

#define DISK_BYTES (8u << 20)
#define DATA_PAGES 256u

/* The frontend domain's handles and its data pages. */
static struct xbd_platform *fe_plat, *be_plat;
static struct xbd_gntshr *fe_sh;
static struct xbd_evtchn *fe_ev;
static uint8_t *data;                   /* DATA_PAGES shared pages */
static uint32_t data_refs[DATA_PAGES];
static struct xbd_backing *disk;
static struct xbd_backing *rw_backing;  /* test_rw's backing: disk unless set */
static const char *rw_path;             /* rw_backing's file, when it has one */
static char disk_path[256];
static char errbuf[512];

/* One ring as the frontend sees it. */
struct fe {
    enum xbd_abi abi;
    size_t esz, id_off, sector_off, seg_off, nr_sectors_off, ind_grefs_off;
    unsigned int pages;
    uint32_t refs[XBD_MAX_RING_PAGES];
    blkif_front_ring_t fr;              /* indices only; entries by offset */
    uint8_t *ring;
    int port;                           /* the frontend's local port */
    struct xbd_queue *q;
};

static volatile int failed_calls;
static char failed_why[256];

static void
on_fail(void *ctx, unsigned int index, const char *why)
{
    (void)ctx;
    (void)index;
    snprintf(failed_why, sizeof(failed_why), "%s", why);
    __atomic_fetch_add(&failed_calls, 1, __ATOMIC_SEQ_CST);
}

static void
fe_layout(struct fe *f, enum xbd_abi abi)
{
    f->abi = abi;
    if (abi == XBD_ABI_X86_32) {
        f->esz = 108, f->id_off = 4, f->sector_off = 12, f->seg_off = 20;
        f->nr_sectors_off = 20, f->ind_grefs_off = 24;
    } else {
        f->esz = 112, f->id_off = 8, f->sector_off = 16, f->seg_off = 24;
        f->nr_sectors_off = 24, f->ind_grefs_off = 28;
    }
}

static struct xbd_queue_cfg
base_cfg(void)
{
    struct xbd_queue_cfg c = {
        .platform = be_plat, .name = "test q0", .fe_domid = 1,
        .ring_pages = 1, .abi = XBD_ABI_NATIVE, .max_indirect = 0,
        .backing = rw_backing != NULL ? rw_backing : disk, .flush = true, .discard = true,
        .sector_size = 512, .sectors = DISK_BYTES / 512,
        .on_fail = on_fail,
    };
    return c;
}

/* Share a ring, bind a channel, start the queue. */
static int
fe_start(struct fe *f, struct xbd_queue_cfg cfg)
{
    void *addr;
    int rc;

    memset(f, 0, sizeof(*f));
    fe_layout(f, cfg.abi);
    f->pages = cfg.ring_pages;
    rc = xbd_gntshr_share(fe_sh, 0, f->pages, 1, f->refs, &addr);
    if (rc < 0)
        bail_out("share ring: %s", xbd_platform_error());
    f->ring = addr;
    SHARED_RING_INIT((blkif_sring_t *)addr);
    f->fr.sring = (blkif_sring_t *)addr;
    f->fr.nr_ents = xbd_abi_ring_entries(cfg.abi, f->pages);
    f->port = xbd_evtchn_bind_unbound(fe_ev, 0);
    if (f->port < 0)
        bail_out("alloc unbound: %s", xbd_platform_error());
    memcpy(cfg.ring_refs, f->refs, sizeof(uint32_t) * f->pages);
    cfg.fe_port = (uint32_t)f->port;
    rc = xbd_queue_start(&cfg, &f->q, errbuf, sizeof(errbuf));
    if (rc < 0)
        diag("xbd_queue_start: %s", errbuf);
    return rc;
}

static void
fe_stop(struct fe *f)
{
    xbd_queue_stop(f->q, 5000);
    f->q = NULL;
    xbd_evtchn_unbind(fe_ev, (uint32_t)f->port);
    /* Unsharing fails with -EBUSY if the backend left anything mapped. */
    is_int(xbd_gntshr_unshare(fe_sh, f->ring, f->pages), 0,
           "ring pages unshared after stop (nothing left mapped)");
}

static uint8_t *
fe_slot(struct fe *f)
{
    return f->ring + 64 + (size_t)(f->fr.req_prod_pvt++ & (f->fr.nr_ents - 1)) * f->esz;
}

struct seg { uint32_t gref; uint8_t first, last; };

static void
put_segs(uint8_t *s, size_t off, const struct seg *segs, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        memcpy(s + off + 8 * i, &segs[i].gref, 4);
        s[off + 8 * i + 4] = segs[i].first;
        s[off + 8 * i + 5] = segs[i].last;
        s[off + 8 * i + 6] = s[off + 8 * i + 7] = 0;
    }
}

static void
fe_rw(struct fe *f, uint8_t op, uint64_t id, uint64_t sector,
      const struct seg *segs, unsigned int n)
{
    uint8_t *s = fe_slot(f);

    memset(s, 0, f->esz);
    s[0] = op;
    s[1] = (uint8_t)n;
    memcpy(s + f->id_off, &id, 8);
    memcpy(s + f->sector_off, &sector, 8);
    put_segs(s, f->seg_off, segs, n);
}

static void
fe_discard(struct fe *f, uint64_t id, uint64_t sector, uint64_t n)
{
    uint8_t *s = fe_slot(f);

    memset(s, 0, f->esz);
    s[0] = BLKIF_OP_DISCARD;
    memcpy(s + f->id_off, &id, 8);
    memcpy(s + f->sector_off, &sector, 8);
    memcpy(s + f->nr_sectors_off, &n, 8);
}

static void
fe_indirect(struct fe *f, uint8_t inner, uint64_t id, uint64_t sector,
            uint16_t nseg, const uint32_t *ind_refs, unsigned int npages)
{
    uint8_t *s = fe_slot(f);

    memset(s, 0, f->esz);
    s[0] = BLKIF_OP_INDIRECT;
    s[1] = inner;
    memcpy(s + 2, &nseg, 2);
    memcpy(s + f->id_off, &id, 8);
    memcpy(s + f->sector_off, &sector, 8);
    memcpy(s + f->ind_grefs_off, ind_refs, 4 * npages);
}

static void
fe_push(struct fe *f)
{
    int notify;

    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f->fr, notify);
    if (notify)
        xbd_evtchn_notify(fe_ev, (uint32_t)f->port);
}

/* Collect `n` responses (10 s at most); status[id - base] per response. */
static int
fe_wait(struct fe *f, unsigned int n, uint64_t base, int16_t *status)
{
    unsigned int got = 0;

    while (got < n) {
        RING_IDX rp = f->fr.sring->rsp_prod;
        int more;

        xen_rmb();
        for (; f->fr.rsp_cons != rp; f->fr.rsp_cons++) {
            const uint8_t *r = f->ring + 64 +
                               (size_t)(f->fr.rsp_cons & (f->fr.nr_ents - 1)) * f->esz;
            uint64_t id;
            int16_t st;

            memcpy(&id, r, 8);
            memcpy(&st, r + 10, 2);
            if (id - base < n)
                status[id - base] = st;
            got++;
        }
        if (got >= n)
            break;
        RING_FINAL_CHECK_FOR_RESPONSES(&f->fr, more);
        if (more)
            continue;
        struct pollfd pfd = { .fd = xbd_evtchn_fd(fe_ev), .events = POLLIN };

        if (poll(&pfd, 1, 10000) != 1)
            return -1;
        int port = xbd_evtchn_pending(fe_ev);

        if (port >= 0)
            xbd_evtchn_unmask(fe_ev, (uint32_t)port);
    }
    return 0;
}

/* Wait (10 s at most) until the queue's stats satisfy `cond`. */
#define WAIT_STATS(q, s, cond) do {                                     \
    for (int w_ = 0; w_ < 1000; w_++) {                                 \
        xbd_queue_get_stats((q), &(s));                                 \
        if (cond)                                                       \
            break;                                                      \
        usleep(10000);                                                  \
    }                                                                   \
} while (0)

/* Wait for responses with ids base..base+n-1; how many were not OKAY
 * (all n when they did not come). */
static int
fe_wait_ok(struct fe *f, unsigned int n, uint64_t base)
{
    int16_t *st = malloc(n * sizeof(*st));
    int bad = 0;

    memset(st, 0x7f, n * sizeof(*st));
    if (fe_wait(f, n, base, st) < 0)
        bad = (int)n;
    for (unsigned int i = 0; bad < (int)n && i < n; i++)
        bad += st[i] != BLKIF_RSP_OKAY;
    free(st);
    return bad;
}

/* One request, its status. */
static int
fe_one(struct fe *f, uint64_t id)
{
    int16_t st = 99;

    fe_push(f);
    if (fe_wait(f, 1, id, &st) < 0)
        return 1000;
    return st;
}

static void
fill_pattern(uint8_t *p, size_t len, unsigned int seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 13 + (i >> 12) * 7);
}

static int
disk_matches(uint64_t offset, const uint8_t *want, size_t len)
{
    uint8_t *buf = malloc(len);
    int fd = open(rw_path != NULL ? rw_path : disk_path, O_RDONLY), r;

    r = fd >= 0 && pread(fd, buf, len, (off_t)offset) == (ssize_t)len &&
        memcmp(buf, want, len) == 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    return r;
}

/* ---- Tests ------------------------------------------------------------------- */

/* Fill the whole ring with 11-segment writes, several rounds so the
 * indices wrap, then read everything back into zeroed pages. */
static bool rw_grant_map;               /* test_rw: map per request */
static bool rw_expect_direct;           /* test_rw: rw_backing does direct_io */

static void
test_rw(unsigned int pages, enum xbd_abi abi, bool persistent, const char *tag)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct fe f;
    unsigned int n, i, round, bad = 0;
    int16_t *st;

    cfg.ring_pages = pages;
    cfg.abi = abi;
    cfg.persistent = persistent;
    if (rw_backing != NULL)
        cfg.backing = rw_backing;
    cfg.grant_map = rw_grant_map;
    cfg.persistent_max = 64;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "%s: queue started", tag);
        return;
    }
    n = f.fr.nr_ents;
    if (n > 128)
        n = 128;                        /* bounded by the data pages we have */
    st = calloc(n, sizeof(*st));
    for (round = 0; round < 3; round++) {
        uint64_t base = 1000 * (round + 1);

        /* Request i writes data pages 2i, 2i+1 (sectors 1..7 of the
         * first, 0..7 of the second) to sector 16 * i + 1. */
        fill_pattern(data, (size_t)DATA_PAGES * 4096, round * 5 + pages);
        for (i = 0; i < n; i++) {
            struct seg segs[2] = {
                { data_refs[(2 * i) % DATA_PAGES], 1, 7 },
                { data_refs[(2 * i + 1) % DATA_PAGES], 0, 7 },
            };
            fe_rw(&f, BLKIF_OP_WRITE, base + i, 16 * i + 1, segs, 2);
        }
        fe_push(&f);
        bad += (unsigned int)fe_wait_ok(&f, n, base);
    }
    is_int(bad, 0, "%s: 3 rounds of %u two-segment writes answered OKAY", tag, n);
    {
        uint8_t want[15 * 512];

        i = n - 1;
        memcpy(want, data + (size_t)((2 * i) % DATA_PAGES) * 4096 + 512, 7 * 512);
        memcpy(want + 7 * 512, data + (size_t)((2 * i + 1) % DATA_PAGES) * 4096, 8 * 512);
        if (cfg.backing == disk || rw_path != NULL)
            ok(disk_matches((16 * i + 1) * 512ull, want, sizeof(want)),
               "%s: the last write is on the disk, segments in order", tag);
    }

    /* Read it back into zeroed pages (shifted by one page). */
    {
        uint8_t *expect = malloc((size_t)DATA_PAGES * 4096);

        memcpy(expect, data, (size_t)DATA_PAGES * 4096);
        memset(data, 0, (size_t)DATA_PAGES * 4096);
        for (i = 0; i < n / 2; i++) {
            struct seg segs[2] = {
                { data_refs[(4 * i + 1) % DATA_PAGES], 1, 7 },
                { data_refs[(4 * i + 2) % DATA_PAGES], 0, 7 },
            };
            fe_rw(&f, BLKIF_OP_READ, 9000 + i, 16 * i + 1, segs, 2);
        }
        fe_push(&f);
        memset(st, 0x7f, n * sizeof(*st));
        bad = fe_wait(&f, n / 2, 9000, st) < 0;
        for (i = 0; i < n / 2; i++) {
            const uint8_t *w0 = expect + (size_t)((2 * i) % DATA_PAGES) * 4096;
            const uint8_t *w1 = expect + (size_t)((2 * i + 1) % DATA_PAGES) * 4096;
            const uint8_t *g0 = data + (size_t)((4 * i + 1) % DATA_PAGES) * 4096;
            const uint8_t *g1 = data + (size_t)((4 * i + 2) % DATA_PAGES) * 4096;

            bad += st[i] != BLKIF_RSP_OKAY || memcmp(g0 + 512, w0 + 512, 7 * 512) != 0 ||
                   memcmp(g1, w1, 4096) != 0 || g0[0] != 0 || g0[511] != 0;
        }
        is_int(bad, 0, "%s: %u reads return what was written, sector 0 of the page untouched",
               tag, n / 2);
        free(expect);
    }
    if (persistent) {
        struct xbd_queue_stats s;

        xbd_queue_get_stats(f.q, &s);
        ok(s.grant_maps > 0 && s.pgrant_hits > 0 && s.pgrant_misses > 0 &&
           s.grant_maps <= 64 + s.pgrant_evictions, "%s: persistent grants used (maps %llu, hits %llu, "
           "misses %llu, evictions %llu)", tag, (unsigned long long)s.grant_maps,
           (unsigned long long)s.pgrant_hits, (unsigned long long)s.pgrant_misses,
           (unsigned long long)s.pgrant_evictions);
        if (2 * n <= 64)
            is_int(s.grant_copies, 0, "%s: every segment fit the cache: no grant copy", tag);
        else
            ok(s.pgrant_evictions > 0, "%s: more grants than the cache holds: evictions", tag);
        if (rw_expect_direct)
            is_int(s.direct_io, 3 * n + n / 2, "%s: every read and write went straight "
                   "between the file and the guest's pages", tag);
    } else if (rw_grant_map) {
        struct xbd_queue_stats s;

        xbd_queue_get_stats(f.q, &s);
        ok(s.grant_copies == 0 && s.grant_maps == 3 * n * 2 + n,
           "%s: every segment mapped, none copied (%llu maps)", tag,
           (unsigned long long)s.grant_maps);
    } else {
        struct xbd_queue_stats s;

        xbd_queue_get_stats(f.q, &s);
        ok(s.grant_copies > 0 && s.grant_maps == 0 && s.direct_io == 0 && s.req_write == 3 * n &&
           (n < f.fr.nr_ents || s.ring_full > 0) &&
           s.req_read == n / 2 && s.bytes_written == 3ull * n * 15 * 512 && s.in_flight == 0,
           "%s: stats: %llu writes, %llu reads, %llu grant copies", tag,
           (unsigned long long)s.req_write, (unsigned long long)s.req_read,
           (unsigned long long)s.grant_copies);
    }
    free(st);
    fe_stop(&f);
}

static void
test_indirect(bool persistent, enum xbd_abi abi, const char *tag)
{
    struct xbd_queue_cfg cfg = base_cfg();

    struct fe f;
    uint32_t ind_ref;
    uint8_t *ind;
    void *addr;
    unsigned int i;
    uint8_t *expect;

    cfg.max_indirect = 256;
    cfg.abi = abi;
    cfg.persistent = persistent;
    cfg.persistent_max = 300;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "%s: queue started", tag);
        return;
    }
    if (xbd_gntshr_share(fe_sh, 0, 1, 0, &ind_ref, &addr) < 0)
        bail_out("share indirect page");
    ind = addr;
    /* 200 full-page segments: 800 KiB in one request. */
    for (i = 0; i < 200; i++) {
        memcpy(ind + 8 * i, &data_refs[i], 4);
        ind[8 * i + 4] = 0;
        ind[8 * i + 5] = 7;
    }
    fill_pattern(data, 200 * 4096, 77);
    expect = malloc(200 * 4096);
    memcpy(expect, data, 200 * 4096);
    fe_indirect(&f, BLKIF_OP_WRITE, 1, 4096, 200, &ind_ref, 1);
    is_int(fe_one(&f, 1), BLKIF_RSP_OKAY, "%s: write of 200 segments", tag);
    ok(disk_matches(4096 * 512ull, expect, 200 * 4096), "%s: all 800 KiB on the disk", tag);
    memset(data, 0, 200 * 4096);
    fe_indirect(&f, BLKIF_OP_READ, 2, 4096, 200, &ind_ref, 1);
    is_int(fe_one(&f, 2), BLKIF_RSP_OKAY, "%s: read of 200 segments", tag);
    ok(memcmp(data, expect, 200 * 4096) == 0, "%s: read back", tag);
    if (rw_expect_direct) {
        struct xbd_queue_stats s;

        xbd_queue_get_stats(f.q, &s);
        is_int(s.direct_io, 2, "%s: both straight between the file and the guest's pages", tag);
    }
    fe_indirect(&f, BLKIF_OP_READ, 3, 4096, 257, &ind_ref, 1);
    is_int(fe_one(&f, 3), BLKIF_RSP_ERROR, "%s: 257 segments > 256 advertised: error", tag);
    fe_indirect(&f, BLKIF_OP_READ, 4, 4096, 8, (uint32_t[]){ 31000 }, 1);
    is_int(fe_one(&f, 4), BLKIF_RSP_ERROR, "%s: bad indirect page gref: error", tag);
    fe_stop(&f);
    is_int(xbd_gntshr_unshare(fe_sh, ind, 1), 0, "%s: indirect page unshared", tag);
    free(expect);
}

/* Persistent grants: one gref in many in-flight requests at once, a bad
 * gref among good ones, a cache of 4 entries under pressure, and nothing
 * left mapped afterwards (fe_stop's unshare fails if anything is). */
static void
test_persistent_edges(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_queue_stats s;
    struct fe f;
    int16_t st[16];
    int bad = 0;

    cfg.persistent = true;
    cfg.persistent_max = 4;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "persistent edges: queue started");
        return;
    }
    fill_pattern(data + 10 * 4096, 4096, 21);
    for (unsigned int i = 0; i < 16; i++) {
        struct seg segs[2] = { { data_refs[10], 0, 7 }, { data_refs[10], 0, 7 } };

        fe_rw(&f, BLKIF_OP_WRITE, 200 + i, 3000 + 16 * i, segs, 2);
    }
    fe_push(&f);
    bad = fe_wait_ok(&f, 16, 200);
    is_int(bad, 0, "persistent: 16 concurrent writes from one gref (twice each): OKAY");
    {
        uint8_t want[8192];

        memcpy(want, data + 10 * 4096, 4096);
        memcpy(want + 4096, data + 10 * 4096, 4096);
        ok(disk_matches((3000 + 16 * 15) * 512ull, want, sizeof(want)),
           "persistent: the data of a shared gref reached the disk");
    }
    /* Reads into 8 different pages through a 4-entry cache, with a bad
     * gref in the middle of the batch. */
    memset(data + 20 * 4096, 0, 8 * 4096);
    for (unsigned int i = 0; i < 8; i++) {
        struct seg seg = { i == 4 ? 30001 : data_refs[20 + i], 0, 7 };

        fe_rw(&f, BLKIF_OP_READ, 300 + i, 3000 + 16 * i, &seg, 1);
    }
    fe_push(&f);
    memset(st, 0x7f, sizeof(st));
    bad = fe_wait(&f, 8, 300, st) < 0;
    for (unsigned int i = 0; i < 8; i++)
        bad += st[i] != (i == 4 ? BLKIF_RSP_ERROR : BLKIF_RSP_OKAY) ||
               (i != 4 && memcmp(data + (20 + i) * 4096, data + 10 * 4096, 4096) != 0);
    is_int(bad, 0, "persistent: 7 reads OKAY with their data, the bad gref's ERROR");
    xbd_queue_get_stats(f.q, &s);
    ok(s.pgrant_evictions > 0 && s.err_grant >= 1, "persistent: cache of 4 evicted (%llu), "
       "bad gref counted", (unsigned long long)s.pgrant_evictions);
    /* On tmpfs the writes and the first reads went straight to the
     * guest's pages; the reads the full cache could not map, copied. */
    if (rw_expect_direct)
        ok(s.direct_io >= 16 && s.direct_io < 24, "persistent: %llu of 24 straight to "
           "the guest's pages, the rest copied", (unsigned long long)s.direct_io);
    fe_stop(&f);

    /* Idle expiry: grants unused for persistent_idle_ms are unmapped while
     * the queue runs, so the frontend can end access to those pages. */
    cfg.persistent_max = 64;
    cfg.persistent_idle_ms = 50;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "persistent expiry: queue started");
        return;
    }
    {
        struct seg seg = { data_refs[40], 0, 7 };

        fe_rw(&f, BLKIF_OP_WRITE, 400, 4000, &seg, 1);
        is_int(fe_one(&f, 400), BLKIF_RSP_OKAY, "persistent expiry: a write maps the grant");
        xbd_queue_get_stats(f.q, &s);
        is_int(s.grant_maps, 1, "persistent expiry: one grant mapped");
        WAIT_STATS(f.q, s, s.pgrant_evictions >= 1);
        is_int(s.pgrant_evictions, 1, "persistent expiry: unmapped after 50 ms idle");
        fe_rw(&f, BLKIF_OP_WRITE, 401, 4000, &seg, 1);
        is_int(fe_one(&f, 401), BLKIF_RSP_OKAY, "persistent expiry: mapped again on use");
        xbd_queue_get_stats(f.q, &s);
        is_int(s.grant_maps, 2, "persistent expiry: a second map");
    }
    fe_stop(&f);
}

/* Per-request mapping: a bad gref and a read into a read-only grant fail
 * their request only, and nothing stays mapped. */
static void
test_mapped_errors(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct fe f;
    struct seg seg = { 30002, 0, 7 };
    uint32_t ro_ref;
    void *ro;

    cfg.grant_map = true;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "mapped: queue started");
        return;
    }
    if (xbd_gntshr_share(fe_sh, 0, 1, 0, &ro_ref, &ro) < 0)
        bail_out("share a read-only page");
    fe_rw(&f, BLKIF_OP_WRITE, 1, 0, &seg, 1);
    is_int(fe_one(&f, 1), BLKIF_RSP_ERROR, "mapped: write from a bad gref: ERROR");
    seg.gref = ro_ref;
    fe_rw(&f, BLKIF_OP_READ, 2, 0, &seg, 1);
    is_int(fe_one(&f, 2), BLKIF_RSP_ERROR, "mapped: read into a read-only grant: ERROR");
    fe_rw(&f, BLKIF_OP_WRITE, 3, 0, &seg, 1);
    is_int(fe_one(&f, 3), BLKIF_RSP_OKAY, "mapped: write from a read-only grant: OKAY");
    fe_stop(&f);
    is_int(xbd_gntshr_unshare(fe_sh, ro, 1), 0, "mapped: read-only page unshared");
}

/* Two queues of one device, one backing, each with its own thread and
 * ring, writing disjoint halves at once. */
static void
test_two_queues(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct fe f[2];
    int bad = 0;

    for (unsigned int k = 0; k < 2; k++) {
        cfg.index = k;
        cfg.ring_pages = 2;
        if (fe_start(&f[k], cfg) < 0) {
            ok(0, "two queues: queue %u started", k);
            return;
        }
    }
    fill_pattern(data, 64 * 4096, 99);
    for (unsigned int k = 0; k < 2; k++) {
        for (unsigned int i = 0; i < 32; i++) {
            struct seg seg = { data_refs[32 * k + i], 0, 7 };

            fe_rw(&f[k], BLKIF_OP_WRITE, 500 + i, 8192 + 8 * (32 * k + i), &seg, 1);
        }
        fe_push(&f[k]);
    }
    for (unsigned int k = 0; k < 2; k++)
        bad += fe_wait_ok(&f[k], 32, 500);
    is_int(bad, 0, "two queues: 32 writes on each answered OKAY");
    ok(disk_matches(8192 * 512ull, data, 64 * 4096), "two queues: both halves on the disk");
    fe_stop(&f[0]);
    fe_stop(&f[1]);
}

/* A hostile frontend fills the ring with random bytes (opcodes kept small
 * so every path is hit): every slot gets a response with a status the
 * protocol knows, and the queue keeps working. */
static void
test_random_slots(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct seg seg = { data_refs[0], 0, 7 };
    uint64_t rng = 0x2545f4914f6cdd1dull;
    unsigned int round, got = 0, bad_status = 0;
    struct fe f;

    cfg.max_indirect = 64;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "random: queue started");
        return;
    }
    for (round = 0; round < 20; round++) {
        unsigned int n = f.fr.nr_ents;

        for (unsigned int i = 0; i < n; i++) {
            uint8_t *slot = fe_slot(&f);

            for (size_t k = 0; k < f.esz; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                slot[k] = (uint8_t)rng;
            }
            /* Mostly plausible: small opcodes, counts and sectors, sector
             * numbers inside pages, grefs we shared; any field may still
             * be wrong in any way. */
            slot[0] &= 7;
            slot[1] = slot[0] == BLKIF_OP_INDIRECT ? slot[1] & 1 : slot[1] % 12;
            slot[2] %= 65;
            slot[3] = 0;
            memset(slot + f.sector_off + 1, 0, 7);
            if (slot[0] == BLKIF_OP_DISCARD) {
                memset(slot + f.nr_sectors_off + 1, 0, 7);
            } else if (slot[0] == BLKIF_OP_INDIRECT) {
                memcpy(slot + f.ind_grefs_off, &data_refs[rng % DATA_PAGES], 4);
            } else {
                for (unsigned int k = 0; k < BLKIF_MAX_SEGMENTS_PER_REQUEST; k++) {
                    uint8_t *sg = slot + f.seg_off + 8 * k;

                    if ((rng >> k) & 1)
                        memcpy(sg, &data_refs[(rng >> 16) % DATA_PAGES], 4);
                    sg[4] &= 7;
                    sg[5] |= (uint8_t)(((rng >> (k + 20)) & 1) ? 7 : 0);
                    sg[5] &= 7;
                }
            }
        }
        fe_push(&f);
        /* Count responses, whatever their ids; check each status. */
        while (got < (round + 1) * n) {
            RING_IDX rp = f.fr.sring->rsp_prod;
            int more;

            xen_rmb();
            for (; f.fr.rsp_cons != rp; f.fr.rsp_cons++, got++) {
                int16_t st;

                memcpy(&st, f.ring + 64 + (size_t)(f.fr.rsp_cons & (n - 1)) * f.esz + 10, 2);
                bad_status += st != BLKIF_RSP_OKAY && st != BLKIF_RSP_ERROR &&
                              st != BLKIF_RSP_EOPNOTSUPP;
            }
            if (got >= (round + 1) * n)
                break;
            RING_FINAL_CHECK_FOR_RESPONSES(&f.fr, more);
            if (!more) {
                struct pollfd pfd = { .fd = xbd_evtchn_fd(fe_ev), .events = POLLIN };

                if (poll(&pfd, 1, 10000) != 1) {
                    struct xbd_queue_stats st;

                    xbd_queue_get_stats(f.q, &st);
                    diag("random: stuck at %u of %u: in flight %llu, failed %d, "
                         "rsp_prod %u req_prod %u", got, (round + 1) * n,
                         (unsigned long long)st.in_flight, failed_calls,
                         f.fr.sring->rsp_prod, f.fr.sring->req_prod);
                    round = 20;
                    break;
                }
                int port = xbd_evtchn_pending(fe_ev);

                if (port >= 0)
                    xbd_evtchn_unmask(fe_ev, (uint32_t)port);
            }
        }
    }
    is_int(got, 20 * f.fr.nr_ents, "random: every one of %u random requests answered",
           20 * f.fr.nr_ents);
    is_int(bad_status, 0, "random: only OKAY, ERROR and EOPNOTSUPP");
    is_int(failed_calls, 0, "random: the ring was not declared broken");
    {
        struct xbd_queue_stats st;

        xbd_queue_get_stats(f.q, &st);
        diag("random: %llu reads, %llu writes, %llu flushes, %llu barriers, %llu discards, "
             "%llu indirect; %llu bad, %llu grant errors, %llu unsupported",
             (unsigned long long)st.req_read, (unsigned long long)st.req_write,
             (unsigned long long)st.req_flush, (unsigned long long)st.req_barrier,
             (unsigned long long)st.req_discard, (unsigned long long)st.req_indirect,
             (unsigned long long)st.err_bad_request, (unsigned long long)st.err_grant,
             (unsigned long long)st.req_unsupported);
    }
    fe_rw(&f, BLKIF_OP_READ, 77, 0, &seg, 1);
    is_int(fe_one(&f, 77), BLKIF_RSP_OKAY, "random: a good read afterwards");
    fe_stop(&f);
}

/* The frontend rewrites its slots while the backend reads them (the
 * double-fetch attack): a flipper thread toggles operation, segment count
 * and sector of every slot between a valid read and nonsense.  Whatever
 * the backend copied, each request gets one valid answer and the ring
 * survives. */
struct flipper {
    struct fe *f;
    volatile int stop;
};

static void *
flip_slots(void *arg)
{
    struct flipper *fl = arg;
    struct fe *f = fl->f;
    uint64_t good = 8, bad = ~0ull - 3;

    while (!fl->stop) {
        for (unsigned int i = 0; i < f->fr.nr_ents; i++) {
            uint8_t *slot = f->ring + 64 + (size_t)i * f->esz;
            int odd = (i ^ (unsigned int)(uintptr_t)&good) & 1;

            __atomic_store_n(&slot[0], odd ? 0x42 : BLKIF_OP_READ, __ATOMIC_RELAXED);
            __atomic_store_n(&slot[1], odd ? 200 : 1, __ATOMIC_RELAXED);
            memcpy(slot + f->sector_off, odd ? &bad : &good, 8);
            __atomic_store_n(&slot[0], BLKIF_OP_READ, __ATOMIC_RELAXED);
            __atomic_store_n(&slot[1], 1, __ATOMIC_RELAXED);
            memcpy(slot + f->sector_off, &good, 8);
        }
    }
    return NULL;
}

static void
test_double_fetch(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct seg seg = { data_refs[0], 0, 7 };
    struct flipper fl;
    pthread_t t;
    struct fe f;
    unsigned int n, bad = 0;

    if (fe_start(&f, cfg) < 0) {
        ok(0, "double fetch: queue started");
        return;
    }
    n = f.fr.nr_ents;
    fl.f = &f;
    fl.stop = 0;
    for (unsigned int round = 0; round < 50; round++) {
        int16_t *st = calloc(n, sizeof(*st));

        for (unsigned int i = 0; i < n; i++)
            fe_rw(&f, BLKIF_OP_READ, 1000 * round + i, 8, &seg, 1);
        if (round == 0 && pthread_create(&t, NULL, flip_slots, &fl) != 0)
            bail_out("pthread_create");
        fe_push(&f);
        memset(st, 0x7f, n * sizeof(*st));
        if (fe_wait(&f, n, 1000 * round, st) < 0)
            bad += n;
        free(st);
    }
    fl.stop = 1;
    pthread_join(t, NULL);
    is_int(bad, 0, "double fetch: 50 rounds of %u requests rewritten under the backend, "
           "all answered", n);
    is_int(failed_calls, 0, "double fetch: the ring survives");
    fe_rw(&f, BLKIF_OP_READ, 99999, 0, &seg, 1);
    is_int(fe_one(&f, 99999), BLKIF_RSP_OKAY, "double fetch: a good read afterwards");
    fe_stop(&f);
}

static void
test_ops(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_backing_info info;
    struct xbd_queue_stats s;
    struct fe f;
    struct seg seg = { data_refs[0], 0, 7 };
    uint8_t zero[4096], page[4096];

    xbd_backing_info(disk, &info);
    cfg.discard = info.discard;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "ops: queue started");
        return;
    }
    fe_rw(&f, BLKIF_OP_FLUSH_DISKCACHE, 1, 0, NULL, 0);
    is_int(fe_one(&f, 1), BLKIF_RSP_OKAY, "flush without data: OKAY");

    fill_pattern(data, 4096, 3);
    memcpy(page, data, 4096);
    fe_rw(&f, BLKIF_OP_FLUSH_DISKCACHE, 2, 64, &seg, 1);
    is_int(fe_one(&f, 2), BLKIF_RSP_OKAY, "flush with data (FUA write): OKAY");
    ok(disk_matches(64 * 512, page, 4096), "flush with data wrote its data");

    fill_pattern(data, 4096, 4);
    memcpy(page, data, 4096);
    fe_rw(&f, BLKIF_OP_WRITE_BARRIER, 3, 72, &seg, 1);
    is_int(fe_one(&f, 3), BLKIF_RSP_OKAY, "barrier write: OKAY");
    ok(disk_matches(72 * 512, page, 4096), "barrier wrote its data");

    /* Writes, a flush and more writes in one batch: all answered. */
    {
        int bad = 0;

        for (unsigned int i = 0; i < 9; i++) {
            if (i == 4)
                fe_rw(&f, BLKIF_OP_WRITE_BARRIER, 100 + i, 0, NULL, 0);
            else
                fe_rw(&f, BLKIF_OP_WRITE, 100 + i, 200 + 8 * i, &seg, 1);
        }
        fe_push(&f);
        bad = fe_wait_ok(&f, 9, 100);
        is_int(bad, 0, "writes around a barrier in one batch: all OKAY");
    }

    if (info.discard) {
        fill_pattern(data, 4096, 5);
        fe_rw(&f, BLKIF_OP_WRITE, 4, 512, &seg, 1);
        is_int(fe_one(&f, 4), BLKIF_RSP_OKAY, "write before discard");
        fe_discard(&f, 5, 512, 8);
        is_int(fe_one(&f, 5), BLKIF_RSP_OKAY, "discard: OKAY");
        memset(zero, 0, sizeof(zero));
        ok(disk_matches(512 * 512, zero, 4096), "discarded range reads zeros on the disk");
    } else {
        diag("backing file system cannot punch holes: discard skipped");
    }

    /* Bad requests cost only themselves. */
    seg.gref = 30000;
    fe_rw(&f, BLKIF_OP_WRITE, 6, 0, &seg, 1);
    is_int(fe_one(&f, 6), BLKIF_RSP_ERROR, "write from a bad gref: ERROR");
    fe_rw(&f, BLKIF_OP_READ, 7, 0, &seg, 1);
    is_int(fe_one(&f, 7), BLKIF_RSP_ERROR, "read into a bad gref: ERROR");
    seg.gref = data_refs[0];
    fe_rw(&f, BLKIF_OP_READ, 8, DISK_BYTES / 512 - 4, &seg, 1);
    is_int(fe_one(&f, 8), BLKIF_RSP_ERROR, "read crossing the end: ERROR");
    fe_rw(&f, BLKIF_OP_READ, 9, ~0ull - 3, &seg, 1);
    is_int(fe_one(&f, 9), BLKIF_RSP_ERROR, "read at a wrapping sector: ERROR");
    fe_rw(&f, 42, 10, 0, &seg, 1);
    is_int(fe_one(&f, 10), BLKIF_RSP_EOPNOTSUPP, "unknown op 42: EOPNOTSUPP");
    fe_rw(&f, BLKIF_OP_RESERVED_1, 11, 0, &seg, 1);
    is_int(fe_one(&f, 11), BLKIF_RSP_EOPNOTSUPP, "RESERVED_1: EOPNOTSUPP");
    fe_indirect(&f, BLKIF_OP_READ, 12, 0, 4, data_refs, 1);
    is_int(fe_one(&f, 12), BLKIF_RSP_EOPNOTSUPP, "indirect when not advertised: EOPNOTSUPP");
    seg.first = 3;
    seg.last = 2;
    fe_rw(&f, BLKIF_OP_READ, 13, 0, &seg, 1);
    is_int(fe_one(&f, 13), BLKIF_RSP_ERROR, "first_sect > last_sect: ERROR");
    seg.first = 0;
    seg.last = 7;
    fill_pattern(data, 4096, 6);
    memcpy(page, data, 4096);
    fe_rw(&f, BLKIF_OP_WRITE, 14, 1024, &seg, 1);
    is_int(fe_one(&f, 14), BLKIF_RSP_OKAY, "a good write after the bad ones: OKAY");
    ok(disk_matches(1024 * 512, page, 4096), "and its data is on the disk");

    /* Live resize: the end moves. */
    xbd_queue_set_sectors(f.q, 1024);
    fe_rw(&f, BLKIF_OP_READ, 15, 1024, &seg, 1);
    is_int(fe_one(&f, 15), BLKIF_RSP_ERROR, "after shrinking to 1024 sectors: sector 1024 is out");
    xbd_queue_set_sectors(f.q, DISK_BYTES / 512);
    fe_rw(&f, BLKIF_OP_READ, 16, 1024, &seg, 1);
    is_int(fe_one(&f, 16), BLKIF_RSP_OKAY, "after growing back: sector 1024 is in");

    xbd_queue_get_stats(f.q, &s);
    ok(s.err_bad_request >= 3 && s.err_grant >= 2 && s.req_unsupported >= 3 &&
       s.req_flush == 2 && s.req_barrier == 2 && s.in_flight == 0,
       "stats: %llu bad, %llu grant errors, %llu unsupported, %llu flushes, %llu barriers",
       (unsigned long long)s.err_bad_request, (unsigned long long)s.err_grant,
       (unsigned long long)s.req_unsupported, (unsigned long long)s.req_flush,
       (unsigned long long)s.req_barrier);
    fe_stop(&f);
}

static void
test_read_only(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct fe f;
    struct seg seg = { data_refs[0], 0, 7 };

    cfg.read_only = true;
    cfg.flush = cfg.discard = false;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "read-only: queue started");
        return;
    }
    fe_rw(&f, BLKIF_OP_WRITE, 1, 0, &seg, 1);
    is_int(fe_one(&f, 1), BLKIF_RSP_ERROR, "read-only: write gets ERROR");
    fe_discard(&f, 2, 0, 8);
    is_int(fe_one(&f, 2), BLKIF_RSP_EOPNOTSUPP, "read-only: discard not advertised: EOPNOTSUPP");
    fe_rw(&f, BLKIF_OP_READ, 3, 0, &seg, 1);
    is_int(fe_one(&f, 3), BLKIF_RSP_OKAY, "read-only: read OKAY");
    fe_stop(&f);
}

static void
test_hostile_prod(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct fe f;
    int i;

    failed_calls = 0;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "hostile: queue started");
        return;
    }
    f.fr.sring->req_prod = f.fr.nr_ents + 5;
    xen_mb();
    xbd_evtchn_notify(fe_ev, (uint32_t)f.port);
    for (i = 0; i < 1000 && __atomic_load_n(&failed_calls, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(10000);
    is_int(failed_calls, 1, "req_prod beyond the ring: on_fail called once (%s)", failed_why);
    ok(strstr(failed_why, "producer index") != NULL, "and says why");
    /* More notifications do not call it again, and stop still works. */
    xbd_evtchn_notify(fe_ev, (uint32_t)f.port);
    usleep(20000);
    fe_stop(&f);
    is_int(failed_calls, 1, "on_fail called exactly once");
}

/* A producer index moved back behind requests already taken (while they
 * are still in flight on a slow backing) breaks the ring too. */
static void
test_prod_backwards(void)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_backing *slow;
    struct xbd_queue_stats s;
    struct seg seg = { data_refs[0], 0, 7 };
    struct fe f;
    int i;

    if (xbd_backing_open("null:size=8M,latency=300ms", &opts, &slow, errbuf,
                         sizeof(errbuf)) < 0)
        bail_out("%s", errbuf);
    cfg.backing = slow;
    failed_calls = 0;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "backwards: queue started");
        return;
    }
    for (i = 0; i < 4; i++)
        fe_rw(&f, BLKIF_OP_READ, 70 + i, 8 * i, &seg, 1);
    fe_push(&f);
    WAIT_STATS(f.q, s, s.in_flight == 4);
    f.fr.sring->req_prod = 2;
    xen_mb();
    xbd_evtchn_notify(fe_ev, (uint32_t)f.port);
    for (i = 0; i < 1000 && __atomic_load_n(&failed_calls, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(10000);
    ok(failed_calls == 1 && strstr(failed_why, "moved back") != NULL,
       "req_prod moved back behind consumed requests: on_fail (%s)", failed_why);
    fe_stop(&f);
    xbd_backing_close(slow);
}



/* Adaptive polling and spurious wakeups, on the null backing. */
static void
test_polling(struct xbd_backing *nullb)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_queue_stats s;
    struct fe f;
    struct seg seg = { data_refs[0], 0, 7 };
    uint64_t before;

    cfg.backing = nullb;
    cfg.poll_start_rate = 1;            /* any traffic starts polling */
    cfg.poll_idle_us = 100000;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "polling: queue started");
        return;
    }
    fe_rw(&f, BLKIF_OP_READ, 1, 0, &seg, 1);
    is_int(fe_one(&f, 1), BLKIF_RSP_OKAY, "polling: first read");
    usleep(120000);                     /* close the first rate window */
    fe_rw(&f, BLKIF_OP_READ, 2, 0, &seg, 1);
    is_int(fe_one(&f, 2), BLKIF_RSP_OKAY, "polling: second read");
    WAIT_STATS(f.q, s, s.polls > 0 || s.poll_preempted > 0);
    /* On a loaded host the thread may lose the CPU first: then polling
     * pauses (poll_preempted) instead of going round. */
    ok(s.polls > 0 || s.poll_preempted > 0, "polling: the queue polled the ring "
       "(%llu polls, %llu hits, %llu pauses for lost CPU)", (unsigned long long)s.polls,
       (unsigned long long)s.poll_hits, (unsigned long long)s.poll_preempted);
    /* Once idle (100 ms) it sleeps again and wakes on events. */
    usleep(150000);
    fe_rw(&f, BLKIF_OP_READ, 3, 0, &seg, 1);
    is_int(fe_one(&f, 3), BLKIF_RSP_OKAY, "polling: a read after the idle time");

    /* Events with nothing on the ring are spurious. */
    xbd_queue_get_stats(f.q, &s);
    before = s.spurious_wakeups;
    for (int i = 0; i < 5; i++) {
        xbd_evtchn_notify(fe_ev, (uint32_t)f.port);
        usleep(5000);
    }
    WAIT_STATS(f.q, s, s.spurious_wakeups > before);
    ok(s.spurious_wakeups > before, "spurious wakeups counted (%llu)",
       (unsigned long long)s.spurious_wakeups);
    fe_rw(&f, BLKIF_OP_READ, 4, 0, &seg, 1);
    is_int(fe_one(&f, 4), BLKIF_RSP_OKAY, "a read after the spurious events");

    /* An event storm: the queue may sit parts of it out, but it keeps
     * answering (how many pauses depends on scheduling: not asserted). */
    for (int i = 0; i < 20000; i++)
        xbd_evtchn_notify(fe_ev, (uint32_t)f.port);
    fe_rw(&f, BLKIF_OP_READ, 5, 0, &seg, 1);
    is_int(fe_one(&f, 5), BLKIF_RSP_OKAY, "a read right after an event storm");
    xbd_queue_get_stats(f.q, &s);
    diag("storm: %llu notifications received, %llu spurious, %llu pauses",
         (unsigned long long)s.notify_received, (unsigned long long)s.spurious_wakeups,
         (unsigned long long)s.storm_pauses);
    fe_stop(&f);
}

/* Polling off (poll_idle_us 0): the queue never polls, whatever the
 * traffic; each request of a QD1 sequence costs the frontend at most one
 * notification, and each response at most one notification back. */
static void
test_polling_off(struct xbd_backing *nullb)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_queue_stats s;
    struct fe f;
    struct seg seg = { data_refs[0], 0, 7 };
    int bad = 0;

    cfg.backing = nullb;
    cfg.poll_start_rate = 1;
    cfg.poll_idle_us = 0;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "polling off: queue started");
        return;
    }
    for (uint64_t id = 1; id <= 50; id++) {
        fe_rw(&f, BLKIF_OP_READ, id, id * 8, &seg, 1);
        bad += fe_one(&f, id) != BLKIF_RSP_OKAY;
    }
    is_int(bad, 0, "polling off: 50 reads one after another, OKAY");
    xbd_queue_get_stats(f.q, &s);
    ok(s.polls == 0 && s.poll_hits == 0 && s.poll_preempted == 0,
       "polling off: no poll round, hit or pause (%llu, %llu, %llu)",
       (unsigned long long)s.polls, (unsigned long long)s.poll_hits,
       (unsigned long long)s.poll_preempted);
    /* Fewer when a request or the response's reader came before the other
     * side went to sleep (then no notification was needed). */
    ok(s.notify_received <= 50 && s.notify_sent <= 50,
       "polling off: at most one notification per request each way "
       "(%llu received, %llu sent)", (unsigned long long)s.notify_received,
       (unsigned long long)s.notify_sent);
    fe_stop(&f);
}

/* Stop with I/O in flight: drained and answered within the timeout, or
 * abandoned past it. */
static void
test_stop_in_flight(void)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_backing *slow;
    struct xbd_queue_stats s;
    struct fe f;
    struct seg seg = { data_refs[0], 0, 7 };
    int bad = 0;

    if (xbd_backing_open("null:size=8M,latency=200ms", &opts, &slow, errbuf,
                         sizeof(errbuf)) < 0)
        bail_out("%s", errbuf);
    cfg.backing = slow;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "drain: queue started");
        return;
    }
    for (int i = 0; i < 4; i++)
        fe_rw(&f, BLKIF_OP_READ, 50 + i, 8 * i, &seg, 1);
    fe_push(&f);
    WAIT_STATS(f.q, s, s.in_flight == 4);
    is_int(s.in_flight, 4, "drain: 4 reads in flight");
    xbd_queue_stop(f.q, 10000);
    f.q = NULL;
    bad = fe_wait_ok(&f, 4, 50);
    is_int(bad, 0, "drain: stop answered all 4 before returning");
    xbd_evtchn_unbind(fe_ev, (uint32_t)f.port);
    is_int(xbd_gntshr_unshare(fe_sh, f.ring, f.pages), 0, "drain: ring unshared");
    xbd_backing_close(slow);

    if (xbd_backing_open("null:size=8M,latency=3s", &opts, &slow, errbuf,
                         sizeof(errbuf)) < 0)
        bail_out("%s", errbuf);
    cfg.backing = slow;
    if (fe_start(&f, cfg) < 0) {
        ok(0, "abandon: queue started");
        return;
    }
    fe_rw(&f, BLKIF_OP_READ, 60, 0, &seg, 1);
    fe_push(&f);
    WAIT_STATS(f.q, s, s.in_flight == 1);
    is_int(s.in_flight, 1, "abandon: 1 read in flight");
    xbd_queue_stop(f.q, 20);
    f.q = NULL;
    is_int(f.fr.sring->rsp_prod, 0, "abandon: stop returned without an answer");
    xbd_evtchn_unbind(fe_ev, (uint32_t)f.port);
    is_int(xbd_gntshr_unshare(fe_sh, f.ring, f.pages), 0,
           "abandon: ring unmapped all the same");
    /* The backing outlives the abandoned I/O: not closed here. */
}

#ifdef HAVE_LIBNBD
/* The whole path over the nbd driver, when nbdkit is installed. */
static void
test_nbd(const char *tmp)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    char sock[300], pidfile[300], params[400];
    pid_t pid;

    if (system("nbdkit --version >/dev/null 2>&1") != 0) {
        diag("nbdkit not installed: the nbd data path is not tested");
        return;
    }
    snprintf(sock, sizeof(sock), "%s/nbd.sock", tmp);
    snprintf(pidfile, sizeof(pidfile), "%s/nbd.pid", tmp);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        execlp("nbdkit", "nbdkit", "-f", "--exit-with-parent", "-U", sock,
               "-P", pidfile, "memory", "8M", (char *)NULL);
        _exit(127);
    }
    /* nbdkit writes its pidfile once it accepts connections; the socket
     * file alone appears at bind(), before listen(). */
    for (int i = 0; i < 3000 && access(pidfile, F_OK) != 0; i++)
        usleep(10000);
    snprintf(params, sizeof(params), "nbd:nbd+unix:///?socket=%s", sock);
    if (xbd_backing_open(params, &opts, &rw_backing, errbuf, sizeof(errbuf)) < 0) {
        ok(0, "nbd backing: %s", errbuf);
    } else {
        test_rw(4, XBD_ABI_NATIVE, false, "nbd");
        test_rw(2, XBD_ABI_X86_32, true, "nbd persistent x86_32-abi");
        xbd_backing_close(rw_backing);
        rw_backing = NULL;
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(sock);
    unlink(pidfile);
}
#endif

/* A file in tmpfs is read and written synchronously on the queue thread;
 * with persistent grants straight into and out of the guest's mapped
 * pages (direct_io), partial pages and all, and by copy when the cache
 * cannot map every segment of a request. */
static void
test_memfs(void)
{
    struct xbd_backing_opts opts = { .direct_io = true, .discard_enable = true };
    char path[] = "/dev/shm/xbd-dp.XXXXXX";
    int fd = mkstemp(path);

    if (fd < 0 || ftruncate(fd, DISK_BYTES) < 0) {
        diag("no file in /dev/shm: the tmpfs data path is not tested");
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return;
    }
    close(fd);
    if (xbd_backing_open(path, &opts, &rw_backing, errbuf, sizeof(errbuf)) < 0) {
        ok(0, "tmpfs backing: %s", errbuf);
        unlink(path);
        return;
    }
    rw_path = path;
    rw_expect_direct = xbd_driver_file.sync_iov(rw_backing, XBD_IO_READ);
    if (!rw_expect_direct)
        diag("/dev/shm is not tmpfs here: its reads and writes are copied");
    test_rw(1, XBD_ABI_NATIVE, true, "tmpfs persistent");
    test_rw(1, XBD_ABI_X86_32, true, "tmpfs persistent x86_32-abi");
    test_indirect(true, XBD_ABI_X86_64, "tmpfs indirect, persistent");
    test_persistent_edges();
    rw_expect_direct = false;
    test_rw(2, XBD_ABI_NATIVE, false, "tmpfs copied");
    xbd_backing_close(rw_backing);
    rw_backing = NULL;
    rw_path = NULL;
    unlink(path);
}

static void
test_start_errors(void)
{
    struct xbd_queue_cfg cfg = base_cfg();
    struct xbd_queue *q;
    int rc;

    cfg.ring_pages = 3;
    rc = xbd_queue_start(&cfg, &q, errbuf, sizeof(errbuf));
    ok(rc == -EINVAL && strstr(errbuf, "power of two"), "3 ring pages refused: %s", errbuf);
    cfg = base_cfg();
    cfg.ring_refs[0] = 31999;
    cfg.fe_port = 1;
    rc = xbd_queue_start(&cfg, &q, errbuf, sizeof(errbuf));
    ok(rc < 0 && strstr(errbuf, "cannot map"), "unmappable ring refused: %s", errbuf);
    cfg.ring_refs[0] = data_refs[0];
    cfg.fe_port = 9999;
    rc = xbd_queue_start(&cfg, &q, errbuf, sizeof(errbuf));
    ok(rc < 0 && strstr(errbuf, "event channel"), "bad event channel refused: %s", errbuf);
}

int
main(int argc, char **argv)
{
    static const char *const sim_args[] = { "--domain", "guest1", "--memory", "128M", NULL };
    struct xbd_backing_opts opts = { .discard_enable = true };
    char dir[] = "/tmp/xbd-dp.XXXXXX";
    const char *dom;
    char saved[16];
    void *addr;
    int fd;

    sim_test_enter(argc, argv, sim_args);
    xbd_log_init("test", false, false);

    /* The frontend's handles run as domain 1. */
    dom = getenv("XBD_SIM_DOMID");
    snprintf(saved, sizeof(saved), "%s", dom != NULL ? dom : "0");
    setenv("XBD_SIM_DOMID", "1", 1);
    if (xbd_platform_open(&fe_plat, NULL) < 0 || xbd_gntshr_open(fe_plat, &fe_sh) < 0 ||
        xbd_evtchn_open(fe_plat, &fe_ev) < 0)
        bail_out("frontend handles: %s", xbd_platform_error());
    setenv("XBD_SIM_DOMID", saved, 1);
    if (xbd_platform_open(&be_plat, NULL) < 0)
        bail_out("backend platform: %s", xbd_platform_error());
    if (xbd_gntshr_share(fe_sh, 0, DATA_PAGES, 1, data_refs, &addr) < 0)
        bail_out("share data pages: %s", xbd_platform_error());
    data = addr;

    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp");
    snprintf(disk_path, sizeof(disk_path), "%s/disk.img", dir);
    fd = open(disk_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, DISK_BYTES) < 0)
        bail_out("create %s", disk_path);
    close(fd);
    if (xbd_backing_open(disk_path, &opts, &disk, errbuf, sizeof(errbuf)) < 0)
        bail_out("%s", errbuf);

    test_start_errors();
    test_rw(1, XBD_ABI_NATIVE, false, "1 page");
    test_rw(4, XBD_ABI_NATIVE, false, "4 pages");
    test_rw(64, XBD_ABI_NATIVE, false, "64 pages");
    test_rw(2, XBD_ABI_X86_32, false, "x86_32-abi");
    test_rw(2, XBD_ABI_X86_64, false, "x86_64-abi");
    test_rw(1, XBD_ABI_NATIVE, true, "persistent");
    test_rw(4, XBD_ABI_X86_32, true, "persistent x86_32-abi");
    rw_grant_map = true;
    test_rw(4, XBD_ABI_NATIVE, false, "mapped per request");
    test_rw(2, XBD_ABI_X86_32, false, "mapped per request, x86_32-abi");
    rw_grant_map = false;
    test_indirect(false, XBD_ABI_NATIVE, "indirect");
    test_indirect(true, XBD_ABI_NATIVE, "indirect, persistent");
    test_indirect(false, XBD_ABI_X86_32, "indirect, x86_32-abi");
    test_indirect(true, XBD_ABI_X86_64, "indirect, persistent, x86_64-abi");
    test_ops();
    test_persistent_edges();
    test_memfs();
    test_mapped_errors();
    test_two_queues();
    failed_calls = 0;
    test_random_slots();
    test_double_fetch();
    test_read_only();
    test_hostile_prod();
    test_prod_backwards();
    {
        struct xbd_backing *nullb;

        if (xbd_backing_open("null:size=8M", &opts, &nullb, errbuf, sizeof(errbuf)) < 0)
            bail_out("%s", errbuf);
        test_polling(nullb);
        test_polling_off(nullb);
        xbd_backing_close(nullb);
    }
    test_stop_in_flight();
#ifdef HAVE_LIBNBD
    test_nbd(dir);
#endif

    is_int(xbd_gntshr_unshare(fe_sh, data, DATA_PAGES), 0,
           "data pages unshared at the end (no grant left mapped)");
    xbd_backing_close(disk);
    unlink(disk_path);
    rmdir(dir);
    xbd_evtchn_close(fe_ev);
    xbd_gntshr_close(fe_sh);
    xbd_platform_close(fe_plat);
    xbd_platform_close(be_plat);
    return done_testing();
}
