/* xbd-backd — choosing a backing driver from `params`, and the per-queue
 * io_uring engine every driver shares.  See driver.h. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "driver.h"

int
xbd_backing_error(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- params ---------------------------------------------------------------
 *
 *   /path            a raw image or block device (file driver)
 *   raw:/path        the same; "aio:", "file:" and "phy:" are aliases
 *                    (QEMU maps aio to raw; libxl writes phy paths bare)
 *   raw:TARGET       raw data over another driver: "aio:nbd://host/x" and
 *                    "aio:rbd:pool/image" are what libxl writes for a qdisk
 *                    whose target is not a path
 *   null:k=v,...     no storage (null driver)
 *   nbd:URI          an NBD export, when built with libnbd; a bare NBD URI
 *                    (nbd://, nbds://, nbd+unix://, ...) too
 *   rbd:POOL/IMAGE   a Ceph RBD image, when built with librbd (rbd.c)
 *
 * Image formats we do not parse ourselves get a message that says how to
 * serve them anyway.
 */
struct prefix {
    const char *name;
    const struct xbd_driver *drv;
    bool format;                    /* names the raw format, not a driver */
};

static const struct prefix prefixes[] = {
    { "raw", &xbd_driver_file, true },
    { "aio", &xbd_driver_file, true },
    { "file", &xbd_driver_file, true },
    { "phy", &xbd_driver_file, true },
    { "null", &xbd_driver_null, false },
#ifdef XBD_NBD_DRIVER
    { "nbd", &xbd_driver_nbd, false },
#endif
#ifdef XBD_RBD_DRIVER
    { "rbd", &xbd_driver_rbd, false },
#endif
};

/* NBD URI schemes: such params are a URI as a whole (nbd://host/x). */
static const char *const nbd_schemes[] = {
    "nbd", "nbds", "nbd+unix", "nbds+unix", "nbd+vsock", "nbds+vsock",
};

static const char *const image_formats[] = {
    "qcow", "qcow2", "vhd", "vpc", "vhdx", "vmdk", "vdi", "qed",
};

static int
open_params(const char *params, const struct xbd_backing_opts *opts,
            struct xbd_backing **out, char *err, size_t errlen, bool under_format)
{
    const char *colon;
    size_t n, i;

    *out = NULL;
    if (params == NULL || params[0] == '\0')
        return xbd_backing_error(err, errlen, -EINVAL,
                                 "params is empty: nothing to open");
    if (params[0] == '/')
        return xbd_driver_file.open(params, opts, out, err, errlen);
    colon = strchr(params, ':');
    if (colon == NULL)
        return xbd_backing_error(err, errlen, -EINVAL,
                                 "params '%s' is neither an absolute path nor "
                                 "TYPE:ARGS (raw:/path, null:size=1G, nbd:URI, "
                                 "rbd:POOL/IMAGE)",
                                 params);
    n = (size_t)(colon - params);
    if (strncmp(colon, "://", 3) == 0) {
        for (i = 0; i < sizeof(nbd_schemes) / sizeof(nbd_schemes[0]); i++) {
            if (strlen(nbd_schemes[i]) != n || strncmp(params, nbd_schemes[i], n) != 0)
                continue;
#ifdef XBD_NBD_DRIVER
            return xbd_driver_nbd.open(params, opts, out, err, errlen);
#else
            return xbd_backing_error(err, errlen, -ENOTSUP,
                                     "nbd backing not built in: rebuild with libnbd "
                                     "(apt-get install libnbd-dev)");
#endif
        }
    }
    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        const char *arg = colon + 1;

        if (strlen(prefixes[i].name) != n || strncmp(params, prefixes[i].name, n) != 0)
            continue;
        if (!prefixes[i].format)
            return prefixes[i].drv->open(arg, opts, out, err, errlen);
        if (under_format)
            return xbd_backing_error(err, errlen, -EINVAL, "params: '%.*s:' "
                                     "inside another format prefix", (int)n, params);
        /* raw:TARGET where TARGET is a driver's params, not a path. */
        if (arg[0] != '/' && strchr(arg, ':') != NULL)
            return open_params(arg, opts, out, err, errlen, true);
        return prefixes[i].drv->open(arg, opts, out, err, errlen);
    }
    for (i = 0; i < sizeof(image_formats) / sizeof(image_formats[0]); i++) {
        if (strlen(image_formats[i]) == n && strncmp(params, image_formats[i], n) == 0)
            return xbd_backing_error(err, errlen, -ENOTSUP,
                                     "image format '%.*s' is not read by xbd-backd: "
                                     "export the image with qemu-nbd or "
                                     "qemu-storage-daemon and use nbd:URI",
                                     (int)n, params);
    }
#ifndef XBD_NBD_DRIVER
    if (n == 3 && strncmp(params, "nbd", 3) == 0)
        return xbd_backing_error(err, errlen, -ENOTSUP,
                                 "nbd backing not built in: rebuild with libnbd "
                                 "(apt-get install libnbd-dev)");
#endif
#ifndef XBD_RBD_DRIVER
    if (n == 3 && strncmp(params, "rbd", 3) == 0)
        return xbd_backing_error(err, errlen, -ENOTSUP,
                                 "rbd backing not built in: rebuild with librbd "
                                 "(apt-get install librbd-dev)");
#endif
    return xbd_backing_error(err, errlen, -EINVAL,
                             "unknown backing type '%.*s' in params '%s'",
                             (int)n, params, params);
}

int
xbd_backing_open(const char *params, const struct xbd_backing_opts *opts,
                 struct xbd_backing **out, char *err, size_t errlen)
{
    return open_params(params, opts, out, err, errlen, false);
}

int
xbd_backing_info(struct xbd_backing *b, struct xbd_backing_info *out)
{
    memset(out, 0, sizeof(*out));
    return b->drv->info(b, out);
}

void
xbd_backing_close(struct xbd_backing *b)
{
    if (b != NULL)
        b->drv->close(b);
}

/* ---- The engine ------------------------------------------------------------ */

struct xbd_ioq {
    struct io_uring ring;
    struct xbd_backing *b;
    /* What xbd_ioq_fd gives the queue thread to sleep on.  Drivers that
     * prep submission entries: the ring's own fd, readable exactly while
     * the completion queue holds entries, so reaping needs no system call
     * and nothing has to be cleared.  Connection drivers also complete
     * through done_head: an eventfd, registered with the ring and written
     * by xbd_ioq_complete, that reap clears. */
    int efd;                        /* -1 for prep drivers */
    unsigned int in_flight;         /* added, completion not yet delivered */
    unsigned int unsubmitted;       /* prepared since the last submit */

    /* A driver's concurrency limit (drv->queue_depth): operations beyond
     * it wait here, in order, until one at the driver finishes. */
    unsigned int limit, at_driver, waiting;
    struct xbd_io *wait_head, **wait_tail;

    /* Connection drivers (drv->prep == NULL). */
    void *conn;
    struct xbd_io *done_head, **done_tail;  /* finished, not yet reaped */
    bool armed_in, armed_out;       /* a poll request is in the ring */
};

/* user_data of the poll requests watching a connection's fd. */
static char poll_tag_in, poll_tag_out;

static void
close_efd(struct xbd_ioq *q)
{
    if (q->efd >= 0)
        close(q->efd);
}

int
xbd_ioq_open(struct xbd_backing *b, unsigned int depth, struct xbd_ioq **out,
             char *err, size_t errlen)
{
    struct xbd_ioq *q = calloc(1, sizeof(*q));
    unsigned int entries = 1;
    int r;

    *out = NULL;
    if (q == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    while (entries < depth && entries < 4096)
        entries *= 2;
    q->b = b;
    q->efd = -1;
    if (b->drv->prep == NULL) {
        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->efd < 0) {
            r = -errno;
            free(q);
            return xbd_backing_error(err, errlen, r, "eventfd: %s", strerror(-r));
        }
    }
    /* The rings are physically contiguous kernel memory: on a loaded or
     * fragmented host a large one can fail with ENOMEM.  A smaller ring
     * only means submitting in more calls (xbd_ioq_add submits when it is
     * full; completions beyond the CQ are kept by the kernel), so halve it
     * rather than fail the device. */
    r = io_uring_queue_init(entries, &q->ring, 0);
    while (r == -ENOMEM && entries > 64) {
        entries /= 2;
        r = io_uring_queue_init(entries, &q->ring, 0);
        if (r == 0)
            xbd_log(LOG_WARNING, "io_uring of %u entries: not enough contiguous "
                    "kernel memory, using %u", depth, entries);
    }
    if (r < 0) {
        close_efd(q);
        free(q);
        return xbd_backing_error(err, errlen, r, "io_uring_queue_init(%u): %s",
                                 entries, strerror(-r));
    }
    if (q->efd >= 0 && (r = io_uring_register_eventfd(&q->ring, q->efd)) < 0) {
        io_uring_queue_exit(&q->ring);
        close_efd(q);
        free(q);
        return xbd_backing_error(err, errlen, r, "io_uring_register_eventfd: %s",
                                 strerror(-r));
    }
    q->done_tail = &q->done_head;
    q->wait_tail = &q->wait_head;
    if (b->drv->queue_depth != NULL)
        q->limit = b->drv->queue_depth(b);
    if (b->drv->prep == NULL) {
        r = b->drv->conn_open(b, q, &q->conn, err, errlen);
        if (r < 0) {
            io_uring_queue_exit(&q->ring);
            close_efd(q);
            free(q);
            return r;
        }
    }
    *out = q;
    return 0;
}

void
xbd_ioq_close(struct xbd_ioq *q)
{
    if (q == NULL)
        return;
    if (q->conn != NULL)
        q->b->drv->conn_close(q->conn);
    io_uring_queue_exit(&q->ring);
    close_efd(q);
    free(q);
}

int
xbd_ioq_fd(struct xbd_ioq *q)
{
    return q->efd >= 0 ? q->efd : q->ring.ring_fd;
}

bool
xbd_ioq_ready(struct xbd_ioq *q)
{
    return q->done_head != NULL || io_uring_cq_ready(&q->ring) > 0;
}

bool
xbd_ioq_sync_iov(const struct xbd_ioq *q, enum xbd_io_op op)
{
    return (op == XBD_IO_READ || op == XBD_IO_WRITE) && q->conn == NULL &&
           q->b->drv->sync_iov != NULL && q->b->drv->sync_iov(q->b, op);
}

unsigned int
xbd_ioq_in_flight(const struct xbd_ioq *q)
{
    return q->in_flight;
}

/* An operation finished off the ring: reap finds it on the done list
 * (xbd_ioq_ready sees it, so a thread about to sleep does not). */
static void
queue_done(struct xbd_ioq *q, struct xbd_io *io)
{
    io->next = NULL;
    *q->done_tail = io;
    q->done_tail = &io->next;
}

/* Prepare io into a fresh submission entry, or do it at once when the
 * driver does it synchronously. */
static int
prep_one(struct xbd_ioq *q, struct xbd_io *io)
{
    struct io_uring_sqe *sqe;
    int r;

    if (q->b->drv->sync != NULL && q->b->drv->sync(q->b, io)) {
        io->sync_done = true;
        queue_done(q, io);
        return 0;
    }
    if (io->iov != NULL) {
        /* Memory we do not own never goes into the ring (see sync_iov). */
        io->sync_done = true;
        io->sync_result = -EIO;
        queue_done(q, io);
        return 0;
    }
    sqe = io_uring_get_sqe(&q->ring);
    if (sqe == NULL) {
        /* The submission ring is full: push it out and try again. */
        r = xbd_ioq_submit(q);
        if (r < 0)
            return r;
        sqe = io_uring_get_sqe(&q->ring);
        if (sqe == NULL)
            return -EBUSY;
    }
    io->sync_done = false;
    r = q->b->drv->prep(q->b, sqe, io);
    if (r < 0) {
        io_uring_prep_nop(sqe);
        io->sync_done = true;
        io->sync_result = r;
    }
    io_uring_sqe_set_data(sqe, io);
    q->unsubmitted++;
    return 0;
}

void
xbd_ioq_complete(struct xbd_ioq *q, struct xbd_io *io, int64_t result)
{
    uint64_t one = 1;

    io->sync_done = true;
    io->sync_result = result;
    queue_done(q, io);
    if (q->efd >= 0)
        (void)!write(q->efd, &one, sizeof(one));    /* reap will find it */
}

int
xbd_ioq_add(struct xbd_ioq *q, struct xbd_io *io)
{
    int r;

    io->done = 0;
    io->result = 0;
    io->ioq = q;
    if (q->conn != NULL) {
        q->in_flight++;
        r = q->b->drv->conn_start(q->conn, io);
        if (r < 0)
            xbd_ioq_complete(q, io, r);     /* still exactly one completion */
        return 0;
    }
    if (q->limit != 0 && q->at_driver >= q->limit) {
        io->next = NULL;
        *q->wait_tail = io;
        q->wait_tail = &io->next;
        q->waiting++;
        q->in_flight++;
        return 0;
    }
    r = prep_one(q, io);
    if (r == 0) {
        q->in_flight++;
        q->at_driver++;
    }
    return r;
}

unsigned int
xbd_ioq_waiting(const struct xbd_ioq *q)
{
    return q->waiting;
}

/* A slot at the driver came free: start the oldest waiting operations. */
static void
start_waiting(struct xbd_ioq *q)
{
    while (q->wait_head != NULL && q->at_driver < q->limit) {
        struct xbd_io *io = q->wait_head;

        if (prep_one(q, io) < 0)
            return;                 /* the ring is full: at the next reap */
        q->wait_head = io->next;
        if (q->wait_head == NULL)
            q->wait_tail = &q->wait_head;
        q->waiting--;
        q->at_driver++;
    }
}

/* Make sure a poll request watches the connection in each direction it
 * waits for. */
static void
arm_conn(struct xbd_ioq *q)
{
    struct io_uring_sqe *sqe;
    int fd = -1;
    short want = q->b->drv->conn_poll(q->conn, &fd);

    if ((want & POLLIN) && !q->armed_in && (sqe = io_uring_get_sqe(&q->ring)) != NULL) {
        io_uring_prep_poll_add(sqe, fd, POLLIN);
        io_uring_sqe_set_data(sqe, &poll_tag_in);
        q->armed_in = true;
        q->unsubmitted++;
    }
    if ((want & POLLOUT) && !q->armed_out && (sqe = io_uring_get_sqe(&q->ring)) != NULL) {
        io_uring_prep_poll_add(sqe, fd, POLLOUT);
        io_uring_sqe_set_data(sqe, &poll_tag_out);
        q->armed_out = true;
        q->unsubmitted++;
    }
}

int
xbd_ioq_submit(struct xbd_ioq *q)
{
    int r;

    if (q->conn != NULL)
        arm_conn(q);
    if (q->unsubmitted == 0)
        return 0;
    r = io_uring_submit(&q->ring);
    if (r >= 0)
        q->unsubmitted = 0;
    return r;
}

/* What a completion means for io: 1 finished (io->result set), 0 resumed. */
static int
finish_one(struct xbd_ioq *q, struct xbd_io *io, int res)
{
    int64_t r;

    if (io->sync_done)
        r = io->sync_result;
    else if (q->b->drv->complete != NULL)
        r = q->b->drv->complete(q->b, io, res);
    else
        r = res;
    if ((io->op != XBD_IO_READ && io->op != XBD_IO_WRITE) || io->sync_done) {
        io->result = r < 0 ? r : io->op == XBD_IO_READ || io->op == XBD_IO_WRITE ?
                                 (int64_t)io->len : 0;
        return 1;
    }
    if (r < 0) {
        io->result = r;
        return 1;
    }
    if (r == 0) {                   /* end of file inside the range */
        io->result = -EIO;
        return 1;
    }
    io->done += (uint64_t)r;
    if (io->done >= io->len) {
        io->result = (int64_t)io->len;
        return 1;
    }
    /* A short transfer: carry on from where it stopped. */
    if (prep_one(q, io) < 0) {
        io->result = -EIO;
        return 1;
    }
    return 0;
}

unsigned int
xbd_ioq_reap(struct xbd_ioq *q, unsigned int max,
             void (*done)(struct xbd_io *io, void *ctx), void *ctx)
{
    struct io_uring_cqe *cqe;
    unsigned int n = 0;
    uint64_t v;

    /* Clear the eventfd first: a completion after this re-arms it.  (The
     * ring's own fd needs no clearing.) */
    if (q->efd >= 0)
        (void)!read(q->efd, &v, sizeof(v));
    while (n < max && io_uring_peek_cqe(&q->ring, &cqe) == 0) {
        void *data = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&q->ring, cqe);
        if (data == &poll_tag_in || data == &poll_tag_out) {
            /* The connection is ready: the driver makes progress and
             * queues what finished with xbd_ioq_complete. */
            if (data == &poll_tag_in)
                q->armed_in = false;
            else
                q->armed_out = false;
            q->b->drv->conn_notify(q->conn, res < 0 ? (short)POLLERR : (short)res);
            continue;
        }
        if (!finish_one(q, data, res))
            continue;
        q->in_flight--;
        q->at_driver--;
        start_waiting(q);
        n++;
        done(data, ctx);
    }
    while (n < max && q->done_head != NULL) {
        struct xbd_io *io = q->done_head;

        q->done_head = io->next;
        if (q->done_head == NULL)
            q->done_tail = &q->done_head;
        finish_one(q, io, 0);
        q->in_flight--;
        if (q->conn == NULL) {      /* done synchronously (drv->sync) */
            q->at_driver--;
            start_waiting(q);
        }
        n++;
        done(io, ctx);
    }
    if (n == max && q->efd >= 0) {
        /* Completions may remain: keep the fd readable for the caller. */
        v = 1;
        (void)!write(q->efd, &v, sizeof(v));
    }
    (void)xbd_ioq_submit(q);        /* resumed short transfers */
    return n;
}

int
xbd_ioq_wait(struct xbd_ioq *q, unsigned int timeout_ms)
{
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
    };
    struct io_uring_cqe *cqe;
    int r;

    if (q->done_head != NULL)
        return 0;
    (void)xbd_ioq_submit(q);
    r = io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts);
    return r == 0 ? 0 : -ETIME;
}
