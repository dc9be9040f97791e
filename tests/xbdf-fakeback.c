/* xbdf-fakeback — a scripted blkif backend for testing libxbdfront.
 *
 * Run as dom0 (inside xbd-sim) after `xbdctl block-attach`:
 *
 *   xbdf-fakeback BACKEND-DIR [OPTION]...
 *
 * It plays the backend's side of the protocol in the smallest honest way:
 * publishes its limits and InitWait, maps the frontend's rings, binds the
 * event channels, publishes the device's properties and Connected, then
 * answers requests from an image held in memory (or in --image FILE) with
 * grant copies.  On command it lies, so that tests can check that the
 * library fails safely:
 *
 *   --lie bad-id       the Nth response carries an id never issued
 *   --lie wrong-op     ... echoes the wrong operation
 *   --lie bad-status   ... has a status blkif does not define
 *   --lie replay       ... is sent twice
 *   --lie replay-later the Nth request is answered with the previous
 *                      response's id (completed already, its slot maybe
 *                      reused) and never answered itself
 *   --lie overflow     ... is followed by more responses than requests
 *   --lie out-of-range-id  ... carries an id whose slot is beyond the ring
 *   --lie stale-id     ... carries the id of a request already answered
 *   --lie keep-mapped  never unmap the frontend's rings (XSA-396: it must
 *                      not reuse pages we still map)
 *   --lie storm        notify 100 extra times with every batch of
 *                      responses (XSA-391), answering honestly
 *   --lie late         the Nth request is left unanswered (not even
 *                      carried out) until the next request on its ring
 *                      arrives; then it is carried out and answered,
 *                      before that one.  With --lie-value K, K requests
 *                      are held so: the Nth, the N+2th, ...  For a
 *                      frontend that gave up waiting (a sync timeout)
 *   --lie-at N         which response lies (default 1, the first)
 *   --lie-value N      the operation wrong-op echoes, the status
 *                      bad-status sends (as an int16; default 7)
 *   --node KEY=VALUE   publish this node of ours verbatim, over whatever
 *                      the options above would write (repeatable): junk
 *                      limits and properties for the frontend to survive
 *   --sectors STRING   publish this `sectors` value verbatim (e.g. 0, abc)
 *   --bounce N         after N requests, drop the ring with whatever is in
 *                      flight unanswered, go Closed, and when the frontend
 *                      comes back (Initialising) serve it again, with
 *                      --max-order2 / --max-queues2 as the new limits: a
 *                      backend restart, for the library's recovery
 *   --sectors2 STRING  after a --bounce, publish this `sectors` value
 *   --gone             after a --bounce, never come back (stay Closed):
 *                      the frontend waits for a backend that is gone
 *   --resize-at N      after N requests, rewrite `sectors` (doubling the
 *                      size when the image is in memory) and Connected
 *
 * Limits: --max-order N (default 2), --max-queues N (4), --indirect N
 * (64; 0: no feature-max-indirect-segments node), --persistent 0|1 (1),
 * --flush 0|1 (1), --discard 0|1 (1), --size BYTES (8 MiB; or the image's
 * size), --sector-size N (512).
 *
 * It exits 0 when the frontend has closed (or on SIGTERM), 1 on an error.
 * A test helper: single-threaded and simple rather than fast; every value
 * the frontend wrote is still checked, because the frontend under test may
 * be wrong.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbd-ring.h"

#define MAXQ 16

/* Every request layout; operation is the first byte of each. */
union req {
    struct blkif_request rw;
    struct blkif_request_discard d;
    struct blkif_request_indirect ind;
};

enum lie { LIE_NONE, LIE_BAD_ID, LIE_WRONG_OP, LIE_BAD_STATUS, LIE_REPLAY,
           LIE_OVERFLOW, LIE_REPLAY_LATER, LIE_RANGE_ID, LIE_STALE_ID,
           LIE_KEEP_MAPPED, LIE_STORM, LIE_LATE };

#define MAX_NODES 16
#define OPT_NODE 256
#define OPT_LIE_VALUE 257

struct fq {
    blkif_back_ring_t br;
    void *sring;
    unsigned int pages;
    int lport;
};

static struct {
    struct xs_handle *xs;
    struct xbd_platform *plat;
    struct xbd_gnttab *gt;
    struct xbd_evtchn *ev;
    const char *be;
    char *fe;
    uint32_t fe_domid;
    /* options */
    unsigned int max_order, max_queues, indirect, max_order2, max_queues2;
    bool persistent, flush, discard;
    uint64_t size;
    uint32_t sector_size;
    const char *sectors_str, *sectors2_str, *image;
    enum lie lie;
    uint64_t lie_at, bounce, resize_at;
    /* state */
    char *data;
    int state;
    struct fq q[MAXQ];
    unsigned int nq;
    uint64_t requests, responses;
    bool gone;
    bool lied, bounced, resized, served, served2;
    uint64_t last_id;               /* of the last response sent */
    uint8_t last_op;
} B = {
    .max_order = 2, .max_queues = 4, .indirect = 64, .max_order2 = 2,
    .max_queues2 = 4, .persistent = true, .flush = true, .discard = true,
    .size = 8u << 20, .sector_size = 512, .lie_at = 1,
};

/* --node and --lie-value */
static struct {
    const char *key[MAX_NODES], *val[MAX_NODES];
    unsigned int n;
    bool have_value;
    int64_t value;
    uint64_t last_id;
    bool have_last_id;
} X;

/* --lie late: the request held back. */
static struct {
    bool held;
    struct fq *q;
    union req req;
} H;

static volatile sig_atomic_t stop;

__attribute__((format(printf, 1, 2), noreturn)) static void
die(const char *fmt, ...)
{
    va_list ap;

    fputs("xbdf-fakeback: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static char *
rd(const char *dir, const char *key)
{
    char path[512];
    unsigned int len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_read(B.xs, XBT_NULL, path, &len);
}

__attribute__((format(printf, 2, 3))) static void
wr(const char *key, const char *fmt, ...)
{
    char path[256], val[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s", B.be, key);
    if (!xs_write(B.xs, XBT_NULL, path, val, (unsigned int)strlen(val)))
        die("cannot write %s: %s", path, strerror(errno));
}

static void
set_state(int s)
{
    B.state = s;
    wr("state", "%d", s);
}

static int
fe_state(void)
{
    char *v = rd(B.fe, "state");
    uint32_t s = XenbusStateClosed;

    if (v == NULL || xbd_parse_u32_range(v, 0, 8, &s) < 0)
        s = XenbusStateClosed;
    free(v);
    return (int)s;
}

/* An unsigned node of the frontend; -1 when absent or malformed. */
static int64_t
fe_uint(const char *key)
{
    char *v = rd(B.fe, key);
    uint32_t x;
    int r = v != NULL ? xbd_parse_u32_range(v, 0, UINT32_MAX, &x) : -1;

    free(v);
    return r < 0 ? -1 : (int64_t)x;
}

/* --node: what the frontend must survive, over our honest values. */
static void
publish_overrides(void)
{
    for (unsigned int i = 0; i < X.n; i++)
        wr(X.key[i], "%s", X.val[i]);
}

static void
publish_limits(void)
{
    wr("max-ring-page-order", "%u", B.max_order);
    wr("max-ring-pages", "%u", 1u << B.max_order);
    wr("multi-queue-max-queues", "%u", B.max_queues);
    if (B.indirect > 0) {
        wr("feature-max-indirect-segments", "%u", B.indirect);
    } else {
        char path[512];

        /* An earlier run's node must not stay behind. */
        snprintf(path, sizeof(path), "%s/feature-max-indirect-segments", B.be);
        xs_rm(B.xs, XBT_NULL, path);
    }
    wr("feature-persistent", "%u", B.persistent);
    publish_overrides();
    set_state(XenbusStateInitWait);
}

static void
publish_props(void)
{
    if (B.sectors_str != NULL)
        wr("sectors", "%s", B.sectors_str);
    else
        wr("sectors", "%" PRIu64, B.size / 512);
    wr("sector-size", "%u", B.sector_size);
    wr("info", "0");
    wr("feature-flush-cache", "%u", B.flush);
    wr("feature-discard", "%u", B.discard);
    if (B.discard) {
        wr("discard-granularity", "%u", B.sector_size);
        wr("discard-alignment", "0");
    }
    publish_overrides();
}

/* ======================================================================
 * Connecting: read and check the frontend's transport nodes
 * ====================================================================== */

static void
disconnect(void)
{
    for (unsigned int i = 0; i < B.nq; i++) {
        if (B.q[i].sring != NULL && B.lie != LIE_KEEP_MAPPED)
            xbd_gnttab_unmap(B.gt, B.q[i].sring, B.q[i].pages);
        if (B.q[i].lport >= 0)
            xbd_evtchn_unbind(B.ev, (uint32_t)B.q[i].lport);
    }
    memset(B.q, 0, sizeof(B.q));
    B.nq = 0;
    H.held = false;     /* gone with its ring */
}

static int
connect_rings(void)
{
    int64_t order = fe_uint("ring-page-order"), nq = fe_uint("multi-queue-num-queues");
    unsigned int pages;

    if (order < 0)
        order = 0;
    if (nq < 0)
        nq = 1;
    if (order > B.max_order || nq < 1 || nq > B.max_queues || nq > MAXQ) {
        fprintf(stderr, "xbdf-fakeback: frontend asked for order %" PRId64
                " and %" PRId64 " queues, beyond our limits\n", order, nq);
        return -1;
    }
    pages = 1u << order;
    B.nq = (unsigned int)nq;
    for (unsigned int i = 0; i < B.nq; i++) {
        char dir[300], key[32];
        uint32_t refs[256];
        int64_t port, ref;
        int lp;

        if (nq == 1)
            snprintf(dir, sizeof(dir), "%s", B.fe);
        else
            snprintf(dir, sizeof(dir), "%s/queue-%u", B.fe, i);
        for (unsigned int p = 0; p < pages; p++) {
            char *v;
            uint32_t x;

            if (pages == 1)
                snprintf(key, sizeof(key), "ring-ref");
            else
                snprintf(key, sizeof(key), "ring-ref%u", p);
            v = rd(dir, key);
            ref = v != NULL && xbd_parse_u32_range(v, 0, UINT32_MAX, &x) == 0
                  ? (int64_t)x : -1;
            free(v);
            if (ref < 0) {
                fprintf(stderr, "xbdf-fakeback: %s/%s missing\n", dir, key);
                return -1;
            }
            refs[p] = (uint32_t)ref;
        }
        {
            char *v = rd(dir, "event-channel");
            uint32_t x;

            port = v != NULL && xbd_parse_u32_range(v, 0, UINT32_MAX, &x) == 0
                   ? (int64_t)x : -1;
            free(v);
        }
        if (port < 0) {
            fprintf(stderr, "xbdf-fakeback: %s/event-channel missing\n", dir);
            return -1;
        }
        if (xbd_gnttab_map(B.gt, B.fe_domid, pages, refs, 1,
                           &B.q[i].sring) < 0) {
            fprintf(stderr, "xbdf-fakeback: map ring: %s\n",
                    xbd_platform_error());
            return -1;
        }
        B.q[i].pages = pages;
        BACK_RING_INIT(&B.q[i].br, (struct blkif_sring *)B.q[i].sring,
                       (size_t)pages * XBD_PAGE_SIZE);
        lp = xbd_evtchn_bind_interdomain(B.ev, B.fe_domid, (uint32_t)port);
        if (lp < 0) {
            fprintf(stderr, "xbdf-fakeback: bind: %s\n", xbd_platform_error());
            return -1;
        }
        B.q[i].lport = lp;
    }
    return 0;
}

/* ======================================================================
 * Serving requests
 * ====================================================================== */

/* Copy one segment between the image and the frontend's page. */
static int
copy_seg(uint32_t gref, unsigned int first, unsigned int last,
         uint64_t byte_off, bool to_guest)
{
    struct xbd_gnt_copy_seg s;
    uint32_t len;

    if (first > last || last >= XBD_SECTORS_PER_PAGE)
        return -1;
    len = (last - first + 1) * 512u;
    if (byte_off > B.size || len > B.size - byte_off)
        return -1;
    memset(&s, 0, sizeof(s));
    if (to_guest) {
        s.source.virt = B.data + byte_off;
        s.dest.foreign.ref = gref;
        s.dest.foreign.offset = (uint16_t)(first * 512u);
        s.dest.foreign.domid = (uint16_t)B.fe_domid;
        s.flags = XBD_GNTCOPY_DEST_GREF;
    } else {
        s.source.foreign.ref = gref;
        s.source.foreign.offset = (uint16_t)(first * 512u);
        s.source.foreign.domid = (uint16_t)B.fe_domid;
        s.dest.virt = B.data + byte_off;
        s.flags = XBD_GNTCOPY_SOURCE_GREF;
    }
    s.len = (uint16_t)len;
    if (xbd_gnttab_copy(B.gt, 1, &s) < 0 || s.status != GNTST_okay)
        return -1;
    return (int)len;
}

static int16_t
do_rw(uint8_t op, uint64_t sector, const struct blkif_request_segment *segs,
      unsigned int n)
{
    uint64_t off = sector * 512u;

    for (unsigned int i = 0; i < n; i++) {
        int len = copy_seg(segs[i].gref, segs[i].first_sect,
                           segs[i].last_sect, off, op == BLKIF_OP_READ);

        if (len < 0)
            return BLKIF_RSP_ERROR;
        off += (uint64_t)len;
    }
    return BLKIF_RSP_OKAY;
}

static int16_t
handle(const union req *req, uint8_t *op_out)
{
    uint8_t op = req->rw.operation;

    *op_out = op;
    switch (op) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
        if (req->rw.nr_segments == 0 ||
            req->rw.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST)
            return BLKIF_RSP_ERROR;
        return do_rw(op, req->rw.sector_number, req->rw.seg,
                     req->rw.nr_segments);
    case BLKIF_OP_INDIRECT: {
        unsigned int n = req->ind.nr_segments;
        unsigned int np = (n + XBD_SEGS_PER_INDIRECT_PAGE - 1) /
                          XBD_SEGS_PER_INDIRECT_PAGE;
        struct blkif_request_segment *segs;
        int16_t st = BLKIF_RSP_OKAY;

        *op_out = op;
        if (n == 0 || n > B.indirect ||
            (req->ind.indirect_op != BLKIF_OP_READ &&
             req->ind.indirect_op != BLKIF_OP_WRITE))
            return BLKIF_RSP_ERROR;
        segs = malloc((size_t)np * XBD_PAGE_SIZE);
        if (segs == NULL)
            return BLKIF_RSP_ERROR;
        for (unsigned int p = 0; p < np && st == BLKIF_RSP_OKAY; p++) {
            struct xbd_gnt_copy_seg s;

            memset(&s, 0, sizeof(s));
            s.source.foreign.ref = req->ind.indirect_grefs[p];
            s.source.foreign.domid = (uint16_t)B.fe_domid;
            s.dest.virt = (char *)segs + (size_t)p * XBD_PAGE_SIZE;
            s.len = XBD_PAGE_SIZE;
            s.flags = XBD_GNTCOPY_SOURCE_GREF;
            if (xbd_gnttab_copy(B.gt, 1, &s) < 0 || s.status != GNTST_okay)
                st = BLKIF_RSP_ERROR;
        }
        if (st == BLKIF_RSP_OKAY)
            st = do_rw(req->ind.indirect_op, req->ind.sector_number, segs, n);
        free(segs);
        return st;
    }
    case BLKIF_OP_FLUSH_DISKCACHE:
        return B.flush ? BLKIF_RSP_OKAY : BLKIF_RSP_EOPNOTSUPP;
    case BLKIF_OP_DISCARD: {
        uint64_t off = req->d.sector_number * 512u;
        uint64_t len = req->d.nr_sectors * 512u;

        if (!B.discard)
            return BLKIF_RSP_EOPNOTSUPP;
        if (off > B.size || len > B.size - off)
            return BLKIF_RSP_ERROR;
        memset(B.data + off, 0, len);
        return BLKIF_RSP_OKAY;
    }
    default:
        return BLKIF_RSP_EOPNOTSUPP;
    }
}

static void
respond(struct fq *q, uint64_t id, uint8_t op, int16_t st)
{
    struct blkif_response *r = RING_GET_RESPONSE(&q->br, q->br.rsp_prod_pvt);

    r->id = id;
    r->operation = op;
    r->status = st;
    B.last_id = id;
    B.last_op = op;
    q->br.rsp_prod_pvt++;
    B.responses++;
}

static void
push(struct fq *q)
{
    int notify;

    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&q->br, notify);
    if (notify)
        xbd_evtchn_notify(B.ev, (uint32_t)q->lport);
    for (int i = 0; B.lie == LIE_STORM && i < 100; i++)
        xbd_evtchn_notify(B.ev, (uint32_t)q->lport);
}

/* Serve one queue; returns false when a --bounce should happen now. */
static bool
serve(struct fq *q)
{
    int more;

    do {
        RING_IDX rc = q->br.req_cons, rp = q->br.sring->req_prod;

        xen_rmb();      /* requests up to rp are written before rp */
        if (rp - rc > RING_SIZE(&q->br))
            die("frontend's req_prod %u is beyond the ring (cons %u)", rp, rc);
        while (rc != rp) {
            union req req;
            uint8_t op;
            int16_t st;

            memcpy(&req, RING_GET_REQUEST(&q->br, rc), sizeof(req));
            xbd_barrier();      /* use our copy, never the shared one */
            q->br.req_cons = ++rc;
            B.requests++;
            if (B.bounce != 0 && !B.bounced && B.requests > B.bounce)
                return false;   /* this one stays unanswered */
            if (H.held && H.q == q) {
                /* --lie late: the held request's turn, before this one. */
                H.held = false;
                st = handle(&H.req, &op);
                respond(q, H.req.rw.id, op, st);
            }
            if (B.lie == LIE_LATE && B.requests >= B.lie_at &&
                (B.requests - B.lie_at) % 2 == 0 &&
                (B.requests - B.lie_at) / 2 <
                    (uint64_t)(X.have_value ? X.value : 1)) {
                H.held = true;
                H.q = q;
                H.req = req;
                continue;
            }
            st = handle(&req, &op);
            if (B.lie != LIE_NONE && B.lie < LIE_KEEP_MAPPED && !B.lied &&
                B.responses + 1 >= B.lie_at) {
                B.lied = true;
                switch (B.lie) {
                case LIE_BAD_ID:
                    respond(q, req.rw.id ^ UINT64_C(0x5a5a00000000), op, st);
                    break;
                case LIE_WRONG_OP:
                    respond(q, req.rw.id, X.have_value ? (uint8_t)X.value
                            : op == BLKIF_OP_READ ? BLKIF_OP_WRITE : BLKIF_OP_READ, st);
                    break;
                case LIE_BAD_STATUS:
                    respond(q, req.rw.id, op, X.have_value ? (int16_t)X.value : 7);
                    break;
                case LIE_RANGE_ID:
                    /* the slot half of the id far beyond any ring */
                    respond(q, (req.rw.id & ~UINT64_C(0xffffffff)) | 0xfffffff0u,
                            op, st);
                    break;
                case LIE_STALE_ID:
                    if (!X.have_last_id)
                        die("--lie stale-id needs --lie-at 2 or later");
                    respond(q, X.last_id, op, st);
                    break;
                case LIE_REPLAY:
                    respond(q, req.rw.id, op, st);
                    respond(q, req.rw.id, op, st);
                    break;
                case LIE_REPLAY_LATER:
                    respond(q, B.last_id, B.last_op, BLKIF_RSP_OKAY);
                    break;
                case LIE_OVERFLOW:
                    respond(q, req.rw.id, op, st);
                    for (unsigned int k = 0; k < RING_SIZE(&q->br) + 2; k++)
                        respond(q, k, BLKIF_OP_READ, BLKIF_RSP_OKAY);
                    break;
                case LIE_NONE:
                case LIE_KEEP_MAPPED:   /* not lies about a response */
                case LIE_STORM:
                case LIE_LATE:
                    break;
                }
            } else {
                respond(q, req.rw.id, op, st);
            }
            X.last_id = req.rw.id;
            X.have_last_id = true;
            if (B.resize_at != 0 && !B.resized && B.requests >= B.resize_at) {
                B.resized = true;
                push(q);
                B.size /= 2;    /* shrinking keeps the image valid */
                wr("sectors", "%" PRIu64, B.size / 512);
                set_state(XenbusStateConnected);
            }
        }
        push(q);
        RING_FINAL_CHECK_FOR_REQUESTS(&q->br, more);
    } while (more);
    return true;
}

/* ======================================================================
 * Main loop
 * ====================================================================== */

static void
react(void)
{
    int fs = fe_state();

    switch (B.state) {
    case XenbusStateInitWait:
        if (fs == XenbusStateInitialised || fs == XenbusStateConnected) {
            if (connect_rings() < 0) {
                disconnect();
                wr("error", "bad transport nodes");
                set_state(XenbusStateClosing);
                return;
            }
            publish_props();
            set_state(XenbusStateConnected);
            B.served = true;
            B.served2 = B.bounced;
        }
        break;
    case XenbusStateConnected:
        if (fs == XenbusStateClosing || fs == XenbusStateClosed ||
            fs == XenbusStateInitialising) {
            disconnect();
            set_state(XenbusStateClosed);
        }
        break;
    case XenbusStateClosing:
    case XenbusStateClosed:
        if (fs == XenbusStateInitialising && B.bounced) {
            if (!B.gone)
                publish_limits();
        } else if (fs == XenbusStateClosed || fs == XenbusStateClosing) {
            if (B.state != XenbusStateClosed)
                set_state(XenbusStateClosed);
            if (B.served && (B.bounce == 0 || B.served2 || B.gone) &&
                B.lie != LIE_KEEP_MAPPED)      /* keep them until SIGTERM */
                stop = 1;
        }
        break;
    default:
        break;
    }
}

/* --node KEY=VALUE (VALUE may be anything, even empty) and --lie-value
 * N (signed). */
static void
take_string_option(int c, const char *arg)
{
    if (c == OPT_LIE_VALUE) {
        char *end;

        errno = 0;
        X.value = strtoll(arg, &end, 10);
        if (errno != 0 || end == arg || *end != '\0')
            die("--lie-value \"%s\": not a number", arg);
        X.have_value = true;
        return;
    }
    const char *eq = strchr(arg, '=');

    if (eq == NULL || eq == arg || X.n == MAX_NODES)
        die("--node \"%s\": KEY=VALUE, at most %d times", arg, MAX_NODES);
    X.key[X.n] = strndup(arg, (size_t)(eq - arg));
    X.val[X.n] = eq + 1;
    if (X.key[X.n] == NULL)
        die("out of memory");
    X.n++;
}

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "node", 1, NULL, OPT_NODE }, { "lie-value", 1, NULL, OPT_LIE_VALUE },
        { "max-order", 1, NULL, 'o' }, { "max-queues", 1, NULL, 'q' },
        { "max-order2", 1, NULL, 'O' }, { "max-queues2", 1, NULL, 'Q' },
        { "indirect", 1, NULL, 'i' }, { "persistent", 1, NULL, 'p' },
        { "flush", 1, NULL, 'f' }, { "discard", 1, NULL, 'd' },
        { "size", 1, NULL, 's' }, { "sector-size", 1, NULL, 'S' },
        { "sectors", 1, NULL, 'n' }, { "image", 1, NULL, 'I' },
        { "lie", 1, NULL, 'l' }, { "lie-at", 1, NULL, 'L' },
        { "bounce", 1, NULL, 'b' }, { "resize-at", 1, NULL, 'r' },
        { "sectors2", 1, NULL, 'N' }, { "gone", 0, NULL, 'g' },
        { NULL, 0, NULL, 0 },
    };
    char *v;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == OPT_NODE || c == OPT_LIE_VALUE) {
            take_string_option(c, optarg);
            continue;
        }
        uint64_t x = 0;

        if (c != 'n' && c != 'N' && c != 'I' && c != 'l' && c != 'g' &&
            c != '?' &&
            xbd_parse_u64(optarg, &x) < 0)
            die("option argument \"%s\": not a number", optarg);
        switch (c) {
        case 'o': B.max_order = B.max_order2 = (unsigned int)x; break;
        case 'q': B.max_queues = B.max_queues2 = (unsigned int)x; break;
        case 'O': B.max_order2 = (unsigned int)x; break;
        case 'Q': B.max_queues2 = (unsigned int)x; break;
        case 'i': B.indirect = (unsigned int)x; break;
        case 'p': B.persistent = x != 0; break;
        case 'f': B.flush = x != 0; break;
        case 'd': B.discard = x != 0; break;
        case 's': B.size = x; break;
        case 'S': B.sector_size = (uint32_t)x; break;
        case 'n': B.sectors_str = optarg; break;
        case 'N': B.sectors2_str = optarg; break;
        case 'I': B.image = optarg; break;
        case 'L': B.lie_at = x; break;
        case 'b': B.bounce = x; break;
        case 'r': B.resize_at = x; break;
        case 'g': B.gone = true; break;
        case 'l':
            B.lie = strcmp(optarg, "bad-id") == 0 ? LIE_BAD_ID
                    : strcmp(optarg, "wrong-op") == 0 ? LIE_WRONG_OP
                    : strcmp(optarg, "bad-status") == 0 ? LIE_BAD_STATUS
                    : strcmp(optarg, "replay") == 0 ? LIE_REPLAY
                    : strcmp(optarg, "overflow") == 0 ? LIE_OVERFLOW
                    : strcmp(optarg, "replay-later") == 0 ? LIE_REPLAY_LATER
                    : strcmp(optarg, "out-of-range-id") == 0 ? LIE_RANGE_ID
                    : strcmp(optarg, "stale-id") == 0 ? LIE_STALE_ID
                    : strcmp(optarg, "keep-mapped") == 0 ? LIE_KEEP_MAPPED
                    : strcmp(optarg, "storm") == 0 ? LIE_STORM
                    : strcmp(optarg, "late") == 0 ? LIE_LATE
                    : LIE_NONE;
            if (B.lie == LIE_NONE)
                die("--lie %s: unknown", optarg);
            break;
        default:
            die("usage: xbdf-fakeback BACKEND-DIR [OPTION]... (see the "
                "source)");
        }
    }
    if (optind + 1 != argc)
        die("usage: xbdf-fakeback BACKEND-DIR [OPTION]...");
    B.be = argv[optind];
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    if (B.image != NULL) {
        int fd = open(B.image, O_RDWR);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
            die("%s: %s", B.image, strerror(errno));
        B.size = (uint64_t)st.st_size;
        B.data = mmap(NULL, B.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (B.data == MAP_FAILED)
            die("mmap %s: %s", B.image, strerror(errno));
        close(fd);
    } else {
        B.data = calloc(1, B.size);
        if (B.data == NULL)
            die("out of memory for a %" PRIu64 "-byte image", B.size);
    }
    B.xs = xs_open(0);
    if (B.xs == NULL)
        die("cannot open xenstore: %s", strerror(errno));
    if (xbd_platform_open(&B.plat, NULL) < 0 ||
        xbd_gnttab_open(B.plat, &B.gt) < 0 ||
        xbd_evtchn_open(B.plat, &B.ev) < 0)
        die("%s", xbd_platform_error());
    B.fe = rd(B.be, "frontend");
    v = rd(B.be, "frontend-id");
    if (B.fe == NULL || v == NULL ||
        xbd_parse_u32_range(v, 1, 0x7fef, &B.fe_domid) < 0)
        die("%s: no frontend/frontend-id", B.be);
    free(v);
    if (!xs_watch(B.xs, B.fe, "fe"))
        die("cannot watch %s", B.fe);
    publish_limits();

    while (!stop) {
        struct pollfd p[2] = {
            { .fd = xs_fileno(B.xs), .events = POLLIN },
            { .fd = xbd_evtchn_fd(B.ev), .events = POLLIN },
        };
        char **w;
        int port;

        if (poll(p, 2, 200) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        while ((w = xs_check_watch(B.xs)) != NULL)
            free(w);
        react();
        while ((port = xbd_evtchn_pending(B.ev)) >= 0)
            xbd_evtchn_unmask(B.ev, (uint32_t)port);
        for (unsigned int i = 0; B.state == XenbusStateConnected && i < B.nq; i++)
            if (!serve(&B.q[i])) {
                /* --bounce: vanish with requests in flight, as a killed
                 * daemon would, and come back with the second limits. */
                B.bounced = true;
                disconnect();
                set_state(XenbusStateClosed);
                B.max_order = B.max_order2;
                B.max_queues = B.max_queues2;
                if (B.sectors2_str != NULL)
                    B.sectors_str = B.sectors2_str;
                break;
            }
    }
    disconnect();
    set_state(XenbusStateClosed);
    xbd_evtchn_close(B.ev);
    xbd_gnttab_close(B.gt);
    xbd_platform_close(B.plat);
    xs_close(B.xs);
    return 0;
}
