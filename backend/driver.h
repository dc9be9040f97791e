/* xbd-backd — backing drivers and the per-queue I/O engine (driver.c).
 *
 * A backing driver is a function table (struct xbd_driver) chosen from the
 * `params` node by its prefix; an opened backing (struct xbd_backing) has
 * the table as its first member.  The control path sees only
 * xbd_backing_open/info/close (xbd-backd.h); the data path also uses the
 * engine below.
 *
 * The engine: each queue thread owns one struct xbd_ioq, an io_uring of its
 * own with an fd that polls readable when completions are waiting (the
 * ring's fd itself; an eventfd for connection drivers).
 * The thread adds operations (xbd_ioq_add), submits a whole batch with one
 * call (xbd_ioq_submit) and later reaps completions (xbd_ioq_reap).  The
 * driver only fills in submission entries (its `prep` method), so every
 * driver gets batching and completion handling for free.
 *
 * Contract of an operation: once xbd_ioq_add returned 0, the completion
 * callback runs exactly once for it, even on error (io->result < 0); a
 * negative return means it never runs.  Short reads and writes are resumed
 * by the engine; a read past the end of the backing completes with -EIO.
 */
#ifndef XBD_DRIVER_H
#define XBD_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include <liburing.h>

#include "xbd-backd.h"

struct xbd_ioq;

enum xbd_io_op {
    XBD_IO_READ,
    XBD_IO_WRITE,
    XBD_IO_FLUSH,                   /* make completed writes durable */
    XBD_IO_DISCARD,
    XBD_IO_DISCARD_SECURE,
};

/* One operation on the backing.  Owned by the caller from xbd_ioq_add
 * until its completion callback has run; the engine keeps a pointer. */
struct xbd_io {
    enum xbd_io_op op;
    uint64_t offset;                /* bytes */
    uint64_t len;                   /* bytes; 0 for a flush */
    void *buf;                      /* read/write: len bytes, ours */
    /* Read/write, instead of buf: len bytes in iov[0..iovcnt), memory the
     * daemon does not own (the guest's mapped pages).  Only where
     * xbd_ioq_sync_iov said yes; the driver may change the array. */
    struct iovec *iov;
    unsigned int iovcnt;
    int64_t result;                 /* at completion: len or 0, or -errno */
    void *user;                     /* for the caller */

    /* Engine and driver scratch, not for the caller. */
    uint64_t done;                  /* bytes moved so far (short I/O) */
    struct xbd_io *next;            /* connection drivers: completed list */
    struct xbd_ioq *ioq;            /* the engine it was added to */
    bool sync_done;                 /* prep completed it already */
    int64_t sync_result;
    struct __kernel_timespec ts;    /* null driver: the latency timeout */
};

/* The function table of one driver.  Methods run on the control thread
 * (open, info, close) or on a queue thread (prep, complete); prep and
 * complete of one backing may run on several queue threads at once and
 * must not touch shared mutable state. */
struct xbd_driver {
    const char *name;               /* "file", "null", "nbd", "rbd" */

    /* Open `arg` (params after the prefix).  On failure fill err. */
    int (*open)(const char *arg, const struct xbd_backing_opts *opts,
                struct xbd_backing **out, char *err, size_t errlen);
    int (*info)(struct xbd_backing *b, struct xbd_backing_info *out);
    void (*close)(struct xbd_backing *b);

    /* Fill `sqe` for io (from io->offset + io->done on).  An operation
     * done synchronously instead sets io->sync_done/sync_result and preps
     * a NOP.  Returns 0, or -errno when the operation cannot be started
     * (then sqe is left as a NOP and the error becomes the result). */
    int (*prep)(struct xbd_backing *b, struct io_uring_sqe *sqe,
                struct xbd_io *io);

    /* Optional: do io at once on the queue thread instead of through the
     * ring, when that costs less (a memory-backed file: the ring would hand
     * every read and write to an io-wq worker thread; the null driver
     * without latency: nothing to wait for).  Returns true when done, with
     * io->sync_result set to io->len - io->done or -errno (a short transfer
     * is the driver's to finish); false to go through `prep`.  Must not
     * block on a device. */
    bool (*sync)(struct xbd_backing *b, struct xbd_io *io);

    /* Optional: `sync` does every operation `op` (a read or write) and
     * takes io->iov as well as io->buf.  Memory named by an iovec is then
     * touched only inside that call, never by I/O still running after it
     * (the guest's pages must not be reached by a transfer that can
     * outlive the request or be abandoned at stop). */
    bool (*sync_iov)(struct xbd_backing *b, enum xbd_io_op op);

    /* Optional: turn a completion's res into the result (null: a timeout's
     * -ETIME means done).  Without it res is taken as is. */
    int64_t (*complete)(struct xbd_backing *b, struct xbd_io *io, int res);

    /* Optional: at most this many operations of one queue at the driver
     * at once (0: no limit); the engine holds the rest back, in order. */
    unsigned int (*queue_depth)(struct xbd_backing *b);

    /* A driver with its own asynchronous API over a socket (nbd) leaves
     * prep NULL and provides a per-queue connection instead.  The engine
     * waits on the connection's fd with io_uring poll requests, so the
     * queue thread still sleeps in one place.
     *   conn_open    connect once per queue (on the control thread).
     *   conn_start   start io; when it finishes the driver calls
     *                xbd_ioq_complete(q, io, result) (possibly from inside
     *                conn_start or conn_notify), exactly once.  A negative
     *                return means it was not started and will not complete.
     *   conn_poll    which of POLLIN/POLLOUT the connection waits for now
     *                (0: nothing), and on which fd.
     *   conn_notify  the fd became ready with `revents`: make progress. */
    int (*conn_open)(struct xbd_backing *b, struct xbd_ioq *q, void **conn,
                     char *err, size_t errlen);
    void (*conn_close)(void *conn);
    int (*conn_start)(void *conn, struct xbd_io *io);
    short (*conn_poll)(void *conn, int *fd);
    void (*conn_notify)(void *conn, short revents);
};

/* Every backing starts with this. */
struct xbd_backing {
    const struct xbd_driver *drv;
};

extern const struct xbd_driver xbd_driver_file;
extern const struct xbd_driver xbd_driver_null;
#ifdef XBD_NBD_DRIVER
extern const struct xbd_driver xbd_driver_nbd;
#endif
#ifdef XBD_RBD_DRIVER
extern const struct xbd_driver xbd_driver_rbd;
#endif

/* Write a message into err (like snprintf) and return `rc`. */
int xbd_backing_error(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- The per-queue engine ------------------------------------------------ */

/* depth: submission entries (rounded up to a power of two, at most 4096). */
int xbd_ioq_open(struct xbd_backing *b, unsigned int depth, struct xbd_ioq **out,
                 char *err, size_t errlen);
void xbd_ioq_close(struct xbd_ioq *q);

/* Readable while completions wait in the ring (level-triggered: reaping
 * them all makes it unreadable; no read needed).  Operations a driver did
 * synchronously (drv->sync) wait on a list instead: look at xbd_ioq_ready
 * before sleeping on the fd. */
int xbd_ioq_fd(struct xbd_ioq *q);

/* Completions wait to be reaped (in the ring or done synchronously): a look
 * at memory, no system call.  A polling thread calls this instead of
 * poll(2) on the fd, and a thread checks it before it sleeps. */
bool xbd_ioq_ready(struct xbd_ioq *q);

/* Whether an operation `op` may name its memory with io->iov (see
 * drv->sync_iov): done synchronously by the driver, so nothing touches
 * that memory after xbd_ioq_add (or the reap of an operation the engine
 * held back) returns. */
bool xbd_ioq_sync_iov(const struct xbd_ioq *q, enum xbd_io_op op);

/* Queue one operation for the next submit (submits early only when the
 * submission ring is full). */
int xbd_ioq_add(struct xbd_ioq *q, struct xbd_io *io);

/* Submit everything queued, in one system call.  Returns the number
 * submitted or -errno. */
int xbd_ioq_submit(struct xbd_ioq *q);

/* Run `done` for up to `max` completed operations; returns how many.
 * Operations resumed after a short transfer do not count. */
unsigned int xbd_ioq_reap(struct xbd_ioq *q, unsigned int max,
                          void (*done)(struct xbd_io *io, void *ctx), void *ctx);

/* Operations added and not yet reaped (waiting ones included). */
unsigned int xbd_ioq_in_flight(const struct xbd_ioq *q);

/* Operations held back by the driver's queue_depth. */
unsigned int xbd_ioq_waiting(const struct xbd_ioq *q);

/* For connection drivers: io finished with `result` (bytes or -errno). */
void xbd_ioq_complete(struct xbd_ioq *q, struct xbd_io *io, int64_t result);

/* Wait (up to timeout_ms) for at least one completion; 0, or -ETIME. */
int xbd_ioq_wait(struct xbd_ioq *q, unsigned int timeout_ms);

#endif /* XBD_DRIVER_H */
