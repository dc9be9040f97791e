/* xbdkit tests — running backing operations through a backend I/O engine
 * (backend/driver.h) synchronously:
 *
 *   run_batch(q, ios, n)   add n operations, submit them with one call and
 *                          wait (10 s at most) until each completed once;
 *                          0, or -1 on a failure or timeout.
 *   run_one(q, op, off, len, buf)   one operation; its result, or -9999.
 */
#ifndef XBD_TEST_BACKEND_IO_H
#define XBD_TEST_BACKEND_IO_H

#include <poll.h>

#include "driver.h"

static unsigned int io_completions;

static void
io_count_done(struct xbd_io *io, void *ctx)
{
    (void)io;
    (void)ctx;
    io_completions++;
}

__attribute__((unused)) static int
run_batch(struct xbd_ioq *q, struct xbd_io *ios, unsigned int n)
{
    unsigned int got = 0;

    io_completions = 0;
    for (unsigned int i = 0; i < n; i++)
        if (xbd_ioq_add(q, &ios[i]) < 0)
            return -1;
    if (xbd_ioq_submit(q) < 0)
        return -1;
    while (got < n) {
        struct pollfd pfd = { .fd = xbd_ioq_fd(q), .events = POLLIN };

        /* Done synchronously: ready without the fd. */
        if (!xbd_ioq_ready(q) && poll(&pfd, 1, 10000) != 1)
            return -1;
        got += xbd_ioq_reap(q, 64, io_count_done, NULL);
    }
    return io_completions == n && xbd_ioq_in_flight(q) == 0 ? 0 : -1;
}

__attribute__((unused)) static int64_t
run_one(struct xbd_ioq *q, enum xbd_io_op op, uint64_t off, uint64_t len, void *buf)
{
    struct xbd_io io = { .op = op, .offset = off, .len = len, .buf = buf };

    return run_batch(q, &io, 1) < 0 ? -9999 : io.result;
}

#endif /* XBD_TEST_BACKEND_IO_H */
