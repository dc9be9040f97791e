/* libxbdfront — handles: options, connecting over xenstore, the public
 * I/O calls on top of the queues.
 *
 * STATUS: compiled (type-checked against xbd-platform.h and libxenstore)
 * but not yet linked into libxbdfront.la nor tested: the platform layer's
 * implementation (sim-host branch) is not in main yet.  Once it is, this
 * file moves into libxbdfront.la, its symbols into libxbdfront.syms, and
 * the integration tests against xbd-backd on xbd-sim exercise it.
 * Exercised by hand against a build merged with sim-host (a scripted
 * backend in xenstore, no data path): one queue negotiated 4 ring pages,
 * indirect 256 and persistent grants, wrote the nodes and Initialised in
 * one transaction, connected, read size and features, closed to Closed.
 * With two queues the sim's transaction conflicted on every attempt (it
 * cannot create the missing queue-N/ parents inside a transaction) and
 * connect failed cleanly after 100 retries; with queue-N/ made beforehand
 * the two-queue layout was written and connected.
 * Not here yet: the control thread (recovery after the backend goes away,
 * resize), zero-copy pool buffers (xbdfront_buffer_alloc/free).
 *
 * Layering: this file does xenstore and the platform; every decision is
 * in the pure, unit-tested modules (xbdf-negotiate.c chooses and names the
 * nodes and drives the state table, xbdf-req.c parses the backend's nodes,
 * xbdf-queue.c carries the requests).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xenstore.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbdf-internal.h"
#include "xbdf-negotiate.h"
#include "xbdf-queue.h"
#include "xbdfront.h"

/* One queue: its ring, pool and event channel. */
struct xbdf_hqueue {
    struct xbdf_queue q;            /* valid once attached */
    struct xbd_evtchn *ev;          /* one handle per queue: one thread */
    int port;                       /* local port, -1 when none */
    void *ring;                     /* shared ring pages */
    uint32_t ring_refs[1u << XBD_RING_ORDER_LIMIT];
    void *pool;                     /* granted page pool */
    uint32_t *pool_refs;
    uint32_t pool_pages;
};

struct xbdfront {
    /* Options (before connect). */
    struct xbdf_opts opts;
    unsigned int poll_us, max_pending, connect_timeout_ms;
    xbdfront_resize_fn resize_fn;
    void *resize_data;

    /* Connection. */
    struct xbd_platform *plat;
    struct xbd_gntshr *gs;
    struct xs_handle *xs;
    uint32_t vdev, be_domid;
    char fe_dir[64];
    char *be_dir;
    int state;                      /* our XenbusState */
    struct xbdf_be_limits limits;
    struct xbdf_choice choice;
    struct xbdf_geom geom;
    uint32_t info;
    struct xbdf_hqueue *hq;
    unsigned int nq;
    bool connected;
};

/* ======================================================================
 * Handles and options
 * ====================================================================== */

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
            return xbdf_set_error(-e, "cannot write %s: %s", path,
                                  strerror(e));
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
 * Rings, pools, channels
 * ====================================================================== */

static int
notify_queue(void *arg)
{
    struct xbdf_hqueue *hq = arg;

    return xbd_evtchn_notify(hq->ev, (uint32_t)hq->port);
}

/* Give back what queue i holds.  A page the backend still maps cannot be
 * unshared (-EBUSY): it is left shared and never reused (XSA-396). */
static void
queue_release(struct xbdfront *h, struct xbdf_hqueue *hq)
{
    unsigned int pages = 1u << h->choice.ring_order;

    if (hq->q.attached)
        xbdf_queue_fini(&hq->q, -ECANCELED);
    if (hq->ring != NULL && xbd_gntshr_unshare(h->gs, hq->ring, pages) < 0)
        fprintf(stderr, "libxbdfront: ring pages still mapped by the "
                "backend, left quarantined\n");
    if (hq->pool != NULL &&
        xbd_gntshr_unshare(h->gs, hq->pool, hq->pool_pages) < 0)
        fprintf(stderr, "libxbdfront: pool pages still mapped by the "
                "backend, left quarantined\n");
    free(hq->pool_refs);
    if (hq->ev != NULL)
        xbd_evtchn_close(hq->ev);
    memset(hq, 0, sizeof(*hq));
    hq->port = -1;
}

static void
release_all(struct xbdfront *h)
{
    for (unsigned int i = 0; i < h->nq; i++)
        queue_release(h, &h->hq[i]);
    free(h->hq);
    h->hq = NULL;
    h->nq = 0;
}

/* Pages in a queue's pool: enough for a full indirect request and a good
 * part of the ring, bounded so that rings + pools stay within gntalloc's
 * default of 1024 grants for a small setup. */
static uint32_t
pool_size(const struct xbdf_choice *c)
{
    uint32_t entries = xbd_ring_entries(1u << c->ring_order);
    uint32_t p = entries * 4;

    if (p > 256)
        p = 256;
    if (c->indirect_segs > 0 && p < c->indirect_segs + 1)
        p = c->indirect_segs + 1;
    return p < XBDF_MIN_POOL_PAGES ? XBDF_MIN_POOL_PAGES : p;
}

static int
negotiate(struct xbdfront *h)
{
    char why[200];
    struct xbdf_node *nodes;
    uint32_t *refs, *ports;
    unsigned int pages;
    int r, n;

    r = xbdf_read_limits(be_reader, h, &h->limits, why, sizeof(why));
    if (r < 0)
        return xbdf_set_error(r, "%s: %s", h->be_dir, why);
    xbdf_choose(&h->limits, &h->opts, &h->choice);
    pages = 1u << h->choice.ring_order;
    h->hq = calloc(h->choice.queues, sizeof(*h->hq));
    h->nq = h->hq != NULL ? h->choice.queues : 0;
    for (unsigned int i = 0; i < h->nq; i++)
        h->hq[i].port = -1;
    refs = calloc((size_t)h->choice.queues * pages, sizeof(*refs));
    ports = calloc(h->choice.queues, sizeof(*ports));
    nodes = calloc(XBDF_MAX_NODES, sizeof(*nodes));
    if (h->hq == NULL || refs == NULL || ports == NULL || nodes == NULL) {
        r = xbdf_set_error(-ENOMEM, "out of memory negotiating");
        goto out;
    }
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];

        r = xbd_gntshr_share(h->gs, h->be_domid, pages, 1, hq->ring_refs,
                             &hq->ring);
        if (r < 0) {
            xbdf_set_error(r, "cannot grant %u ring pages: %s", pages,
                           xbd_platform_error());
            goto out;
        }
        memcpy(&refs[i * pages], hq->ring_refs, pages * sizeof(*refs));
        hq->pool_pages = pool_size(&h->choice);
        hq->pool_refs = calloc(hq->pool_pages, sizeof(*hq->pool_refs));
        if (hq->pool_refs == NULL) {
            r = xbdf_set_error(-ENOMEM, "out of memory for a pool");
            goto out;
        }
        r = xbd_gntshr_share(h->gs, h->be_domid, hq->pool_pages, 1,
                             hq->pool_refs, &hq->pool);
        if (r < 0) {
            xbdf_set_error(r, "cannot grant %" PRIu32 " buffer pages: %s",
                           hq->pool_pages, xbd_platform_error());
            goto out;
        }
        r = xbd_evtchn_open(h->plat, &hq->ev);
        if (r >= 0)
            r = xbd_evtchn_bind_unbound(hq->ev, h->be_domid);
        if (r < 0) {
            xbdf_set_error(r, "cannot allocate an event channel: %s",
                           xbd_platform_error());
            goto out;
        }
        hq->port = r;
        ports[i] = (uint32_t)r;
    }
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
        release_all(h);
    return r;
}

static int
connect_queues(struct xbdfront *h)
{
    char why[200];
    int r;

    memset(&h->geom, 0, sizeof(h->geom));
    r = xbdf_read_props(be_reader, h, &h->geom, &h->info, why, sizeof(why));
    if (r < 0)
        return xbdf_set_error(r, "%s: %s", h->be_dir, why);
    h->geom.max_indirect_segs = h->choice.indirect_segs;
    for (unsigned int i = 0; i < h->nq; i++) {
        struct xbdf_hqueue *hq = &h->hq[i];

        r = xbdf_queue_init(&hq->q, hq->ring, 1u << h->choice.ring_order,
                            &h->geom, (uint16_t)h->vdev, hq->pool,
                            hq->pool_refs, hq->pool_pages, notify_queue, hq,
                            h->max_pending);
        if (r < 0)
            return r;
    }
    r = set_state(h, XenbusStateConnected);
    if (r == 0)
        h->connected = true;
    return r;
}

/* ======================================================================
 * Connecting
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

/* Tell the backend we are going (Closing, then Closed) and give it a
 * bounded time to mirror each, so that it has unmapped our rings before
 * they are unshared; what it still maps then is quarantined by
 * queue_release(). */
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
    set_state(h, XenbusStateClosed);
    if (h->nq > 0)
        wait_backend(h, XenbusStateClosed, h->connect_timeout_ms);
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
    if (r < 0)
        return xbdf_set_error(r, "%s", xbd_platform_error());
    r = xbd_gntshr_open(h->plat, &h->gs);
    if (r < 0) {
        xbdf_set_error(r, "%s", xbd_platform_error());
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
    r = set_state(h, XenbusStateInitialising);
    if (r < 0)
        goto fail;

    deadline = now_ms() + h->connect_timeout_ms;
    for (;;) {
        enum xbdf_action a = xbdf_next_action(h->state, be_state(h));
        struct pollfd pfd;
        int64_t left;
        char **w;

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
            return 0;
        case XBDF_RESTART:
            release_all(h);
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
    close_handshake(h);
    release_all(h);
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
    return r;
}

void
xbdfront_close(struct xbdfront *h)
{
    if (h == NULL)
        return;
    close_handshake(h);
    release_all(h);
    if (h->xs != NULL)
        xs_close(h->xs);
    free(h->be_dir);
    if (h->gs != NULL)
        xbd_gntshr_close(h->gs);
    if (h->plat != NULL)
        xbd_platform_close(h->plat);
    free(h);
}

/* ======================================================================
 * Getters
 * ====================================================================== */

#define NEED_CONNECTED(h) do {                                            \
    if (!(h)->connected)                                                  \
        return xbdf_set_error(-ENOTCONN, "%s: not connected", __func__);  \
} while (0)

int64_t
xbdfront_get_size(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return (int64_t)h->geom.size;
}

int
xbdfront_get_sector_size(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return (int)h->geom.sector_size;
}

int
xbdfront_get_ring_pages(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return 1 << h->choice.ring_order;
}

int
xbdfront_get_queues(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return (int)h->nq;
}

int
xbdfront_get_indirect_segments(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return (int)h->choice.indirect_segs;
}

int
xbdfront_get_persistent(struct xbdfront *h)
{
    NEED_CONNECTED(h);
    return h->choice.persistent;
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

    NEED_CONNECTED(h);
    if (h->geom.flush)
        f |= XBDFRONT_FEATURE_FLUSH;
    if (h->geom.barrier)
        f |= XBDFRONT_FEATURE_BARRIER;
    if (h->geom.discard)
        f |= XBDFRONT_FEATURE_DISCARD;
    if (h->geom.discard_secure)
        f |= XBDFRONT_FEATURE_SECURE_DISCARD;
    if (h->info & VDISK_READONLY)
        f |= XBDFRONT_FEATURE_READONLY;
    if (h->info & VDISK_CDROM)
        f |= XBDFRONT_FEATURE_CDROM;
    if (h->info & VDISK_REMOVABLE)
        f |= XBDFRONT_FEATURE_REMOVABLE;
    if (!h->opts.trusted)
        f |= XBDFRONT_FEATURE_UNTRUSTED;
    return (int64_t)f;
}

/* ======================================================================
 * I/O
 * ====================================================================== */

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

int
xbdfront_aio_pread(struct xbdfront *h, unsigned int queue, void *buf,
                   size_t len, uint64_t offset, unsigned int flags,
                   xbdfront_completion_fn cb, void *user_data)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return xbdf_queue_submit(&hq->q, XBDF_IO_READ, buf, len, offset, flags,
                             cb, user_data);
}

int
xbdfront_aio_pwrite(struct xbdfront *h, unsigned int queue, const void *buf,
                    size_t len, uint64_t offset, unsigned int flags,
                    xbdfront_completion_fn cb, void *user_data)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    /* The queue only reads a write's buffer. */
    return xbdf_queue_submit(&hq->q, XBDF_IO_WRITE, (void *)(uintptr_t)buf,
                             len, offset, flags, cb, user_data);
}

int
xbdfront_aio_flush(struct xbdfront *h, unsigned int queue,
                   unsigned int flags, xbdfront_completion_fn cb,
                   void *user_data)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return xbdf_queue_submit(&hq->q, XBDF_IO_FLUSH, NULL, 0, 0, flags, cb,
                             user_data);
}

int
xbdfront_aio_discard(struct xbdfront *h, unsigned int queue, uint64_t len,
                     uint64_t offset, unsigned int flags,
                     xbdfront_completion_fn cb, void *user_data)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return xbdf_queue_submit(&hq->q, XBDF_IO_DISCARD, NULL, len, offset,
                             flags, cb, user_data);
}

int
xbdfront_queue_fd(struct xbdfront *h, unsigned int queue)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return xbd_evtchn_fd(hq->ev);
}

int
xbdfront_process(struct xbdfront *h, unsigned int queue, unsigned int budget)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);
    int port;

    if (hq == NULL)
        return -xbdfront_get_errno();
    /* Acknowledge the event first, then look at the ring: a response
     * published after this point raises a new event. */
    while ((port = xbd_evtchn_pending(hq->ev)) >= 0) {
        hq->q.stats.notify_received++;
        xbd_evtchn_unmask(hq->ev, (uint32_t)port);
    }
    return xbdf_queue_process(&hq->q, budget);
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
    n = xbdfront_process(h, queue, budget);
    if (n != 0)
        return n;
    if (h->poll_us > 0) {
        int64_t until = now_us() + h->poll_us;

        while (now_us() < until) {
            n = xbdf_queue_process(&hq->q, budget);
            if (n != 0) {
                hq->q.stats.polls++;
                return n;
            }
        }
    }
    pfd.fd = xbd_evtchn_fd(hq->ev);
    pfd.events = POLLIN;
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
        return xbdf_set_error(-errno, "poll: %s", strerror(errno));
    return xbdfront_process(h, queue, budget);
}

int
xbdfront_in_flight(struct xbdfront *h, unsigned int queue)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);

    if (hq == NULL)
        return -xbdfront_get_errno();
    return (int)xbdf_queue_in_flight(&hq->q);
}

/* ---- synchronous helpers ---- */

struct sync_wait {
    bool done;
    int err;
};

static void
sync_done(void *ud, int err)
{
    struct sync_wait *s = ud;

    s->done = true;
    s->err = err;
}

static int
sync_wait(struct xbdfront *h, unsigned int queue, struct sync_wait *s)
{
    while (!s->done) {
        int n = xbdfront_poll(h, queue, 1000, 0);

        if (n < 0)
            return n;
    }
    return s->err < 0 ? xbdf_set_error(s->err, "I/O failed") : 0;
}

int
xbdfront_pread(struct xbdfront *h, unsigned int queue, void *buf, size_t len,
               uint64_t offset, unsigned int flags)
{
    struct sync_wait s = { false, 0 };
    int r = xbdfront_aio_pread(h, queue, buf, len, offset, flags, sync_done,
                               &s);

    return r < 0 ? r : sync_wait(h, queue, &s);
}

int
xbdfront_pwrite(struct xbdfront *h, unsigned int queue, const void *buf,
                size_t len, uint64_t offset, unsigned int flags)
{
    struct sync_wait s = { false, 0 };
    int r = xbdfront_aio_pwrite(h, queue, buf, len, offset, flags, sync_done,
                                &s);

    return r < 0 ? r : sync_wait(h, queue, &s);
}

int
xbdfront_flush(struct xbdfront *h, unsigned int queue, unsigned int flags)
{
    struct sync_wait s = { false, 0 };
    int r = xbdfront_aio_flush(h, queue, flags, sync_done, &s);

    return r < 0 ? r : sync_wait(h, queue, &s);
}

int
xbdfront_discard(struct xbdfront *h, unsigned int queue, uint64_t len,
                 uint64_t offset, unsigned int flags)
{
    struct sync_wait s = { false, 0 };
    int r = xbdfront_aio_discard(h, queue, len, offset, flags, sync_done, &s);

    return r < 0 ? r : sync_wait(h, queue, &s);
}

int
xbdfront_get_stats(struct xbdfront *h, unsigned int queue,
                   struct xbdfront_stats *st, size_t size)
{
    struct xbdf_hqueue *hq = get_queue(h, queue);
    struct xbdfront_stats s;

    if (hq == NULL)
        return -xbdfront_get_errno();
    s = hq->q.stats;
    s.ring_requests = hq->q.ring.ring_requests;
    s.notify_sent = hq->q.ring.notify_sent;
    memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
    return 0;
}
