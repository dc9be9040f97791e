/* libxbdfront internals — one queue's shared ring and its shadow table.
 *
 * Pure code: no xenstore, no grants, no event channels (the notification
 * is a function pointer), so it is unit-tested against a ring in ordinary
 * memory with the test playing the backend.
 *
 * The shadow table (Linux xen-blkfront's idea):
 *   - one entry per ring slot, so a free entry always means a free slot;
 *   - the free list is threaded through the unused entries (next_free), so
 *     getting and putting an id is O(1) with no allocation;
 *   - each entry holds the private copy of the request that went on the
 *     ring.  Requests are built in that copy and then copied to the ring;
 *     the library never reads a request back from the shared ring, which
 *     the backend can write.
 *   - the request id written on the ring is (generation << 32) | index:
 *     the index says which entry, the generation (bumped on every
 *     allocation of that entry) makes a response to an earlier use of the
 *     entry — a replayed or duplicated response — detectable even after the
 *     entry was reused.
 *
 * Error convention: negative errno; for a protocol violation the ring is
 * marked broken and xbdf_ring_broken() says why.
 */
#ifndef XBDF_RING_H
#define XBDF_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "xbd-ring.h"

/* Every request layout blkif has; operation is the first byte of each. */
union xbdf_req {
    struct blkif_request rw;
    struct blkif_request_discard discard;
    struct blkif_request_indirect indirect;
};

#define XBDF_SHADOW_NONE UINT32_MAX

struct xbdf_shadow_entry {
    union xbdf_req req;     /* the private copy; valid while in_use */
    uint64_t tag;           /* the owner's cookie, returned on completion */
    uint32_t next_free;     /* free-list link while !in_use */
    uint32_t gen;           /* generation of the current (or last) use */
    bool in_use;
};

struct xbdf_shadow {
    struct xbdf_shadow_entry *ent;
    uint32_t size;          /* == RING_SIZE of the ring it shadows */
    uint32_t free_head;     /* first free entry, XBDF_SHADOW_NONE if none */
    uint32_t in_use;        /* entries allocated */
};

int xbdf_shadow_init(struct xbdf_shadow *s, uint32_t size);
void xbdf_shadow_fini(struct xbdf_shadow *s);

/* Allocate an entry: returns its index (>= 0) and sets *id_out to the id to
 * put in the request; the entry's req is zeroed.  -ENOSPC when all entries
 * (hence all ring slots) are in use. */
int xbdf_shadow_get(struct xbdf_shadow *s, uint64_t tag, uint64_t *id_out);

/* Return an entry to the free list. */
void xbdf_shadow_put(struct xbdf_shadow *s, uint32_t idx);

/* The next in-use entry at or after `from`, or XBDF_SHADOW_NONE: for
 * re-issuing every incomplete request after a reconnect. */
uint32_t xbdf_shadow_next_in_use(const struct xbdf_shadow *s, uint32_t from);

/* Check a response (already copied out of the ring) against the shadow:
 * id in range, its entry in use with the same generation, the operation
 * echoed, the status one blkif defines.  0 and *idx_out on success;
 * -EPROTO and a message in why[] otherwise. */
int xbdf_shadow_check_response(const struct xbdf_shadow *s,
                               const struct blkif_response *rsp,
                               uint32_t *idx_out, char *why, size_t whylen);

/* A response status as an errno: 0, -EIO, -EOPNOTSUPP. */
int xbdf_status_to_errno(int16_t status);

/* ---- The ring ----------------------------------------------------------- */

typedef int (*xbdf_notify_fn)(void *arg);

/* Called once per valid response, after the entry was freed (so the
 * callback may queue new requests).  op is the request's operation. */
typedef void (*xbdf_complete_fn)(void *arg, uint64_t tag, uint8_t op,
                                 int err);

struct xbdf_ring {
    blkif_front_ring_t front;
    struct xbdf_shadow shadow;
    xbdf_notify_fn notify;
    void *notify_arg;
    bool broken;
    char broken_why[200];
    /* Counters. */
    uint64_t ring_requests;     /* requests copied to the ring */
    uint64_t notify_sent;
    uint64_t responses;         /* valid responses consumed */
};

/* Initialise the shared ring (`pages` pages at sring, the frontend's job:
 * SHARED_RING_INIT) and our private view of it. */
int xbdf_ring_init(struct xbdf_ring *r, void *sring, unsigned int pages,
                   xbdf_notify_fn notify, void *notify_arg);
void xbdf_ring_fini(struct xbdf_ring *r);

/* Free ring slots (== free shadow entries). */
unsigned int xbdf_ring_free(const struct xbdf_ring *r);

/* Copy the private request of shadow entry `idx` into the next ring slot.
 * Not visible to the backend until xbdf_ring_push(). */
void xbdf_ring_queue(struct xbdf_ring *r, uint32_t idx);

/* Publish queued requests and notify the backend only when
 * RING_PUSH_REQUESTS_AND_CHECK_NOTIFY says it is waiting for them.
 * Returns 1 when it notified, 0 when not, negative on notify failure. */
int xbdf_ring_push(struct xbdf_ring *r);

/* Consume up to `budget` responses (0: no limit): copy each out once,
 * validate it, free its entry and call `done`.  When it stops for lack of
 * responses it re-arms rsp_event (RING_FINAL_CHECK_FOR_RESPONSES) so the
 * backend notifies for the next one.  Returns the number completed, or
 * -ENODEV once the ring is broken (the backend lied; see
 * xbdf_ring_broken()).  A broken ring consumes nothing more. */
int xbdf_ring_collect(struct xbdf_ring *r, unsigned int budget,
                      xbdf_complete_fn done, void *arg);

/* The same without re-arming rsp_event: for a caller that busy-polls the
 * ring and will call again soon.  rsp_event stays where it was, so a
 * backend following RING_PUSH_RESPONSES_AND_CHECK_NOTIFY does not notify
 * for responses the poller picks up itself.  Before sleeping on the event
 * channel, call xbdf_ring_collect() (which re-arms and checks once more). */
int xbdf_ring_poll(struct xbdf_ring *r, unsigned int budget,
                   xbdf_complete_fn done, void *arg);

/* NULL, or why the ring was marked broken. */
const char *xbdf_ring_broken(const struct xbdf_ring *r);

#endif /* XBDF_RING_H */
