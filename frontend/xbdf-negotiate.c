/* libxbdfront internals — negotiation choices, frontend nodes, state
 * machine.  See xbdf-negotiate.h. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbdf-negotiate.h"

void
xbdf_choose(const struct xbdf_be_limits *be, const struct xbdf_opts *o,
            struct xbdf_choice *c)
{
    unsigned int want = XBD_RING_ORDER_LIMIT;

    memset(c, 0, sizeof(*c));
    if (o->ring_pages != 0 && xbd_is_pow2(o->ring_pages))
        want = xbd_log2(o->ring_pages);
    if (want > XBD_RING_ORDER_LIMIT)
        want = XBD_RING_ORDER_LIMIT;
    c->ring_order = want < be->max_ring_order ? want : be->max_ring_order;
    c->queues = o->queues == 0 ? 1 : o->queues;
    if (c->queues > be->max_queues)
        c->queues = be->max_queues;
    c->indirect_segs = o->indirect_segs < be->max_indirect_segs
                       ? o->indirect_segs : be->max_indirect_segs;
    if (c->indirect_segs <= BLKIF_MAX_SEGMENTS_PER_REQUEST)
        c->indirect_segs = 0;
    /* An untrusted backend gets no lasting access to our pages. */
    c->persistent = o->persistent && be->persistent && o->trusted;
}

static int
add(struct xbdf_node *out, size_t max, size_t *n, const char *key,
    unsigned long long v)
{
    if (*n >= max)
        return -ENOSPC;
    snprintf(out[*n].key, sizeof(out[*n].key), "%s", key);
    snprintf(out[*n].value, sizeof(out[*n].value), "%llu", v);
    (*n)++;
    return 0;
}

int
xbdf_frontend_nodes(const struct xbdf_choice *c, const uint32_t *refs,
                    const uint32_t *ports, struct xbdf_node *out, size_t max)
{
    unsigned int pages = 1u << c->ring_order;
    size_t n = 0;
    char key[48], prefix[24];
    int r = 0;

    if (pages > 1) {
        r |= add(out, max, &n, XBDK_RING_PAGE_ORDER, c->ring_order);
        r |= add(out, max, &n, XBDK_NUM_RING_PAGES, pages);
    }
    if (c->queues > 1)
        r |= add(out, max, &n, XBDK_MULTI_QUEUE_NUM_QUEUES, c->queues);
    for (unsigned int q = 0; q < c->queues; q++) {
        prefix[0] = '\0';
        if (c->queues > 1) {
            snprintf(prefix, sizeof(prefix), XBDK_QUEUE_FMT "/", q);
        }
        for (unsigned int p = 0; p < pages; p++) {
            if (pages == 1)
                snprintf(key, sizeof(key), "%s" XBDK_RING_REF, prefix);
            else
                snprintf(key, sizeof(key), "%s" XBDK_RING_REF_FMT, prefix, p);
            r |= add(out, max, &n, key, refs[q * pages + p]);
        }
        snprintf(key, sizeof(key), "%s" XBDK_EVENT_CHANNEL, prefix);
        r |= add(out, max, &n, key, ports[q]);
    }
    if (r != 0 || n >= max)
        return -ENOSPC;
    snprintf(out[n].key, sizeof(out[n].key), "%s", XBDK_PROTOCOL);
    snprintf(out[n].value, sizeof(out[n].value), "%s", XEN_IO_PROTO_ABI_NATIVE);
    n++;
    if (add(out, max, &n, XBDK_FEATURE_PERSISTENT, c->persistent) < 0)
        return -ENOSPC;
    return (int)n;
}

enum xbdf_action
xbdf_next_action(int our, int be)
{
    bool be_gone = be == XenbusStateClosing || be == XenbusStateClosed ||
                   be == XenbusStateUnknown;

    switch (our) {
    case XenbusStateInitialising:
        /* Only after the backend's InitWait: a Connected backend is still
         * serving an earlier ring (a frontend process that died); it
         * starts over when it sees our Initialising, and would not if we
         * hurried on to Initialised between two of its looks. */
        if (be == XenbusStateInitWait)
            return XBDF_NEGOTIATE;
        return XBDF_WAIT;
    case XenbusStateInitialised:
        if (be == XenbusStateConnected)
            return XBDF_CONNECT;
        if (be_gone)
            return XBDF_RESTART;
        return XBDF_WAIT;
    case XenbusStateConnected:
        if (be == XenbusStateConnected)
            return XBDF_RESIZE_CHECK;
        if (be_gone || be == XenbusStateInitWait ||
            be == XenbusStateInitialising)
            return XBDF_RESTART;
        return XBDF_WAIT;
    default:
        return XBDF_WAIT;
    }
}

int
xbdf_parse_state(const char *s)
{
    uint32_t v;

    if (s == NULL || xbd_parse_u32_range(s, XenbusStateUnknown,
                                         XenbusStateReconfigured, &v) < 0)
        return XenbusStateClosed;
    return (int)v;
}
