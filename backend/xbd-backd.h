/* xbd-backd — the contracts between the daemon's parts.
 *
 *   main.c, xenbus.c, negotiate.c    the control path: one thread that
 *       watches xenstore, runs each device's state machine, parses what the
 *       frontend wrote, and starts/stops queues.
 *   request.c, ring.c, dataplane.c   the data path: one thread per queue
 *       (ring) that consumes requests, validates them, moves data with grant
 *       copy or persistent mappings, submits to the backing, responds.
 *   driver.c, drivers/<name>/        backing drivers behind one function
 *       table (file, null, nbd, ...), chosen from the `params` node.
 *
 * Control and data meet only through this header: the control path opens a
 * backing (xbd_backing_open), then per negotiated queue fills a
 * struct xbd_queue_cfg and calls xbd_queue_start; it calls xbd_queue_stop
 * on teardown.  The data path never touches xenstore; when a queue breaks
 * (a hostile producer index, say) it calls cfg->on_fail from its own thread
 * and the control path fails the device with an `error` node.
 *
 * Error convention: int functions return >= 0 on success, a negative errno
 * on failure; where an `err` buffer is passed, a human-readable reason is
 * written there (what was wrong and, where it helps, what to do).
 */
#ifndef XBD_BACKD_H
#define XBD_BACKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xbd-platform.h"

/* ---- Logging (log.c) ---------------------------------------------------- */

/* Levels are syslog's (LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
 * LOG_DEBUG).  Before xbd_log_init: stderr, LOG_INFO and more urgent. */
void xbd_log_init(const char *ident, bool use_syslog, bool debug);
void xbd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* At most `burst` lines per `interval_ms`; the rest are counted and the
 * count reported with the next line let through.  Zero-initialise, then set
 * interval_ms and burst (0 means 5000 ms and 10).  For lines a guest can
 * trigger at will ("buggy or malicious frontend: ..."). */
struct xbd_ratelimit {
    unsigned int interval_ms;
    unsigned int burst;
    uint64_t window_start_ms;
    unsigned int printed;
    unsigned long suppressed;
};
void xbd_log_limited(struct xbd_ratelimit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Backing drivers (driver.c) ----------------------------------------- */

/* What the control path learns from an opened backing and publishes. */
struct xbd_backing_info {
    uint64_t size;                  /* bytes; a multiple of 512 */
    uint32_t sector_size;           /* logical: 512 or 4096 */
    uint32_t physical_sector_size;
    bool read_only;                 /* opened read-only (mode=r, a snapshot) */
    bool flush;                     /* flush/barrier meaningful and supported */
    bool discard;
    bool discard_secure;
    uint32_t discard_granularity;   /* bytes */
    uint32_t discard_alignment;     /* bytes */
    bool rotational;
    unsigned int max_queues;        /* the most queues that may share it
                                       (an NBD server without multi-conn:
                                       1); 0: no limit */
};

struct xbd_backing_opts {
    bool read_only;                 /* mode=r, or a cdrom */
    bool direct_io;                 /* direct-io-safe=1 or configured */
    bool discard_enable;            /* discard-enable (default 1) */
};

struct xbd_backing;

/* Open the backing named by a `params` value: "/path", "raw:/path",
 * "null:size=...,latency=...", "nbd:URI" (when built).  On failure err
 * says what and why ("cannot open /srv/a.img: No such file or directory"),
 * suitable for `hotplug-error`. */
int xbd_backing_open(const char *params, const struct xbd_backing_opts *opts,
                     struct xbd_backing **out, char *err, size_t errlen);

/* Current properties; size is re-read from the backing each call (the
 * control path polls this for live resize). */
int xbd_backing_info(struct xbd_backing *b, struct xbd_backing_info *out);

/* After every queue using it has stopped. */
void xbd_backing_close(struct xbd_backing *b);

/* ---- Queues: one ring, one thread (dataplane.c) ------------------------- */

#define XBD_MAX_RING_PAGES 256u     /* 1 << XBD_RING_ORDER_LIMIT */

enum xbd_abi {
    XBD_ABI_NATIVE = 0,             /* `protocol` absent or our own */
    XBD_ABI_X86_32,                 /* "x86_32-abi" */
    XBD_ABI_X86_64,                 /* "x86_64-abi" */
};

struct xbd_queue;

struct xbd_queue_cfg {
    struct xbd_platform *platform;
    const char *name;               /* for logs: "qdisk/5/51712 q0" (copied) */
    uint32_t fe_domid;
    unsigned int index;             /* queue number within the device */

    unsigned int ring_pages;        /* 1..XBD_MAX_RING_PAGES, power of two */
    uint32_t ring_refs[XBD_MAX_RING_PAGES];
    uint32_t fe_port;               /* the frontend's unbound event channel */
    enum xbd_abi abi;

    bool persistent;                /* feature-persistent negotiated */
    bool grant_map;                 /* without persistent: map each request's
                                     * grants and unmap after, instead of the
                                     * default batched grant copy */
    unsigned int max_indirect;      /* segments advertised; 0 = no indirect */
    unsigned int persistent_max;    /* per-queue cache bound, in grants */
    unsigned int persistent_idle_ms;    /* unmap a grant unused this long;
                                         * 0: 60000 */

    /* Adaptive polling: poll the ring instead of sleeping once requests
     * arrive faster than poll_start_rate per second; stop after poll_idle_us
     * without work.  poll_idle_us == 0 turns polling off. */
    unsigned int poll_start_rate;
    unsigned int poll_idle_us;
    unsigned int batch_budget;      /* requests per wakeup before yielding */
    unsigned int uring_depth;       /* 0: sized from the ring */

    struct xbd_backing *backing;    /* shared by the device's queues */
    bool read_only;
    bool flush;                     /* feature-flush-cache / barrier advertised */
    bool discard;
    bool discard_secure;
    uint32_t sector_size;           /* alignment requirement, bytes */
    uint64_t sectors;               /* in 512-byte units; see set_sectors */

    /* Called at most once, from the queue's thread, when the ring is broken
     * beyond a per-request error (producer index out of range, ring pages
     * unmappable mid-run, ...).  `why` is for the `error` node.  The queue
     * then stops taking requests; the control path must still call
     * xbd_queue_stop.  Must not block: wake the control thread and return. */
    void (*on_fail)(void *ctx, unsigned int index, const char *why);
    void *ctx;
};

/* Map the ring, bind the event channel, size memory from what was
 * negotiated, start the thread.  Nothing is left behind on failure. */
int xbd_queue_start(const struct xbd_queue_cfg *cfg, struct xbd_queue **out,
                    char *err, size_t errlen);

/* Stop taking requests, finish in-flight I/O (bounded by timeout_ms; then
 * abandon it, still without freeing memory the kernel may write), join the
 * thread, unmap every grant, unbind.  Safe after on_fail. */
void xbd_queue_stop(struct xbd_queue *q, unsigned int timeout_ms);

/* Live resize: requests are checked against the new size from now on. */
void xbd_queue_set_sectors(struct xbd_queue *q, uint64_t sectors);

/* Counters, read without stopping the queue (relaxed atomics). */
struct xbd_queue_stats {
    uint64_t req_read, req_write, req_flush, req_barrier, req_discard,
             req_indirect, req_unsupported;
    uint64_t bytes_read, bytes_written;
    uint64_t err_bad_request;       /* validation failures (guest's fault) */
    uint64_t err_grant;             /* grant copy/map failures */
    uint64_t err_io;                /* backing errors */
    uint64_t in_flight;
    uint64_t ring_full;             /* times the frontend had filled the ring */
    uint64_t notify_sent, notify_received, spurious_wakeups;
    uint64_t polls, poll_hits;
    uint64_t poll_preempted;        /* polling paused: it lost the CPU */
    uint64_t grant_copies, grant_maps, pgrant_hits, pgrant_misses,
             pgrant_evictions;
    uint64_t batches;               /* io_uring submissions */
    uint64_t direct_io;             /* reads and writes moved by the driver
                                     * straight to or from the guest's
                                     * persistently mapped pages */
    uint64_t storm_pauses;          /* event storms sat out (port kept masked) */
};
void xbd_queue_get_stats(struct xbd_queue *q, struct xbd_queue_stats *out);

#endif /* XBD_BACKD_H */
