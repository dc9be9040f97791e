/* xbdf-api-client — libxbdfront's public API in an event loop, for
 * test-frontend-api.sh (run as a guest against tests/xbdf-fakeback).
 * Prints TAP; exits 0 when every check passed.
 *
 * What only a program can check (the tool drives the synchronous path
 * and xbdfront_poll): poll(2) on xbdfront_queue_fd() plus
 * xbdfront_process() with a budget, the in-flight count, the counters,
 * zero-copy buffers,
 * refusals before anything reaches the ring, setters after connect, and
 * close with requests in flight (-ECANCELED, exactly once each). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xbdfront.h"

#define N 64

struct done {
    int calls, err;
};

static void
on_done(void *ud, int err)
{
    struct done *d = ud;

    d->calls++;
    d->err = err;
}

int
main(int argc, char **argv)
{
    static char wbuf[N][8192], rbuf[N][8192];
    static struct done wd[N], cd[N];
    struct xbdfront *h;
    struct xbdfront_stats st;
    int fd, r, max_batch = 0, good;
    unsigned int ran = 0;

    if (argc != 2)
        bail_out("usage: xbdf-api-client DEV");
    if (xbdfront_create(&h) < 0 || xbdfront_set_queues(h, 2) < 0 ||
        xbdfront_connect(h, argv[1]) < 0)
        bail_out("connect: %s", xbdfront_get_error());
    is_int(xbdfront_get_queues(h), 2, "two queues");
    is_int(xbdfront_set_ring_pages(h, 2), -EBUSY, "setters after connect: -EBUSY");

    /* Event loop on queue 1: 64 writes, completions 4 at a time. */
    fd = xbdfront_queue_fd(h, 1);
    ok(fd >= 0, "queue 1 has a pollable fd");
    for (int i = 0; i < N; i++) {
        memset(wbuf[i], 'a' + i % 26, sizeof(wbuf[i]));
        r = xbdfront_aio_pwrite(h, 1, wbuf[i], sizeof(wbuf[i]),
                                (uint64_t)i * 8192, 0, on_done, &wd[i]);
        if (r < 0)
            bail_out("aio_pwrite %d: %s", i, xbdfront_get_error());
    }
    ok(xbdfront_in_flight(h, 1) > 0, "writes in flight: %d",
       xbdfront_in_flight(h, 1));
    while (ran < N) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (poll(&p, 1, 5000) <= 0)
            break;
        r = xbdfront_process(h, 1, 4);
        if (r < 0)
            bail_out("process: %s", xbdfront_get_error());
        if (r > max_batch)
            max_batch = r;
        ran += (unsigned int)r;
    }
    is_int(ran, N, "every write's callback ran through poll + process");
    ok(max_batch <= 4, "never more than the budget (4) per call: %d", max_batch);
    good = 1;
    for (int i = 0; i < N; i++)
        if (wd[i].calls != 1 || wd[i].err != 0)
            good = 0;
    ok(good, "each write called back exactly once, with 0");
    is_int(xbdfront_in_flight(h, 1), 0, "nothing in flight");
    is_int(xbdfront_queue_fd(h, 1), fd, "the queue fd is still the same");

    /* Read back on queue 0 with the synchronous helper. */
    good = 1;
    for (int i = 0; i < N; i++)
        if (xbdfront_pread(h, 0, rbuf[i], sizeof(rbuf[i]), (uint64_t)i * 8192,
                           0) < 0 || memcmp(rbuf[i], wbuf[i], 8192) != 0)
            good = 0;
    ok(good, "queue 0 reads back what queue 1 wrote");
    is_int(xbdfront_flush(h, 0, 0), 0, "flush");
    is_int(xbdfront_discard(h, 0, 8192, 0, 0), 0, "discard");
    is_int(xbdfront_pread(h, 0, rbuf[0], 8192, 0, 0), 0, "read the discarded range");
    ok(rbuf[0][0] == 0 && rbuf[0][8191] == 0, "zeroes (this backend zeroes)");

    /* Counters. */
    is_int(xbdfront_get_stats(h, 1, &st, sizeof(st)), 0, "stats of queue 1");
    ok(st.submitted == N && st.completed == N && st.errors == 0,
       "submitted %" PRIu64 ", completed %" PRIu64 ", errors %" PRIu64,
       st.submitted, st.completed, st.errors);
    ok(st.ring_requests >= N, "ring requests %" PRIu64, st.ring_requests);

    /* Zero-copy buffers: written from and read into without bouncing,
     * agreeing with bounced I/O; not freed while in flight. */
    {
        static char plain[1 << 20];
        char *zb = NULL;
        struct done zd = { 0, 1 };
        uint64_t bounced;

        is_int(xbdfront_buffer_alloc(h, 1 << 20, (void **)&zb), 0,
               "a 1 MiB zero-copy buffer");
        for (size_t i = 0; i < (1 << 20); i++)
            zb[i] = (char)(i * 7 + 3);
        xbdfront_get_stats(h, 0, &st, sizeof(st));
        bounced = st.bounced_bytes;
        is_int(xbdfront_aio_pwrite(h, 0, zb + 512, (1 << 20) - 4096,
                                   2 << 20, 0, on_done, &zd), 0,
               "a zero-copy write, 512 bytes into the buffer");
        is_int(xbdfront_buffer_free(h, zb), -EBUSY,
               "freeing it while in flight: -EBUSY");
        while (zd.calls == 0 && xbdfront_poll(h, 0, 5000, 0) >= 0)
            ;
        ok(zd.calls == 1 && zd.err == 0, "the write completed");
        xbdfront_get_stats(h, 0, &st, sizeof(st));
        is_int(st.bounced_bytes - bounced, 0, "nothing was bounced");
        is_int(xbdfront_pread(h, 0, plain, (1 << 20) - 4096, 2 << 20, 0), 0,
               "a bounced read of the same range");
        ok(memcmp(plain, zb + 512, (1 << 20) - 4096) == 0,
           "holds what the zero-copy write wrote");
        memset(zb, 0, 1 << 20);
        is_int(xbdfront_pread(h, 0, zb + 4096, 65536, 2 << 20, 0), 0,
               "a zero-copy read");
        ok(memcmp(zb + 4096, plain, 65536) == 0, "reads the same bytes");
        is_int(xbdfront_buffer_free(h, zb), 0, "then it is freed");
        is_int(xbdfront_buffer_free(h, plain), -EINVAL,
               "freeing memory that is not a buffer: -EINVAL");
    }

    /* Refused before the ring, callback never run. */
    cd[0].calls = 0;
    is_int(xbdfront_aio_pread(h, 0, rbuf[0], 100, 0, 0, on_done, &cd[0]),
           -EINVAL, "a length that is not a multiple of the sector: -EINVAL");
    ok(strlen(xbdfront_get_error()) > 0, "with a message: %s",
       xbdfront_get_error());
    is_int(xbdfront_aio_pread(h, 0, rbuf[0], 512,
                              (uint64_t)xbdfront_get_size(h), 0, on_done,
                              &cd[0]), -EINVAL, "past the end: -EINVAL");
    is_int(xbdfront_aio_pread(h, 7, rbuf[0], 512, 0, 0, on_done, &cd[0]),
           -EINVAL, "a queue that does not exist: -EINVAL");
    is_int(cd[0].calls, 0, "no callback for refused requests");

    /* Close with requests in flight: each called back once. */
    for (int i = 0; i < N; i++) {
        cd[i].calls = 0;
        r = xbdfront_aio_pread(h, 0, rbuf[i], 8192, (uint64_t)i * 8192, 0,
                               on_done, &cd[i]);
        if (r < 0)
            bail_out("aio_pread %d: %s", i, xbdfront_get_error());
    }
    xbdfront_close(h);
    good = 1;
    for (int i = 0; i < N; i++)
        if (cd[i].calls != 1 || (cd[i].err != 0 && cd[i].err != -ECANCELED))
            good = 0;
    ok(good, "close: every request in flight called back once (0 or -ECANCELED)");
    return done_testing();
}
