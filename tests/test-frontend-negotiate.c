/* Unit tests for negotiation (frontend/xbdf-negotiate.c): the choices, the
 * frontend nodes for every ring/queue layout, the state machine table. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbdf-negotiate.h"
#include "tap.h"

static struct xbdf_node nodes[XBDF_MAX_NODES];

static const char *
get(int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i].key, key) == 0)
            return nodes[i].value;
    return NULL;
}

static int
is(int n, const char *key, const char *want)
{
    const char *v = get(n, key);

    return v != NULL && strcmp(v, want) == 0;
}

static void
test_choose(void)
{
    struct xbdf_be_limits be = { 4, 4, 256, true };
    struct xbdf_opts o = { 0, 1, 256, true, true };
    struct xbdf_choice c;

    xbdf_choose(&be, &o, &c);
    ok(c.ring_order == 4 && c.queues == 1 && c.indirect_segs == 256 && c.persistent,
       "defaults: the backend's largest ring, 1 queue, 256 indirect, persistent");
    o.ring_pages = 2;
    o.queues = 8;
    o.indirect_segs = 1024;
    xbdf_choose(&be, &o, &c);
    ok(c.ring_order == 1 && c.queues == 4 && c.indirect_segs == 256,
       "asked 2 pages, 8 queues, 1024 segments: 2 pages, 4 queues, 256");
    o.ring_pages = 256;
    xbdf_choose(&be, &o, &c);
    is_int(c.ring_order, 4, "asked 256 pages of a backend offering 16: 16");
    o.trusted = false;
    xbdf_choose(&be, &o, &c);
    ok(!c.persistent, "untrusted backend: no persistent grants");
    o.trusted = true;
    o.persistent = false;
    xbdf_choose(&be, &o, &c);
    ok(!c.persistent, "persistent off when the caller says so");
    o.indirect_segs = 8;
    xbdf_choose(&be, &o, &c);
    is_int(c.indirect_segs, 0, "8 segments: no indirect");
    be.max_indirect_segs = 0;
    o.indirect_segs = 256;
    xbdf_choose(&be, &o, &c);
    is_int(c.indirect_segs, 0, "backend without indirect: none");
}

static void
test_nodes(void)
{
    struct xbdf_choice c = { 0, 1, 0, false };
    uint32_t refs[64 * 4], ports[4] = { 11, 12, 13, 14 };
    int n;

    for (unsigned int i = 0; i < 64 * 4; i++)
        refs[i] = 100 + i;

    n = xbdf_frontend_nodes(&c, refs, ports, nodes, XBDF_MAX_NODES);
    ok(n == 4, "1 page, 1 queue: 4 nodes (got %d)", n);
    ok(is(n, XBDK_RING_REF, "100") && is(n, XBDK_EVENT_CHANNEL, "11") &&
       is(n, XBDK_PROTOCOL, XEN_IO_PROTO_ABI_NATIVE) &&
       is(n, XBDK_FEATURE_PERSISTENT, "0"),
       "ring-ref, event-channel, protocol, feature-persistent");
    ok(get(n, XBDK_RING_PAGE_ORDER) == NULL && get(n, "ring-ref0") == NULL,
       "no ring-page-order nor ring-ref0 for one page (QEMU interop)");

    c.ring_order = 2;
    c.persistent = true;
    n = xbdf_frontend_nodes(&c, refs, ports, nodes, XBDF_MAX_NODES);
    is_int(n, 9, "4 pages, 1 queue: 9 nodes");
    ok(is(n, XBDK_RING_PAGE_ORDER, "2") && is(n, XBDK_NUM_RING_PAGES, "4") &&
       is(n, "ring-ref0", "100") && is(n, "ring-ref3", "103") &&
       get(n, XBDK_RING_REF) == NULL && is(n, XBDK_FEATURE_PERSISTENT, "1"),
       "ring-page-order, num-ring-pages, ring-ref0..3, no ring-ref");

    c.queues = 2;
    c.ring_order = 1;
    n = xbdf_frontend_nodes(&c, refs, ports, nodes, XBDF_MAX_NODES);
    is_int(n, 11, "2 pages, 2 queues: 11 nodes");
    ok(is(n, XBDK_MULTI_QUEUE_NUM_QUEUES, "2") && is(n, XBDK_RING_PAGE_ORDER, "1") &&
       is(n, "queue-0/ring-ref0", "100") && is(n, "queue-0/ring-ref1", "101") &&
       is(n, "queue-1/ring-ref0", "102") && is(n, "queue-1/ring-ref1", "103") &&
       is(n, "queue-0/event-channel", "11") && is(n, "queue-1/event-channel", "12"),
       "blkif.h's multi-queue example layout");
    ok(get(n, XBDK_EVENT_CHANNEL) == NULL && get(n, "ring-ref0") == NULL,
       "no top-level ring-ref or event-channel with several queues");

    c.ring_order = 0;
    c.queues = 4;
    n = xbdf_frontend_nodes(&c, refs, ports, nodes, XBDF_MAX_NODES);
    ok(is(n, "queue-3/ring-ref", "103") && is(n, "queue-3/event-channel", "14") &&
       get(n, XBDK_RING_PAGE_ORDER) == NULL,
       "1 page, 4 queues: queue-N/ring-ref");

    c.ring_order = 6;
    c.queues = 4;
    n = xbdf_frontend_nodes(&c, refs, ports, nodes, XBDF_MAX_NODES);
    ok(n == 3 + 4 * 65 + 2 && is(n, "queue-3/ring-ref63", "355"),
       "64 pages, 4 queues: every ring-ref%%u");
    is_int(xbdf_frontend_nodes(&c, refs, ports, nodes, 10), -ENOSPC,
           "too small an array: -ENOSPC");
}

static void
test_states(void)
{
    static const struct { int our, be; enum xbdf_action want; } t[] = {
        { XenbusStateInitialising, XenbusStateInitialising, XBDF_WAIT },
        { XenbusStateInitialising, XenbusStateInitWait, XBDF_NEGOTIATE },
        { XenbusStateInitialising, XenbusStateConnected, XBDF_WAIT },
        { XenbusStateInitialising, XenbusStateClosed, XBDF_WAIT },
        { XenbusStateInitialised, XenbusStateInitWait, XBDF_WAIT },
        { XenbusStateInitialised, XenbusStateConnected, XBDF_CONNECT },
        { XenbusStateInitialised, XenbusStateClosing, XBDF_RESTART },
        { XenbusStateInitialised, XenbusStateUnknown, XBDF_RESTART },
        { XenbusStateConnected, XenbusStateConnected, XBDF_RESIZE_CHECK },
        { XenbusStateConnected, XenbusStateClosing, XBDF_RESTART },
        { XenbusStateConnected, XenbusStateClosed, XBDF_RESTART },
        { XenbusStateConnected, XenbusStateInitWait, XBDF_RESTART },
        { XenbusStateConnected, XenbusStateReconfiguring, XBDF_WAIT },
        { XenbusStateClosing, XenbusStateConnected, XBDF_WAIT },
        { XenbusStateClosed, XenbusStateInitWait, XBDF_WAIT },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        is_int(xbdf_next_action(t[i].our, t[i].be), t[i].want,
               "our %d, backend %d -> action %d", t[i].our, t[i].be, t[i].want);
    is_int(xbdf_parse_state("4"), XenbusStateConnected, "state \"4\"");
    is_int(xbdf_parse_state(NULL), XenbusStateClosed, "absent state is Closed");
    is_int(xbdf_parse_state("9"), XenbusStateClosed, "state 9 is Closed");
    is_int(xbdf_parse_state("4 "), XenbusStateClosed, "junk is Closed");
}

int
main(void)
{
    test_choose();
    test_nodes();
    test_states();
    return done_testing();
}
