/* xbd-backd — the data path: one thread per queue (ring).
 *
 *   frontend ring ──copy slot──► parse/validate ──► move data in (writes)
 *        ▲                                              │ grant copy, or a
 *        │ response into the slot                       │ persistent mapping
 *        │                                              ▼
 *   respond ◄── move data out (reads) ◄── completion ◄── io_uring (driver)
 *
 * Moving data: batched grant copy into our buffers by default; with
 * feature-persistent, memcpy through a cache of long-lived mappings; with
 * cfg.grant_map, one map/unmap per request.  Measured on xbd-sim (4 KiB
 * random reads, iodepth 32, null driver): copy 610k IOPS, persistent 545k,
 * map per request 50k.  The guest's pages never reach asynchronous I/O
 * (io_uring, O_DIRECT), so a request's data cannot change under a device
 * transfer and no transfer abandoned at stop can touch them.  One
 * exception, for drivers that read and write synchronously on this thread
 * (a file in tmpfs, the null driver; xbd_ioq_sync_iov): with persistent
 * grants their pread/pwrite move the data straight between the backing
 * and the mapped pages (direct_io), one copy by the kernel in place of
 * the copy into our buffer and our memcpy; the call is over before the
 * request is answered, as the memcpy would be.
 *
 * Objects and lifetimes (all owned by struct xbd_queue, created in
 * xbd_queue_start, destroyed in xbd_queue_stop after the thread is joined):
 *
 *   ring mapping   the frontend's ring pages, mapped contiguously once.
 *   evtchn         our end of the frontend's event channel; masked from the
 *                  wakeup that reported it until the work is done.
 *   ioq            the queue's own io_uring (driver.h).
 *   pending[]      one slot per ring entry: a request taken off the ring and
 *                  not yet answered.  There can never be more, because a
 *                  request is only consumed while its response has room
 *                  (RING_REQUEST_CONS_OVERFLOW).
 *   buffers        backend-owned, page aligned, one per request with data,
 *                  taken when it is consumed and given back when answered.
 *                  Sizes are powers of two pages; given-back buffers wait
 *                  in per-size free lists for the next request (malloc and
 *                  its page faults per request cost a third of the IOPS).
 *                  In use: at most buf_budget, at the bound we stop
 *                  consuming until completions free some; cached: at most
 *                  buf_budget more.
 *   pgrant cache   with feature-persistent: grants mapped once and kept, at
 *                  most persistent_max, evicted LRU when idle (refs == 0).
 *
 * Only the queue thread touches the ring, the handles and the pending
 * table once started; the control thread reads stats (relaxed atomics),
 * sets the size (an atomic) and asks for a stop (an atomic + eventfd).
 *
 * The guest is hostile: each slot is copied once (request.c) and index
 * lies break the ring (on_fail), never loop.  A request that fails
 * validation or a grant operation is answered with an error and costs the
 * guest only that request.
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "request.h"
#include "xbd-ring.h"

/* Defaults for knobs the control path left at 0. */
#define DEFAULT_BATCH_BUDGET    128u
#define DEFAULT_PGRANT_MAX      4096u
/* Backend buffer memory per queue, beyond which consumption pauses. */
#define BUF_BUDGET_MAX          (64u << 20)
/* Buffer size classes: 1, 2, 4, ... 4096 pages (a 16 MiB request). */
#define BUF_CLASSES             13
/* Persistent grants unused this long are unmapped, unless configured. */
#define DEFAULT_PGRANT_IDLE_MS  60000u
/* Spurious wakeups in a row before we stop listening for a while; the
 * pause doubles while the storm goes on, up to the maximum. */
#define SPURIOUS_STORM          64u
#define STORM_PAUSE_MIN_MS      1
#define STORM_PAUSE_MAX_MS      64
/* Adaptive polling also starts when a request arrives within this many
 * times poll_idle_us of the previous work: the margin is for the wake-up
 * that the request's notification needed, long on a loaded host. */
#define POLL_QUICK_FACTOR       4u
/* A poll round or a notification that took longer than this lost the CPU
 * (see poll_pause); pauses of polling after it failed. */
#define POLL_PREEMPT_NS         20000u
#define POLL_BACKOFF_MIN_NS     1000000u        /* 1 ms */
#define POLL_BACKOFF_MAX_NS     1000000000u     /* 1 s */

#define STAT_ADD(q, field, n) \
    __atomic_fetch_add(&(q)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)
#define STAT_SUB(q, field, n) \
    __atomic_fetch_sub(&(q)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* ---- Persistent grants ----------------------------------------------------- */

struct pgrant {
    uint32_t gref;
    bool writable;                  /* mapped writable (reads may use it) */
    void *addr;                     /* one page */
    unsigned int refs;              /* in-flight requests using it */
    uint64_t last_used_ns;
    struct pgrant *lru_prev, *lru_next;     /* idle ones only (refs == 0) */
    struct pgrant *hash_next;
};

struct pgrant_cache {
    unsigned int max, count;
    unsigned int nbuckets;          /* power of two */
    uint64_t idle_ns;               /* expiry of unused entries */
    uint64_t check_ns;              /* how often to look: idle/2, at most 1 s */
    struct pgrant **buckets;
    struct pgrant *lru_head, *lru_tail;     /* head: least recently used */
};

/* ---- Requests in flight ------------------------------------------------------ */

enum stage {
    ST_FREE,
    ST_FENCED,                      /* waiting for earlier requests to finish */
    ST_IO,                          /* an io is in the ring */
};

struct pending {
    struct xbd_req req;
    struct xbd_seg inline_seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
    enum stage stage;
    unsigned int step;              /* flush/barrier: which io of the sequence */
    uint8_t *buf;                   /* data, req.nr_sectors * 512 bytes */
    size_t buf_len;
    struct pgrant **pg;             /* persistent: one per segment, or NULL */
    struct pgrant *pg_inline[BLKIF_MAX_SEGMENTS_PER_REQUEST];
    struct iovec *iov;              /* direct: the segments in pg's pages */
    unsigned int iovcnt;
    struct iovec iov_inline[BLKIF_MAX_SEGMENTS_PER_REQUEST];
    struct xbd_io io;
    struct pending *next_free;
};

struct xbd_queue {
    struct xbd_queue_cfg cfg;       /* a copy; cfg.name points at name */
    char *name;

    struct xbd_gnttab *gt;
    struct xbd_evtchn *ev;
    int port;                       /* our local port, -1 when unbound */
    void *ring_addr;                /* the mapped ring pages */
    blkif_back_ring_t ring;         /* indices; entries per cfg.abi */
    unsigned int nr_ents;
    struct xbd_ioq *ioq;

    pthread_t thread;
    bool thread_started;
    int wake_fd;                    /* eventfd: stop requests */
    int stopping;                   /* atomic */
    unsigned int stop_timeout_ms;   /* set before stopping */
    uint64_t sectors;               /* atomic: live resize */
    bool failed;                    /* on_fail called: take no more */
    bool abandoned;                 /* I/O left in flight at stop: leak it */

    struct xbd_req_limits lim;
    struct pending *pending;        /* nr_ents entries */
    struct pending *free_list;
    unsigned int active;            /* pendings in ST_IO */
    struct pending *fence;          /* a flush/barrier waiting to start */
    bool fence_holds;               /* a barrier is running: take nothing new */
    bool blocked;                   /* consume stopped with requests left */
    RING_IDX last_req_prod;         /* as seen by the last consume */
    size_t buf_in_use, buf_budget, max_req_bytes;
    size_t buf_cached;              /* bytes in the free lists */
    void *buf_free[BUF_CLASSES];    /* per size class, linked through the buffers */
    unsigned int max_segs;

    struct xbd_gnt_copy_seg *copy;  /* max_segs (and 8 for indirect pages) */
    uint32_t *map_refs;             /* cfg.grant_map: max_segs grefs */
    uint8_t *ind_pages;             /* BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST pages */
    struct pgrant_cache pgc;

    bool need_push;                 /* responses written, not yet pushed */
    unsigned int spurious_run;
    int storm_pause_ms;             /* the next pause, when storming */
    bool polling;
    uint64_t round_ns;              /* end of the last round, or of the last sleep */
    uint64_t poll_backoff_ns;       /* the next pause when polling fails */
    uint64_t poll_resume_ns;        /* no polling before this */
    uint64_t rate_window_ns;        /* start of the arrival-rate window */
    unsigned int rate_count;
    uint64_t last_work_ns;
    uint64_t last_expiry_ns;

    struct xbd_ratelimit rl;
    struct xbd_queue_stats stats;   /* relaxed atomics */
};

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A request the guest got wrong: counted, logged with a rate limit. */
static void
guest_fault(struct xbd_queue *q, const struct xbd_req *r, const char *why)
{
    xbd_log_limited(&q->rl, LOG_WARNING, "%s: buggy or malicious frontend: %s "
                    "(op %u, id %llu)", q->name, why, r->operation,
                    (unsigned long long)r->id);
}

/* The ring is beyond saving: tell the control path, once. */
static void
ring_fail(struct xbd_queue *q, const char *why)
{
    if (q->failed)
        return;
    q->failed = true;
    xbd_log(LOG_ERR, "%s: buggy or malicious frontend: %s; queue stopped", q->name, why);
    if (q->cfg.on_fail != NULL)
        q->cfg.on_fail(q->cfg.ctx, q->cfg.index, why);
}

/* ---- Persistent grant cache -------------------------------------------------- */

static struct pgrant **
pgc_bucket(struct pgrant_cache *c, uint32_t gref)
{
    return &c->buckets[(gref * 2654435761u) & (c->nbuckets - 1)];
}

static void
lru_remove(struct pgrant_cache *c, struct pgrant *g)
{
    if (g->lru_prev != NULL)
        g->lru_prev->lru_next = g->lru_next;
    else
        c->lru_head = g->lru_next;
    if (g->lru_next != NULL)
        g->lru_next->lru_prev = g->lru_prev;
    else
        c->lru_tail = g->lru_prev;
    g->lru_prev = g->lru_next = NULL;
}

static void
lru_append(struct pgrant_cache *c, struct pgrant *g)
{
    g->lru_next = NULL;
    g->lru_prev = c->lru_tail;
    if (c->lru_tail != NULL)
        c->lru_tail->lru_next = g;
    else
        c->lru_head = g;
    c->lru_tail = g;
}

/* Unmap and forget an idle entry. */
static void
pgc_evict(struct xbd_queue *q, struct pgrant *g)
{
    struct pgrant_cache *c = &q->pgc;
    struct pgrant **pp = pgc_bucket(c, g->gref);

    while (*pp != g)
        pp = &(*pp)->hash_next;
    *pp = g->hash_next;
    lru_remove(c, g);
    if (xbd_gnttab_unmap(q->gt, g->addr, 1) < 0)
        xbd_log(LOG_ERR, "%s: cannot unmap persistent grant %u: %s", q->name,
                g->gref, xbd_platform_error());
    c->count--;
    free(g);
}

/* Take a reference on a mapping of gref usable for `need_write`; NULL when
 * the cache cannot serve it (then the caller copies instead). */
static struct pgrant *
pgc_get(struct xbd_queue *q, uint32_t gref, bool need_write)
{
    struct pgrant_cache *c = &q->pgc;
    struct pgrant *g;
    void *addr;

    for (g = *pgc_bucket(c, gref); g != NULL; g = g->hash_next)
        if (g->gref == gref)
            break;
    if (g != NULL && need_write && !g->writable) {
        /* Mapped read-only before; remap writable if nobody uses it. */
        if (g->refs > 0)
            return NULL;
        pgc_evict(q, g);
        g = NULL;
    }
    if (g != NULL) {
        STAT_ADD(q, pgrant_hits, 1);
        if (g->refs++ == 0)
            lru_remove(c, g);
        return g;
    }
    STAT_ADD(q, pgrant_misses, 1);
    if (c->count >= c->max) {
        if (c->lru_head == NULL)
            return NULL;            /* all in use: copy this one */
        pgc_evict(q, c->lru_head);
        STAT_ADD(q, pgrant_evictions, 1);
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    /* Writable when we can: the same page often serves reads later. */
    if (xbd_gnttab_map(q->gt, q->cfg.fe_domid, 1, &gref, 1, &addr) == 0) {
        g->writable = true;
    } else if (need_write ||
               xbd_gnttab_map(q->gt, q->cfg.fe_domid, 1, &gref, 0, &addr) < 0) {
        free(g);
        return NULL;
    }
    STAT_ADD(q, grant_maps, 1);
    g->gref = gref;
    g->addr = addr;
    g->refs = 1;
    g->hash_next = *pgc_bucket(c, gref);
    *pgc_bucket(c, gref) = g;
    c->count++;
    return g;
}

static void
pgc_put(struct xbd_queue *q, struct pgrant *g)
{
    /* The round's clock: precise enough for an idle time of a millisecond
     * or more, and no clock read per segment. */
    g->last_used_ns = q->round_ns;
    if (--g->refs == 0)
        lru_append(&q->pgc, g);
}

/* Unmap entries idle for idle_ns (the LRU head is the oldest). */
static void
pgc_expire(struct xbd_queue *q, uint64_t now)
{
    while (q->pgc.lru_head != NULL &&
           now - q->pgc.lru_head->last_used_ns > q->pgc.idle_ns) {
        pgc_evict(q, q->pgc.lru_head);
        STAT_ADD(q, pgrant_evictions, 1);
    }
}

static void
pgc_destroy(struct xbd_queue *q)
{
    unsigned int i;

    if (q->pgc.buckets == NULL)
        return;
    for (i = 0; i < q->pgc.nbuckets; i++) {
        while (q->pgc.buckets[i] != NULL) {
            struct pgrant *g = q->pgc.buckets[i];

            /* Abandoned I/O uses our buffers, never these pages: unmap
             * them all, so the guest can free its pages. */
            if (g->refs > 0) {
                g->refs = 0;
                lru_append(&q->pgc, g);
            }
            pgc_evict(q, g);
        }
    }
    free(q->pgc.buckets);
    q->pgc.buckets = NULL;
}

/* ---- Moving data between the guest's segments and our buffer ----------------- */

static void
release_pgrants(struct xbd_queue *q, struct pending *p)
{
    unsigned int i;

    if (p->pg == NULL)
        return;
    for (i = 0; i < p->req.nr_segments; i++)
        if (p->pg[i] != NULL)
            pgc_put(q, p->pg[i]);
    if (p->pg != p->pg_inline)
        free(p->pg);
    p->pg = NULL;
}

/* Persistent mappings of p's segments, once per request: p->pg[i], NULL
 * for a segment the cache cannot serve (p->pg NULL when out of memory). */
static void
get_pgrants(struct xbd_queue *q, struct pending *p, bool to_guest)
{
    const struct xbd_req *r = &p->req;

    if (p->pg != NULL)
        return;
    p->pg = r->nr_segments <= BLKIF_MAX_SEGMENTS_PER_REQUEST ? p->pg_inline :
            calloc(r->nr_segments, sizeof(*p->pg));
    for (unsigned int i = 0; p->pg != NULL && i < r->nr_segments; i++)
        p->pg[i] = pgc_get(q, r->seg[i].gref, to_guest);
}

/* cfg.grant_map: map all of the request's grants in one call (read-only
 * for a write's data), copy, unmap at once. */
static int
move_mapped(struct xbd_queue *q, struct pending *p, bool to_guest)
{
    const struct xbd_req *r = &p->req;
    uint8_t *addr;
    size_t off = 0;
    unsigned int i;
    void *a;

    for (i = 0; i < r->nr_segments; i++)
        q->map_refs[i] = r->seg[i].gref;
    if (xbd_gnttab_map(q->gt, q->cfg.fe_domid, r->nr_segments, q->map_refs,
                       to_guest ? 1 : 0, &a) < 0) {
        STAT_ADD(q, err_grant, 1);
        guest_fault(q, r, "grant map of a data segment failed (bad grant reference?)");
        return -1;
    }
    STAT_ADD(q, grant_maps, r->nr_segments);
    addr = a;
    for (i = 0; i < r->nr_segments; i++) {
        const struct xbd_seg *s = &r->seg[i];
        uint8_t *page = addr + (size_t)i * XBD_PAGE_SIZE +
                        ((size_t)s->first_sect << XBD_SECTOR_SHIFT);
        size_t len = (size_t)(s->last_sect - s->first_sect + 1) << XBD_SECTOR_SHIFT;

        if (to_guest)
            memcpy(page, p->buf + off, len);
        else
            memcpy(p->buf + off, page, len);
        off += len;
    }
    if (xbd_gnttab_unmap(q->gt, a, r->nr_segments) < 0)
        xbd_log(LOG_ERR, "%s: cannot unmap request grants: %s", q->name,
                xbd_platform_error());
    return 0;
}

/* Copy between the request's segments and p->buf: into the buffer for a
 * write (to_guest false), out of it for a read.  Segments with a
 * persistent mapping are memcpy'd; the rest go in one grant-copy batch
 * (or, with cfg.grant_map, one mapping).  Returns 0, or -1 when any
 * segment could not be moved. */
static int
move_data(struct xbd_queue *q, struct pending *p, bool to_guest)
{
    const struct xbd_req *r = &p->req;
    size_t off = 0;
    unsigned int i, n = 0;
    int rc;

    if (q->map_refs != NULL)
        return move_mapped(q, p, to_guest);

    if (q->cfg.persistent)
        get_pgrants(q, p, to_guest);
    for (i = 0; i < r->nr_segments; i++) {
        const struct xbd_seg *s = &r->seg[i];
        uint16_t soff = (uint16_t)(s->first_sect << XBD_SECTOR_SHIFT);
        uint16_t len = (uint16_t)((s->last_sect - s->first_sect + 1) << XBD_SECTOR_SHIFT);
        struct xbd_gnt_copy_seg *c = &q->copy[n];

        if (p->pg != NULL && p->pg[i] != NULL) {
            uint8_t *page = (uint8_t *)p->pg[i]->addr + soff;

            if (to_guest)
                memcpy(page, p->buf + off, len);
            else
                memcpy(p->buf + off, page, len);
            off += len;
            continue;
        }
        memset(c, 0, sizeof(*c));
        if (to_guest) {
            c->source.virt = p->buf + off;
            c->dest.foreign.ref = s->gref;
            c->dest.foreign.offset = soff;
            c->dest.foreign.domid = (uint16_t)q->cfg.fe_domid;
            c->flags = XBD_GNTCOPY_DEST_GREF;
        } else {
            c->source.foreign.ref = s->gref;
            c->source.foreign.offset = soff;
            c->source.foreign.domid = (uint16_t)q->cfg.fe_domid;
            c->dest.virt = p->buf + off;
            c->flags = XBD_GNTCOPY_SOURCE_GREF;
        }
        c->len = len;
        off += len;
        n++;
    }
    if (n == 0)
        return 0;
    STAT_ADD(q, grant_copies, n);
    rc = xbd_gnttab_copy(q->gt, n, q->copy);
    for (i = 0; rc == 0 && i < n; i++)
        if (q->copy[i].status != GNTST_okay)
            rc = -1;
    if (rc != 0) {
        STAT_ADD(q, err_grant, 1);
        guest_fault(q, r, "grant copy of a data segment failed (bad grant reference?)");
        return -1;
    }
    return 0;
}

/* With persistent grants and a driver that reads and writes synchronously
 * (xbd_ioq_sync_iov: a memory-backed file, the null driver), let it move
 * the data straight between the backing and the guest's mapped pages:
 * p->iov instead of a buffer of ours and a copy.  False when any segment
 * has no mapping (then move_data copies, reusing p->pg). */
static bool
direct_io(struct xbd_queue *q, struct pending *p, enum xbd_io_op op)
{
    const struct xbd_req *r = &p->req;
    bool to_guest = op == XBD_IO_READ;
    unsigned int i, n = 0;

    if (!q->cfg.persistent || r->nr_segments == 0 || !xbd_ioq_sync_iov(q->ioq, op))
        return false;
    get_pgrants(q, p, to_guest);
    if (p->pg == NULL)
        return false;
    for (i = 0; i < r->nr_segments; i++)
        if (p->pg[i] == NULL)
            return false;
    p->iov = r->nr_segments <= BLKIF_MAX_SEGMENTS_PER_REQUEST ? p->iov_inline :
             malloc(r->nr_segments * sizeof(*p->iov));
    if (p->iov == NULL)
        return false;
    for (i = 0; i < r->nr_segments; i++) {
        const struct xbd_seg *s = &r->seg[i];
        uint8_t *a = (uint8_t *)p->pg[i]->addr + ((size_t)s->first_sect << XBD_SECTOR_SHIFT);
        size_t len = (size_t)(s->last_sect - s->first_sect + 1) << XBD_SECTOR_SHIFT;

        /* Pages mapped next to each other make one element. */
        if (n > 0 && (uint8_t *)p->iov[n - 1].iov_base + p->iov[n - 1].iov_len == a)
            p->iov[n - 1].iov_len += len;
        else
            p->iov[n++] = (struct iovec){ .iov_base = a, .iov_len = len };
    }
    p->iovcnt = n;
    STAT_ADD(q, direct_io, 1);
    return true;
}

static void
release_iov(struct pending *p)
{
    if (p->iov != NULL && p->iov != p->iov_inline)
        free(p->iov);
    p->iov = NULL;
    p->iovcnt = 0;
}

/* Copy the indirect pages of p into q->ind_pages and parse them. */
static int
fetch_indirect(struct xbd_queue *q, struct pending *p, const char **why)
{
    struct xbd_req *r = &p->req;
    unsigned int i;
    int rc;

    for (i = 0; i < r->nr_indirect_pages; i++) {
        struct xbd_gnt_copy_seg *c = &q->copy[i];

        memset(c, 0, sizeof(*c));
        c->source.foreign.ref = r->indirect_grefs[i];
        c->source.foreign.domid = (uint16_t)q->cfg.fe_domid;
        c->dest.virt = q->ind_pages + (size_t)i * XBD_PAGE_SIZE;
        c->len = XBD_PAGE_SIZE;
        c->flags = XBD_GNTCOPY_SOURCE_GREF;
    }
    STAT_ADD(q, grant_copies, r->nr_indirect_pages);
    rc = xbd_gnttab_copy(q->gt, r->nr_indirect_pages, q->copy);
    for (i = 0; rc == 0 && i < r->nr_indirect_pages; i++)
        if (q->copy[i].status != GNTST_okay)
            rc = -1;
    if (rc != 0) {
        STAT_ADD(q, err_grant, 1);
        *why = "grant copy of an indirect page failed (bad grant reference?)";
        return -EFAULT;
    }
    if (r->nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
        r->seg = malloc(r->nr_segments * sizeof(*r->seg));
        if (r->seg == NULL) {
            r->seg = p->inline_seg;
            *why = "out of memory";
            return -ENOMEM;
        }
    }
    return xbd_req_parse_indirect(q->ind_pages, &q->lim, r, why);
}

/* ---- Responses ----------------------------------------------------------------- */

static void release_buf(struct xbd_queue *q, struct pending *p);

static void
pending_free(struct xbd_queue *q, struct pending *p)
{
    release_iov(p);
    release_pgrants(q, p);
    if (p->buf != NULL)
        release_buf(q, p);
    if (p->req.seg != p->inline_seg)
        free(p->req.seg);
    p->req.seg = p->inline_seg;
    p->stage = ST_FREE;
    p->next_free = q->free_list;
    q->free_list = p;
}

/* Answer p in the next response slot and free it. */
static void
respond(struct xbd_queue *q, struct pending *p, int16_t status)
{
    xbd_rsp_write(q->ring.sring, q->nr_ents, q->cfg.abi, q->ring.rsp_prod_pvt,
                  p->req.id, p->req.operation, status);
    q->ring.rsp_prod_pvt++;
    q->need_push = true;
    pending_free(q, p);
}

/* Stop polling and do not start again before a pause that doubles each
 * time polling fails in a row, up to POLL_BACKOFF_MAX_NS.  It fails when
 * the window ends with nothing to do (the frontend takes longer than
 * poll_idle_us to send its next request: spinning only burned the CPU) and
 * when it loses the CPU (a round or a notification took more than
 * POLL_PREEMPT_NS: the thread we wait for probably shares the CPU with us,
 * and spinning only delays it; sleeping until notified lets the scheduler
 * run it).  A hit (a request found by polling) ends the run of failures. */
static void
poll_pause(struct xbd_queue *q, uint64_t now, bool preempted)
{
    if (preempted)
        STAT_ADD(q, poll_preempted, 1);
    q->polling = false;
    if (q->poll_backoff_ns < POLL_BACKOFF_MIN_NS)
        q->poll_backoff_ns = POLL_BACKOFF_MIN_NS;
    q->poll_resume_ns = now + q->poll_backoff_ns;
    if (q->poll_backoff_ns < POLL_BACKOFF_MAX_NS)
        q->poll_backoff_ns *= 2;
}

static void
push_responses(struct xbd_queue *q)
{
    int notify;

    if (!q->need_push)
        return;
    q->need_push = false;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&q->ring, notify);
    if (notify) {
        /* Polling: a notification that woke a frontend sharing our CPU
         * may hand it the CPU (see poll_pause). */
        uint64_t t = q->polling ? now_ns() : 0;

        if (xbd_evtchn_notify(q->ev, (uint32_t)q->port) == 0)
            STAT_ADD(q, notify_sent, 1);
        if (q->polling) {
            uint64_t now = now_ns();

            if (now - t > POLL_PREEMPT_NS)
                poll_pause(q, now, true);
        }
    }
}

/* ---- Dispatch -------------------------------------------------------------------- */

static void start_fenced(struct xbd_queue *q, struct pending *p);

/* p's I/O is over: answer it, and start a flush or barrier that waited for
 * it to be the last one. */
static void
finish(struct xbd_queue *q, struct pending *p, int16_t status)
{
    if (p->req.kind == XBD_REQ_BARRIER)
        q->fence_holds = false;
    q->active--;
    STAT_SUB(q, in_flight, 1);
    respond(q, p, status);
    if (q->fence != NULL && q->active == 0)
        start_fenced(q, q->fence);
}

static void
submit_io(struct xbd_queue *q, struct pending *p, enum xbd_io_op op)
{
    struct xbd_io *io = &p->io;

    memset(io, 0, sizeof(*io));
    io->op = op;
    io->user = p;
    if (op == XBD_IO_READ || op == XBD_IO_WRITE) {
        io->offset = p->req.sector << XBD_SECTOR_SHIFT;
        io->len = p->req.nr_sectors << XBD_SECTOR_SHIFT;
        io->buf = p->buf;
        io->iov = p->iov;
        io->iovcnt = p->iovcnt;
    } else if (op != XBD_IO_FLUSH) {
        io->offset = p->req.sector << XBD_SECTOR_SHIFT;
        io->len = p->req.nr_sectors << XBD_SECTOR_SHIFT;
    }
    if (p->stage != ST_IO) {
        p->stage = ST_IO;
        q->active++;
        STAT_ADD(q, in_flight, 1);
    }
    if (xbd_ioq_add(q->ioq, io) < 0) {
        STAT_ADD(q, err_io, 1);
        finish(q, p, BLKIF_RSP_ERROR);
    }
}

/* The operations of a flush or barrier, in order. */
static const enum xbd_io_op flush_steps[] = { XBD_IO_WRITE, XBD_IO_FLUSH };
static const enum xbd_io_op barrier_steps[] = { XBD_IO_FLUSH, XBD_IO_WRITE, XBD_IO_FLUSH };

static unsigned int
first_step(const struct pending *p)
{
    /* Without data, skip the write (and for a barrier, the second flush). */
    return p->req.kind == XBD_REQ_FLUSH && p->req.nr_segments == 0 ? 1 : 0;
}

static bool
last_step(const struct pending *p)
{
    if (p->req.kind == XBD_REQ_FLUSH)
        return p->step >= 1;
    return p->step >= 2 || p->req.nr_segments == 0;
}

static enum xbd_io_op
step_op(const struct pending *p)
{
    return p->req.kind == XBD_REQ_FLUSH ? flush_steps[p->step] : barrier_steps[p->step];
}

/* Start a flush or barrier whose earlier requests have all finished. */
static void
start_fenced(struct xbd_queue *q, struct pending *p)
{
    if (p->req.nr_segments > 0 && move_data(q, p, false) < 0) {
        q->fence = NULL;
        respond(q, p, BLKIF_RSP_ERROR);
        return;
    }
    q->fence = NULL;
    /* A barrier keeps later requests out until it is done; a flush only
     * had to come after what was before it. */
    q->fence_holds = p->req.kind == XBD_REQ_BARRIER;
    p->step = first_step(p);
    submit_io(q, p, step_op(p));
}

/* The size class of a buffer of `len` bytes: 2^class pages. */
static unsigned int
buf_class(size_t len)
{
    unsigned int c = 0;

    while (((size_t)XBD_PAGE_SIZE << c) < len)
        c++;
    return c;
}

static int
alloc_buf(struct xbd_queue *q, struct pending *p)
{
    size_t len = (size_t)p->req.nr_sectors << XBD_SECTOR_SHIFT;
    unsigned int c;
    size_t size;

    if (len == 0)
        return 0;
    c = buf_class(len);
    size = (size_t)XBD_PAGE_SIZE << c;
    if (q->buf_free[c] != NULL) {
        p->buf = q->buf_free[c];
        memcpy(&q->buf_free[c], p->buf, sizeof(void *));   /* next in the list */
        q->buf_cached -= size;
    } else if (posix_memalign((void **)&p->buf, XBD_PAGE_SIZE, size) != 0) {
        p->buf = NULL;
        return -ENOMEM;
    }
    p->buf_len = size;
    q->buf_in_use += size;
    return 0;
}

/* Give p's buffer back: to its free list, or to malloc past the bound. */
static void
release_buf(struct xbd_queue *q, struct pending *p)
{
    unsigned int c = buf_class(p->buf_len);

    q->buf_in_use -= p->buf_len;
    if (q->buf_cached + p->buf_len <= q->buf_budget) {
        memcpy(p->buf, &q->buf_free[c], sizeof(void *));
        q->buf_free[c] = p->buf;
        q->buf_cached += p->buf_len;
    } else {
        free(p->buf);
    }
    p->buf = NULL;
    p->buf_len = 0;
}

static void
free_buf_cache(struct xbd_queue *q)
{
    for (unsigned int c = 0; c < BUF_CLASSES; c++) {
        while (q->buf_free[c] != NULL) {
            void *b = q->buf_free[c];

            memcpy(&q->buf_free[c], b, sizeof(void *));
            free(b);
        }
    }
    q->buf_cached = 0;
}

/* Validate and start one copied request. */
static void
dispatch(struct xbd_queue *q, struct pending *p, const void *slot)
{
    struct xbd_req *r = &p->req;
    const char *why = "";
    bool direct;
    int rc;

    r->seg = p->inline_seg;
    rc = xbd_req_parse(slot, q->cfg.abi, &q->lim, r, &why);
    if (rc == XBD_REQ_NEED_INDIRECT) {
        STAT_ADD(q, req_indirect, 1);
        rc = fetch_indirect(q, p, &why);
    }
    if (rc < 0) {
        if (rc == -EOPNOTSUPP) {
            STAT_ADD(q, req_unsupported, 1);
            xbd_log_limited(&q->rl, LOG_INFO, "%s: unsupported request: %s (op %u)",
                            q->name, why, r->operation);
        } else if (rc != -ENOMEM) {
            if (rc != -EFAULT)      /* a grant failure is counted apart */
                STAT_ADD(q, err_bad_request, 1);
            guest_fault(q, r, why);
        }
        respond(q, p, rc == -EOPNOTSUPP ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR);
        return;
    }
    direct = (r->kind == XBD_REQ_READ && direct_io(q, p, XBD_IO_READ)) ||
             (r->kind == XBD_REQ_WRITE && direct_io(q, p, XBD_IO_WRITE));
    if (!direct && alloc_buf(q, p) < 0) {
        xbd_log_limited(&q->rl, LOG_ERR, "%s: out of memory for a request buffer", q->name);
        respond(q, p, BLKIF_RSP_ERROR);
        return;
    }
    switch (r->kind) {
    case XBD_REQ_READ:
        STAT_ADD(q, req_read, 1);
        submit_io(q, p, XBD_IO_READ);
        break;
    case XBD_REQ_WRITE:
        STAT_ADD(q, req_write, 1);
        if (!direct && move_data(q, p, false) < 0) {
            respond(q, p, BLKIF_RSP_ERROR);
            break;
        }
        submit_io(q, p, XBD_IO_WRITE);
        break;
    case XBD_REQ_DISCARD:
        STAT_ADD(q, req_discard, 1);
        submit_io(q, p, r->secure ? XBD_IO_DISCARD_SECURE : XBD_IO_DISCARD);
        break;
    case XBD_REQ_FLUSH:
    case XBD_REQ_BARRIER:
        if (r->kind == XBD_REQ_FLUSH)
            STAT_ADD(q, req_flush, 1);
        else
            STAT_ADD(q, req_barrier, 1);
        /* Ordered after everything before it: wait for those first. */
        p->stage = ST_FENCED;
        q->fence = p;
        if (q->active == 0)
            start_fenced(q, p);
        break;
    }
}

/* An io finished (engine callback). */
static void
io_done(struct xbd_io *io, void *ctx)
{
    struct xbd_queue *q = ctx;
    struct pending *p = io->user;
    int16_t status = BLKIF_RSP_OKAY;

    if (io->result < 0) {
        STAT_ADD(q, err_io, 1);
        xbd_log_limited(&q->rl, LOG_ERR, "%s: backing I/O failed: %s", q->name,
                        strerror((int)-io->result));
        status = io->result == -EOPNOTSUPP ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
    } else if (p->req.kind == XBD_REQ_FLUSH || p->req.kind == XBD_REQ_BARRIER) {
        if (io->op == XBD_IO_WRITE)
            STAT_ADD(q, bytes_written, io->len);
        if (!last_step(p)) {
            p->step++;
            submit_io(q, p, step_op(p));
            return;
        }
    } else if (io->op == XBD_IO_READ) {
        STAT_ADD(q, bytes_read, io->len);
        if (p->iov == NULL && move_data(q, p, true) < 0)
            status = BLKIF_RSP_ERROR;
    } else if (io->op == XBD_IO_WRITE) {
        STAT_ADD(q, bytes_written, io->len);
    }
    finish(q, p, status);
}

/* ---- Consuming the ring ------------------------------------------------------------ */

/* Take up to `budget` requests.  Returns the number taken. */
static unsigned int
consume(struct xbd_queue *q, unsigned int budget)
{
    RING_IDX rp, rc;
    unsigned int n = 0;
    uint8_t slot[XBD_REQ_SLOT_MAX];

    if (q->failed)
        return 0;
    rp = __atomic_load_n(&q->ring.sring->req_prod, __ATOMIC_RELAXED);
    xen_rmb();      /* read req_prod before the requests it covers */
    if (RING_REQUEST_PROD_OVERFLOW(&q->ring, rp)) {
        char why[160];

        snprintf(why, sizeof(why), "request producer index %u is more than %u "
                 "ahead of the responses (%u)", rp, q->nr_ents, q->ring.rsp_prod_pvt);
        ring_fail(q, why);
        return 0;
    }
    if (rp - q->ring.req_cons > q->nr_ents) {
        char why[160];

        snprintf(why, sizeof(why), "request producer index %u moved back behind "
                 "requests already consumed (%u)", rp, q->ring.req_cons);
        ring_fail(q, why);
        return 0;
    }
    /* Every entry holds a request not yet answered: the frontend is
     * limited by the ring size (a hint to negotiate a bigger ring). */
    if (rp != q->last_req_prod && rp - q->ring.rsp_prod_pvt == q->nr_ents)
        STAT_ADD(q, ring_full, 1);
    q->last_req_prod = rp;
    q->lim.sectors = __atomic_load_n(&q->sectors, __ATOMIC_RELAXED);
    /* Until a completion frees what is missing, each of these stops us
     * with requests left (q->blocked: do not spin on them). */
    q->blocked = false;
    for (rc = q->ring.req_cons; rc != rp && n < budget; rc = q->ring.req_cons) {
        struct pending *p;

        q->blocked = q->fence != NULL || q->fence_holds ||      /* ordering */
                     q->buf_in_use + q->max_req_bytes > q->buf_budget ||
                     /* Never after the overflow check above; kept as the
                      * bound of the pending table. */
                     RING_REQUEST_CONS_OVERFLOW(&q->ring, rc) ||
                     q->free_list == NULL;
        if (q->blocked)
            break;
        p = q->free_list;
        q->free_list = p->next_free;
        xbd_req_copy(q->ring.sring, q->nr_ents, q->cfg.abi, rc, slot);
        /* Consumed before it is acted on: a response may follow at once. */
        q->ring.req_cons = rc + 1;
        n++;
        dispatch(q, p, slot);
    }
    return n;
}

/* ---- The thread --------------------------------------------------------------------- */

static bool
stop_requested(struct xbd_queue *q)
{
    return __atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE) != 0;
}

/* A hint to the CPU that we spin (lets a sibling hyperthread run). */
static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Adaptive polling: note `n` arrivals and decide whether to poll. */
static void
account_rate(struct xbd_queue *q, unsigned int n, uint64_t now)
{
    if (q->cfg.poll_idle_us == 0)
        return;
    if (now - q->rate_window_ns >= 100000000) {     /* windows of >= 100 ms */
        uint64_t rate = (uint64_t)q->rate_count * 1000000000 / (now - q->rate_window_ns);

        if (!q->polling && q->cfg.poll_start_rate > 0 && rate >= q->cfg.poll_start_rate &&
            now >= q->poll_resume_ns)
            q->polling = true;
        q->rate_window_ns = now;
        q->rate_count = 0;
    }
    q->rate_count += n;
}

/* Finish in-flight I/O at stop, answering it, within the timeout. */
static void
drain(struct xbd_queue *q)
{
    uint64_t deadline = now_ns() + (uint64_t)q->stop_timeout_ms * 1000000;

    while (xbd_ioq_in_flight(q->ioq) > 0) {
        uint64_t now = now_ns();

        if (now >= deadline) {
            xbd_log(LOG_WARNING, "%s: %u I/O still in flight after %u ms; abandoning it",
                    q->name, xbd_ioq_in_flight(q->ioq), q->stop_timeout_ms);
            q->abandoned = true;
            break;
        }
        (void)xbd_ioq_wait(q->ioq, (unsigned int)((deadline - now) / 1000000) + 1);
        /* A flush or barrier freed by a completion still runs: the guest
         * gets it done rather than failed. */
        xbd_ioq_reap(q->ioq, UINT32_MAX, io_done, q);
        (void)xbd_ioq_submit(q->ioq);
    }
    if (!q->abandoned && q->fence != NULL) {
        struct pending *p = q->fence;

        q->fence = NULL;
        respond(q, p, BLKIF_RSP_ERROR);
    }
    push_responses(q);
}

static void *
queue_thread(void *arg)
{
    struct xbd_queue *q = arg;
    unsigned int budget = q->cfg.batch_budget ? q->cfg.batch_budget : DEFAULT_BATCH_BUDGET;
    bool masked = false;

    q->last_work_ns = q->last_expiry_ns = q->rate_window_ns = q->round_ns = now_ns();
    while (!stop_requested(q)) {
        struct pollfd pfd[3];
        unsigned int done, taken;
        uint64_t now;
        int more = 0, timeout = -1, nfds = 0, r;
        bool storm, was_polling;

        /* Polling: a gap since the last round means we lost the CPU. */
        if (q->polling) {
            now = now_ns();
            if (now - q->round_ns > POLL_PREEMPT_NS)
                poll_pause(q, now, true);
        }
        was_polling = q->polling;
        done = xbd_ioq_reap(q->ioq, budget, io_done, q);
        taken = consume(q, budget);
        if (xbd_ioq_submit(q->ioq) > 0)
            STAT_ADD(q, batches, 1);
        push_responses(q);
        now = now_ns();
        q->round_ns = now;
        account_rate(q, taken, now);
        if (q->cfg.persistent && now - q->last_expiry_ns > q->pgc.check_ns) {
            pgc_expire(q, now);
            q->last_expiry_ns = now;
        }
        if (done > 0 || taken > 0) {
            /* A request soon after the previous work (at iodepth 1: the
             * next one after a response): polling would have caught it
             * without a notification and a wake-up, so poll from now on. */
            if (taken > 0 && !q->polling && q->cfg.poll_idle_us > 0 &&
                now - q->last_work_ns < (uint64_t)q->cfg.poll_idle_us * 1000 * POLL_QUICK_FACTOR &&
                now >= q->poll_resume_ns)
                q->polling = true;
            q->last_work_ns = now;
            q->spurious_run = 0;
            q->storm_pause_ms = STORM_PAUSE_MIN_MS;
            if (q->polling)
                STAT_ADD(q, poll_hits, 1);
            if (was_polling && taken > 0)   /* polling caught a request */
                q->poll_backoff_ns = POLL_BACKOFF_MIN_NS;
            continue;
        }
        if (q->polling) {
            /* Poll the ring instead of sleeping, until idle for long enough;
             * req_event is left behind so the frontend does not notify.
             * A round is memory only (the ring, the completion queue, the
             * stop flag): no system call. */
            if (now - q->last_work_ns < (uint64_t)q->cfg.poll_idle_us * 1000) {
                STAT_ADD(q, polls, 1);
                cpu_relax();
                continue;
            }
            poll_pause(q, now, false);
        }
        /* An event storm (many wakeups in a row with nothing to do): keep
         * the port masked and do not listen for a while, longer each time. */
        storm = q->spurious_run >= SPURIOUS_STORM;
        /* About to sleep: re-arm req_event, then look once more. */
        if (!q->failed && !q->blocked) {
            RING_FINAL_CHECK_FOR_REQUESTS(&q->ring, more);
            if (more)
                continue;
        }
        if (xbd_ioq_ready(q->ioq))
            continue;
        if (masked && !storm) {
            /* Unmask only now that the work is done. */
            xbd_evtchn_unmask(q->ev, (uint32_t)q->port);
            masked = false;
        }
        if (q->pgc.lru_head != NULL)
            timeout = (int)(q->pgc.check_ns / 1000000);     /* expire idle grants */
        pfd[nfds++] = (struct pollfd){ .fd = q->wake_fd, .events = POLLIN };
        pfd[nfds++] = (struct pollfd){ .fd = xbd_ioq_fd(q->ioq), .events = POLLIN };
        if (!storm)
            pfd[nfds++] = (struct pollfd){ .fd = xbd_evtchn_fd(q->ev), .events = POLLIN };
        else
            timeout = q->storm_pause_ms;
        r = poll(pfd, (nfds_t)nfds, timeout);
        q->round_ns = now_ns();
        if (r < 0 && errno != EINTR) {
            ring_fail(q, "poll failed");
            break;
        }
        if (storm) {
            STAT_ADD(q, storm_pauses, 1);
            /* Listen again (the next sleep unmasks); a storm that goes on
             * trips the threshold again and pauses longer. */
            q->spurious_run = 0;
            if (q->storm_pause_ms < STORM_PAUSE_MAX_MS)
                q->storm_pause_ms *= 2;
            continue;
        }
        if (!storm && (pfd[2].revents & POLLIN)) {
            int port = xbd_evtchn_pending(q->ev);

            if (port >= 0) {
                masked = true;
                STAT_ADD(q, notify_received, 1);
                /* Nothing waiting for us after an event: spurious. */
                if (!RING_HAS_UNCONSUMED_REQUESTS(&q->ring) &&
                    !(pfd[1].revents & POLLIN)) {
                    STAT_ADD(q, spurious_wakeups, 1);
                    q->spurious_run++;
                }
            }
        }
    }
    drain(q);
    return NULL;
}

/* ---- Start and stop ---------------------------------------------------------------- */

/* Queues whose I/O was abandoned at stop: the kernel may still write into
 * their buffers, so they are never freed.  Kept reachable here so that a
 * leak checker sees them as held on purpose. */
static pthread_mutex_t graveyard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xbd_queue **graveyard;
static size_t graveyard_len;

static void
bury(struct xbd_queue *q)
{
    struct xbd_queue **g;

    pthread_mutex_lock(&graveyard_lock);
    g = realloc(graveyard, (graveyard_len + 1) * sizeof(*g));
    if (g != NULL) {
        graveyard = g;
        graveyard[graveyard_len++] = q;
    }
    pthread_mutex_unlock(&graveyard_lock);
}

static void
queue_destroy(struct xbd_queue *q)
{
    unsigned int i;

    if (q->ioq != NULL) {
        if (q->abandoned) {
            /* The kernel may still write into buffers and the ring: keep
             * them (and the pending table pointing at them) allocated. */
            xbd_log(LOG_WARNING, "%s: leaking the I/O engine and %zu bytes of "
                    "buffers held by abandoned I/O", q->name, q->buf_in_use);
        } else {
            xbd_ioq_close(q->ioq);
        }
    }
    if (q->pending != NULL && !q->abandoned) {
        for (i = 0; i < q->nr_ents; i++)
            if (q->pending[i].stage != ST_FREE)
                pending_free(q, &q->pending[i]);
    }
    if (q->gt != NULL)
        pgc_destroy(q);
    if (q->ring_addr != NULL &&
        xbd_gnttab_unmap(q->gt, q->ring_addr, q->cfg.ring_pages) < 0)
        xbd_log(LOG_ERR, "%s: cannot unmap the ring: %s", q->name, xbd_platform_error());
    if (q->ev != NULL)
        xbd_evtchn_close(q->ev);    /* unbinds the port */
    if (q->gt != NULL)
        xbd_gnttab_close(q->gt);
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    free_buf_cache(q);              /* idle buffers: nobody writes them */
    if (q->abandoned) {
        bury(q);                    /* with its pending table and ioq */
        return;
    }
    free(q->pending);
    free(q->copy);
    free(q->map_refs);
    free(q->ind_pages);
    free(q->name);
    free(q);
}

#define START_FAIL(code, ...) do {                                      \
    snprintf(err, errlen, __VA_ARGS__);                                 \
    rc = (code);                                                        \
    goto fail;                                                          \
} while (0)

int
xbd_queue_start(const struct xbd_queue_cfg *cfg, struct xbd_queue **out,
                char *err, size_t errlen)
{
    struct xbd_queue *q;
    unsigned int i, copy_n;
    int rc;

    *out = NULL;
    if (cfg->ring_pages == 0 || cfg->ring_pages > XBD_MAX_RING_PAGES ||
        (cfg->ring_pages & (cfg->ring_pages - 1)) != 0) {
        snprintf(err, errlen, "ring of %u pages: must be a power of two up to %u",
                 cfg->ring_pages, XBD_MAX_RING_PAGES);
        return -EINVAL;
    }
    if (cfg->backing == NULL || cfg->platform == NULL ||
        (cfg->sector_size != 512 && cfg->sector_size != 4096) ||
        cfg->max_indirect > XBD_MAX_INDIRECT_SEGMENTS) {
        snprintf(err, errlen, "bad queue configuration (backing, platform, "
                 "sector size %u, indirect segments %u)", cfg->sector_size,
                 cfg->max_indirect);
        return -EINVAL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    q->cfg = *cfg;
    q->wake_fd = -1;
    q->port = -1;
    q->name = strdup(cfg->name != NULL ? cfg->name : "queue");
    if (q->name == NULL)
        START_FAIL(-ENOMEM, "out of memory");
    q->cfg.name = q->name;
    q->sectors = cfg->sectors;
    q->lim = (struct xbd_req_limits){
        .sectors = cfg->sectors, .sector_size = cfg->sector_size,
        .max_indirect = cfg->max_indirect, .read_only = cfg->read_only,
        .flush = cfg->flush, .discard = cfg->discard,
        .discard_secure = cfg->discard_secure,
    };
    q->storm_pause_ms = STORM_PAUSE_MIN_MS;
    q->rl.interval_ms = 5000;
    q->rl.burst = 10;

    /* Memory from what was negotiated: entries of this ring, segments as
     * advertised. */
    q->nr_ents = xbd_abi_ring_entries(cfg->abi, cfg->ring_pages);
    q->max_segs = cfg->max_indirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ?
                  cfg->max_indirect : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    q->max_req_bytes = (size_t)XBD_PAGE_SIZE << buf_class((size_t)q->max_segs * XBD_PAGE_SIZE);
    q->buf_budget = (size_t)q->nr_ents * q->max_req_bytes;
    if (q->buf_budget > BUF_BUDGET_MAX)
        q->buf_budget = BUF_BUDGET_MAX;
    if (q->buf_budget < q->max_req_bytes)
        q->buf_budget = q->max_req_bytes;
    copy_n = q->max_segs > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST ?
             q->max_segs : BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST;
    q->copy = calloc(copy_n, sizeof(*q->copy));
    if (cfg->grant_map && !cfg->persistent) {
        q->map_refs = calloc(q->max_segs, sizeof(*q->map_refs));
        if (q->map_refs == NULL)
            START_FAIL(-ENOMEM, "out of memory");
    }
    q->pending = calloc(q->nr_ents, sizeof(*q->pending));
    if (q->copy == NULL || q->pending == NULL)
        START_FAIL(-ENOMEM, "out of memory for %u ring entries", q->nr_ents);
    if (cfg->max_indirect > 0 &&
        posix_memalign((void **)&q->ind_pages, XBD_PAGE_SIZE,
                       (size_t)BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * XBD_PAGE_SIZE) != 0) {
        q->ind_pages = NULL;
        START_FAIL(-ENOMEM, "out of memory for indirect pages");
    }
    for (i = q->nr_ents; i-- > 0;) {
        q->pending[i].req.seg = q->pending[i].inline_seg;
        q->pending[i].next_free = q->free_list;
        q->free_list = &q->pending[i];
    }
    if (cfg->persistent) {
        q->pgc.max = cfg->persistent_max ? cfg->persistent_max : DEFAULT_PGRANT_MAX;
        q->pgc.idle_ns = (uint64_t)(cfg->persistent_idle_ms ? cfg->persistent_idle_ms :
                                    DEFAULT_PGRANT_IDLE_MS) * 1000000;
        q->pgc.check_ns = q->pgc.idle_ns / 2 < 1000000000 ? q->pgc.idle_ns / 2 : 1000000000;
        if (q->pgc.check_ns < 1000000)
            q->pgc.check_ns = 1000000;
        q->pgc.nbuckets = 64;
        while (q->pgc.nbuckets < q->pgc.max && q->pgc.nbuckets < (1u << 16))
            q->pgc.nbuckets *= 2;
        q->pgc.buckets = calloc(q->pgc.nbuckets, sizeof(*q->pgc.buckets));
        if (q->pgc.buckets == NULL)
            START_FAIL(-ENOMEM, "out of memory for the persistent grant cache");
    }

    q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->wake_fd < 0)
        START_FAIL(-errno, "eventfd: %s", strerror(errno));
    rc = xbd_gnttab_open(cfg->platform, &q->gt);
    if (rc < 0)
        START_FAIL(rc, "cannot open grant table: %s", xbd_platform_error());
    rc = xbd_gnttab_map(q->gt, cfg->fe_domid, cfg->ring_pages, cfg->ring_refs, 1,
                        &q->ring_addr);
    if (rc < 0) {
        q->ring_addr = NULL;
        START_FAIL(rc, "cannot map the %u ring page(s) of domain %u: %s",
                   cfg->ring_pages, cfg->fe_domid, xbd_platform_error());
    }
    {
        blkif_sring_t *s = q->ring_addr;
        /* Attach where the frontend's responses stand: a frontend that
         * reconnects without resetting its ring keeps its indices. */
        RING_IDX rsp = __atomic_load_n(&s->rsp_prod, __ATOMIC_RELAXED);

        q->ring.sring = s;
        q->ring.nr_ents = q->nr_ents;
        q->ring.rsp_prod_pvt = rsp;
        q->ring.req_cons = rsp;
    }
    rc = xbd_evtchn_open(cfg->platform, &q->ev);
    if (rc < 0)
        START_FAIL(rc, "cannot open event channels: %s", xbd_platform_error());
    rc = xbd_evtchn_bind_interdomain(q->ev, cfg->fe_domid, cfg->fe_port);
    if (rc < 0)
        START_FAIL(rc, "cannot bind event channel %u of domain %u: %s",
                   cfg->fe_port, cfg->fe_domid, xbd_platform_error());
    q->port = rc;
    rc = xbd_ioq_open(cfg->backing, cfg->uring_depth ? cfg->uring_depth : q->nr_ents,
                      &q->ioq, err, errlen);
    if (rc < 0)
        goto fail;
    rc = pthread_create(&q->thread, NULL, queue_thread, q);
    if (rc != 0)
        START_FAIL(-rc, "cannot start the queue thread: %s", strerror(rc));
    q->thread_started = true;
    char grants[48];

    if (cfg->persistent)
        snprintf(grants, sizeof(grants), "persistent (cache %u)", q->pgc.max);
    else
        snprintf(grants, sizeof(grants), "%s",
                 q->map_refs != NULL ? "mapped per request" : "copied");
    xbd_log(LOG_INFO, "%s: ring of %u page(s) (%u entries, %s), indirect %u, "
            "grants %s, port %d", q->name, cfg->ring_pages, q->nr_ents,
            cfg->abi == XBD_ABI_X86_32 ? "x86_32-abi" :
            cfg->abi == XBD_ABI_X86_64 ? "x86_64-abi" : "native",
            cfg->max_indirect, grants, q->port);
    *out = q;
    return 0;

fail:
    queue_destroy(q);
    return rc;
}

void
xbd_queue_stop(struct xbd_queue *q, unsigned int timeout_ms)
{
    uint64_t one = 1;

    if (q == NULL)
        return;
    q->stop_timeout_ms = timeout_ms;
    /* The timeout is visible to the thread before it sees stopping. */
    __atomic_store_n(&q->stopping, 1, __ATOMIC_RELEASE);
    (void)!write(q->wake_fd, &one, sizeof(one));
    if (q->thread_started)
        pthread_join(q->thread, NULL);
    queue_destroy(q);
}

void
xbd_queue_set_sectors(struct xbd_queue *q, uint64_t sectors)
{
    __atomic_store_n(&q->sectors, sectors, __ATOMIC_RELAXED);
}

void
xbd_queue_get_stats(struct xbd_queue *q, struct xbd_queue_stats *out)
{
    const uint64_t *src = (const uint64_t *)&q->stats;
    uint64_t *dst = (uint64_t *)out;
    size_t i;

    _Static_assert(sizeof(struct xbd_queue_stats) % sizeof(uint64_t) == 0,
                   "stats are all uint64_t");
    for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
