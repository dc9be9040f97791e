/* libxbdfront internals — negotiation: what to ask for, what to write, and
 * what to do on each state change.
 *
 * Pure code, unit-tested; the xenstore transaction that writes the nodes
 * and the watch loop that feeds the state machine sit on top of it.
 *
 * Error convention: negative errno.
 */
#ifndef XBDF_NEGOTIATE_H
#define XBDF_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xbdf-req.h"

/* What the caller asked for (xbdfront_set_*). */
struct xbdf_opts {
    unsigned int ring_pages;    /* power of two; 0: the largest both allow */
    unsigned int queues;        /* >= 1 */
    unsigned int indirect_segs; /* 0: none */
    bool persistent;
    bool trusted;               /* the frontend directory's `trusted` node */
};

/* What this frontend will use, given the backend's limits. */
struct xbdf_choice {
    unsigned int ring_order;
    unsigned int queues;
    unsigned int indirect_segs; /* 0: direct requests only */
    bool persistent;
};

void xbdf_choose(const struct xbdf_be_limits *be, const struct xbdf_opts *o,
                 struct xbdf_choice *c);

/* One node to write in the frontend directory (path relative to it). */
struct xbdf_node {
    char key[48];
    char value[24];
};

/* The most nodes xbdf_frontend_nodes can produce. */
#define XBDF_MAX_NODES \
    (4 + XBDF_MAX_QUEUES * ((1u << XBD_RING_ORDER_LIMIT) + 1))

/* The transport nodes for choice c: refs holds queues x 2^ring_order grant
 * references (queue-major), ports one event channel per queue.  Follows
 * what every backend reads (PROTOCOL.md 1.1.3): a one-page ring is
 * `ring-ref` and no `ring-page-order` (QEMU reads `ring-ref%u` whenever the
 * order node exists); larger rings write `ring-page-order` and
 * `num-ring-pages` and `ring-ref%u`; with several queues the rings and
 * channels go under `queue-N/`.  Returns the number of nodes, or -ENOSPC
 * when `max` is too small. */
int xbdf_frontend_nodes(const struct xbdf_choice *c, const uint32_t *refs,
                        const uint32_t *ports, struct xbdf_node *out,
                        size_t max);

/* ---- The state machine --------------------------------------------------
 *
 * Level-triggered: the watch loop calls xbdf_next_action() with the current
 * states (watches coalesce, peers skip states) and does what it says; every
 * action is safe to repeat.  `Unknown` and a vanished backend directory
 * count as Closed.
 *
 *   our state        backend state         action
 *   ---------------  --------------------  ------------------------------
 *   Initialising     InitWait, Connected   NEGOTIATE: read limits, share
 *                                          rings, write nodes, Initialised
 *   Initialising     anything else         WAIT
 *   Initialised      Connected             CONNECT: read properties,
 *                                          attach queues, Connected
 *   Initialised      Closing, Closed       RESTART (see below)
 *   Initialised      anything else         WAIT
 *   Connected        Connected             RESIZE_CHECK: re-read sectors
 *   Connected        Closing, Closed,      RESTART: detach every queue
 *                    InitWait, Initialising (requests kept), unshare
 *                                          (quarantine on -EBUSY), go back
 *                                          to Initialising
 *   Closing, Closed  anything              WAIT (we are closing)
 *
 * After RESTART the next backend InitWait negotiates again, possibly with
 * different limits, and the kept requests are re-issued.
 */
enum xbdf_action {
    XBDF_WAIT,
    XBDF_NEGOTIATE,
    XBDF_CONNECT,
    XBDF_RESIZE_CHECK,
    XBDF_RESTART,
};

enum xbdf_action xbdf_next_action(int our_state, int be_state);

/* Parse a `state` node strictly; absent (NULL) or malformed is Closed
 * (XenbusStateClosed): a backend we cannot read is not one to talk to. */
int xbdf_parse_state(const char *s);

#endif /* XBDF_NEGOTIATE_H */
