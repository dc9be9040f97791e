/* libxbdfront internals — one queue: caller requests in, ring requests out.
 *
 * A queue owns one ring (xbdf-ring.h) and a pool of pages already granted
 * to the backend.  A caller's request (an "io") is checked, then issued as
 * one or more ring requests ("pieces"): each piece takes a shadow entry and
 * pool pages for its data (bounced: copied in for a write at issue time,
 * copied out for a read when it completes) and, beyond 11 segments, for its
 * indirect segment pages.  When the ring or the pool is full the io waits
 * on the queue's pending list and is issued as pieces complete.  The io's
 * callback runs exactly once, when its last piece has completed, with the
 * first error any piece saw.
 *
 * Still pure: the pool is memory and grant references handed in by the
 * caller, and notification is a function pointer; the unit test plays the
 * backend on ordinary memory.
 *
 * Threads: one thread at a time per queue (xbdfront.h QUEUES AND THREADS).
 * Error convention: negative errno, message through xbdf_set_error().
 */
#ifndef XBDF_QUEUE_H
#define XBDF_QUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "xbdf-req.h"
#include "xbdf-ring.h"
#include "xbdfront.h"

enum xbdf_io_op { XBDF_IO_READ, XBDF_IO_WRITE, XBDF_IO_FLUSH, XBDF_IO_DISCARD };

struct xbdf_io;                 /* one caller request, private */
struct xbdf_queue;

/* Where a finished io of another queue goes (see CARRYING below). */
typedef void (*xbdf_deliver_fn)(void *arg, struct xbdf_queue *owner,
                                struct xbdf_io *io);
struct xbdf_piece;              /* one ring request, private */
struct xbdf_work;               /* what is left to issue of an io */

/* A queue's pool of granted pages, possibly in several chunks (one grant
 * share each: a platform shares a bounded number of pages at once).  Page
 * i lives in chunk i >> chunk_shift, at page (i & ((1 << chunk_shift) - 1))
 * of it, and is granted to the backend as refs[i].  The arrays are the
 * caller's and must outlive the attachment. */
struct xbdf_pool {
    char *const *chunks;
    unsigned int chunk_shift;       /* log2 of the pages per chunk */
    const uint32_t *refs;
    uint32_t pages;
};

/* chunk_shift for a pool in one chunk (any size). */
#define XBDF_POOL_ONE_CHUNK 31u

struct xbdf_queue {
    struct xbdf_ring ring;          /* valid while attached */
    bool attached;
    const struct xbdf_geom *geom;   /* the handle's; may change on resize */
    uint16_t handle;                /* virtual-device number for requests */
    xbdf_notify_fn notify;
    void *notify_arg;

    /* The granted page pool (see struct xbdf_pool).  A free page's index
     * sits on the free stack. */
    struct xbdf_pool pool;
    uint32_t pool_pages;            /* == pool.pages */
    uint32_t *pool_free;
    uint32_t pool_nfree;

    struct xbdf_piece **piece;      /* by shadow index: the piece in flight */
    /* Small pieces kept for reuse, at most one per ring slot (memory
     * only: they outlive a detach, freed by fini). */
    struct xbdf_piece *piece_cache;
    unsigned int piece_cached;

    /* Caller requests not fully issued yet (FIFO), and those finished whose
     * callback has not run yet (FIFO). */
    struct xbdf_work *pending_head, *pending_tail;
    struct xbdf_io *done_head, *done_tail;
    /* Finished ios of ours that a carrier delivered (its deliver function
     * puts them here; the caller serialises access). */
    struct xbdf_io *inbox_head, *inbox_tail;
    unsigned int nios;              /* accepted, callback not yet run */
    unsigned int max_pending;

    /* Finished ios owned by another queue go here (NULL: to our own done
     * list, as for a queue that never carries others'). */
    xbdf_deliver_fn deliver;
    void *deliver_arg;

    /* Failed for good (xbdf_queue_fail): everything is refused. */
    bool failed;
    char failed_why[200];

    struct xbdfront_stats stats;
};

#define XBDF_MIN_POOL_PAGES 16u
/* The most pages a queue's pool may hold (64 MiB). */
#define XBDF_POOL_MAX_PAGES 16384u

/* Set up a queue on `pages` ring pages at sring (initialised here) with a
 * pool of granted pages.  The pool must hold at least XBDF_MIN_POOL_PAGES
 * pages; geom must outlive the queue. */
int xbdf_queue_init(struct xbdf_queue *q, void *sring, unsigned int pages,
                    const struct xbdf_geom *geom, uint16_t handle,
                    const struct xbdf_pool *pool, xbdf_notify_fn notify,
                    void *notify_arg, unsigned int max_pending);

/* Reconnect support.  detach: the backend went away; every request on
 * the ring becomes pending again (to be rebuilt and re-issued, so callers
 * see no error) and the ring and pool are forgotten - the caller unshares
 * them, quarantining pages the old backend still maps.  attach: a new ring
 * (`pages` may differ) and pool, granted to the new backend; what is
 * pending is issued at once.  Submissions while detached wait. */
void xbdf_queue_detach(struct xbdf_queue *q);
int xbdf_queue_attach(struct xbdf_queue *q, void *sring, unsigned int pages,
                      const struct xbdf_pool *pool);

/* Fail every request not yet completed with `err` (running their callbacks
 * now) and free everything.  Pool pages of pieces the backend may still be
 * using are the caller's to quarantine: the pool itself is not touched. */
void xbdf_queue_fini(struct xbdf_queue *q, int err);

/* Fail the queue for good: every request not yet completed completes
 * with `err` at the next xbdf_queue_process(), later submissions are
 * refused with -ENODEV and `why`.  For a device that went away. */
void xbdf_queue_fail(struct xbdf_queue *q, int err, const char *why);

/* Accept a request.  0: the callback will run exactly once (from
 * xbdf_queue_process or xbdf_queue_fini).  Negative: refused, the callback
 * never runs.  buf may be NULL for FLUSH and DISCARD. */
int xbdf_queue_submit(struct xbdf_queue *q, enum xbdf_io_op op, void *buf,
                      uint64_t len, uint64_t offset, unsigned int flags,
                      xbdfront_completion_fn cb, void *user_data);

/* The same, zero-copy: buf lies in pages already granted to the backend,
 * zc_refs[0] being the grant of the page holding buf and zc_refs[i] that
 * of the i-th page after it; buf must be 512-byte aligned.  Data is not
 * bounced (the pool gives indirect pages only).  *zc_busy (may be NULL)
 * is incremented on acceptance and decremented just before the callback.
 * For flush and discard zc_refs is ignored. */
int xbdf_queue_submit_zc(struct xbdf_queue *q, enum xbdf_io_op op, void *buf,
                         uint64_t len, uint64_t offset, unsigned int flags,
                         const uint32_t *zc_refs, atomic_int *zc_busy,
                         xbdfront_completion_fn cb, void *user_data);

/* ---- Carrying another queue's requests --------------------------------
 *
 * After a reconnect the backend may offer fewer rings than the caller has
 * queues.  A queue without a ring (the owner) then has its requests
 * carried by one with a ring (the carrier): they are issued on the
 * carrier's ring from its pool, and when one finishes it is handed to the
 * carrier's deliver function, which takes it to the owner, whose
 * xbdf_queue_run_io() runs the callback.  The in-flight count, the limit
 * and the submitted/completed/errors counters stay the owner's; the ring
 * counters are the carrier's.  The caller serialises access to a carrier
 * (its ring is driven by more than one thread).
 *
 * submit_as: submit on q for owner (q itself for an ordinary request);
 *   *io_out (io_out may be NULL) is the accepted request, for
 *   xbdf_queue_abandon(), valid until its callback runs.
 * move_pending: every request waiting in `from` goes to `to`, keeping
 *   (or becoming) from's, and is issued there as room allows.
 * give_back: on a detached queue, every request owned by another queue
 *   goes back to its owner's pending list, whole.
 * collect: consume responses and issue what waits, running no callback
 *   (arm as for the ring: false while busy-polling); then pop_done yields
 *   the finished ios of q's own, run with run_io on the owner. */
int xbdf_queue_submit_as(struct xbdf_queue *q, struct xbdf_queue *owner,
                         enum xbdf_io_op op, void *buf, uint64_t len,
                         uint64_t offset, unsigned int flags,
                         const uint32_t *zc_refs, atomic_int *zc_busy,
                         xbdfront_completion_fn cb, void *user_data,
                         struct xbdf_io **io_out);
void xbdf_queue_move_pending(struct xbdf_queue *from, struct xbdf_queue *to);
void xbdf_queue_give_back(struct xbdf_queue *q);
int xbdf_queue_collect(struct xbdf_queue *q, bool arm);
struct xbdf_io *xbdf_queue_pop_done(struct xbdf_queue *q);
void xbdf_queue_run_io(struct xbdf_queue *owner, struct xbdf_io *io);
int xbdf_queue_io_err(const struct xbdf_io *io);       /* what its callback gets */

/* Give up on an accepted request whose callback has not run (a
 * synchronous call that timed out): from now on nothing of it touches the
 * caller's memory - its callback never runs (a no-op runs in its place,
 * so the in-flight count drops as usual), a read's data is not copied out,
 * a write's data not yet copied in is never copied, and what is left to
 * issue is dropped.  The pieces on the ring keep their shadow entries and
 * pool pages until the backend answers (or the ring is torn down): the
 * backend may still write those pages, so they are not reused before.
 * Their late responses are consumed and dropped, counted in
 * stats.late_responses.  A zero-copy io keeps its buffer busy until then.
 * A reconnect (xbdf_queue_detach) drops the pieces of abandoned ios
 * instead of re-issuing them.  The caller holds the locks of every queue
 * the io may be on, and then calls xbdf_queue_drop_abandoned() on each:
 * it drops what of abandoned ios waits on that queue's pending list (an
 * io with nothing left on a ring is finished at once). */
void xbdf_queue_abandon(struct xbdf_queue *owner, struct xbdf_io *io,
                        int err);
void xbdf_queue_drop_abandoned(struct xbdf_queue *q);

/* Fail every request not yet completed with err, as xbdf_queue_fini does,
 * but run no callback (they wait on the done list, or are delivered to
 * their owners) and keep the queue. */
void xbdf_queue_cancel(struct xbdf_queue *q, int err);

/* Consume responses, issue what waits, and run up to `budget` callbacks
 * (0: no limit).  Returns the callbacks run.  When the backend broke the
 * protocol every outstanding request completes with -ENODEV and later
 * submissions are refused with -ENODEV. */
int xbdf_queue_process(struct xbdf_queue *q, unsigned int budget);

/* The same for a busy-polling caller: the ring's rsp_event is not
 * re-armed (xbdf_ring_poll), so the backend does not notify for what the
 * poller collects.  Call xbdf_queue_process() before sleeping. */
int xbdf_queue_poll(struct xbdf_queue *q, unsigned int budget);

/* Callbacks ready to run (a budget left them for the next call). */
static inline bool
xbdf_queue_has_done(const struct xbdf_queue *q)
{
    return q->done_head != NULL;
}

/* The inbox of finished ios a carrier delivered (see above): push from
 * the deliver function, pop and xbdf_queue_run_io() on the owner. */
void xbdf_queue_inbox_push(struct xbdf_queue *q, struct xbdf_io *io);
struct xbdf_io *xbdf_queue_inbox_pop(struct xbdf_queue *q);

static inline bool
xbdf_queue_has_inbox(const struct xbdf_queue *q)
{
    return q->inbox_head != NULL;
}

/* Requests accepted whose callback has not run. */
static inline unsigned int
xbdf_queue_in_flight(const struct xbdf_queue *q)
{
    return q->nios;
}

#endif /* XBDF_QUEUE_H */
