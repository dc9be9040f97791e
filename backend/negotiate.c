/* xbd-backd — strict parsing of the probe and connect nodes, and the device
 * state machine's decision table.  See negotiate.h. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "negotiate.h"
#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-ring.h"

/* Event channel ports: 0 is never valid; the FIFO ABI has 2^17 ports. */
#define PORT_MAX ((1u << 17) - 1)

/* The longest `params` we accept: a path or URI plus options. */
#define PARAMS_MAX 4096u

__attribute__((format(printf, 3, 4))) static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* A value for an error message: short, and printable whatever the guest
 * wrote (it ends up in a log line and a xenstore node). */
static const char *
shown(const char *v, char *buf, size_t len)
{
    size_t i, n = 0;

    for (i = 0; v[i] != '\0' && n + 4 < len; i++)
        buf[n++] = (v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"') ? v[i] : '?';
    if (v[i] != '\0' && n + 4 <= len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Read and strictly parse a uint32 node in [min, max].  Returns 1 when
 * present and good, 0 when absent, -EINVAL (err set) when malformed or out
 * of range. */
static int
get_u32(xbd_get_fn get, void *ctx, const char *key, uint32_t min,
        uint32_t max, uint32_t *out, char *err, size_t errlen)
{
    char *v = get(ctx, key);
    char sb[40];
    int r;

    if (v == NULL)
        return 0;
    r = xbd_parse_u32_range(v, min, max, out);
    if (r == -ERANGE)
        fail(err, errlen, "%s is \"%s\", out of range: expected %u..%u",
             key, shown(v, sb, sizeof(sb)), min, max);
    else if (r < 0)
        fail(err, errlen, "%s is \"%s\", not a decimal number", key,
             shown(v, sb, sizeof(sb)));
    free(v);
    return r < 0 ? -EINVAL : 1;
}

/* Same for a 0|1 node, with a default when absent. */
static int
get_bool(xbd_get_fn get, void *ctx, const char *key, bool dflt, bool *out,
         char *err, size_t errlen)
{
    char *v = get(ctx, key);
    char sb[40];
    int r;

    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    r = xbd_parse_bool(v, out);
    if (r < 0)
        fail(err, errlen, "%s is \"%s\": expected 0 or 1", key,
             shown(v, sb, sizeof(sb)));
    free(v);
    return r < 0 ? -EINVAL : 0;
}

/* ---- Probe ----------------------------------------------------------------- */

void
xbd_probe_free(struct xbd_probe *p)
{
    free(p->params);
    free(p->type);
    free(p->frontend);
    p->params = p->type = p->frontend = NULL;
}

int
xbd_parse_online(const char *v, bool *online)
{
    if (v == NULL) {
        *online = true;
        return 0;
    }
    return xbd_parse_bool(v, online) < 0 ? -EINVAL : 0;
}

static int
probe_strings(xbd_get_fn get, void *ctx, uint32_t fe_domid, uint32_t devid,
              struct xbd_probe *p, char *err, size_t errlen)
{
    char want[96], sb[64];
    uint32_t id;
    int r;

    p->params = get(ctx, XBDK_PARAMS);
    if (p->params == NULL || p->params[0] == '\0')
        return fail(err, errlen, "%s is missing or empty: nothing to open",
                    XBDK_PARAMS);
    if (strlen(p->params) > PARAMS_MAX)
        return fail(err, errlen, "%s is longer than %u bytes", XBDK_PARAMS,
                    PARAMS_MAX);
    p->type = get(ctx, XBDK_TYPE);

    p->frontend = get(ctx, XBDK_FRONTEND);
    snprintf(want, sizeof(want), "/local/domain/%u/device/vbd/%u", fe_domid,
             devid);
    if (p->frontend == NULL)
        return fail(err, errlen, "%s is missing", XBDK_FRONTEND);
    if (strcmp(p->frontend, want) != 0)
        return fail(err, errlen, "%s is \"%s\": expected %s", XBDK_FRONTEND,
                    shown(p->frontend, sb, sizeof(sb)), want);
    r = get_u32(get, ctx, XBDK_FRONTEND_ID, 0, 0x7fef, &id, err, errlen);
    if (r < 0)
        return r;
    if (r == 0)
        return fail(err, errlen, "%s is missing", XBDK_FRONTEND_ID);
    if (id != fe_domid)
        return fail(err, errlen, "%s is %u but the device sits under domain %u",
                    XBDK_FRONTEND_ID, id, fe_domid);
    p->frontend_id = id;
    return 0;
}

static int
probe_flags(xbd_get_fn get, void *ctx, struct xbd_probe *p, char *err,
            size_t errlen)
{
    char *v, sb[40];
    int r = 0;

    v = get(ctx, XBDK_MODE);
    if (v == NULL)
        return fail(err, errlen, "%s is missing: expected r or w", XBDK_MODE);
    /* libxl writes "r" or "w"; "w!" is xm's "writable even if shared". */
    if (strcmp(v, "r") == 0 || strcmp(v, "ro") == 0)
        p->read_only = true;
    else if (strcmp(v, "w") == 0 || strcmp(v, "rw") == 0 ||
             strcmp(v, "w!") == 0)
        p->read_only = false;
    else
        r = fail(err, errlen, "%s is \"%s\": expected r or w", XBDK_MODE,
                 shown(v, sb, sizeof(sb)));
    free(v);
    if (r < 0)
        return r;

    v = get(ctx, XBDK_DEVICE_TYPE);
    p->devtype = XBD_DEVTYPE_DISK;
    if (v != NULL && strcmp(v, "cdrom") == 0)
        p->devtype = XBD_DEVTYPE_CDROM;
    else if (v != NULL && strcmp(v, "disk") != 0)
        r = fail(err, errlen, "%s is \"%s\": expected disk or cdrom",
                 XBDK_DEVICE_TYPE, shown(v, sb, sizeof(sb)));
    free(v);
    if (r < 0)
        return r;
    if (p->devtype == XBD_DEVTYPE_CDROM)
        p->read_only = true;

    v = get(ctx, XBDK_ONLINE);
    if (xbd_parse_online(v, &p->online) < 0)
        r = fail(err, errlen, "%s is \"%s\": expected 0 or 1", XBDK_ONLINE,
                 shown(v, sb, sizeof(sb)));
    free(v);
    if (r < 0)
        return r;
    r = get_bool(get, ctx, XBDK_DISCARD_ENABLE, true, &p->discard_enable,
                 err, errlen);
    if (r < 0)
        return r;
    return get_bool(get, ctx, XBDK_DIRECT_IO_SAFE, false, &p->direct_io_safe,
                    err, errlen);
}

int
xbd_probe_parse(xbd_get_fn get, void *ctx, uint32_t fe_domid, uint32_t devid,
                struct xbd_probe *out, char *err, size_t errlen)
{
    int r;

    memset(out, 0, sizeof(*out));
    r = probe_strings(get, ctx, fe_domid, devid, out, err, errlen);
    if (r == 0)
        r = probe_flags(get, ctx, out, err, errlen);
    if (r < 0)
        xbd_probe_free(out);
    return r;
}

/* ---- Connect --------------------------------------------------------------- */

const char *
xbd_abi_name(enum xbd_abi abi)
{
    switch (abi) {
    case XBD_ABI_X86_32: return XEN_IO_PROTO_ABI_X86_32;
    case XBD_ABI_X86_64: return XEN_IO_PROTO_ABI_X86_64;
    default:             return "native";
    }
}

/* The ring size, from either scheme. */
static int
ring_pages(xbd_get_fn get, void *ctx, const struct xbd_limits *lim,
           unsigned int *pages, char *err, size_t errlen)
{
    uint32_t order = 0, npages = 1, max_pages = 1u << lim->max_ring_order;
    int has_order, has_pages;

    has_order = get_u32(get, ctx, XBDK_RING_PAGE_ORDER, 0, UINT32_MAX, &order,
                        err, errlen);
    if (has_order < 0)
        return has_order;
    if (has_order && order > lim->max_ring_order)
        return fail(err, errlen, "%s is %u, above the %s %u we offered",
                    XBDK_RING_PAGE_ORDER, order, XBDK_MAX_RING_PAGE_ORDER,
                    lim->max_ring_order);
    has_pages = get_u32(get, ctx, XBDK_NUM_RING_PAGES, 0, UINT32_MAX, &npages,
                        err, errlen);
    if (has_pages < 0)
        return has_pages;
    if (has_pages && !xbd_is_pow2(npages))
        return fail(err, errlen, "%s is %u, not a power of two",
                    XBDK_NUM_RING_PAGES, npages);
    if (has_pages && npages > max_pages)
        return fail(err, errlen, "%s is %u, above the %s %u we offered",
                    XBDK_NUM_RING_PAGES, npages, XBDK_MAX_RING_PAGES, max_pages);
    if (has_order && has_pages && (1u << order) != npages)
        return fail(err, errlen, "%s %u and %s %u contradict each other",
                    XBDK_RING_PAGE_ORDER, order, XBDK_NUM_RING_PAGES, npages);
    *pages = has_order ? 1u << order : npages;
    return 0;
}

/* One queue's ring references and event channel; prefix is "" or
 * "queue-N/". */
static int
queue_nodes(xbd_get_fn get, void *ctx, const char *prefix, unsigned int pages,
            struct xbd_queue_cfg *cfg, char *err, size_t errlen)
{
    char key[64];
    int r;

    if (pages == 1) {
        uint32_t ref, ref0;
        int has_ref, has_ref0;

        snprintf(key, sizeof(key), "%s%s", prefix, XBDK_RING_REF);
        has_ref = get_u32(get, ctx, key, 0, UINT32_MAX, &ref, err, errlen);
        if (has_ref < 0)
            return has_ref;
        snprintf(key, sizeof(key), "%s" XBDK_RING_REF_FMT, prefix, 0u);
        has_ref0 = get_u32(get, ctx, key, 0, UINT32_MAX, &ref0, err, errlen);
        if (has_ref0 < 0)
            return has_ref0;
        if (!has_ref && !has_ref0)
            return fail(err, errlen, "%s%s is missing", prefix, XBDK_RING_REF);
        if (has_ref && has_ref0 && ref != ref0)
            return fail(err, errlen, "%s%s %u and %s %u contradict each other "
                        "for a one-page ring", prefix, XBDK_RING_REF, ref, key,
                        ref0);
        cfg->ring_refs[0] = has_ref ? ref : ref0;
    } else {
        /* A stale `ring-ref` from an earlier one-page connection may still
         * be there: with several pages only ring-ref%u counts. */
        for (unsigned int i = 0; i < pages; i++) {
            snprintf(key, sizeof(key), "%s" XBDK_RING_REF_FMT, prefix, i);
            r = get_u32(get, ctx, key, 0, UINT32_MAX, &cfg->ring_refs[i], err,
                        errlen);
            if (r < 0)
                return r;
            if (r == 0)
                return fail(err, errlen, "%s is missing (a %u-page ring needs "
                            "ring-ref0..ring-ref%u)", key, pages, pages - 1);
        }
    }
    snprintf(key, sizeof(key), "%s%s", prefix, XBDK_EVENT_CHANNEL);
    r = get_u32(get, ctx, key, 1, PORT_MAX, &cfg->fe_port, err, errlen);
    if (r < 0)
        return r;
    if (r == 0)
        return fail(err, errlen, "%s is missing", key);
    return 0;
}

static int
protocol(xbd_get_fn get, void *ctx, enum xbd_abi *abi, char *err,
         size_t errlen)
{
    char *v = get(ctx, XBDK_PROTOCOL), sb[40];
    int r = 0;

    if (v == NULL || strcmp(v, XEN_IO_PROTO_ABI_NATIVE) == 0)
        *abi = XBD_ABI_NATIVE;
    else if (strcmp(v, XEN_IO_PROTO_ABI_X86_32) == 0)
        *abi = XBD_ABI_X86_32;
    else if (strcmp(v, XEN_IO_PROTO_ABI_X86_64) == 0)
        *abi = XBD_ABI_X86_64;
    else
        r = fail(err, errlen, "%s is \"%s\": expected %s, %s or none",
                 XBDK_PROTOCOL, shown(v, sb, sizeof(sb)),
                 XEN_IO_PROTO_ABI_X86_32, XEN_IO_PROTO_ABI_X86_64);
    free(v);
    return r;
}

int
xbd_negotiate(xbd_get_fn get, void *ctx, const struct xbd_limits *lim,
              struct xbd_negotiated *out, struct xbd_queue_cfg *cfgs,
              char *err, size_t errlen)
{
    uint32_t nq = 1;
    bool persistent;
    int r;

    memset(out, 0, sizeof(*out));
    r = ring_pages(get, ctx, lim, &out->ring_pages, err, errlen);
    if (r < 0)
        return r;
    r = get_u32(get, ctx, XBDK_MULTI_QUEUE_NUM_QUEUES, 1,
                lim->max_queues ? lim->max_queues : 1, &nq, err, errlen);
    if (r < 0)
        return r;
    out->queues = nq;
    r = protocol(get, ctx, &out->abi, err, errlen);
    if (r < 0)
        return r;
    out->protocol = xbd_abi_name(out->abi);
    r = get_bool(get, ctx, XBDK_FEATURE_PERSISTENT, false, &persistent, err,
                 errlen);
    if (r < 0)
        return r;
    out->persistent = persistent && lim->persistent;

    for (unsigned int q = 0; q < nq; q++) {
        char prefix[24] = "";

        /* One queue: the nodes sit at the top level, even when the frontend
         * wrote multi-queue-num-queues=1 (Linux blkback does the same). */
        if (nq > 1)
            snprintf(prefix, sizeof(prefix), XBDK_QUEUE_FMT "/", q);
        cfgs[q].index = q;
        cfgs[q].ring_pages = out->ring_pages;
        cfgs[q].abi = out->abi;
        cfgs[q].persistent = out->persistent;
        r = queue_nodes(get, ctx, prefix, out->ring_pages, &cfgs[q], err,
                        errlen);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- State machine --------------------------------------------------------- */

int
xbd_parse_state(const char *s)
{
    uint32_t v;

    if (s == NULL || xbd_parse_u32_range(s, XenbusStateUnknown,
                                         XenbusStateReconfigured, &v) < 0)
        return -1;
    return (int)v;
}

const char *
xbd_state_name(int state)
{
    static const char *const names[] = {
        "Unknown", "Initialising", "InitWait", "Initialised", "Connected",
        "Closing", "Closed", "Reconfiguring", "Reconfigured",
    };

    if (state == -1)
        return "gone";
    if (state < 0 || (size_t)state >= sizeof(names) / sizeof(names[0]))
        return "?";
    return names[state];
}

const char *
xbd_action_name(enum xbd_action a)
{
    switch (a) {
    case XBD_ACT_NONE:         return "none";
    case XBD_ACT_CONNECT:      return "connect";
    case XBD_ACT_RESIZE_CHECK: return "resize-check";
    case XBD_ACT_CLOSING:      return "closing";
    case XBD_ACT_CLOSE:        return "close";
    case XBD_ACT_REINIT:       return "reinit";
    case XBD_ACT_RELEASE:      return "release";
    }
    return "?";
}

enum xbd_action
xbd_next_action(const struct xbd_facts *f)
{
    int fe = f->fe_state, ours = f->ours;

    /* The toolstack is detaching: nothing in flight, or it waited long
     * enough for the frontend. */
    if (!f->online && (!f->connected || f->grace_over))
        return XBD_ACT_RELEASE;

    /* A failed device waits for its frontend to move (Closed, usually): a
     * retry against the same nodes would fail the same way, and our own
     * writes would fire the next retry. */
    if (f->failed && fe != -1 && fe != XenbusStateUnknown && fe != XenbusStateClosed)
        return XBD_ACT_NONE;

    switch (fe) {
    case -1:
    case XenbusStateUnknown:
    case XenbusStateClosed:
        if (!f->online)
            return XBD_ACT_RELEASE;
        return ours == XenbusStateClosed ? XBD_ACT_NONE : XBD_ACT_CLOSE;
    case XenbusStateClosing:
        if (ours == XenbusStateInitWait || ours == XenbusStateConnected)
            return XBD_ACT_CLOSING;
        return XBD_ACT_NONE;
    case XenbusStateInitialising:
    case XenbusStateInitWait:
        /* The frontend started over (perhaps skipping Closing and Closed
         * between two of our looks): start over with it. */
        if (ours == XenbusStateConnected || ours == XenbusStateClosing ||
            ours == XenbusStateClosed)
            return XBD_ACT_REINIT;
        return XBD_ACT_NONE;
    case XenbusStateInitialised:
    case XenbusStateConnected:
        if (ours == XenbusStateInitWait)
            return XBD_ACT_CONNECT;
        if (ours == XenbusStateConnected)
            return XBD_ACT_RESIZE_CHECK;
        if (ours == XenbusStateClosed)
            return XBD_ACT_REINIT;
        /* Closing: we failed or were told to close; wait for the frontend
         * to close rather than reconnect to the same nodes in a loop. */
        return XBD_ACT_NONE;
    default:
        return XBD_ACT_NONE;    /* Reconfiguring/Reconfigured: not blkif */
    }
}

unsigned int
xbd_pgrant_auto(unsigned int ring_entries, unsigned int max_indirect)
{
    uint64_t per_req = max_indirect > 0
                       ? (uint64_t)max_indirect +
                         (max_indirect + XBD_SEGS_PER_INDIRECT_PAGE - 1) /
                         XBD_SEGS_PER_INDIRECT_PAGE
                       : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    uint64_t n = (uint64_t)ring_entries * per_req;

    if (n < XBD_PGRANT_AUTO_MIN)
        return XBD_PGRANT_AUTO_MIN;
    return n > XBD_PGRANT_AUTO_MAX ? XBD_PGRANT_AUTO_MAX : (unsigned int)n;
}
