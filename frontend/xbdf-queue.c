/* libxbdfront internals — one queue: caller requests in, ring requests out.
 * See xbdf-queue.h for the design. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-internal.h"
#include "xbdf-queue.h"

#define SECTOR 512u

/* What remains to be issued of an io: [off, off + len) of its data (len 0
 * for flush and discard).  A new io has one (its
 * `first`, allocated with it); a reconnect turns every piece
 * that was on the
 * old ring back into one (the piece's work_spare).  Lifetime: until fully
 * issued. */
struct xbdf_work {
    struct xbdf_io *io;
    uint64_t off, len;
    struct xbdf_work *next;     /* on the pending list */
};

/* A caller's request.  Lifetime: from an accepted submit until its
 * callback has run. */
struct xbdf_io {
    enum xbdf_io_op op;
    unsigned int flags;
    char *buf;
    uint64_t offset, len;       /* bytes of data (0 for flush, discard) */
    uint64_t discard_len;       /* discard: the range, shrunk to granules */
    unsigned int works;         /* work items not yet fully issued */
    unsigned int inflight;      /* pieces on the ring */
    int err;                    /* first error seen */
    /* Given up on (xbdf_queue_abandon): cb is a no-op and buf is never
     * touched again. */
    bool abandoned;
    xbdfront_completion_fn cb;
    void *user_data;
    /* Zero-copy: the grant of the page holding buf, then of each page
     * after it (the caller's granted buffer), buf's offset in that page,
     * and the buffer's in-flight count, dropped before the callback. */
    const uint32_t *zc_refs;
    uint32_t zc_off;
    atomic_int *zc_busy;
    /* The queue whose caller submitted it, when another queue carries it
     * (fewer rings than queues after a reconnect): its callback runs
     * there.  NULL: the queue that holds it. */
    struct xbdf_queue *owner;
    struct xbdf_io *next;       /* on the done list */
    struct xbdf_work first;     /* its work item as submitted */
};

/* One ring request.  Lifetime: from issue until its response is consumed
 * (or the queue is torn down). */
struct xbdf_piece {
    struct xbdf_io *io;
    uint64_t io_off;            /* where its data starts in the io */
    char *ubuf;                 /* the caller's bytes this piece carries */
    uint32_t len;
    uint32_t idx;               /* its shadow entry */
    uint32_t ndata;             /* data pages: pages[0 .. ndata) */
    uint32_t npages;            /* data + indirect pages */
    struct xbdf_work *work_spare;   /* preallocated: detach cannot fail */
    struct xbdf_piece *next_free;   /* in the queue's piece cache */
    uint32_t pages[];           /* pool page indexes */
};

/* Pieces of up to this many pages are allocated with room for this many
 * and kept for reuse when they complete (a direct request: up to 11 data
 * pages, no indirect page). */
#define PIECE_CACHE_PAGES BLKIF_MAX_SEGMENTS_PER_REQUEST

/* ======================================================================
 * Lists and the pool
 * ====================================================================== */

static void
list_push(struct xbdf_io **head, struct xbdf_io **tail, struct xbdf_io *io)
{
    io->next = NULL;
    if (*tail != NULL)
        (*tail)->next = io;
    else
        *head = io;
    *tail = io;
}

static struct xbdf_io *
list_pop(struct xbdf_io **head, struct xbdf_io **tail)
{
    struct xbdf_io *io = *head;

    if (io != NULL) {
        *head = io->next;
        if (*head == NULL)
            *tail = NULL;
        io->next = NULL;
    }
    return io;
}

/* Indirect pages a piece of `ndata` data pages needs. */
static inline uint32_t
indirect_pages(uint32_t ndata)
{
    if (ndata <= BLKIF_MAX_SEGMENTS_PER_REQUEST)
        return 0;
    return (ndata + (uint32_t)XBD_SEGS_PER_INDIRECT_PAGE - 1) /
           (uint32_t)XBD_SEGS_PER_INDIRECT_PAGE;
}

/* Append w to the list head..tail. */
static void
work_append(struct xbdf_work **head, struct xbdf_work **tail,
            struct xbdf_work *w)
{
    w->next = NULL;
    if (*tail != NULL)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static void
work_push(struct xbdf_queue *q, struct xbdf_work *w)
{
    work_append(&q->pending_head, &q->pending_tail, w);
}

static struct xbdf_work *
work_pop(struct xbdf_queue *q)
{
    struct xbdf_work *w = q->pending_head;

    if (w != NULL) {
        q->pending_head = w->next;
        if (q->pending_head == NULL)
            q->pending_tail = NULL;
    }
    return w;
}

/* A work item fully issued or failed: the io's own is freed with the io. */
static void
work_free(struct xbdf_work *w)
{
    if (w != &w->io->first)
        free(w);
}

/* A piece for `npages` pool pages, with its work_spare: from the queue's
 * cache when it is small (at QD32 malloc'ing and freeing the piece and its
 * spare per request overflowed glibc's per-thread cache: a tenth of the
 * library's CPU time went to malloc and free). */
static struct xbdf_piece *
piece_alloc(struct xbdf_queue *q, uint32_t npages)
{
    struct xbdf_piece *p = q->piece_cache;

    if (npages <= PIECE_CACHE_PAGES && p != NULL) {
        q->piece_cache = p->next_free;
        q->piece_cached--;
    } else {
        p = malloc(sizeof(*p) + (npages <= PIECE_CACHE_PAGES ? PIECE_CACHE_PAGES : npages) *
                                sizeof(p->pages[0]));
        if (p != NULL && (p->work_spare = malloc(sizeof(struct xbdf_work))) == NULL) {
            free(p);
            p = NULL;
        }
        if (p == NULL)
            return NULL;
    }
    p->npages = npages;
    return p;
}

/* Give back a piece whose work_spare is still its own. */
static void
piece_free(struct xbdf_queue *q, struct xbdf_piece *p)
{
    if (p->npages <= PIECE_CACHE_PAGES && q->attached &&
        q->piece_cached < q->ring.shadow.size) {
        p->next_free = q->piece_cache;
        q->piece_cache = p;
        q->piece_cached++;
        return;
    }
    free(p->work_spare);
    free(p);
}

static void
piece_cache_drain(struct xbdf_queue *q)
{
    struct xbdf_piece *p;

    while ((p = q->piece_cache) != NULL) {
        q->piece_cache = p->next_free;
        free(p->work_spare);
        free(p);
    }
    q->piece_cached = 0;
}

/* An io is finished when nothing of it is on the ring or left to issue;
 * then its callback is due on its owner's queue. */
static void
io_maybe_done(struct xbdf_queue *q, struct xbdf_io *io)
{
    if (io->inflight != 0 || io->works != 0)
        return;
    if (io->owner != NULL && io->owner != q && q->deliver != NULL)
        q->deliver(q->deliver_arg, io->owner, io);
    else
        list_push(&q->done_head, &q->done_tail, io);
}

static inline char *
pool_page(struct xbdf_queue *q, uint32_t i)
{
    uint32_t mask = (1u << q->pool.chunk_shift) - 1;

    return q->pool.chunks[i >> q->pool.chunk_shift] +
           (size_t)(i & mask) * XBD_PAGE_SIZE;
}

static void kick(struct xbdf_queue *q);

/* ======================================================================
 * Set-up and teardown
 * ====================================================================== */

int
xbdf_queue_attach(struct xbdf_queue *q, void *sring, unsigned int pages,
                  const struct xbdf_pool *pool)
{
    uint32_t pool_pages = pool->pages;
    int err;

    if (q->attached)
        return xbdf_set_error(-EBUSY, "queue already attached to a ring");
    /* Room for the largest sector (64 KiB) and a direct request. */
    if (pool_pages < XBDF_MIN_POOL_PAGES || pool->chunk_shift > 31)
        return xbdf_set_error(-EINVAL, "a queue needs at least %u pool pages, "
                              "got %" PRIu32, XBDF_MIN_POOL_PAGES, pool_pages);
    err = xbdf_ring_init(&q->ring, sring, pages, q->notify, q->notify_arg);
    if (err < 0)
        return xbdf_set_error(err, "cannot set up a ring of %u pages", pages);
    q->pool = *pool;
    q->pool_pages = pool_pages;
    q->pool_free = malloc(pool_pages * sizeof(*q->pool_free));
    q->piece = calloc(q->ring.shadow.size, sizeof(*q->piece));
    if (q->pool_free == NULL || q->piece == NULL) {
        free(q->pool_free);
        free(q->piece);
        q->pool_free = NULL;
        q->piece = NULL;
        xbdf_ring_fini(&q->ring);
        return xbdf_set_error(-ENOMEM, "out of memory for a queue");
    }
    for (uint32_t i = 0; i < pool_pages; i++)
        q->pool_free[i] = pool_pages - 1 - i;
    q->pool_nfree = pool_pages;
    q->attached = true;
    if (q->max_pending == 0)
        q->max_pending = 4 * q->ring.shadow.size;
    /* Whatever waited for a ring goes now: after a reconnect, the pieces
     * the old ring lost, first. */
    kick(q);
    return 0;
}

void
xbdf_queue_detach(struct xbdf_queue *q)
{
    struct xbdf_work *head = NULL, *tail = NULL;

    if (!q->attached)
        return;
    /* Every piece still on the ring becomes a work item again, in ring
     * slot order, ahead of what was already waiting.  Its data is re-read
     * from the caller's buffer (a write) or re-fetched (a read) through
     * the next pool; the request is rebuilt under the new limits. */
    for (uint32_t i = 0; i < q->ring.shadow.size; i++) {
        struct xbdf_piece *p = q->piece[i];
        struct xbdf_work *w;

        if (p == NULL)
            continue;
        if (p->io->abandoned) {
            /* Nobody waits for it: gone with the ring. */
            p->io->inflight--;
            io_maybe_done(q, p->io);
            piece_free(q, p);
            continue;
        }
        w = p->work_spare;
        w->io = p->io;
        w->off = p->io_off;
        w->len = p->io->op == XBDF_IO_READ || p->io->op == XBDF_IO_WRITE
                 ? p->len : 0;
        work_append(&head, &tail, w);
        p->io->inflight--;
        p->io->works++;
        q->stats.reissued++;
        free(p);
    }
    if (head != NULL) {
        tail->next = q->pending_head;
        if (q->pending_head == NULL)
            q->pending_tail = tail;
        q->pending_head = head;
    }
    free(q->pool_free);
    free(q->piece);
    q->pool_free = NULL;
    q->piece = NULL;
    memset(&q->pool, 0, sizeof(q->pool));
    q->pool_pages = q->pool_nfree = 0;
    xbdf_ring_fini(&q->ring);
    q->attached = false;
}

int
xbdf_queue_init(struct xbdf_queue *q, void *sring, unsigned int pages,
                const struct xbdf_geom *geom, uint16_t handle,
                const struct xbdf_pool *pool, xbdf_notify_fn notify,
                void *notify_arg, unsigned int max_pending)
{
    memset(q, 0, sizeof(*q));
    q->geom = geom;
    q->handle = handle;
    q->notify = notify;
    q->notify_arg = notify_arg;
    q->max_pending = max_pending;
    return xbdf_queue_attach(q, sring, pages, pool);
}

static void
run_callback(struct xbdf_queue *q, struct xbdf_io *io)
{
    q->nios--;
    q->stats.completed++;
    if (io->zc_busy != NULL)
        atomic_fetch_sub(io->zc_busy, 1);
    if (io->err != 0)
        q->stats.errors++;
    io->cb(io->user_data, io->err);
    free(io);
}

/* Fail everything outstanding: pieces on the ring lose their io (their
 * pages stay with the pool owner), pending ios complete with err. */
static void
fail_all(struct xbdf_queue *q, int err)
{
    struct xbdf_io *io;
    struct xbdf_work *w;

    for (uint32_t i = 0; q->attached && i < q->ring.shadow.size; i++) {
        struct xbdf_piece *p = q->piece[i];

        if (p == NULL)
            continue;
        if (p->io->err == 0)
            p->io->err = err;
        p->io->inflight--;
        io_maybe_done(q, p->io);
        piece_free(q, p);
        q->piece[i] = NULL;
    }
    while ((w = work_pop(q)) != NULL) {
        io = w->io;
        work_free(w);
        if (io->err == 0)
            io->err = err;
        io->works--;
        io_maybe_done(q, io);
    }
}

void
xbdf_queue_fail(struct xbdf_queue *q, int err, const char *why)
{
    q->failed = true;
    snprintf(q->failed_why, sizeof(q->failed_why), "%s", why);
    fail_all(q, err);
}

void
xbdf_queue_fini(struct xbdf_queue *q, int err)
{
    struct xbdf_io *io;

    fail_all(q, err);
    while ((io = list_pop(&q->done_head, &q->done_tail)) != NULL)
        run_callback(q, io);
    piece_cache_drain(q);
    if (q->attached) {
        free(q->pool_free);
        free(q->piece);
        xbdf_ring_fini(&q->ring);
    }
    memset(q, 0, sizeof(*q));
}

/* ======================================================================
 * Issuing
 * ====================================================================== */

/* Issue the next piece of work item w and advance it.  1: issued, 0: no
 * room (ring or pool), w stays pending. */
static int
issue_piece(struct xbdf_queue *q, struct xbdf_work *w)
{
    struct xbdf_io *io = w->io;
    const struct xbdf_geom *g = q->geom;
    struct xbdf_shadow_entry *e;
    struct xbdf_piece *p;
    uint64_t id, len = 0;
    uint32_t ndata = 0, nind = 0;   /* pool pages: data, indirect */
    uint32_t zc_first = 0, page_off = 0;
    bool zc = io->zc_refs != NULL;
    uint8_t op;
    char why[200];
    int idx, r;

    if (xbdf_ring_free(&q->ring) == 0) {
        q->stats.ring_full++;
        return 0;
    }
    switch (io->op) {
    case XBDF_IO_READ:
    case XBDF_IO_WRITE:
        op = io->op == XBDF_IO_READ ? BLKIF_OP_READ
             : (io->flags & XBDFRONT_WRITE_BARRIER) ? BLKIF_OP_WRITE_BARRIER
                                                    : BLKIF_OP_WRITE;
        if (zc) {
            /* The caller's granted pages carry the data: the pool only
             * gives indirect pages. */
            uint64_t abs = (uint64_t)io->zc_off + w->off;

            zc_first = (uint32_t)(abs / XBD_PAGE_SIZE);
            page_off = (uint32_t)(abs % XBD_PAGE_SIZE);
            len = xbdf_split_len(g, op, page_off, w->len);
            nind = indirect_pages(xbdf_pages_spanned(page_off, len));
            if (nind > q->pool_nfree) {
                q->stats.ring_full++;
                return 0;
            }
            break;
        }
        /* Bounced data starts at offset 0 of its first page. */
        len = xbdf_split_len(g, op, 0, w->len);
        ndata = xbdf_pages_spanned(0, len);
        nind = indirect_pages(ndata);
        if (ndata + nind > q->pool_nfree) {
            /* Not enough pool pages for a full piece: take what fits, in
             * whole sectors, unless other pieces are in flight and it is
             * less than a direct request's worth (then wait for them). */
            uint32_t a = q->pool_nfree, data = a;

            while (data > 0 && data + indirect_pages(data) > a)
                data--;
            len = (uint64_t)data * XBD_PAGE_SIZE;
            len -= len % g->sector_size;
            if (len == 0 || (q->ring.shadow.in_use > 0 &&
                             data < BLKIF_MAX_SEGMENTS_PER_REQUEST)) {
                q->stats.ring_full++;
                return 0;
            }
            ndata = xbdf_pages_spanned(0, len);
            nind = indirect_pages(ndata);
        }
        break;
    case XBDF_IO_FLUSH:
        op = (uint8_t)xbdf_flush_op(g);
        break;
    case XBDF_IO_DISCARD:
    default:
        op = BLKIF_OP_DISCARD;
        break;
    }

    p = piece_alloc(q, ndata + nind);
    if (p == NULL)
        return 0;       /* retried when something completes */
    /* The tag leads the response back to this piece; it comes from our
     * private shadow, never from the ring. */
    idx = xbdf_shadow_get(&q->ring.shadow, (uint64_t)(uintptr_t)p, &id);
    if (idx < 0) {
        piece_free(q, p);
        return 0;
    }
    e = &q->ring.shadow.ent[idx];
    p->io = io;
    p->idx = (uint32_t)idx;
    p->io_off = w->off;
    p->ubuf = io->buf != NULL ? io->buf + w->off : NULL;
    p->len = (uint32_t)len;
    p->ndata = ndata;
    p->npages = ndata + nind;
    for (uint32_t i = 0; i < p->npages; i++)
        p->pages[i] = q->pool_free[--q->pool_nfree];

    if (io->op == XBDF_IO_READ || io->op == XBDF_IO_WRITE) {
        uint32_t grefs_small[BLKIF_MAX_SEGMENTS_PER_REQUEST];
        uint32_t igrefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
        struct blkif_request_segment *ipages[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
        uint32_t *grefs = ndata <= BLKIF_MAX_SEGMENTS_PER_REQUEST
                          ? grefs_small : malloc(ndata * sizeof(*grefs));
        const uint32_t *data_refs = zc ? io->zc_refs + zc_first : grefs;
        struct xbdf_rw_desc d;

        if (grefs == NULL) {
            for (uint32_t i = p->npages; i-- > 0;)
                q->pool_free[q->pool_nfree++] = p->pages[i];
            xbdf_shadow_put(&q->ring.shadow, (uint32_t)idx);
            piece_free(q, p);
            return 0;
        }
        for (uint32_t i = 0; i < ndata; i++) {
            char *page = pool_page(q, p->pages[i]);
            uint64_t off = (uint64_t)i * XBD_PAGE_SIZE;
            uint64_t n = len - off < XBD_PAGE_SIZE ? len - off : XBD_PAGE_SIZE;

            grefs[i] = q->pool.refs[p->pages[i]];
            if (io->op == XBDF_IO_WRITE) {
                memcpy(page, p->ubuf + off, n);
                q->stats.bounced_bytes += n;
            }
        }
        for (uint32_t i = 0; i < nind; i++) {
            igrefs[i] = q->pool.refs[p->pages[ndata + i]];
            ipages[i] = (struct blkif_request_segment *)(void *)
                        pool_page(q, p->pages[ndata + i]);
        }
        memset(&d, 0, sizeof(d));
        d.op = op;
        d.handle = q->handle;
        d.id = id;
        d.offset = io->offset + w->off;
        d.page_off = page_off;
        d.len = (uint32_t)len;
        d.grefs = data_refs;
        if (nind > 0) {
            d.ind_pages = ipages;
            d.ind_grefs = igrefs;
        }
        r = xbdf_build_rw(&e->req, &d, why, sizeof(why));
        if (grefs != grefs_small)
            free(grefs);
    } else if (io->op == XBDF_IO_FLUSH) {
        r = xbdf_build_flush(&e->req, op, q->handle, id);
    } else {
        r = xbdf_build_discard(&e->req, q->handle, id, io->offset,
                               io->discard_len,
                               (io->flags & XBDFRONT_DISCARD_SECURE) != 0);
    }
    if (r < 0)          /* checked at submit: a bug if it happens */
        abort();

    q->piece[idx] = p;
    io->inflight++;
    w->off += len;
    w->len -= len;
    xbdf_ring_queue(&q->ring, (uint32_t)idx);
    return 1;
}

/* Issue pending ios in order while there is room, then push once. */
static void
kick(struct xbdf_queue *q)
{
    bool queued = false;
    uint64_t before = q->ring.ring_requests;

    while (q->pending_head != NULL && !q->ring.broken && q->attached &&
           !q->failed) {
        struct xbdf_work *w = q->pending_head;
        struct xbdf_io *io = w->io;

        /* After an error, issue no more of that io. */
        if (io->err == 0) {
            if (!issue_piece(q, w))
                break;
            queued = true;
            if (w->len > 0)
                continue;
        }
        work_pop(q);
        work_free(w);
        io->works--;
        io_maybe_done(q, io);
    }
    if (queued) {
        int r = xbdf_ring_push(&q->ring);

        /* Cumulative: the ring's own counter restarts on a reconnect. */
        q->stats.ring_requests += q->ring.ring_requests - before;
        if (r > 0)
            q->stats.notify_sent++;
    }
}

int
xbdf_queue_submit(struct xbdf_queue *q, enum xbdf_io_op op, void *buf,
                  uint64_t len, uint64_t offset, unsigned int flags,
                  xbdfront_completion_fn cb, void *user_data)
{
    return xbdf_queue_submit_zc(q, op, buf, len, offset, flags, NULL, NULL,
                                cb, user_data);
}

int
xbdf_queue_submit_zc(struct xbdf_queue *q, enum xbdf_io_op op, void *buf,
                     uint64_t len, uint64_t offset, unsigned int flags,
                     const uint32_t *zc_refs, atomic_int *zc_busy,
                     xbdfront_completion_fn cb, void *user_data)
{
    return xbdf_queue_submit_as(q, q, op, buf, len, offset, flags, zc_refs,
                                zc_busy, cb, user_data, NULL);
}

int
xbdf_queue_submit_as(struct xbdf_queue *q, struct xbdf_queue *owner,
                     enum xbdf_io_op op, void *buf, uint64_t len,
                     uint64_t offset, unsigned int flags,
                     const uint32_t *zc_refs, atomic_int *zc_busy,
                     xbdfront_completion_fn cb, void *user_data,
                     struct xbdf_io **io_out)
{
    const struct xbdf_geom *g = q->geom;
    struct xbdf_io *io;
    struct xbdf_work *w;
    char why[200];
    int r = 0;
    bool now = false;           /* completes without touching the ring */

    if (cb == NULL)
        return xbdf_set_error(-EINVAL, "a completion callback is required");
    if (q->attached && q->ring.broken)
        return xbdf_set_error(-ENODEV, "the device is broken: %s",
                              xbdf_ring_broken(&q->ring));
    if (q->failed)
        return xbdf_set_error(-ENODEV, "%s", q->failed_why);
    if (owner->nios >= owner->max_pending)
        return xbdf_set_error(-EAGAIN, "%u requests pending on this queue: "
                              "process completions first", owner->nios);
    switch (op) {
    case XBDF_IO_READ:
    case XBDF_IO_WRITE:
        if (flags & ~XBDFRONT_WRITE_BARRIER ||
            (op == XBDF_IO_READ && flags != 0))
            return xbdf_set_error(-EINVAL, "unknown flags %#x", flags);
        if (buf == NULL)
            return xbdf_set_error(-EINVAL, "no buffer");
        if ((flags & XBDFRONT_WRITE_BARRIER) && !g->barrier)
            return xbdf_set_error(-EOPNOTSUPP, "the backend does not offer "
                                  "write barriers");
        r = xbdf_check_rw(g, op == XBDF_IO_WRITE, offset, len, why,
                          sizeof(why));
        if (r == 0 &&
            xbdf_split_len(g, op == XBDF_IO_READ ? BLKIF_OP_READ
                              : (flags & XBDFRONT_WRITE_BARRIER)
                                    ? BLKIF_OP_WRITE_BARRIER : BLKIF_OP_WRITE,
                           0, g->sector_size) < g->sector_size)
            return xbdf_set_error(-EINVAL, "sector size %" PRIu32 " is larger "
                                  "than one ring request can carry",
                                  g->sector_size);
        break;
    case XBDF_IO_FLUSH:
        if (flags != 0)
            return xbdf_set_error(-EINVAL, "unknown flags %#x", flags);
        /* No flush or barrier offered: no volatile cache, nothing to do. */
        now = xbdf_flush_op(g) < 0;
        len = 0;
        break;
    case XBDF_IO_DISCARD:
        if (flags & ~XBDFRONT_DISCARD_SECURE)
            return xbdf_set_error(-EINVAL, "unknown flags %#x", flags);
        r = xbdf_discard_range(g, (flags & XBDFRONT_DISCARD_SECURE) != 0,
                               offset, len, &offset, &len, why, sizeof(why));
        now = r == 0 && len == 0;
        break;
    default:
        return xbdf_set_error(-EINVAL, "unknown operation %d", (int)op);
    }
    if (r < 0)
        return xbdf_set_error(r, "%s", why);

    io = calloc(1, sizeof(*io));
    if (io == NULL)
        return xbdf_set_error(-ENOMEM, "out of memory for a request");
    w = now ? NULL : &io->first;
    io->op = op;
    io->flags = flags;
    io->buf = buf;
    io->offset = offset;
    io->len = (op == XBDF_IO_READ || op == XBDF_IO_WRITE) ? len : 0;
    io->discard_len = op == XBDF_IO_DISCARD ? len : 0;
    io->cb = cb;
    io->user_data = user_data;
    if (zc_refs != NULL && (op == XBDF_IO_READ || op == XBDF_IO_WRITE)) {
        io->zc_refs = zc_refs;
        io->zc_off = (uint32_t)((uintptr_t)buf % XBD_PAGE_SIZE);
        io->zc_busy = zc_busy;
        if (zc_busy != NULL)
            atomic_fetch_add(zc_busy, 1);
    }
    io->owner = owner != q ? owner : NULL;
    owner->nios++;
    owner->stats.submitted++;
    if (io_out != NULL)
        *io_out = io;
    if (now) {
        io_maybe_done(q, io);
        return 0;
    }
    w->io = io;
    w->off = 0;
    w->len = io->len;
    io->works = 1;
    work_push(q, w);
    kick(q);
    return 0;
}

/* ======================================================================
 * Completing
 * ====================================================================== */

static void
piece_done(void *arg, uint64_t tag, uint8_t op, int err)
{
    struct xbdf_queue *q = arg;
    struct xbdf_piece *p = (struct xbdf_piece *)(uintptr_t)tag;
    struct xbdf_io *io = p->io;

    (void)op;
    q->piece[p->idx] = NULL;
    /* An abandoned io's caller gave up on it and may have freed its
     * buffer: its data is dropped with the pages. */
    if (io->abandoned)
        q->stats.late_responses++;
    else if (err == 0 && io->op == XBDF_IO_READ) {
        for (uint32_t i = 0; i < p->ndata; i++) {
            uint64_t off = (uint64_t)i * XBD_PAGE_SIZE;
            uint64_t n = p->len - off < XBD_PAGE_SIZE ? p->len - off
                                                      : XBD_PAGE_SIZE;

            memcpy(p->ubuf + off, pool_page(q, p->pages[i]), n);
            q->stats.bounced_bytes += n;
        }
    }
    /* The backend answered, so it is done with these pages: back to the
     * pool (their grants stay; the pool is granted for the queue's life). */
    for (uint32_t i = p->npages; i-- > 0;)
        q->pool_free[q->pool_nfree++] = p->pages[i];
    piece_free(q, p);

    if (err != 0 && io->err == 0)
        io->err = err;          /* kick() issues no more of it */
    io->inflight--;
    io_maybe_done(q, io);
}

int
xbdf_queue_collect(struct xbdf_queue *q, bool arm)
{
    int r = 0;

    /* Responses first (their pieces free ring slots and pool pages), then
     * whatever waited for them. */
    if (q->attached && !q->ring.broken &&
        (arm ? xbdf_ring_collect(&q->ring, 0, piece_done, q)
             : xbdf_ring_poll(&q->ring, 0, piece_done, q)) < 0)
        r = xbdf_set_error(-ENODEV, "the device is broken: %s",
                           xbdf_ring_broken(&q->ring));
    if (q->attached && q->ring.broken)
        fail_all(q, -ENODEV);
    else
        kick(q);
    return r;
}

int
xbdf_queue_io_err(const struct xbdf_io *io)
{
    return io->err;
}

struct xbdf_io *
xbdf_queue_pop_done(struct xbdf_queue *q)
{
    return list_pop(&q->done_head, &q->done_tail);
}

void
xbdf_queue_inbox_push(struct xbdf_queue *q, struct xbdf_io *io)
{
    list_push(&q->inbox_head, &q->inbox_tail, io);
}

struct xbdf_io *
xbdf_queue_inbox_pop(struct xbdf_queue *q)
{
    return list_pop(&q->inbox_head, &q->inbox_tail);
}

void
xbdf_queue_run_io(struct xbdf_queue *owner, struct xbdf_io *io)
{
    run_callback(owner, io);
}

void
xbdf_queue_move_pending(struct xbdf_queue *from, struct xbdf_queue *to)
{
    struct xbdf_work *w;

    while ((w = work_pop(from)) != NULL) {
        if (w->io->owner == NULL)
            w->io->owner = from;
        if (w->io->owner == to)
            w->io->owner = NULL;
        work_push(to, w);
    }
    kick(to);
}

void
xbdf_queue_give_back(struct xbdf_queue *q)
{
    struct xbdf_work *w, *keep_head = NULL, *keep_tail = NULL;

    while ((w = work_pop(q)) != NULL) {
        struct xbdf_queue *owner = w->io->owner;

        if (owner == NULL || owner == q) {
            work_append(&keep_head, &keep_tail, w);
            continue;
        }
        /* Every piece of a foreign io is pending here (the ring is gone):
         * the io goes back whole.  Its owner field stays: an owner equal
         * to the queue holding the io means the same as none. */
        work_push(owner, w);
    }
    q->pending_head = keep_head;
    q->pending_tail = keep_tail;
}

/* The callback of an abandoned io: its caller is gone. */
static void
abandoned_done(void *user_data, int err)
{
    (void)user_data;
    (void)err;
}

void
xbdf_queue_drop_abandoned(struct xbdf_queue *q)
{
    struct xbdf_work *w, *keep_head = NULL, *keep_tail = NULL;

    while ((w = work_pop(q)) != NULL) {
        struct xbdf_io *io = w->io;

        if (!io->abandoned) {
            work_append(&keep_head, &keep_tail, w);
            continue;
        }
        work_free(w);
        io->works--;
        io_maybe_done(q, io);
    }
    q->pending_head = keep_head;
    q->pending_tail = keep_tail;
}

void
xbdf_queue_abandon(struct xbdf_queue *owner, struct xbdf_io *io, int err)
{
    if (io->abandoned)
        return;
    io->abandoned = true;
    /* An error stops kick() issuing any more of it: what is left is
     * dropped (xbdf_queue_drop_abandoned, or kick() itself), never copied
     * from the caller's buffer.  The pieces on the ring are left alone:
     * their responses (or a reconnect, xbdf_queue_detach) free their
     * shadow entries and pool pages. */
    if (io->err == 0)
        io->err = err;
    io->cb = abandoned_done;
    io->user_data = NULL;
    io->buf = NULL;
    owner->stats.abandoned++;
}

void
xbdf_queue_cancel(struct xbdf_queue *q, int err)
{
    fail_all(q, err);
}

static int
process(struct xbdf_queue *q, unsigned int budget, bool arm)
{
    unsigned int ran = 0;

    xbdf_queue_collect(q, arm);
    while ((budget == 0 || ran < budget) && q->done_head != NULL) {
        run_callback(q, list_pop(&q->done_head, &q->done_tail));
        ran++;
    }
    return (int)ran;
}

int
xbdf_queue_process(struct xbdf_queue *q, unsigned int budget)
{
    return process(q, budget, true);
}

int
xbdf_queue_poll(struct xbdf_queue *q, unsigned int budget)
{
    return process(q, budget, false);
}
