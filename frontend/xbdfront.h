/* xbdfront.h — libxbdfront, a Xen blkfront in a library.
 *
 * libxbdfront lets a userspace program (a unikernel, a userspace driver, a
 * test rig, a tool that reads a guest's disk) use a Xen virtual block device
 * of the domain it runs in, speaking the blkif protocol of Xen's
 * <xen/io/blkif.h> to whatever backend serves it: Linux blkback, QEMU qdisk
 * or xbd-backd.  Multi-page rings, several queues, indirect descriptors and
 * persistent grants are negotiated when the backend offers them.
 *
 * HANDLES
 *   A `struct xbdfront` is one virtual block device.  Create it with
 *   xbdfront_create(), set options (ring pages, queues, ...), then
 *   xbdfront_connect() it to a device of this domain by name ("xvda") or
 *   virtual-device number ("51712").  Connecting negotiates with the backend
 *   through xenstore and returns once both sides are Connected.  The info
 *   getters then tell what was negotiated.  xbdfront_close() disconnects and
 *   frees everything; requests still in flight complete with -ECANCELED
 *   before it returns.
 *
 * QUEUES AND THREADS
 *   A connected handle has xbdfront_get_queues() queues, numbered from 0.
 *   Each queue is one shared ring with its own event channel.  A queue must
 *   be used by one thread at a time: submit, process completions and poll
 *   on a queue from the thread that owns it.  Each queue has its own lock,
 *   which nothing else takes in normal operation; that is what makes
 *   queues scale.  Different queues may be driven concurrently by
 *   different threads.  The setters, getters and xbdfront_close() are not
 *   for concurrent use with anything else on the same handle.
 *
 *   The library runs one control thread per handle.  It watches the
 *   backend's state in xenstore and handles the events that do not belong
 *   to a queue: a resize (the resize callback runs on that thread) and a
 *   backend that goes away and comes back (a daemon restart, a toolstack
 *   reconnect).  Then the library renegotiates from what the backend offers
 *   now — the ring size, the indirect limit, the number of rings — and
 *   re-issues every request that had not completed, from its private
 *   copies (xbdfront_queue_fd() turns readable to say so).  Callers see no
 *   error, only a delay.  The number of queues stays what the first
 *   connect chose (the caller's threads own them): when the backend comes
 *   back with fewer rings, queue i's requests ride on the ring of queue
 *   i % rings — the waiting ones, the ones lost on the old ring and new
 *   ones — and their callbacks still run on queue i's thread; queue i's
 *   fd also watches that ring.  The two queues' threads then share that
 *   ring's lock.  A later reconnect with more rings gives each queue its
 *   own ring again (up to the first connect's count).  A backend going
 *   away with `online` 0 is the toolstack detaching the device, not a
 *   restart: no reconnect, every queue fails with -ENODEV; so it does when
 *   the device's directories vanish or the store itself goes away.  Each
 *   reconnect logs one line through the log callback (stderr unless
 *   xbdfront_set_log_callback() says otherwise).
 *
 * ASYNCHRONOUS I/O
 *   xbdfront_aio_*() submit a request on a queue and take a completion
 *   callback.  The contract:
 *     - a return of 0 means the callback will run exactly once, even when
 *       the I/O fails (the callback's `err` argument says how);
 *     - a negative return means the request was not accepted and the
 *       callback will never run.
 *   Callbacks run inside xbdfront_process() / xbdfront_poll() on the
 *   queue's thread (or inside xbdfront_close()).  A callback may submit new
 *   requests on the same queue; it must not close the handle.
 *
 *   A request larger than what one ring slot can carry is split by the
 *   library; its callback runs once, when every piece has completed.
 *   Offsets and lengths are in bytes and must be multiples of
 *   xbdfront_get_sector_size(); a request that does not fit the device is
 *   refused before anything reaches the ring.
 *
 *   Event loops: xbdfront_queue_fd() is a file descriptor that polls
 *   readable when the queue may have completions (it stays the same
 *   across reconnects); then call
 *   xbdfront_process() with a budget (at most that many callbacks run, so
 *   one busy queue cannot starve the rest of the loop).  Programs that
 *   prefer latency to CPU can enable busy-polling of the ring
 *   (xbdfront_set_poll_us()), used by xbdfront_poll().
 *
 *   The synchronous helpers xbdfront_pread() etc. submit one request and
 *   wait for it on the given queue; they run other callbacks of that queue
 *   that become ready meanwhile.
 *
 * SYNCHRONOUS CALLS AND TIMEOUTS
 *   By default a synchronous call waits as long as it takes, through
 *   reconnects: a backend that never answers (or never comes back) blocks
 *   it for ever.  xbdfront_set_sync_timeout_ms() bounds the wait: a call
 *   that passes the limit returns -ETIMEDOUT, and the message says what it
 *   waited for and the device's state.  The request is then given up on,
 *   not cancelled - the backend may still carry it out:
 *     - the library never touches the caller's buffer for it again: a
 *       late read's data is dropped, a write's data not yet sent is never
 *       sent (what part of a timed-out write reached the disk is unknown;
 *       write it again).  An ordinary buffer is the caller's again as soon
 *       as the call returns (reuse it, free it).
 *     - a buffer from xbdfront_buffer_alloc() is different: the backend
 *       reads and writes its pages directly, and may still do so.  It stays
 *       owned by the request until the backend answers it or the ring is
 *       torn down (the backend went away; xbdfront_close()) and the queue
 *       has processed that (xbdfront_process(), xbdfront_poll() or another
 *       synchronous call on the queue): meanwhile xbdfront_buffer_free()
 *       returns -EBUSY, a late read may still change its contents and a
 *       late write may still read them.
 *     - the ring slot and the granted pages the request used stay the
 *       library's until the backend answers or the ring is torn down (a
 *       page the backend may still write is never reused); the request
 *       counts in xbdfront_in_flight() until then.  The late response is
 *       consumed and dropped (counted in late_responses), not taken for a
 *       protocol violation.  The queue stays usable.
 *
 * BUFFERS
 *   The backend can only reach memory this domain has granted to it.  Two
 *   kinds of buffer may be passed to the I/O calls:
 *     - buffers from xbdfront_buffer_alloc(): pages granted to the
 *       backend's domain for the buffer's life; I/O on them is zero-copy
 *       (a request whose data lies in one such buffer, 512-byte aligned).
 *       Free them with xbdfront_buffer_free(), never with free();
 *       xbdfront_close() frees those left.
 *     - any other memory: the data is bounced through pages of a per-queue
 *       pool granted once, at connect (one copy each way).
 *   A buffer belongs to the library from submission until its callback
 *   runs (a synchronous call's: until it returns, but see SYNCHRONOUS
 *   CALLS AND TIMEOUTS for zero-copy buffers): do not read (for a read)
 *   or modify (for a write) it meanwhile.
 *   The library never frees a caller's memory.
 *   Granted pages are zeroed before they are first granted, so a backend
 *   never sees unrelated memory.  When the toolstack marks the backend
 *   untrusted (`trusted=0`) persistent grants are not negotiated and
 *   allocated buffers are bounced like any other memory.
 *   A granted page that the backend still maps when the library ends
 *   access is quarantined, never reused (XSA-396).
 *
 * FORK
 *   A child process must not use a handle inherited from its parent, nor
 *   close it (that would tear down the parent's connection): the grants,
 *   event channels and xenstore connection stay the parent's.  The child
 *   may exec or exit.
 *
 * ERRORS
 *   Every function returning int returns >= 0 on success and a negative
 *   errno value on failure.  xbdfront_get_error() then returns a message
 *   for a human saying what went wrong and, where it can, what to do;
 *   xbdfront_get_errno() returns the positive errno.  Both are thread-local
 *   and valid until the next libxbdfront call on the same thread.
 *   Callback `err` values: 0, -EIO (the backend reported an error),
 *   -EOPNOTSUPP (the backend refused the operation), -ENODEV (the device was
 *   marked broken, see below), -ECANCELED (the handle was closed).
 *
 *   A backend that breaks the protocol (a response with an unknown id, a
 *   wrong operation echo, an unknown status, more responses than requests,
 *   nonsense in xenstore) marks the device broken: pending requests fail
 *   with -ENODEV, new ones are refused with -ENODEV, and the message says
 *   what the backend did.  A lying backend never makes the library corrupt
 *   memory or complete the wrong request.
 *
 * This header needs only C99 (or C++) and the standard headers it includes.
 */
#ifndef XBDFRONT_H
#define XBDFRONT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The handle: one virtual block device.  Opaque. */
struct xbdfront;

/* ---- Errors and version ------------------------------------------------ */

/* The message for the last failure on this thread (never NULL; "" when
 * nothing failed yet). */
extern const char *xbdfront_get_error(void);

/* The positive errno of the last failure on this thread (0: none). */
extern int xbdfront_get_errno(void);

/* The library's version, "MAJOR.MINOR.MICRO". */
extern const char *xbdfront_get_version(void);

/* ---- Handles ----------------------------------------------------------- */

/* Create a handle, not yet connected.  Needs no Xen access. */
extern int xbdfront_create(struct xbdfront **hp);

/* Disconnect (if connected) and free the handle.  In-flight requests
 * complete with -ECANCELED first.  NULL is accepted. */
extern void xbdfront_close(struct xbdfront *h);

/* ---- Options (before xbdfront_connect) --------------------------------- */

/* Ring pages per queue: a power of two, or 0 (the default) for the largest
 * both sides allow up to 64 (each page is a grant and a xenstore node).
 * Asking for more than the backend offers is not an error: the backend's
 * limit wins and xbdfront_get_ring_pages() says what was used. */
extern int xbdfront_set_ring_pages(struct xbdfront *h, unsigned int pages);

/* Queues wanted (>= 1, default 1); clamped to the backend's
 * multi-queue-max-queues. */
extern int xbdfront_set_queues(struct xbdfront *h, unsigned int queues);

/* Segments per indirect request (0 disables indirect descriptors; default
 * 256 = 1 MiB per request); clamped to the backend's
 * feature-max-indirect-segments. */
extern int xbdfront_set_indirect_segments(struct xbdfront *h,
                                          unsigned int segments);

/* Persistent grants: 1 to use them when the backend offers them (the
 * default), 0 never.  Ignored (off) when the backend is untrusted. */
extern int xbdfront_set_persistent(struct xbdfront *h, int enable);

/* Busy-poll the ring for up to `us` microseconds in xbdfront_poll() and the
 * synchronous helpers before sleeping on the event channel (0, the default,
 * never spins).  While spinning the library makes no syscall and does not
 * ask the backend to notify (the ring's rsp_event is re-armed only before
 * sleeping), so polling also cuts notifications.  May be changed while
 * connected, from the thread that drives the queues. */
extern int xbdfront_set_poll_us(struct xbdfront *h, unsigned int us);

/* Requests a queue accepts before xbdfront_aio_*() return -EAGAIN,
 * counting those waiting for ring space (default: 4 x the ring size). */
extern int xbdfront_set_max_pending(struct xbdfront *h, unsigned int n);

/* How long xbdfront_connect() waits for the backend (default 10000 ms,
 * libxl's own limit). */
extern int xbdfront_set_connect_timeout_ms(struct xbdfront *h,
                                           unsigned int ms);

/* Pages of each queue's pool of granted bounce pages (and indirect
 * segment pages), or 0 (the default) for one page per ring slot plus one
 * full indirect request, so that the whole ring can be kept busy with
 * small requests (64 ring pages: 2048 + 258 pages, 9 MiB per queue).
 * Otherwise 16 to 16384.  The pool bounds how much bounced data a queue
 * has in flight.  The automatic size shrinks (down to 32 pages, saying so
 * through the log callback; larger requests then go in pieces) when the
 * platform has fewer grants to give; a size asked for here does not:
 * xbdfront_connect() fails with -ENOSPC.  On Xen the xen_gntalloc
 * module's `limit` parameter (1024 grants by default) bounds rings, pools
 * and buffers together. */
extern int xbdfront_set_pool_pages(struct xbdfront *h, unsigned int pages);

/* How long each synchronous call (xbdfront_pread(), xbdfront_pwrite(),
 * xbdfront_flush(), xbdfront_discard()) waits for its request, in
 * milliseconds, up to INT_MAX; 0 (the default, as Linux blkfront) waits
 * without limit.  The limit covers the whole call, including time spent
 * waiting for a backend that went away to come back.  See SYNCHRONOUS
 * CALLS AND TIMEOUTS above for what a call that passes it leaves behind.
 * May be set at any time; a call already waiting keeps the limit it
 * started with. */
extern int xbdfront_set_sync_timeout_ms(struct xbdfront *h, unsigned int ms);
/* The limit set above (0: none). */
extern int xbdfront_get_sync_timeout_ms(struct xbdfront *h);

/* Where the library's messages go: events the caller does not otherwise
 * see (a reconnect, a pool shrunk for lack of grants, pages a backend
 * still maps left shared).  By default one line each on stderr, prefixed
 * "libxbdfront: "; fn receives each message (no prefix, no newline), on
 * the control thread or inside xbdfront_connect() / xbdfront_close();
 * NULL drops them (quiet).  Errors of calls are still reported through
 * return values and xbdfront_get_error(). */
typedef void (*xbdfront_log_fn)(void *user_data, const char *msg);
extern int xbdfront_set_log_callback(struct xbdfront *h, xbdfront_log_fn fn,
                                     void *user_data);

/* Called on the control thread when the device's size changed while
 * connected (the backend rewrote `sectors`). */
typedef void (*xbdfront_resize_fn)(void *user_data, uint64_t old_size,
                                   uint64_t new_size);
extern int xbdfront_set_resize_callback(struct xbdfront *h,
                                        xbdfront_resize_fn fn,
                                        void *user_data);

/* ---- Connecting -------------------------------------------------------- */

/* Turn a device name into a virtual-device number, per Xen's vbd-interface
 * encoding: "xvda" .. "xvdz", "xvdaa" ..., optionally with a partition
 * number ("xvda1"), "hda", "sda", "d0p0" forms, or a plain decimal number.
 * Pure: needs no Xen access.  -EINVAL for a name that encodes nothing. */
extern int xbdfront_parse_device(const char *name, uint32_t *vdev_out);

/* Connect to a virtual block device of this domain: `device` is a name
 * xbdfront_parse_device() accepts.  Blocks until Connected or the connect
 * timeout.  Errors: -ENOENT no such device in xenstore, -ETIMEDOUT the
 * backend did not come, -EPROTO the backend published nonsense, -ENOSPC out
 * of grants (the message says how to raise the limit). */
extern int xbdfront_connect(struct xbdfront *h, const char *device);

/* ---- What was negotiated (after xbdfront_connect) ---------------------- */

/* Size in bytes. */
extern int64_t xbdfront_get_size(struct xbdfront *h);
/* Logical sector size in bytes (512, 4096, ...): the unit of alignment. */
extern int xbdfront_get_sector_size(struct xbdfront *h);
extern int xbdfront_get_ring_pages(struct xbdfront *h);
extern int xbdfront_get_queues(struct xbdfront *h);
/* 0: no indirect descriptors, requests carry at most 11 pages. */
extern int xbdfront_get_indirect_segments(struct xbdfront *h);
/* Pages in each queue's pool of granted bounce pages (the smallest when
 * the platform's grant limit made some smaller): with one page per ring
 * slot or more, small requests can fill the whole ring. */
extern int xbdfront_get_pool_pages(struct xbdfront *h);
/* 1 when persistent grants are in use. */
extern int xbdfront_get_persistent(struct xbdfront *h);
/* The virtual-device number. */
extern int64_t xbdfront_get_vdev(struct xbdfront *h);

#define XBDFRONT_FEATURE_FLUSH          (UINT64_C(1) << 0)
#define XBDFRONT_FEATURE_BARRIER        (UINT64_C(1) << 1)
#define XBDFRONT_FEATURE_DISCARD        (UINT64_C(1) << 2)
#define XBDFRONT_FEATURE_SECURE_DISCARD (UINT64_C(1) << 3)
#define XBDFRONT_FEATURE_READONLY       (UINT64_C(1) << 4)
#define XBDFRONT_FEATURE_CDROM          (UINT64_C(1) << 5)
#define XBDFRONT_FEATURE_REMOVABLE      (UINT64_C(1) << 6)
#define XBDFRONT_FEATURE_UNTRUSTED      (UINT64_C(1) << 7)
/* A mask of XBDFRONT_FEATURE_*, or a negative errno. */
extern int64_t xbdfront_get_features(struct xbdfront *h);

/* ---- Buffers ----------------------------------------------------------- */

/* Allocate `len` bytes (rounded up to whole pages, page-aligned) of memory
 * granted to the backend: I/O on it is zero-copy.  Needs a connected
 * handle.  -ENOSPC: the grant limit was reached (on Xen, the gntalloc
 * module's `limit` parameter, 1024 pages by default; the message says
 * so). */
extern int xbdfront_buffer_alloc(struct xbdfront *h, size_t len,
                                  void **buf_out);
/* Free a buffer from xbdfront_buffer_alloc() (NULL is accepted).  -EBUSY:
 * it is part of a request in flight; -EINVAL: not such a buffer. */
extern int xbdfront_buffer_free(struct xbdfront *h, void *buf);

/* ---- Asynchronous I/O -------------------------------------------------- */

/* The completion callback: err is 0 or a negative errno (see ERRORS). */
typedef void (*xbdfront_completion_fn)(void *user_data, int err);

/* Flags for the I/O calls. */
#define XBDFRONT_WRITE_BARRIER  (1u << 0) /* pwrite: ordered after all earlier
                                           * writes, needs FEATURE_BARRIER */
#define XBDFRONT_DISCARD_SECURE (1u << 1) /* discard: needs SECURE_DISCARD */

extern int xbdfront_aio_pread(struct xbdfront *h, unsigned int queue,
                              void *buf, size_t len, uint64_t offset,
                              unsigned int flags,
                              xbdfront_completion_fn cb, void *user_data);
extern int xbdfront_aio_pwrite(struct xbdfront *h, unsigned int queue,
                               const void *buf, size_t len, uint64_t offset,
                               unsigned int flags,
                               xbdfront_completion_fn cb, void *user_data);
/* Make every write completed before it durable.  Without a flush or
 * barrier feature the backend has no volatile cache and this completes at
 * once with 0, as Linux blkfront does. */
extern int xbdfront_aio_flush(struct xbdfront *h, unsigned int queue,
                              unsigned int flags,
                              xbdfront_completion_fn cb, void *user_data);
/* Discard is advisory: the range is shrunk to whole discard-granularity
 * units, and an empty result completes at once with 0. */
extern int xbdfront_aio_discard(struct xbdfront *h, unsigned int queue,
                                uint64_t len, uint64_t offset,
                                unsigned int flags,
                                xbdfront_completion_fn cb, void *user_data);

/* A file descriptor that polls readable when the queue may have work:
 * its event channel fired, a budget left callbacks waiting, or the
 * library reconnected it.  The same fd for the handle's life; owned by
 * the handle. */
extern int xbdfront_queue_fd(struct xbdfront *h, unsigned int queue);

/* Run the callbacks of completed requests on the queue, at most `budget`
 * of them (0: no limit), without blocking.  Returns how many ran. */
extern int xbdfront_process(struct xbdfront *h, unsigned int queue,
                            unsigned int budget);

/* Like xbdfront_process(), but first wait up to timeout_ms (-1: forever)
 * for at least one completion, busy-polling first when enabled.  Returns
 * how many callbacks ran (0 on timeout). */
extern int xbdfront_poll(struct xbdfront *h, unsigned int queue,
                         int timeout_ms, unsigned int budget);

/* Requests on the queue not yet completed (submitted or waiting). */
extern int xbdfront_in_flight(struct xbdfront *h, unsigned int queue);

/* ---- Synchronous I/O --------------------------------------------------- */

extern int xbdfront_pread(struct xbdfront *h, unsigned int queue,
                          void *buf, size_t len, uint64_t offset,
                          unsigned int flags);
extern int xbdfront_pwrite(struct xbdfront *h, unsigned int queue,
                           const void *buf, size_t len, uint64_t offset,
                           unsigned int flags);
extern int xbdfront_flush(struct xbdfront *h, unsigned int queue,
                          unsigned int flags);
extern int xbdfront_discard(struct xbdfront *h, unsigned int queue,
                            uint64_t len, uint64_t offset,
                            unsigned int flags);

/* ---- Counters ---------------------------------------------------------- */

/* Per-queue counters since connect (they survive a reconnect).  While a
 * queue's requests ride on another queue's ring (see QUEUES AND THREADS),
 * the ring's counters (ring_requests, notifications, ring_full, bounced
 * bytes, reissued, late_responses) count on the queue that owns the ring;
 * submitted, completed, errors, polls and abandoned stay the submitting
 * queue's. */
struct xbdfront_stats {
    uint64_t submitted;         /* requests accepted from the caller */
    uint64_t ring_requests;     /* ring slots used (after splitting) */
    uint64_t completed;         /* callbacks run */
    uint64_t errors;            /* callbacks run with err != 0 */
    uint64_t notify_sent;       /* event-channel notifications sent */
    uint64_t notify_received;   /* event-channel notifications received */
    uint64_t polls;             /* busy-poll rounds that found work */
    uint64_t ring_full;         /* times a request waited for ring space */
    uint64_t bounced_bytes;     /* bytes copied through bounce pages */
    uint64_t reissued;          /* ring requests re-issued after reconnect */
    uint64_t abandoned;         /* synchronous calls that timed out (their
                                 * requests were given up on; each counts
                                 * in completed and errors once dropped) */
    uint64_t late_responses;    /* responses to given-up requests, consumed
                                 * and dropped (a ring counter) */
};

/* Fill *st (of `size` bytes: pass sizeof(struct xbdfront_stats); a
 * smaller size from an older caller gets the leading fields). */
extern int xbdfront_get_stats(struct xbdfront *h, unsigned int queue,
                              struct xbdfront_stats *st, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* XBDFRONT_H */
