/* libxbdfront — handles: options, connecting over xenstore, the control
 * thread (recovery and resize), and the public I/O calls on top of the
 * queues.
 *
 * Layering: this file does xenstore, the platform and threads; every
 * decision is in the pure, unit-tested modules (xbdf-negotiate.c chooses
 * and names the nodes and drives the state table, xbdf-req.c parses the
 * backend's nodes, xbdf-queue.c carries the requests and turns what was on
 * a lost ring back into pending work).
 *
 * Objects and who owns what:
 *
 *   struct xbdfront (the handle)
 *     ├─ control thread: the only user of the xenstore handle once
 *     │  connected; it shares new connections and releases retired ones
 *     │  and freed buffers the backend still mapped.
 *     ├─ bufs    zero-copy buffers (xbdfront_buffer_alloc), each granted
 *     │          for its life, with an in-flight count; bufs_lock
 *     └─ hq[nq]  one per queue, driven by the caller's queue thread;
 *                its lock is uncontended but during a reconnect (the
 *                control thread) and while another queue's requests ride
 *                on its ring:
 *          q      the queue engine (xbdf-queue.c)
 *          geom   the queue's copy of the device geometry
 *          cur    the connection q is attached to: ring + pool pages,
 *                 event channel
 *          carrier  the queue itself, or (when the backend came back with
 *                 fewer rings than we have queues) queue i % rings, whose
 *                 ring carries this queue's requests; finished ones come
 *                 back through q's inbox and run on this queue's thread
 *          epfd   what xbdfront_queue_fd() returns: an epoll set of cur's
 *                 (or the carrier's) event-channel fd and `wake`; it
 *                 stays the same fd across reconnects
 *
 * Connecting: a backend found Connected or Closing serves an earlier
 * frontend of the device that died without closing; it is sent Closed
 * first, and from Initialising only InitWait starts a negotiation.
 *
 * Recovery (Linux blkfront's blkif_recover idea), level-triggered on the
 * control thread, with the state table of xbdf-negotiate.h:
 *   Connected, backend not Connected  -> every queue is detached (what
 *       was on its ring becomes pending again, requests carried for
 *       another queue go back to it); we go Closed (recovering), so the
 *       backend mirrors Closed and forgets the old rings
 *   Closed (recovering), backend Closed / InitWait / Initialising / Unknown
 *                                     -> Initialising
 *   Initialising, backend InitWait    -> negotiate anew (ring size, indirect
 *       limit and the number of rings may differ, up to our queues), share
 *       new rings
 *   Initialised, backend Connected    -> read the properties, attach
 *       queue i to ring i (re-issuing what waits), or when there are fewer
 *       rings, move its requests to queue i % rings; Connected
 * A backend that leaves with online=0 is being detached by the toolstack:
 * no recovery, every queue fails.
 * The control thread does all of that under the queues' locks; callers see
 * a delay, never an error.  The old connection is unshared; pages the old
 * backend still maps are retried later and never reused (XSA-396).
 *
 * Locks: a queue's lock, then its carrier's (a lower index), then the
 * leaf locks below; the control thread (and a synchronous call giving up
 * on its request, holding no lock before) takes every queue's lock,
 * highest index first.  Leaf locks, never nested: h->lock (retired lists, what
 * the getters read), inbox_lock, gs_lock (the one grant-sharing handle,
 * used by the control thread and buffer_alloc/free), bufs_lock (taken for
 * reading by the I/O calls only while buffers exist).  None is held
 * across xenstore calls or callbacks.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbdf-internal.h"
#include "xbdf-negotiate.h"
#include "xbdf-queue.h"
#include "xbdfront.h"

/* One connection of one queue: what is granted to one backend instance.
 * Lifetime: shared by the control thread, used by a queue's owner while
 * attached, released by the control thread once retired. */
struct xbdf_conn {
    struct xbd_evtchn *ev;          /* one handle per queue: one thread */
    int port;                       /* local port, -1 when none */
    void *ring;                     /* shared ring pages */
    unsigned int ring_pages;
    uint32_t ring_refs[1u << XBD_RING_ORDER_LIMIT];
    /* The granted page pool, in chunks of XBDF_POOL_CHUNK_PAGES pages
     * (one share each; the last may be shorter); a chunk is NULL once
     * unshared.  pool is the queue's view of it. */
    char **pool_chunks;
    uint32_t pool_nchunks;
    uint32_t *pool_refs;
    uint32_t pool_pages;
    struct xbdf_pool pool;
    struct xbdf_conn *next;         /* on h->retired */
};

struct xbdf_hqueue {
    struct xbdf_queue q;            /* first: xbdf_queue -> hqueue */
    pthread_mutex_t lock;           /* q, geom, cur, carrier, watch_fd */
    struct xbdf_geom geom;          /* q.geom points here */
    struct xbdf_conn *cur;          /* NULL while detached or carried */
    /* This queue, or the one whose ring carries its requests (after a
     * reconnect to a backend offering fewer rings than we have queues). */
    struct xbdf_hqueue *carrier;
    int watch_fd;                   /* carrier's channel in epfd, or -1 */
    int epfd, wakefd;
    atomic_bool woken;              /* a write to wakefd is pending */
    bool initialised;               /* q was set up (xbdf_queue_init) */
    /* Our requests finished on a carrier's ring, waiting for our thread
     * to run their callbacks (q's inbox); a leaf lock. */
    pthread_mutex_t inbox_lock;
    atomic_bool inbox_used;         /* set once something was delivered */
};

struct xbdfront {
    /* Options (before connect). */
    struct xbdf_opts opts;
    unsigned int poll_us, max_pending, connect_timeout_ms, pool_pages;
    /* The limit of each synchronous call (0: none); read once at the
     * start of each call, on any queue's thread. */
    atomic_uint sync_timeout_ms;
    xbdfront_resize_fn resize_fn;
    void *resize_data;
    xbdfront_log_fn log_fn;         /* NULL: quiet */
    void *log_data;

    /* Connection. */
    struct xbd_platform *plat;
    struct xbd_gntshr *gs;
    struct xs_handle *xs;
    uint32_t vdev, be_domid;
    char fe_dir[64];
    char *be_dir;
    int state;                      /* our XenbusState */
    bool recovering;                /* Closed on the way back, not closing */
    struct xbdf_be_limits limits;
    struct xbdf_choice choice;
    uint32_t pool_used;             /* smallest queue pool (h->lock) */
    struct xbdf_geom geom;          /* latest, for the getters (h->lock) */
    uint32_t info;
    struct xbdf_hqueue *hq;
    unsigned int nq;
    struct xbdf_conn **conns;       /* being negotiated: one per queue */
    bool connected;

    /* The control thread. */
    pthread_t ctl;
    bool ctl_running;
    int stopfd;
    pthread_mutex_t lock;
    struct xbdf_conn *retired;      /* handed back by queue owners */
    unsigned int reconnects;

    /* Grant sharing is one handle, used by the control thread and by
     * xbdfront_buffer_alloc/free on callers' threads. */
    pthread_mutex_t gs_lock;
    /* Zero-copy buffers (xbdfront_buffer_alloc): looked up by the I/O
     * calls under the read lock, only while nbufs > 0. */
    pthread_rwlock_t bufs_lock;
    struct xbdf_buf *bufs;
    atomic_int nbufs;
    struct xbdf_buf *dead_bufs;     /* freed, still mapped (h->lock) */
};

/* A buffer from xbdfront_buffer_alloc(): pages granted to the backend's
 * domain for the buffer's life. */
struct xbdf_buf {
    char *addr;
    size_t len;                     /* whole pages */
    uint32_t *refs;                 /* one grant per page */
    atomic_int busy;                /* requests in flight using it */
    struct xbdf_buf *next;
};

/* ======================================================================
 * Handles and options
 * ====================================================================== */

/* The default log function: one line on stderr. */
static void
log_stderr(void *user_data, const char *msg)
{
    (void)user_data;
    fprintf(stderr, "libxbdfront: %s\n", msg);
}

/* Tell the caller something (a reconnect, a reduced pool, pages left
 * shared) through the log callback; nothing when it is NULL. */
__attribute__((format(printf, 2, 3))) static void
xbdf_log(struct xbdfront *h, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (h->log_fn == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    h->log_fn(h->log_data, msg);
}

int
xbdfront_create(struct xbdfront **hp)
{
    struct xbdfront *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return xbdf_set_error(-ENOMEM, "out of memory for a handle");
    h->opts.queues = 1;
    h->opts.indirect_segs = 256;
    h->opts.persistent = true;
    h->opts.trusted = true;
    h->connect_timeout_ms = 10000;
    h->log_fn = log_stderr;
    h->stopfd = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->gs_lock, NULL);
    pthread_rwlock_init(&h->bufs_lock, NULL);
    *hp = h;
    return 0;
}

#define NEED_UNCONNECTED(h) do {                                          \
    if ((h)->plat != NULL)                                                \
        return xbdf_set_error(-EBUSY, "%s: options are set before "       \
                              "xbdfront_connect", __func__);              \
} while (0)

int
xbdfront_set_ring_pages(struct xbdfront *h, unsigned int pages)
{
    NEED_UNCONNECTED(h);
    if (pages != 0 && (!xbd_is_pow2(pages) ||
                       pages > (1u << XBD_RING_ORDER_LIMIT)))
        return xbdf_set_error(-EINVAL, "ring pages must be 0 or a power of "
                              "two up to %u", 1u << XBD_RING_ORDER_LIMIT);
    h->opts.ring_pages = pages;
    return 0;
}

int
xbdfront_set_queues(struct xbdfront *h, unsigned int queues)
{
    NEED_UNCONNECTED(h);
    if (queues == 0 || queues > XBDF_MAX_QUEUES)
        return xbdf_set_error(-EINVAL, "queues must be 1 to %u",
                              XBDF_MAX_QUEUES);
    h->opts.queues = queues;
    return 0;
}

int
xbdfront_set_indirect_segments(struct xbdfront *h, unsigned int segments)
{
    NEED_UNCONNECTED(h);
    if (segments > XBD_MAX_INDIRECT_SEGMENTS)
        return xbdf_set_error(-EINVAL, "at most %u indirect segments",
                              (unsigned int)XBD_MAX_INDIRECT_SEGMENTS);
    h->opts.indirect_segs = segments;
    return 0;
}

int
xbdfront_set_persistent(struct xbdfront *h, int enable)
{
    NEED_UNCONNECTED(h);
    h->opts.persistent = enable != 0;
    return 0;
}

int
xbdfront_set_poll_us(struct xbdfront *h, unsigned int us)
{
    h->poll_us = us;
    return 0;
}

int
xbdfront_set_max_pending(struct xbdfront *h, unsigned int n)
{
    NEED_UNCONNECTED(h);
    h->max_pending = n;
    return 0;
}

int
xbdfront_set_connect_timeout_ms(struct xbdfront *h, unsigned int ms)
{
    h->connect_timeout_ms = ms;
    return 0;
}

int
xbdfront_set_sync_timeout_ms(struct xbdfront *h, unsigned int ms)
{
    if (ms > INT_MAX)
        return xbdf_set_error(-EINVAL, "a synchronous call's timeout is at "
                              "most %d ms (0: no limit)", INT_MAX);
    atomic_store(&h->sync_timeout_ms, ms);
    return 0;
}

int
xbdfront_get_sync_timeout_ms(struct xbdfront *h)
{
    return (int)atomic_load(&h->sync_timeout_ms);
}

int
xbdfront_set_log_callback(struct xbdfront *h, xbdfront_log_fn fn,
                          void *user_data)
{
    /* Read by the control thread: only before it runs. */
    NEED_UNCONNECTED(h);
    h->log_fn = fn;
    h->log_data = user_data;
    return 0;
}

int
xbdfront_set_pool_pages(struct xbdfront *h, unsigned int pages)
{
    NEED_UNCONNECTED(h);
    if (pages != 0 && (pages < XBDF_MIN_POOL_PAGES ||
                       pages > XBDF_POOL_MAX_PAGES))
        return xbdf_set_error(-EINVAL, "pool pages must be 0 (automatic) or "
                              "%u to %u", XBDF_MIN_POOL_PAGES,
                              XBDF_POOL_MAX_PAGES);
    h->pool_pages = pages;
    return 0;
}

int
xbdfront_set_resize_callback(struct xbdfront *h, xbdfront_resize_fn fn,
                             void *user_data)
{
    h->resize_fn = fn;
    h->resize_data = user_data;
    return 0;
}

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
now_ms(void)
{
    return now_us() / 1000;
}

/* ======================================================================
 * xenstore helpers
 * ====================================================================== */

static char *
xs_get(struct xbdfront *h, const char *dir, const char *key)
{
    char path[256];
    unsigned int len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_read(h->xs, XBT_NULL, path, &len);
}

/* xbdf_read_fn over the backend directory. */
static char *
be_reader(void *arg, const char *key)
{
    struct xbdfront *h = arg;

    return xs_get(h, h->be_dir, key);
}

static int
be_state(struct xbdfront *h)
{
    char *v = xs_get(h, h->be_dir, XBDK_STATE);
    int s = xbdf_parse_state(v);

    free(v);
    return s;
}

/* Is `name` (an entry of the frontend directory) a transport node that an
 * earlier connection may have left behind? */
static bool
is_transport_node(const char *name)
{
    return strncmp(name, "queue-", 6) == 0 ||
           strncmp(name, XBDK_RING_REF, strlen(XBDK_RING_REF)) == 0 ||
           strcmp(name, XBDK_EVENT_CHANNEL) == 0 ||
           strcmp(name, XBDK_RING_PAGE_ORDER) == 0 ||
           strcmp(name, XBDK_NUM_RING_PAGES) == 0 ||
           strcmp(name, XBDK_MULTI_QUEUE_NUM_QUEUES) == 0;
}

/* Is `key` (relative to the frontend directory) one of the n nodes, or
 * the directory of one of them? */
static bool
in_node_set(const struct xbdf_node *nodes, int n, const char *key)
{
    size_t kl = strlen(key);

    for (int i = 0; i < n; i++)
        if (strncmp(nodes[i].key, key, kl) == 0 &&
            (nodes[i].key[kl] == '\0' || nodes[i].key[kl] == '/'))
            return true;
    return false;
}

/* Inside transaction t, remove the transport nodes of an earlier
 * connection that the new set (nodes) does not overwrite: a stale
 * multi-queue-num-queues or queue-N/ would send the backend to old grants.
 * Nodes about to be rewritten are left alone (fewer watch events, and the
 * sim's store cannot remove and re-create a node in one transaction).
 * Goes one level into queue-N/.  false on a store error. */
static bool
remove_stale_nodes(struct xbdfront *h, xs_transaction_t t,
                   const struct xbdf_node *nodes, int n, const char *sub)
{
    char dir[256], path[320];
    unsigned int num = 0;
    char **names;
    bool okr;

    if (sub == NULL)
        snprintf(dir, sizeof(dir), "%s", h->fe_dir);
    else
        snprintf(dir, sizeof(dir), "%s/%s", h->fe_dir, sub);
    names = xs_directory(h->xs, t, dir, &num);
    okr = names != NULL || (sub != NULL && errno == ENOENT);
    for (unsigned int i = 0; okr && i < num; i++) {
        char key[128];

        if (sub == NULL && !is_transport_node(names[i]))
            continue;
        if (sub == NULL)
            snprintf(key, sizeof(key), "%s", names[i]);
        else
            snprintf(key, sizeof(key), "%s/%s", sub, names[i]);
        snprintf(path, sizeof(path), "%s/%s", h->fe_dir, key);
        if (!in_node_set(nodes, n, key))
            okr = xs_rm(h->xs, t, path) || errno == ENOENT;
        else if (sub == NULL && strncmp(names[i], "queue-", 6) == 0)
            okr = remove_stale_nodes(h, t, nodes, n, names[i]);
    }
    free(names);
    return okr;
}

/* Write nodes (and our state) in one transaction, retried on EAGAIN.  With
 * nodes (a new connection's transport), whatever an earlier connection
 * left is removed in the same transaction. */
static int
write_nodes(struct xbdfront *h, const struct xbdf_node *nodes, int n,
            int state)
{
    char path[256], sval[4];

    snprintf(sval, sizeof(sval), "%d", state);
    for (int attempt = 0; attempt < 100; attempt++) {
        xs_transaction_t t = xs_transaction_start(h->xs);
        bool okw = t != XBT_NULL;

        snprintf(path, sizeof(path), "%s", h->fe_dir);
        if (okw && n > 0)
            okw = remove_stale_nodes(h, t, nodes, n, NULL);
        for (int i = 0; okw && i < n; i++) {
            snprintf(path, sizeof(path), "%s/%s", h->fe_dir, nodes[i].key);
            okw = xs_write(h->xs, t, path, nodes[i].value,
                           (unsigned int)strlen(nodes[i].value));
        }
        if (okw) {
            snprintf(path, sizeof(path), "%s/%s", h->fe_dir, XBDK_STATE);
            okw = xs_write(h->xs, t, path, sval, (unsigned int)strlen(sval));
        }
        if (t == XBT_NULL)
            return xbdf_set_error(-errno, "cannot start a xenstore "
                                  "transaction: %s", strerror(errno));
        if (!okw) {
            int e = errno;

            xs_transaction_end(h->xs, t, true);
            return xbdf_set_error(-e, "cannot write %s: %s%s", path,
                                  strerror(e), e == ENOSPC
                                  ? " (the domain's xenstore quota: ask for "
                                    "fewer ring pages or queues)" : "");
        }
        if (xs_transaction_end(h->xs, t, false))
            return 0;
        if (errno != EAGAIN)
            return xbdf_set_error(-errno, "xenstore transaction failed: %s",
                                  strerror(errno));
    }
    return xbdf_set_error(-EAGAIN, "xenstore transaction kept conflicting");
}

static int
set_state(struct xbdfront *h, int state)
{
    int r = write_nodes(h, NULL, 0, state);

    if (r == 0)
        h->state = state;
    return r;
}


/* ======================================================================
 * Connections: rings, pools, channels
 * ====================================================================== */

/* The ring size when the caller asks for none. */
#define XBDF_AUTO_RING_PAGES 64u

/* A pool is shared in chunks of this many pages: one grant share is
 * bounded on some platforms (xbd-sim: 4096 pages), and smaller mappings
 * are easier to find room for. */
#define XBDF_POOL_CHUNK_SHIFT 10u
#define XBDF_POOL_CHUNK_PAGES (1u << XBDF_POOL_CHUNK_SHIFT)

/* Pool pages one request of the choice's largest size needs: its data
 * pages and its indirect pages. */
static uint32_t
pool_full_request(const struct xbdf_choice *c)
{
    uint32_t segs = c->indirect_segs > 0 ? c->indirect_segs
                                         : BLKIF_MAX_SEGMENTS_PER_REQUEST;

    return segs + (c->indirect_segs > 0
                   ? (segs + (uint32_t)XBD_SEGS_PER_INDIRECT_PAGE - 1) /
                     (uint32_t)XBD_SEGS_PER_INDIRECT_PAGE : 0);
}

/* Pages in a queue's pool when the caller chose none: one per ring slot,
 * so that the whole ring can be kept busy with small bounced requests,
 * plus room for one full (indirect) request; bounded. */
static uint32_t
pool_size(const struct xbdf_choice *c)
{
    uint32_t p = xbd_ring_entries(1u << c->ring_order) +
                 pool_full_request(c);

    if (p > XBDF_POOL_MAX_PAGES)
        p = XBDF_POOL_MAX_PAGES;
    return p < XBDF_MIN_POOL_PAGES ? XBDF_MIN_POOL_PAGES : p;
}

static int
gs_share(struct xbdfront *h, uint32_t count, uint32_t *refs, void **addr)
{
    int r;

    pthread_mutex_lock(&h->gs_lock);
    r = xbd_gntshr_share(h->gs, h->be_domid, count, 1, refs, addr);
    pthread_mutex_unlock(&h->gs_lock);
    return r;
}

static int
gs_unshare(struct xbdfront *h, void *addr, uint32_t count)
{
    int r;

    pthread_mutex_lock(&h->gs_lock);
    r = xbd_gntshr_unshare(h->gs, addr, count);
    pthread_mutex_unlock(&h->gs_lock);
    return r;
}

/* Pages in chunk i of c's pool. */
static uint32_t
pool_chunk_pages(const struct xbdf_conn *c, uint32_t i)
{
    uint32_t first = i << XBDF_POOL_CHUNK_SHIFT;

    return c->pool_pages - first < XBDF_POOL_CHUNK_PAGES
           ? c->pool_pages - first : XBDF_POOL_CHUNK_PAGES;
}

/* Share a pool of `pages` pages for c, chunk by chunk.  On failure what
 * was shared is unshared again (no backend has seen it yet). */
static int
pool_share(struct xbdfront *h, struct xbdf_conn *c, uint32_t pages)
{
    int r = 0;

    c->pool_pages = pages;
    c->pool_nchunks = (pages + XBDF_POOL_CHUNK_PAGES - 1) /
                      XBDF_POOL_CHUNK_PAGES;
    c->pool_refs = calloc(pages, sizeof(*c->pool_refs));
    c->pool_chunks = calloc(c->pool_nchunks, sizeof(*c->pool_chunks));
    if (c->pool_refs == NULL || c->pool_chunks == NULL)
        r = -ENOMEM;
    for (uint32_t i = 0; r == 0 && i < c->pool_nchunks; i++) {
        void *addr;

        r = gs_share(h, pool_chunk_pages(c, i),
                     c->pool_refs + ((size_t)i << XBDF_POOL_CHUNK_SHIFT),
                     &addr);
        if (r == 0)
            c->pool_chunks[i] = addr;
    }
    if (r < 0) {
        for (uint32_t i = 0; c->pool_chunks != NULL && i < c->pool_nchunks;
             i++)
            if (c->pool_chunks[i] != NULL)
                gs_unshare(h, c->pool_chunks[i], pool_chunk_pages(c, i));
        free(c->pool_chunks);
        free(c->pool_refs);
        c->pool_chunks = NULL;
        c->pool_refs = NULL;
        c->pool_nchunks = c->pool_pages = 0;
        return r;
    }
    c->pool = (struct xbdf_pool){ c->pool_chunks, XBDF_POOL_CHUNK_SHIFT,
                                  c->pool_refs, pages };
    return 0;
}

/* Give back what a connection holds; 0, or -EBUSY when the backend still
 * maps some of its pages (then what could not be unshared stays shared,
 * recorded in c, never reused: retry later or leak - XSA-396). */
static int
conn_release(struct xbdfront *h, struct xbdf_conn *c)
{
    int r = 0;

    if (c->ev != NULL)
        xbd_evtchn_close(c->ev);
    c->ev = NULL;
    if (c->ring != NULL) {
        if (gs_unshare(h, c->ring, c->ring_pages) < 0)
            r = -EBUSY;
        else
            c->ring = NULL;
    }
    for (uint32_t i = 0; i < c->pool_nchunks; i++) {
        if (c->pool_chunks[i] == NULL)
            continue;
        if (gs_unshare(h, c->pool_chunks[i], pool_chunk_pages(c, i)) < 0)
            r = -EBUSY;
        else
            c->pool_chunks[i] = NULL;
    }
    if (r == 0) {
        free(c->pool_chunks);
        free(c->pool_refs);
        free(c);
    }
    return r;
}

/* Connections whose pages a backend still mapped when their handle closed:
 * the pages stay shared and are never reused (XSA-396), for the life of
 * the process.  Kept on this list, not dropped, so that the memory stays
 * reachable: it is held on purpose, and leak checkers must not report it. */
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xbdf_conn *quarantine;

/* Release retired connections; those still mapped stay on the list. */
static void
release_retired(struct xbdfront *h, bool last_chance)
{
    struct xbdf_conn *list, *c, *keep = NULL;

    pthread_mutex_lock(&h->lock);
    list = h->retired;
    h->retired = NULL;
    pthread_mutex_unlock(&h->lock);
    while ((c = list) != NULL) {
        list = c->next;
        if (conn_release(h, c) < 0) {
            if (last_chance) {
                xbdf_log(h, "%s: cannot unshare pages "
                         "(%s): left shared, never reused", h->fe_dir,
                         xbd_platform_error());
                pthread_mutex_lock(&quarantine_lock);
                c->next = quarantine;
                quarantine = c;
                pthread_mutex_unlock(&quarantine_lock);
                continue;
            }
            c->next = keep;
            keep = c;
        }
    }
    if (keep != NULL) {
        pthread_mutex_lock(&h->lock);
        for (c = keep; c->next != NULL; c = c->next)
            ;
        c->next = h->retired;
        h->retired = keep;
        pthread_mutex_unlock(&h->lock);
    }
}

/* Put a connection nobody uses any more on the retired list; h->lock is
 * held by the caller. */
static void
retire_locked(struct xbdfront *h, struct xbdf_conn *c)
{
    if (c == NULL)
        return;
    c->next = h->retired;
    h->retired = c;
}

static void
retire(struct xbdfront *h, struct xbdf_conn *c)
{
    pthread_mutex_lock(&h->lock);
    retire_locked(h, c);
    pthread_mutex_unlock(&h->lock);
}

/* Share c's pool.  The caller's size (xbdfront_set_pool_pages) or none;
 * the automatic size shrinks when the platform runs out of grants, down
 * to XBDF_POOL_FLOOR_PAGES, and says so: fewer requests then stay in
 * flight, and large ones go in pieces. */
#define XBDF_POOL_FLOOR_PAGES 32u
static int
conn_share_pool(struct xbdfront *h, struct xbdf_conn *c)
{
    uint32_t want = h->pool_pages != 0 ? h->pool_pages
                                       : pool_size(&h->choice);
    /* Two direct requests' worth: larger requests are then carried in
     * pieces as the pool allows (slower, but working). */
    uint32_t floor = XBDF_POOL_FLOOR_PAGES;
    uint32_t pages = want;
    int r;

    if (h->pool_pages != 0 || floor > want)
        floor = want;
    for (;;) {
        r = pool_share(h, c, pages);
        if (r != -ENOSPC || pages <= floor)
            break;
        pages = pages / 2 > floor ? pages / 2 : floor;
    }
    if (r == -ENOMEM)
        return xbdf_set_error(r, "out of memory for a pool of %" PRIu32
                              " pages", pages);
    if (r < 0)
        return xbdf_set_error(r, "cannot grant %" PRIu32 " buffer pages: "
                              "%s%s", pages, xbd_platform_error(),
                              r != -ENOSPC ? "" :
                              " (on Xen the xen_gntalloc module's `limit` "
                              "parameter bounds the grants of a process, "
                              "1024 by default: raise it in /sys/module/"
                              "xen_gntalloc/parameters/limit; or ask for "
                              "fewer ring pages, queues or pool pages)");
    if (pages < want)
        xbdf_log(h, "%s: only %" PRIu32 " of %" PRIu32 " buffer pages could "
                 "be granted (%s): fewer requests stay in flight; on Xen "
                 "raise the xen_gntalloc module's `limit` parameter "
                 "(/sys/module/xen_gntalloc/parameters/limit)", h->fe_dir,
                 pages, want, xbd_platform_error());
    return 0;
}

/* Share a connection for the current choice: ring pages (initialised, so
 * the backend never sees an unset header), the pool, an event channel. */
static int
conn_share(struct xbdfront *h, struct xbdf_conn **out)
{
    struct xbdf_conn *c = calloc(1, sizeof(*c));
    unsigned int pages = 1u << h->choice.ring_order;
    int r;

    if (c == NULL)
        return xbdf_set_error(-ENOMEM, "out of memory for a connection");
    c->port = -1;
    c->ring_pages = pages;
    r = gs_share(h, pages, c->ring_refs, &c->ring);
    if (r < 0) {
        xbdf_set_error(r, "cannot grant %u ring pages: %s", pages,
                       xbd_platform_error());
        goto fail;
    }
    SHARED_RING_INIT((struct blkif_sring *)c->ring);
    r = conn_share_pool(h, c);
    if (r < 0)
        goto fail;
    r = xbd_evtchn_open(h->plat, &c->ev);
    if (r >= 0)
        r = xbd_evtchn_bind_unbound(c->ev, h->be_domid);
    if (r < 0) {
        xbdf_set_error(r, "cannot allocate an event channel: %s",
                       xbd_platform_error());
        goto fail;
    }
    c->port = r;
    *out = c;
    return 0;
fail:
    /* Nothing was given to a backend yet: unsharing cannot be refused. */
    conn_release(h, c);
    return r;
}

static void
free_conns(struct xbdfront *h)
{
    if (h->conns == NULL)
        return;
    for (unsigned int i = 0; i < h->choice.queues; i++)
        retire(h, h->conns[i]);
    free(h->conns);
    h->conns = NULL;
}

/* The backend is in InitWait: read its limits, choose, share a connection
 * per queue and publish them with Initialised in one transaction. */
static int
negotiate(struct xbdfront *h)
{
    char why[200];
    struct xbdf_node *nodes;
    uint32_t *refs, *ports;
    unsigned int pages;
    uint32_t pool_used = 0;
    struct xbdf_opts o = h->opts;
    struct xbdf_choice c;
    int r, n;

    free_conns(h);
    r = xbdf_read_limits(be_reader, h, &h->limits, why, sizeof(why));
    if (r < 0)
        return xbdf_set_error(r, "%s: %s", h->be_dir, why);
    if (h->nq > 0)
        o.queues = h->nq;       /* rings for up to the caller's queues */
    /* "The largest both allow" stops at 64 pages (2048 slots) unless asked
     * for more: each page is a grant and a xenstore node per queue. */
    if (o.ring_pages == 0)
        o.ring_pages = XBDF_AUTO_RING_PAGES;
    xbdf_choose(&h->limits, &o, &c);
    pthread_mutex_lock(&h->lock);       /* the getters read it */
    h->choice = c;
    pthread_mutex_unlock(&h->lock);
    pages = 1u << h->choice.ring_order;
    refs = calloc((size_t)h->choice.queues * pages, sizeof(*refs));
    ports = calloc(h->choice.queues, sizeof(*ports));
    nodes = calloc(XBDF_MAX_NODES, sizeof(*nodes));
    h->conns = calloc(h->choice.queues, sizeof(*h->conns));
    if (refs == NULL || ports == NULL || nodes == NULL || h->conns == NULL) {
        r = xbdf_set_error(-ENOMEM, "out of memory negotiating");
        goto out;
    }
    for (unsigned int i = 0; i < h->choice.queues; i++) {
        r = conn_share(h, &h->conns[i]);
        if (r < 0)
            goto out;
        memcpy(&refs[i * pages], h->conns[i]->ring_refs, pages * sizeof(*refs));
        ports[i] = (uint32_t)h->conns[i]->port;
        if (i == 0 || h->conns[i]->pool_pages < pool_used)
            pool_used = h->conns[i]->pool_pages;
    }
    pthread_mutex_lock(&h->lock);
    h->pool_used = pool_used;
    pthread_mutex_unlock(&h->lock);
    n = xbdf_frontend_nodes(&h->choice, refs, ports, nodes, XBDF_MAX_NODES);
    if (n < 0) {
        r = xbdf_set_error(n, "too many frontend nodes");
        goto out;
    }
    r = write_nodes(h, nodes, n, XenbusStateInitialised);
    if (r == 0)
        h->state = XenbusStateInitialised;
out:
    free(refs);
    free(ports);
    free(nodes);
    if (r < 0)
        free_conns(h);
    return r;
}

static int
notify_queue(void *arg)
{
    struct xbdf_hqueue *hq = arg;

    return xbd_evtchn_notify(hq->cur->ev, (uint32_t)hq->cur->port);
}

/* Make the queue's fd readable so that its thread looks.  `woken` saves
 * the syscalls: a wake-up already pending needs no second write, and the
 * owner reads the eventfd only when one is pending (wake_consume). */
static void
wake(struct xbdf_hqueue *hq)
{
    uint64_t one = 1;

    if (atomic_exchange(&hq->woken, true))
        return;
    if (write(hq->wakefd, &one, sizeof(one)) < 0) {
        /* The counter is full: the owner has a wake-up pending anyway. */
    }
}

/* The owner: consume a pending wake-up before looking at what it
 * announced.  Drained first, cleared second: a wake() in between finds
 * the flag set and writes nothing, and what it announced is looked at
 * after this returns. */
static void
wake_consume(struct xbdf_hqueue *hq)
{
    uint64_t n;

    if (!atomic_load(&hq->woken))
        return;
    if (read(hq->wakefd, &n, sizeof(n)) < 0) {
        /* EAGAIN: drained already. */
    }
    atomic_store(&hq->woken, false);
}

/* xbdf_deliver_fn: a request of another queue finished on a carrier's
 * ring (whose lock the caller holds): to its queue's inbox, and wake that
 * queue's thread to run the callback. */
static void
deliver(void *arg, struct xbdf_queue *owner, struct xbdf_io *io)
{
    struct xbdf_hqueue *hq = (struct xbdf_hqueue *)(void *)owner;

    (void)arg;
    pthread_mutex_lock(&hq->inbox_lock);
    xbdf_queue_inbox_push(owner, io);
    atomic_store(&hq->inbox_used, true);
    pthread_mutex_unlock(&hq->inbox_lock);
    wake(hq);
}

/* Lock every queue, highest index first (then a queue thread holding its
 * own lock can still take its carrier's, a lower index). */
static void
lock_all(struct xbdfront *h)
{
    for (unsigned int i = h->nq; i-- > 0;)
        pthread_mutex_lock(&h->hq[i].lock);
}

static void
unlock_all(struct xbdfront *h)
{
    for (unsigned int i = 0; i < h->nq; i++) {
        pthread_mutex_unlock(&h->hq[i].lock);
        wake(&h->hq[i]);
    }
}

/* With every queue locked: stop watching a carrier's channel. */
static void
unwatch_locked(struct xbdf_hqueue *hq)
{
    struct epoll_event ev = { .events = EPOLLIN };

    if (hq->watch_fd >= 0)
        epoll_ctl(hq->epfd, EPOLL_CTL_DEL, hq->watch_fd, &ev);
    hq->watch_fd = -1;
}

/* First connect: set up the queues on the negotiated connections. */
static int
queues_create(struct xbdfront *h)
{
    h->hq = calloc(h->choice.queues, sizeof(*h->hq));
    if (h->hq == NULL)
        return xbdf_set_error(-ENOMEM, "out of memory for queues");
    h->nq = h->choice.queues;
    for (unsigned int i = 0; i < h->nq; i++) {
        pthread_mutex_init(&h->hq[i].lock, NULL);
        pthread_mutex_init(&h->hq[i].inbox_lock, NULL);
        h->hq[i].carrier = &h->hq[i];
        h->hq[i].watch_fd = -1;
        h->hq[i].epfd = h->hq[i].wakefd = -1;
    }
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];
        struct epoll_event ev = { .events = EPOLLIN };
        int r;

        hq->epfd = epoll_create1(EPOLL_CLOEXEC);
        hq->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (hq->epfd < 0 || hq->wakefd < 0 ||
            epoll_ctl(hq->epfd, EPOLL_CTL_ADD, hq->wakefd, &ev) < 0)
            return xbdf_set_error(-errno, "cannot set up a queue's file "
                                  "descriptors: %s", strerror(errno));
        hq->geom = h->geom;
        hq->cur = h->conns[i];
        h->conns[i] = NULL;
        if (epoll_ctl(hq->epfd, EPOLL_CTL_ADD, xbd_evtchn_fd(hq->cur->ev),
                      &ev) < 0)
            return xbdf_set_error(-errno, "epoll: %s", strerror(errno));
        r = xbdf_queue_init(&hq->q, hq->cur->ring, hq->cur->ring_pages,
                            &hq->geom, (uint16_t)h->vdev, &hq->cur->pool,
                            notify_queue, hq, h->max_pending);
        if (r < 0)
            return r;
        hq->q.deliver = deliver;
        hq->q.deliver_arg = h;
        hq->initialised = true;
    }
    free(h->conns);
    h->conns = NULL;
    return 0;
}

/* A reconnect is Connected: queue i gets ring i and re-issues what waits;
 * with fewer rings than queues, the queues beyond have their requests
 * carried by queue i % rings (whose channel they watch). */
static void
attach_queues(struct xbdfront *h, const struct xbdf_geom *g)
{
    unsigned int rings = h->choice.queues;
    struct epoll_event ev = { .events = EPOLLIN };

    lock_all(h);
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];

        hq->geom = *g;
        if (i >= rings)
            continue;
        hq->cur = h->conns[i];
        h->conns[i] = NULL;
        epoll_ctl(hq->epfd, EPOLL_CTL_ADD, xbd_evtchn_fd(hq->cur->ev), &ev);
        /* Re-issues every piece the old ring lost, under the new limits. */
        if (xbdf_queue_attach(&hq->q, hq->cur->ring, hq->cur->ring_pages,
                              &hq->cur->pool) < 0)
            xbdf_queue_fail(&hq->q, -ENODEV, xbdfront_get_error());
    }
    for (unsigned int i = rings; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i], *c = &h->hq[i % rings];

        hq->carrier = c;
        xbdf_queue_move_pending(&hq->q, &c->q);
        if (c->q.failed)        /* its ring could not be attached */
            xbdf_queue_cancel(&c->q, -ENODEV);
        if (c->cur != NULL) {
            hq->watch_fd = xbd_evtchn_fd(c->cur->ev);
            epoll_ctl(hq->epfd, EPOLL_CTL_ADD, hq->watch_fd, &ev);
        }
    }
    unlock_all(h);
}

/* The backend is Connected: read its properties, then hand the queues
 * their connections (first connect: set them up here). */
static int
connect_queues(struct xbdfront *h)
{
    struct xbdf_geom g;
    uint32_t info;
    char why[200];
    int r;

    memset(&g, 0, sizeof(g));
    r = xbdf_read_props(be_reader, h, &g, &info, why, sizeof(why));
    if (r < 0)
        return xbdf_set_error(r, "%s: %s", h->be_dir, why);
    g.max_indirect_segs = h->choice.indirect_segs;
    pthread_mutex_lock(&h->lock);
    h->geom = g;
    h->info = info;
    pthread_mutex_unlock(&h->lock);
    if (h->hq == NULL) {
        r = queues_create(h);
        if (r < 0)
            return r;
    } else {
        attach_queues(h, &g);
        free_conns(h);
    }
    r = set_state(h, XenbusStateConnected);
    if (r == 0) {
        /* Written once, before any queue thread can look: a reconnect
         * finds it true already and leaves it alone. */
        if (!h->connected)
            h->connected = true;
        h->recovering = false;
    }
    return r;
}

/* ======================================================================
 * The control thread
 * ====================================================================== */

static void close_handshake(struct xbdfront *h);
static void release_dead_buffers(struct xbdfront *h, bool last_chance);

/* With every queue locked: every queue stops using its ring; what was on
 * it becomes pending again, and requests carried for other queues go back
 * to them. */
static void
detach_all_locked(struct xbdfront *h)
{
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];
        struct epoll_event ev = { .events = EPOLLIN };

        unwatch_locked(hq);
        hq->carrier = hq;
        if (hq->cur == NULL)
            continue;
        xbdf_queue_detach(&hq->q);
        epoll_ctl(hq->epfd, EPOLL_CTL_DEL, xbd_evtchn_fd(hq->cur->ev), &ev);
        retire(h, hq->cur);
        hq->cur = NULL;
    }
    for (unsigned int i = 0; i < h->nq; i++)
        xbdf_queue_give_back(&h->hq[i].q);
}

/* The backend left Connected: every queue stops using its ring. */
static void
begin_recovery(struct xbdfront *h, int be)
{
    xbdf_log(h, "%s: backend state %d, reconnecting",
             h->fe_dir, be);
    lock_all(h);
    detach_all_locked(h);
    unlock_all(h);
    h->recovering = true;
    h->reconnects++;
    /* Closed first: a backend that is still there mirrors it and lets the
     * old rings go before we come back as Initialising. */
    set_state(h, XenbusStateClosed);
}

/* The device vanished (its backend directory was removed): fail all. */
static void
fail_queues(struct xbdfront *h, const char *why)
{
    /* The rings first (the backend may still answer on them: nothing it
     * says reaches a request any more), then every request fails. */
    lock_all(h);
    detach_all_locked(h);
    for (unsigned int i = 0; i < h->nq; i++)
        xbdf_queue_fail(&h->hq[i].q, -ENODEV, why);
    unlock_all(h);
}

static void
check_resize(struct xbdfront *h)
{
    struct xbdf_geom g;
    uint32_t info;
    uint64_t old;
    char why[200];

    memset(&g, 0, sizeof(g));
    if (xbdf_read_props(be_reader, h, &g, &info, why, sizeof(why)) < 0)
        return;         /* a half-written update: the next event tells */
    pthread_mutex_lock(&h->lock);
    old = h->geom.size;
    if (g.size == old) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    h->geom.size = g.size;
    pthread_mutex_unlock(&h->lock);
    for (unsigned int i = 0; i < h->nq; i++) {
        pthread_mutex_lock(&h->hq[i].lock);
        h->hq[i].geom.size = g.size;
        pthread_mutex_unlock(&h->hq[i].lock);
        wake(&h->hq[i]);
    }
    if (h->resize_fn != NULL)
        h->resize_fn(h->resize_data, old, g.size);
}

/* Is the backend's `online` node 0 (the toolstack is removing it)? */
static bool
backend_offline(struct xbdfront *h)
{
    char *v = xs_get(h, h->be_dir, XBDK_ONLINE);
    bool off = v != NULL && strcmp(v, "0") == 0;

    free(v);
    return off;
}

/* One step of the level-triggered state machine; false to stop. */
static bool
control_step(struct xbdfront *h)
{
    char *v = xs_get(h, h->be_dir, XBDK_STATE);
    int e = errno, be = xbdf_parse_state(v);
    bool gone = v == NULL;

    free(v);
    /* An absent or unreadable node (the toolstack removed the directory;
     * a guest reading under a removed parent gets EACCES) is a removed
     * device; anything else means the store itself is gone. */
    if (gone && (e == ENOENT || e == EACCES || e == EPERM))
        e = ENOENT;
    if (gone && e != ENOENT) {
        /* Not an absent node: the store itself went away. */
        char why[200];

        snprintf(why, sizeof(why), "lost the connection to xenstore: %s",
                 strerror(e));
        xbdf_log(h, "%s: %s", h->fe_dir, why);
        fail_queues(h, why);
        return false;
    }
    if (gone) {
        /* A daemon restart leaves the directory; a detach removes it, in
         * any of our states (often while we recover from its Closing).
         * Our own directory may be gone too: write nothing that would
         * re-create what the toolstack removed. */
        char *fs = xs_get(h, h->fe_dir, XBDK_STATE);

        fail_queues(h, "the device was removed (its backend directory is "
                    "gone)");
        if (fs != NULL && h->state != XenbusStateClosed)
            set_state(h, XenbusStateClosed);
        free(fs);
        h->state = XenbusStateClosed;
        return false;
    }
    if (be != XenbusStateConnected && backend_offline(h)) {
        /* online=0: the toolstack is detaching the device, not restarting
         * its backend: no reconnect, and the callers learn why. */
        fail_queues(h, "the device was detached by the toolstack "
                    "(backend online=0)");
        if (h->state != XenbusStateClosed)
            set_state(h, XenbusStateClosed);
        return false;
    }
    if (h->recovering && h->state == XenbusStateClosed) {
        if (be == XenbusStateClosed || be == XenbusStateInitWait ||
            be == XenbusStateInitialising || be == XenbusStateUnknown)
            set_state(h, XenbusStateInitialising);
        return true;
    }
    switch (xbdf_next_action(h->state, be)) {
    case XBDF_RESIZE_CHECK:
        check_resize(h);
        break;
    case XBDF_RESTART:
        if (h->state == XenbusStateConnected) {
            begin_recovery(h, be);
        } else {
            /* Lost it again mid-negotiation: start over. */
            free_conns(h);
            set_state(h, XenbusStateClosed);
        }
        break;
    case XBDF_NEGOTIATE:
        if (negotiate(h) < 0)
            xbdf_log(h, "%s: reconnect: %s", h->fe_dir,
                     xbdfront_get_error());
        break;
    case XBDF_CONNECT:
        if (connect_queues(h) == -EPROTO) {
            /* The new backend publishes nonsense: nothing to wait for. */
            char why[300];

            snprintf(why, sizeof(why), "after a reconnect: %s",
                     xbdfront_get_error());
            xbdf_log(h, "%s: %s", h->fe_dir, why);
            fail_queues(h, why);
            close_handshake(h);
            return false;
        } else if (h->state != XenbusStateConnected)
            xbdf_log(h, "%s: reconnect: %s", h->fe_dir,
                     xbdfront_get_error());
        else if (h->choice.queues < h->nq)
            xbdf_log(h, "%s: reconnected (%u ring pages, %u queues): the "
                     "backend offers %u rings for our %u queues, queue i "
                     "rides on ring i %% %u", h->fe_dir,
                     1u << h->choice.ring_order, h->choice.queues,
                     h->choice.queues, h->nq, h->choice.queues);
        else
            xbdf_log(h, "%s: reconnected (%u ring pages, "
                     "%u queues)", h->fe_dir, 1u << h->choice.ring_order,
                     h->choice.queues);
        break;
    case XBDF_WAIT:
        break;
    }
    return true;
}

static void *
control_main(void *arg)
{
    struct xbdfront *h = arg;
    bool run = true;

    while (run) {
        struct pollfd p[2] = {
            { .fd = xs_fileno(h->xs), .events = POLLIN },
            { .fd = h->stopfd, .events = POLLIN },
        };
        char **w;

        /* A timeout too: retired pages the backend still mapped are
         * retried, and a missed watch cannot stall recovery. */
        if (poll(p, 2, 500) < 0 && errno != EINTR)
            break;
        if (p[1].revents & POLLIN)
            break;
        while ((w = xs_check_watch(h->xs)) != NULL)
            free(w);
        run = control_step(h);
        release_retired(h, false);
        release_dead_buffers(h, false);
    }
    return NULL;
}

/* ======================================================================
 * Zero-copy buffers
 * ====================================================================== */

/* Unshare a buffer's pages and free it.  Pages the backend still maps
 * (it keeps persistent grants until it disconnects) stay shared, never
 * reused (XSA-396): the buffer waits on dead_bufs and the control thread
 * retries; at the last chance it is left shared. */
static void
buffer_destroy(struct xbdfront *h, struct xbdf_buf *b, bool last_chance)
{
    if (gs_unshare(h, b->addr, (uint32_t)(b->len / XBD_PAGE_SIZE)) < 0) {
        if (!last_chance) {
            pthread_mutex_lock(&h->lock);
            b->next = h->dead_bufs;
            h->dead_bufs = b;
            pthread_mutex_unlock(&h->lock);
            return;
        }
        xbdf_log(h, "%s: cannot unshare a buffer's pages "
                 "(%s): left shared, never reused", h->fe_dir,
                 xbd_platform_error());
    }
    free(b->refs);
    free(b);
}

/* Retry unsharing freed buffers the backend still mapped. */
static void
release_dead_buffers(struct xbdfront *h, bool last_chance)
{
    struct xbdf_buf *list, *b;

    pthread_mutex_lock(&h->lock);
    list = h->dead_bufs;
    h->dead_bufs = NULL;
    pthread_mutex_unlock(&h->lock);
    while ((b = list) != NULL) {
        list = b->next;
        buffer_destroy(h, b, last_chance);
    }
}

/* At teardown: every buffer still allocated goes (the caller should have
 * freed them; nothing can be in flight any more). */
static void
buffers_release(struct xbdfront *h)
{
    struct xbdf_buf *b;

    while ((b = h->bufs) != NULL) {
        h->bufs = b->next;
        buffer_destroy(h, b, true);
    }
    atomic_store(&h->nbufs, 0);
    release_dead_buffers(h, true);
}

int
xbdfront_buffer_alloc(struct xbdfront *h, size_t len, void **buf_out)
{
    struct xbdf_buf *b;
    size_t pages;
    int r;

    if (!h->connected)
        return xbdf_set_error(-ENOTCONN, "buffers come from a connected "
                              "handle's grants: connect first");
    if (len == 0 || len > (size_t)1 << 30)
        return xbdf_set_error(-EINVAL, "buffer length %zu: 1 byte to 1 GiB",
                              len);
    pages = (len + XBD_PAGE_SIZE - 1) / XBD_PAGE_SIZE;
    b = calloc(1, sizeof(*b));
    if (b == NULL || (b->refs = calloc(pages, sizeof(*b->refs))) == NULL) {
        free(b);
        return xbdf_set_error(-ENOMEM, "out of memory for a buffer");
    }
    r = gs_share(h, (uint32_t)pages, b->refs, (void **)&b->addr);
    if (r < 0) {
        free(b->refs);
        free(b);
        return xbdf_set_error(r, "cannot grant a %zu-page buffer: %s", pages,
                              xbd_platform_error());
    }
    b->len = pages * XBD_PAGE_SIZE;
    pthread_rwlock_wrlock(&h->bufs_lock);
    b->next = h->bufs;
    h->bufs = b;
    atomic_fetch_add(&h->nbufs, 1);
    pthread_rwlock_unlock(&h->bufs_lock);
    *buf_out = b->addr;
    return 0;
}

int
xbdfront_buffer_free(struct xbdfront *h, void *buf)
{
    struct xbdf_buf **pp, *b;

    if (buf == NULL)
        return 0;
    pthread_rwlock_wrlock(&h->bufs_lock);
    for (pp = &h->bufs; *pp != NULL && (*pp)->addr != buf; pp = &(*pp)->next)
        ;
    b = *pp;
    if (b == NULL) {
        pthread_rwlock_unlock(&h->bufs_lock);
        return xbdf_set_error(-EINVAL, "%p is not a buffer from "
                              "xbdfront_buffer_alloc()", buf);
    }
    if (atomic_load(&b->busy) > 0) {
        pthread_rwlock_unlock(&h->bufs_lock);
        return xbdf_set_error(-EBUSY, "the buffer is part of %d request(s) "
                              "in flight", atomic_load(&b->busy));
    }
    *pp = b->next;
    atomic_fetch_sub(&h->nbufs, 1);
    pthread_rwlock_unlock(&h->bufs_lock);
    buffer_destroy(h, b, false);
    return 0;
}

/* For an I/O call: the grants of [buf, buf+len) when it lies in one
 * zero-copy buffer and may go without bouncing (a trusted backend, 512-byte
 * aligned); NULL otherwise.  *busy_out: the buffer's in-flight count. */
static const uint32_t *
buffer_lookup(struct xbdfront *h, const void *buf, size_t len,
              atomic_int **busy_out)
{
    const char *p = buf;
    const uint32_t *refs = NULL;

    if (atomic_load_explicit(&h->nbufs, memory_order_relaxed) == 0 ||
        !h->opts.trusted || (uintptr_t)p % 512 != 0)
        return NULL;
    pthread_rwlock_rdlock(&h->bufs_lock);
    for (struct xbdf_buf *b = h->bufs; b != NULL; b = b->next)
        if (p >= b->addr && len <= b->len &&
            (size_t)(p - b->addr) <= b->len - len) {
            refs = b->refs + (size_t)(p - b->addr) / XBD_PAGE_SIZE;
            *busy_out = &b->busy;
            break;
        }
    pthread_rwlock_unlock(&h->bufs_lock);
    return refs;
}

/* ======================================================================
 * Connecting and closing
 * ====================================================================== */

/* Wait (bounded) until the backend's state is at least `want` or gone. */
static void
wait_backend(struct xbdfront *h, int want, unsigned int ms)
{
    int64_t deadline = now_ms() + ms;

    while (be_state(h) < want) {
        struct pollfd pfd = { .fd = xs_fileno(h->xs), .events = POLLIN };
        int64_t left = deadline - now_ms();
        char **w;

        if (left <= 0)
            return;
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            return;
        while ((w = xs_check_watch(h->xs)) != NULL)
            free(w);
    }
}

/* Wait (until deadline, in ms) for the backend to leave Connected and
 * Closing: Closed, InitWait, Initialising or gone. */
static void
wait_backend_left(struct xbdfront *h, int64_t deadline)
{
    for (;;) {
        int be = be_state(h);
        struct pollfd pfd = { .fd = xs_fileno(h->xs), .events = POLLIN };
        int64_t left = deadline - now_ms();
        char **w;

        if ((be != XenbusStateConnected && be != XenbusStateClosing) ||
            left <= 0)
            return;
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            return;
        while ((w = xs_check_watch(h->xs)) != NULL)
            free(w);
    }
}

/* Tell the backend we are going (Closing, then Closed) and give it a
 * bounded time to mirror each, so that it has unmapped our rings before
 * they are unshared; what it still maps then is quarantined. */
static void
close_handshake(struct xbdfront *h)
{
    if (h->xs == NULL || h->state == 0)
        return;
    if (h->state >= XenbusStateInitialised &&
        h->state <= XenbusStateConnected) {
        set_state(h, XenbusStateClosing);
        wait_backend(h, XenbusStateClosing, h->connect_timeout_ms);
    }
    if (h->state != XenbusStateClosed)
        set_state(h, XenbusStateClosed);
    wait_backend(h, XenbusStateClosed, h->connect_timeout_ms);
}

/* Tear everything down (the handle stays, unconnected). */
static void
teardown(struct xbdfront *h)
{
    if (h->ctl_running) {
        uint64_t one = 1;

        if (write(h->stopfd, &one, sizeof(one)) < 0)
            abort();    /* a fresh eventfd cannot refuse one increment */
        pthread_join(h->ctl, NULL);
        h->ctl_running = false;
    }
    close_handshake(h);
    /* Cancel everything first: a queue carrying another's requests
     * delivers them to that queue's inbox, run below. */
    for (unsigned int i = 0; i < h->nq; i++)
        if (h->hq[i].initialised)
            xbdf_queue_cancel(&h->hq[i].q, -ECANCELED);
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];
        struct xbdf_io *io;

        if (hq->initialised) {
            while ((io = xbdf_queue_inbox_pop(&hq->q)) != NULL)
                xbdf_queue_run_io(&hq->q, io);
            xbdf_queue_fini(&hq->q, -ECANCELED);
        }
        retire(h, hq->cur);
        if (hq->epfd >= 0)
            close(hq->epfd);
        if (hq->wakefd >= 0)
            close(hq->wakefd);
        pthread_mutex_destroy(&hq->inbox_lock);
        pthread_mutex_destroy(&hq->lock);
    }
    free(h->hq);
    h->hq = NULL;
    h->nq = 0;
    free_conns(h);
    release_retired(h, true);
    buffers_release(h);
    if (h->stopfd >= 0)
        close(h->stopfd);
    h->stopfd = -1;
    if (h->xs != NULL)
        xs_close(h->xs);
    h->xs = NULL;
    free(h->be_dir);
    h->be_dir = NULL;
    if (h->gs != NULL)
        xbd_gntshr_close(h->gs);
    h->gs = NULL;
    if (h->plat != NULL)
        xbd_platform_close(h->plat);
    h->plat = NULL;
    h->connected = false;
    h->state = 0;
}

int
xbdfront_connect(struct xbdfront *h, const char *device)
{
    char *v;
    int64_t deadline;
    int r;

    if (h->plat != NULL)
        return xbdf_set_error(-EBUSY, "this handle is already connected");
    r = xbdfront_parse_device(device, &h->vdev);
    if (r < 0)
        return r;
    r = xbd_platform_open(&h->plat, NULL);
    if (r < 0) {
        xbdf_set_error(r, "%s", xbd_platform_error());
        h->plat = NULL;
        return r;
    }
    r = xbd_gntshr_open(h->plat, &h->gs);
    if (r < 0) {
        xbdf_set_error(r, "%s", xbd_platform_error());
        h->gs = NULL;
        goto fail;
    }
    h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->stopfd < 0) {
        r = xbdf_set_error(-errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    h->xs = xs_open(0);
    if (h->xs == NULL) {
        r = xbdf_set_error(-errno, "cannot connect to xenstore: %s",
                           strerror(errno));
        goto fail;
    }
    snprintf(h->fe_dir, sizeof(h->fe_dir), "/local/domain/%" PRIu32
             "/device/vbd/%" PRIu32, xbd_platform_domid(h->plat), h->vdev);
    h->be_dir = xs_get(h, h->fe_dir, XBDK_BACKEND);
    v = xs_get(h, h->fe_dir, XBDK_BACKEND_ID);
    if (h->be_dir == NULL || v == NULL ||
        xbd_parse_u32_range(v, 0, 0x7fef, &h->be_domid) < 0) {
        free(v);
        r = xbdf_set_error(-ENOENT, "%s: no such virtual block device (no "
                           "valid %s and %s nodes)", h->fe_dir, XBDK_BACKEND,
                           XBDK_BACKEND_ID);
        goto fail;
    }
    free(v);
    /* trusted: absent means 1; anything unreadable means untrusted. */
    v = xs_get(h, h->fe_dir, XBDK_TRUSTED);
    if (v != NULL) {
        bool t;

        h->opts.trusted = xbd_parse_bool(v, &t) == 0 && t;
        free(v);
    }
    if (!xs_watch(h->xs, h->be_dir, "be")) {
        r = xbdf_set_error(-errno, "cannot watch %s: %s", h->be_dir,
                           strerror(errno));
        goto fail;
    }
    deadline = now_ms() + h->connect_timeout_ms;
    /* A backend still Connected (or Closing) belongs to an earlier
     * frontend of this device that went away without closing (a killed
     * process): it serves the old rings.  Close first, so it lets them go,
     * and start over only once it has. */
    if (be_state(h) == XenbusStateConnected ||
        be_state(h) == XenbusStateClosing) {
        r = set_state(h, XenbusStateClosed);
        if (r < 0)
            goto fail;
        wait_backend_left(h, deadline);
    }
    r = set_state(h, XenbusStateInitialising);
    if (r < 0)
        goto fail;

    for (;;) {
        int be = be_state(h);
        enum xbdf_action a = xbdf_next_action(h->state, be);
        struct pollfd pfd;
        int64_t left;
        char **w;

        /* From Initialising, only a backend in InitWait has seen us: one
         * that is Connected is stale (it has not noticed us yet). */
        if (a == XBDF_NEGOTIATE && be != XenbusStateInitWait)
            a = XBDF_WAIT;

        switch (a) {
        case XBDF_NEGOTIATE:
            r = negotiate(h);
            if (r < 0)
                goto fail;
            continue;
        case XBDF_CONNECT:
            r = connect_queues(h);
            if (r < 0)
                goto fail;
            r = pthread_create(&h->ctl, NULL, control_main, h);
            if (r != 0) {
                r = xbdf_set_error(-r, "cannot start the control thread: "
                                   "%s", strerror(r));
                goto fail;
            }
            h->ctl_running = true;
            return 0;
        case XBDF_RESTART:
            free_conns(h);
            release_retired(h, false);
            r = set_state(h, XenbusStateInitialising);
            if (r < 0)
                goto fail;
            break;
        case XBDF_RESIZE_CHECK:
        case XBDF_WAIT:
            break;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            r = xbdf_set_error(-ETIMEDOUT, "the backend %s did not connect "
                               "within %u ms (its state is %d)", h->be_dir,
                               h->connect_timeout_ms, be_state(h));
            goto fail;
        }
        pfd.fd = xs_fileno(h->xs);
        pfd.events = POLLIN;
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
            r = xbdf_set_error(-errno, "poll: %s", strerror(errno));
            goto fail;
        }
        while ((w = xs_check_watch(h->xs)) != NULL)
            free(w);
    }

fail:
    {
        /* Keep the message of the failure, not of the teardown. */
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", xbdfront_get_error());
        teardown(h);
        return xbdf_set_error(r, "%s", msg);
    }
}

void
xbdfront_close(struct xbdfront *h)
{
    if (h == NULL)
        return;
    teardown(h);
    pthread_rwlock_destroy(&h->bufs_lock);
    pthread_mutex_destroy(&h->gs_lock);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ======================================================================
 * Getters
 * ====================================================================== */

#define NEED_CONNECTED(h) do {                                            \
    if (!(h)->connected)                                                  \
        return xbdf_set_error(-ENOTCONN, "%s: not connected", __func__);  \
} while (0)

/* Read a field under the lock: the control thread may renegotiate. */
#define LOCKED_GET(h, type, expr) do {                                    \
    type v_;                                                              \
    NEED_CONNECTED(h);                                                    \
    pthread_mutex_lock(&(h)->lock);                                       \
    v_ = (expr);                                                          \
    pthread_mutex_unlock(&(h)->lock);                                     \
    return v_;                                                            \
} while (0)

int64_t
xbdfront_get_size(struct xbdfront *h)
{
    LOCKED_GET(h, int64_t, (int64_t)h->geom.size);
}

int
xbdfront_get_sector_size(struct xbdfront *h)
{
    LOCKED_GET(h, int, (int)h->geom.sector_size);
}

int
xbdfront_get_ring_pages(struct xbdfront *h)
{
    LOCKED_GET(h, int, 1 << h->choice.ring_order);
}

int
xbdfront_get_queues(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return (int)h->nq;          /* fixed at the first connect */
}

int
xbdfront_get_indirect_segments(struct xbdfront *h)
{
    LOCKED_GET(h, int, (int)h->choice.indirect_segs);
}

int
xbdfront_get_pool_pages(struct xbdfront *h)
{
    LOCKED_GET(h, int, (int)h->pool_used);
}

int
xbdfront_get_persistent(struct xbdfront *h)
{
    LOCKED_GET(h, int, h->choice.persistent);
}

int64_t
xbdfront_get_vdev(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return h->vdev;
}

int64_t
xbdfront_get_features(struct xbdfront *h)
{
    uint64_t f = 0;
    struct xbdf_geom g;
    uint32_t info;

    NEED_CONNECTED(h);
    pthread_mutex_lock(&h->lock);
    g = h->geom;
    info = h->info;
    pthread_mutex_unlock(&h->lock);
    if (g.flush)
        f |= XBDFRONT_FEATURE_FLUSH;
    if (g.barrier)
        f |= XBDFRONT_FEATURE_BARRIER;
    if (g.discard)
        f |= XBDFRONT_FEATURE_DISCARD;
    if (g.discard_secure)
        f |= XBDFRONT_FEATURE_SECURE_DISCARD;
    if (info & VDISK_READONLY)
        f |= XBDFRONT_FEATURE_READONLY;
    if (info & VDISK_CDROM)
        f |= XBDFRONT_FEATURE_CDROM;
    if (info & VDISK_REMOVABLE)
        f |= XBDFRONT_FEATURE_REMOVABLE;
    if (!h->opts.trusted)
        f |= XBDFRONT_FEATURE_UNTRUSTED;
    return (int64_t)f;
}

/* ======================================================================
 * I/O
 * ====================================================================== */

/* The queue, checked. */
static struct xbdf_hqueue *
get_queue(struct xbdfront *h, unsigned int queue)
{
    if (!h->connected) {
        xbdf_set_error(-ENOTCONN, "not connected");
        return NULL;
    }
    if (queue >= h->nq) {
        xbdf_set_error(-EINVAL, "queue %u does not exist (%u queues)", queue,
                       h->nq);
        return NULL;
    }
    return &h->hq[queue];
}

/* Lock a queue and its carrier (when another queue's ring carries its
 * requests): returns the carrier, the queue whose engine to drive. */
static struct xbdf_hqueue *
lock_queue(struct xbdf_hqueue *hq)
{
    struct xbdf_hqueue *c;

    pthread_mutex_lock(&hq->lock);
    c = hq->carrier;
    if (c != hq)
        pthread_mutex_lock(&c->lock);
    return c;
}

static void
unlock_carrier(struct xbdf_hqueue *hq, struct xbdf_hqueue *c)
{
    if (c != hq)
        pthread_mutex_unlock(&c->lock);
}

static void
unlock_queue(struct xbdf_hqueue *hq, struct xbdf_hqueue *c)
{
    unlock_carrier(hq, c);
    pthread_mutex_unlock(&hq->lock);
}

/* Submit on a queue: on its carrier's engine, for it. */
static int
submit(struct xbdfront *h, unsigned int queue, enum xbdf_io_op op,
       void *buf, uint64_t len, uint64_t offset, unsigned int flags,
       xbdfront_completion_fn cb, void *user_data, struct xbdf_io **io_out)
{
    struct xbdf_hqueue *hq = get_queue(h, queue), *c;
    const uint32_t *refs = NULL;
    atomic_int *busy = NULL;
    int r;

    if (hq == NULL)
        return -xbdfront_get_errno();
    if (op == XBDF_IO_READ || op == XBDF_IO_WRITE)
        refs = buffer_lookup(h, buf, len, &busy);
    c = lock_queue(hq);
    r = xbdf_queue_submit_as(&c->q, &hq->q, op, buf, len, offset, flags,
                             refs, busy, cb, user_data, io_out);
    unlock_queue(hq, c);
    return r;
}

int
xbdfront_aio_pread(struct xbdfront *h, unsigned int queue, void *buf,
                   size_t len, uint64_t offset, unsigned int flags,
                   xbdfront_completion_fn cb, void *user_data)
{
    return submit(h, queue, XBDF_IO_READ, buf, len, offset, flags, cb,
                  user_data, NULL);
}

int
xbdfront_aio_pwrite(struct xbdfront *h, unsigned int queue, const void *buf,
                    size_t len, uint64_t offset, unsigned int flags,
                    xbdfront_completion_fn cb, void *user_data)
{
    /* The queue only reads a write's buffer. */
    return submit(h, queue, XBDF_IO_WRITE, (void *)(uintptr_t)buf, len,
                  offset, flags, cb, user_data, NULL);
}

int
xbdfront_aio_flush(struct xbdfront *h, unsigned int queue,
                   unsigned int flags, xbdfront_completion_fn cb,
                   void *user_data)
{
    return submit(h, queue, XBDF_IO_FLUSH, NULL, 0, 0, flags, cb, user_data,
                  NULL);
}

int
xbdfront_aio_discard(struct xbdfront *h, unsigned int queue, uint64_t len,
                     uint64_t offset, unsigned int flags,
                     xbdfront_completion_fn cb, void *user_data)
{
    return submit(h, queue, XBDF_IO_DISCARD, NULL, len, offset, flags, cb,
                  user_data, NULL);
}

int
xbdfront_queue_fd(struct xbdfront *h, unsigned int queue)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return hq->epfd;
}

/* Are callbacks due on this queue (finished requests of its own, or
 * delivered by a carrier)? */
static bool
inbox_ready(struct xbdf_hqueue *hq)
{
    bool r;

    /* Nothing was ever delivered: no lock (the common case). */
    if (!atomic_load_explicit(&hq->inbox_used, memory_order_relaxed))
        return false;
    pthread_mutex_lock(&hq->inbox_lock);
    r = xbdf_queue_has_inbox(&hq->q);
    pthread_mutex_unlock(&hq->inbox_lock);
    return r;
}

static bool
ready(struct xbdf_hqueue *hq)
{
    bool r;

    pthread_mutex_lock(&hq->lock);
    r = xbdf_queue_has_done(&hq->q);
    pthread_mutex_unlock(&hq->lock);
    return r || inbox_ready(hq);
}

/* Run up to `budget` (0: all) callbacks that are due on this queue: its
 * own finished requests, then those a carrier delivered.  No lock is held
 * while a callback runs (it may submit). */
static int
run_ready(struct xbdf_hqueue *hq, unsigned int budget)
{
    unsigned int ran = 0;

    while (budget == 0 || ran < budget) {
        struct xbdf_io *io;

        pthread_mutex_lock(&hq->lock);
        io = xbdf_queue_pop_done(&hq->q);
        pthread_mutex_unlock(&hq->lock);
        if (io == NULL && inbox_ready(hq)) {
            pthread_mutex_lock(&hq->inbox_lock);
            io = xbdf_queue_inbox_pop(&hq->q);
            pthread_mutex_unlock(&hq->inbox_lock);
        }
        if (io == NULL)
            return (int)ran;
        /* Failed with its queue by the control thread (a detach, the store
         * gone), maybe after this thread last looked: say why here, where
         * the callback runs, as collect_locked() does. */
        if (xbdf_queue_io_err(io) == -ENODEV) {
            pthread_mutex_lock(&hq->lock);
            if (hq->q.failed)
                xbdf_set_error(-ENODEV, "%s", hq->q.failed_why);
            pthread_mutex_unlock(&hq->lock);
        }
        xbdf_queue_run_io(&hq->q, io);
        ran++;
    }
    /* The budget left callbacks waiting: keep the fd readable so that an
     * event loop comes back for them. */
    if (ready(hq))
        wake(hq);
    return (int)ran;
}

/* With the queue and carrier locked: acknowledge the carrier's channel,
 * then consume its ring.  arm: re-arm the ring's rsp_event (the caller
 * may sleep next); a busy-poller passes false so that the backend does
 * not notify for what it finds. */
static void
collect_locked(struct xbdf_hqueue *hq, struct xbdf_hqueue *c, bool arm)
{
    int port;

    /* Acknowledge the event first, then look at the ring: a response
     * published after this point raises a new event. */
    while (c->cur != NULL && (port = xbd_evtchn_pending(c->cur->ev)) >= 0) {
        c->q.stats.notify_received++;
        xbd_evtchn_unmask(c->cur->ev, (uint32_t)port);
    }
    xbdf_queue_collect(&c->q, arm);
    /* We took the carrier's event: its own thread must learn of what we
     * finished for it (ours came to our inbox). */
    if (c != hq && xbdf_queue_has_done(&c->q))
        wake(c);
    /* A failed queue: say why on this thread, for the synchronous
     * helpers' message. */
    if (c->q.failed)
        xbdf_set_error(-ENODEV, "%s", c->q.failed_why);
    else if (hq->q.failed)
        xbdf_set_error(-ENODEV, "%s", hq->q.failed_why);
}

static int
process_queue(struct xbdf_hqueue *hq, unsigned int budget, bool arm)
{
    struct xbdf_hqueue *c;

    /* Consume the wake-up first: whatever it announced is looked at
     * below. */
    wake_consume(hq);
    c = lock_queue(hq);
    collect_locked(hq, c, arm);
    unlock_queue(hq, c);
    return run_ready(hq, budget);
}

int
xbdfront_process(struct xbdfront *h, unsigned int queue, unsigned int budget)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return process_queue(hq, budget, true);
}

/* Busy-poll: consume the carrier's ring without re-arming, no syscall;
 * true when callbacks are due. */
static bool
poll_once(struct xbdf_hqueue *hq)
{
    struct xbdf_hqueue *c = lock_queue(hq);

    bool r;

    xbdf_queue_collect(&c->q, false);
    if (c != hq && xbdf_queue_has_done(&c->q))
        wake(c);
    r = xbdf_queue_has_done(&hq->q);
    unlock_queue(hq, c);
    return r || inbox_ready(hq);
}

int
xbdfront_poll(struct xbdfront *h, unsigned int queue, int timeout_ms,
              unsigned int budget)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);
    struct pollfd pfd;
    int n;

    if (hq == NULL)
        return -xbdfront_get_errno();
    if (h->poll_us > 0) {
        /* Busy-poll without re-arming rsp_event (Linux's
         * RING_FINAL_CHECK_FOR_RESPONSES pattern: arm only when about to
         * sleep), so the backend does not notify for what we pick up. */
        int64_t until = now_us() + h->poll_us;

        /* No syscall while spinning: the event channel and wake-ups are
         * looked at before sleeping (a masked channel raises nothing
         * meanwhile). */
        do {
            if (poll_once(hq)) {
                hq->q.stats.polls++;
                return run_ready(hq, budget);
            }
        } while (now_us() < until);
    }
    /* About to sleep: re-arm, and look once more. */
    n = process_queue(hq, budget, true);
    if (n != 0)
        return n;
    pfd.fd = hq->epfd;
    pfd.events = POLLIN;
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
        return xbdf_set_error(-errno, "poll: %s", strerror(errno));
    return process_queue(hq, budget, true);
}

int
xbdfront_in_flight(struct xbdfront *h, unsigned int queue)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    /* The queue's own count, kept by its thread alone. */
    return (int)xbdf_queue_in_flight(&hq->q);
}

/* ---- synchronous helpers ----
 *
 * A synchronous call is an asynchronous one plus a wait on the caller's
 * thread, its completion state on the caller's stack.  The call returns
 * only once nothing can reach that state or the caller's buffer any more:
 * when the callback has run, or after the request was abandoned
 * (xbdf_queue_abandon) because the handle's limit passed or waiting
 * failed.  An abandoned request keeps its ring slot and pool pages until
 * the backend answers or the ring goes away (the backend may still write
 * those pages); its late response is consumed and dropped. */

struct sync_wait {
    bool done;
    int err;
    struct xbdf_io *io;         /* the request, valid until done */
};

static void
sync_done(void *ud, int err)
{
    struct sync_wait *s = ud;

    s->done = true;
    s->err = err;
}

/* Give up on s's request with err (-ETIMEDOUT after `ms`, or the error
 * of the wait, whose message stands).  Under every queue's lock: the
 * request may wait on its queue, sit on its carrier's ring or in its
 * inbox, and the control thread moves requests only under all of them. */
static int
sync_give_up(struct xbdfront *h, struct xbdf_hqueue *hq, struct sync_wait *s,
             int err, enum xbdf_io_op op, uint64_t len, uint64_t offset,
             unsigned int ms)
{
    struct xbdf_hqueue *c;
    char what[100], state[160];

    lock_all(h);
    xbdf_queue_abandon(&hq->q, s->io, err);
    for (unsigned int i = 0; i < h->nq; i++)
        xbdf_queue_drop_abandoned(&h->hq[i].q);
    c = hq->carrier;
    if (c->cur == NULL)
        snprintf(state, sizeof(state), "the backend went away and has not "
                 "come back");
    else
        snprintf(state, sizeof(state), "connected; requests unanswered on "
                 "%s ring: %" PRIu32, c == hq ? "the queue's" : "the shared",
                 c->q.ring.shadow.in_use);
    unlock_all(h);
    if (err != -ETIMEDOUT)
        return err;
    if (op == XBDF_IO_FLUSH)
        snprintf(what, sizeof(what), "flush");
    else
        snprintf(what, sizeof(what), "%s of %" PRIu64 " bytes at offset %"
                 PRIu64, op == XBDF_IO_READ ? "read"
                 : op == XBDF_IO_WRITE ? "write" : "discard", len, offset);
    return xbdf_set_error(-ETIMEDOUT, "%s: no response from the backend in "
                          "%u ms (%s)", what, ms, state);
}

static int
sync_call(struct xbdfront *h, unsigned int queue, enum xbdf_io_op op,
          void *buf, uint64_t len, uint64_t offset, unsigned int flags)
{
    struct sync_wait s = { false, 0, NULL };
    unsigned int limit = atomic_load(&h->sync_timeout_ms);
    int64_t deadline = now_ms() + limit;
    struct xbdf_hqueue *hq;
    int r = submit(h, queue, op, buf, len, offset, flags, sync_done, &s,
                   &s.io);

    if (r < 0)
        return r;
    hq = &h->hq[queue];
    while (!s.done) {
        int wait_ms = 1000;

        if (limit != 0) {
            int64_t left = deadline - now_ms();

            if (left <= 0) {
                /* One last look: it may have finished meanwhile. */
                process_queue(hq, 0, true);
                if (s.done)
                    break;
                return sync_give_up(h, hq, &s, -ETIMEDOUT, op, len, offset,
                                    limit);
            }
            if (left < wait_ms)
                wait_ms = (int)left;
        }
        r = xbdfront_poll(h, queue, wait_ms, 0);
        if (r < 0 && !s.done)
            return sync_give_up(h, hq, &s, r, op, len, offset, limit);
    }
    switch (s.err) {
    case 0:
        return 0;
    case -EIO:
        return xbdf_set_error(-EIO, "the backend reported an I/O error");
    case -EOPNOTSUPP:
        return xbdf_set_error(-EOPNOTSUPP, "the backend refused the "
                              "operation (EOPNOTSUPP)");
    case -ENODEV: {
        /* The queue said why on this thread when it failed the request. */
        char why[512];

        snprintf(why, sizeof(why), "%s", xbdfront_get_error());
        return xbdf_set_error(-ENODEV, "%s", why[0] != '\0' ? why
                              : "the device is broken or gone");
    }
    default:
        return xbdf_set_error(s.err, "I/O failed: %s", strerror(-s.err));
    }
}

int
xbdfront_pread(struct xbdfront *h, unsigned int queue, void *buf, size_t len,
               uint64_t offset, unsigned int flags)
{
    return sync_call(h, queue, XBDF_IO_READ, buf, len, offset, flags);
}

int
xbdfront_pwrite(struct xbdfront *h, unsigned int queue, const void *buf,
                size_t len, uint64_t offset, unsigned int flags)
{
    /* The queue only reads a write's buffer. */
    return sync_call(h, queue, XBDF_IO_WRITE, (void *)(uintptr_t)buf, len,
                     offset, flags);
}

int
xbdfront_flush(struct xbdfront *h, unsigned int queue, unsigned int flags)
{
    return sync_call(h, queue, XBDF_IO_FLUSH, NULL, 0, 0, flags);
}

int
xbdfront_discard(struct xbdfront *h, unsigned int queue, uint64_t len,
                 uint64_t offset, unsigned int flags)
{
    return sync_call(h, queue, XBDF_IO_DISCARD, NULL, len, offset, flags);
}

int
xbdfront_get_stats(struct xbdfront *h, unsigned int queue,
                   struct xbdfront_stats *st, size_t size)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);
    struct xbdfront_stats s;

    if (hq == NULL)
        return -xbdfront_get_errno();
    pthread_mutex_lock(&hq->lock);
    s = hq->q.stats;    /* cumulative across reconnects */
    pthread_mutex_unlock(&hq->lock);
    memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
    return 0;
}
