/* xbd-backd — what the control path reads from the store, parsed strictly,
 * and the device state machine's decision table.
 *
 * Pure code: no xenstore, no I/O.  Nodes reach it through a getter so that
 * unit tests (tests/test-backend-negotiate.c) feed tables; xenbus.c passes
 * a getter over xs_read.  Every value is hostile input (the frontend's
 * directory is the guest's; the backend directory is the toolstack's but
 * validated all the same): decimal only, no junk, no overflow, bounded, and
 * every rejection produces one line for the `error` or `hotplug-error` node
 * saying which node, what it held and what was expected.
 *
 * Error convention: 0 on success, a negative errno on failure with the
 * reason in err (NUL-terminated, truncated to errlen).
 */
#ifndef XBD_NEGOTIATE_H
#define XBD_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xbd-backd.h"

/* The most queues a device may have; --max-queues is capped here.  Memory
 * is sized from what a frontend negotiates, never from this. */
#define XBD_MAX_QUEUES 64u

/* Read node `key` (relative to the directory the getter stands for:
 * "ring-ref", "queue-1/event-channel").  Returns a malloc()ed string the
 * caller frees, or NULL when the node does not exist. */
typedef char *(*xbd_get_fn)(void *ctx, const char *key);

/* ---- Probe: the backend directory ---------------------------------------- */

enum xbd_devtype {
    XBD_DEVTYPE_DISK,
    XBD_DEVTYPE_CDROM,
};

struct xbd_probe {
    char *params;               /* malloc()ed; the backing spec */
    char *type;                 /* malloc()ed; "phy", "qdisk", ... or NULL */
    char *frontend;             /* malloc()ed; the frontend directory */
    uint32_t frontend_id;
    bool read_only;             /* mode=r, or a cdrom */
    enum xbd_devtype devtype;
    bool online;                /* absent: 1 */
    bool discard_enable;        /* absent: 1 */
    bool direct_io_safe;        /* absent: 0 */
};

/* Parse the toolstack's nodes of the backend directory of the device
 * fe_domid/devid: params (required, non-empty), mode (r|w, required),
 * type, device-type (disk|cdrom, absent: disk), frontend (required, must be
 * /local/domain/<fe_domid>/device/vbd/<devid>), frontend-id (required, must
 * be fe_domid), online, discard-enable, direct-io-safe (0|1).  On failure
 * nothing stays allocated. */
int xbd_probe_parse(xbd_get_fn get, void *ctx, uint32_t fe_domid,
                    uint32_t devid, struct xbd_probe *out, char *err,
                    size_t errlen);
void xbd_probe_free(struct xbd_probe *p);

/* Read only `online` (for teardown decisions): 1 when absent, -EINVAL with
 * a message when malformed. */
int xbd_parse_online(const char *v, bool *online);

/* ---- Connect: the frontend directory ------------------------------------- */

/* What we advertised at probe time; a frontend may ask for no more. */
struct xbd_limits {
    unsigned int max_ring_order;    /* max-ring-page-order */
    unsigned int max_queues;        /* multi-queue-max-queues, <= XBD_MAX_QUEUES */
    bool persistent;                /* feature-persistent=1 advertised */
};

/* What the frontend chose. */
struct xbd_negotiated {
    unsigned int ring_pages;        /* per queue, power of two */
    unsigned int queues;
    enum xbd_abi abi;
    const char *protocol;           /* static: "native", "x86_32-abi", ... */
    bool persistent;                /* both sides said yes */
};

/* Parse the frontend's transport nodes:
 *   ring-page-order / num-ring-pages   either or both (then they must
 *                                      agree); absent: one page; at most
 *                                      what we advertised
 *   multi-queue-num-queues             1..max_queues; absent: 1.  With more
 *                                      than one queue the per-queue nodes
 *                                      sit under queue-N/, else at the top
 *   ring-ref                           one page: ring-ref, or ring-ref0
 *   ring-ref%u                         several pages: ring-ref0..N-1
 *   event-channel                      a port, 1..2^17-1
 *   protocol                           native, x86_32-abi, x86_64-abi;
 *                                      absent: native
 *   feature-persistent                 0|1; absent: 0
 * Fills, for each of the out->queues queues, cfgs[i]'s protocol fields:
 * index, ring_pages, ring_refs, fe_port, abi, persistent.  The caller
 * provides lim->max_queues entries and sets every other field itself. */
int xbd_negotiate(xbd_get_fn get, void *ctx, const struct xbd_limits *lim,
                  struct xbd_negotiated *out, struct xbd_queue_cfg *cfgs,
                  char *err, size_t errlen);

/* The persistent-grant cache of one queue when --persistent-max is auto:
 * room for every ring entry to carry the largest request it may (11
 * segments, or max_indirect segments and their indirect pages), so that a
 * frontend whose granted pool is as large as the ring allows never misses;
 * at least XBD_PGRANT_AUTO_MIN (the fixed default before), at most
 * XBD_PGRANT_AUTO_MAX (each is a grant mapping: on Xen they count against
 * dom0's maptrack table). */
#define XBD_PGRANT_AUTO_MIN 1024u
#define XBD_PGRANT_AUTO_MAX 16384u
unsigned int xbd_pgrant_auto(unsigned int ring_entries, unsigned int max_indirect);

/* The name of a protocol as the log and `xbdctl status` show it. */
const char *xbd_abi_name(enum xbd_abi abi);

/* ---- The device state machine ---------------------------------------------
 *
 * Level-triggered: xenbus.c calls xbd_next_action() with the current facts
 * every time anything about a device may have changed (watches coalesce,
 * peers skip states, our own writes fire our watches too) and does what it
 * says.  Every action is idempotent; NONE is the answer whenever the facts
 * already match what we want, so our own writes do not loop.
 *
 * Facts: our state (what we last set; a Closing the toolstack wrote into
 * our `state` node is adopted as ours), whether queues are running, the
 * frontend's state (-1: node or directory gone; malformed counts as gone),
 * `online`, whether a detach has waited out its grace period, and whether
 * we failed the device with the frontend still where it was then.
 *
 *  frontend state         ours                    action
 *  ---------------------  ----------------------  -------------------------
 *  gone, Unknown, Closed  any, online=0           RELEASE
 *  gone, Unknown, Closed  not Closed              CLOSE
 *  Closing                InitWait, Connected     CLOSING
 *  Initialising, InitWait Connected, Closing,     REINIT (reconnect)
 *                         Closed
 *  Initialised, Connected InitWait                CONNECT
 *  Initialised, Connected Connected               RESIZE_CHECK
 *  Initialised, Connected Closed                  REINIT (then CONNECT)
 *  anything               not connected,          RELEASE (before the
 *                         online=0                above: nothing to drain)
 *  anything               online=0, grace over    RELEASE (forced)
 *  not gone/Unknown/Closed  failed, frontend has  NONE (no retry loop:
 *                         not moved since         wait for it to close)
 *  anything else                                  NONE
 */
enum xbd_action {
    XBD_ACT_NONE,
    XBD_ACT_CONNECT,        /* negotiate, start queues, publish, Connected */
    XBD_ACT_RESIZE_CHECK,   /* Connected: compare the backing's size */
    XBD_ACT_CLOSING,        /* mirror the frontend: Closing, queues kept */
    XBD_ACT_CLOSE,          /* drain, stop queues, Closed */
    XBD_ACT_REINIT,         /* drain, stop queues, publish limits, InitWait */
    XBD_ACT_RELEASE,        /* drain, stop queues, Closed, forget the device */
};

struct xbd_facts {
    int ours;               /* XenbusState we are in */
    bool connected;         /* queues running */
    int fe_state;           /* -1: gone */
    bool online;
    bool grace_over;        /* online=0 for longer than the detach grace */
    bool failed;            /* we failed the device and the frontend's
                               state has not changed since */
};

enum xbd_action xbd_next_action(const struct xbd_facts *f);
const char *xbd_action_name(enum xbd_action a);

/* Parse a `state` node: 0..8 (XenbusState); NULL or anything else -1. */
int xbd_parse_state(const char *s);

/* "Initialising", "InitWait", ... ; "gone" for -1, "?" out of range. */
const char *xbd_state_name(int state);

#endif /* XBD_NEGOTIATE_H */
