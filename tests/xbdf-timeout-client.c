/* xbdf-timeout-client — libxbdfront's synchronous timeout, for
 * test-frontend-sync-timeout.sh, run as a guest against tests/xbdf-fakeback:
 *
 *   xbdf-timeout-client DEV late   backend: --lie late --lie-at 2
 *                                  --lie-value 2 (requests 2 and 4 are
 *                                  answered only when the next arrives)
 *   xbdf-timeout-client DEV gone   backend: --bounce 1 --gone (request 2
 *                                  makes it go away for good)
 *
 * Prints TAP; exits 0 when every check passed.
 *
 * late: a synchronous call whose request the backend does not answer
 * returns -ETIMEDOUT saying what it waited for; the request is given up
 * on: the caller's buffer is never written afterwards (it is made
 * read-only here, so a late write by the library would crash the test),
 * the late response is dropped without breaking the ring, the next request
 * works, and a zero-copy buffer stays busy until the backend answered.
 * gone: the limit also covers waiting for a backend that went away; the
 * request given up on is dropped at once (nothing holds it), an
 * asynchronous one keeps waiting. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tap.h"
#include "xbdfront.h"

#define LIMIT_MS 300u

/* Queue 0's abandoned and late_responses counters are as expected. */
static void
counts(struct xbdfront *h, uint64_t abandoned, uint64_t late,
       const char *what)
{
    struct xbdfront_stats st;

    memset(&st, 0xff, sizeof(st));
    xbdfront_get_stats(h, 0, &st, sizeof(st));
    ok(st.abandoned == abandoned && st.late_responses == late,
       "%s (abandoned %llu, late responses %llu)", what,
       (unsigned long long)st.abandoned,
       (unsigned long long)st.late_responses);
}

/* Process queue 0 until nothing is in flight (bounded, not timed: at
 * most 100 waits). */
static void
drain(struct xbdfront *h)
{
    for (int i = 0; i < 100 && xbdfront_in_flight(h, 0) > 0; i++)
        xbdfront_poll(h, 0, 100, 0);
}

static int
all(const char *p, int c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)c)
            return 0;
    return 1;
}

static void
test_late(struct xbdfront *h)
{
    char wbuf[4096], other[4096], *rbuf, *zbuf;
    int r;

    /* Request 1: answered. */
    memset(wbuf, 'x', sizeof(wbuf));
    is_int(xbdfront_pwrite(h, 0, wbuf, sizeof(wbuf), 0, 0), 0,
           "request 1 (a write) is answered");

    /* Request 2: held by the backend. */
    rbuf = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rbuf == MAP_FAILED)
        bail_out("mmap failed");
    memset(rbuf, 0x5a, 4096);
    r = xbdfront_pread(h, 0, rbuf, 4096, 0, 0);
    is_int(r, -ETIMEDOUT, "request 2 (a read) unanswered: -ETIMEDOUT");
    is_int(xbdfront_get_errno(), ETIMEDOUT, "errno ETIMEDOUT");
    diag("message: %s", xbdfront_get_error());
    ok(strstr(xbdfront_get_error(), "read of 4096 bytes at offset 0: no "
              "response from the backend in 300 ms") != NULL,
       "the message says what it waited for, and how long");
    /* From here a write into the buffer would crash the test. */
    if (mprotect(rbuf, 4096, PROT_READ) < 0)
        bail_out("mprotect failed");
    counts(h, 1, 0, "counted as abandoned");
    is_int(xbdfront_in_flight(h, 0), 1,
           "the request stays in flight until the backend answers");

    /* Request 3: the backend answers 2 (late, with data), then 3. */
    memset(other, 0, sizeof(other));
    is_int(xbdfront_pread(h, 0, other, sizeof(other), 0, 0), 0,
           "request 3 (a read) works");
    ok(all(other, 'x', sizeof(other)), "and returns the data written");
    drain(h);
    counts(h, 1, 1, "the late response was consumed");
    is_int(xbdfront_in_flight(h, 0), 0, "nothing in flight");
    ok(all(rbuf, 0x5a, 4096), "the timed-out read's buffer was never written");

    /* Request 4: a zero-copy read, held. */
    if (xbdfront_buffer_alloc(h, 4096, (void **)&zbuf) < 0)
        bail_out("buffer_alloc: %s", xbdfront_get_error());
    memset(zbuf, 0x5a, 4096);
    is_int(xbdfront_pread(h, 0, zbuf, 4096, 0, 0), -ETIMEDOUT,
           "request 4 (a zero-copy read) unanswered: -ETIMEDOUT");
    is_int(xbdfront_buffer_free(h, zbuf), -EBUSY,
           "its buffer stays busy while the backend may still use it");

    /* Request 5: the backend answers 4, then 5. */
    memset(wbuf, 'y', sizeof(wbuf));
    is_int(xbdfront_pwrite(h, 0, wbuf, sizeof(wbuf), 4096, 0), 0,
           "request 5 (a write) works");
    drain(h);
    counts(h, 2, 2, "the second late response too");
    is_int(xbdfront_buffer_free(h, zbuf), 0,
           "the buffer can be freed once the backend answered");

    /* The ring is sound: more requests, without a limit. */
    is_int(xbdfront_set_sync_timeout_ms(h, 0), 0, "no limit again");
    memset(other, 0, sizeof(other));
    is_int(xbdfront_pread(h, 0, other, sizeof(other), 4096, 0), 0,
           "request 6 (a read) works");
    ok(all(other, 'y', sizeof(other)), "and returns request 5's data");
    is_int(xbdfront_flush(h, 0, 0), 0, "a flush works");
    counts(h, 2, 2, "no more abandoned, no more late");
    xbdfront_close(h);
    munmap(rbuf, 4096);
}

static atomic_int reconnects;

static void
on_log(void *user_data, const char *msg)
{
    (void)user_data;
    if (strstr(msg, "reconnecting") != NULL)
        atomic_fetch_add(&reconnects, 1);
}

struct done {
    int calls, err;
};

static void
on_done(void *user_data, int err)
{
    struct done *d = user_data;

    d->calls++;
    d->err = err;
}

static void
test_gone(struct xbdfront *h)
{
    char wbuf[4096], rbuf[4096], abuf[4096];
    struct done async = { 0, 0 };

    /* Request 1: answered; request 2 (asynchronous): the backend drops
     * the ring with it and goes away for good. */
    memset(wbuf, 'x', sizeof(wbuf));
    is_int(xbdfront_pwrite(h, 0, wbuf, sizeof(wbuf), 0, 0), 0,
           "request 1 (a write) is answered");
    is_int(xbdfront_aio_pread(h, 0, abuf, sizeof(abuf), 0, 0, on_done,
                              &async), 0, "request 2 (asynchronous) accepted");
    for (int i = 0; i < 100 && atomic_load(&reconnects) == 0; i++)
        xbdfront_poll(h, 0, 100, 0);
    ok(atomic_load(&reconnects) > 0, "the library saw the backend go");

    /* A synchronous read waits for a backend that does not come back. */
    memset(rbuf, 0x5a, sizeof(rbuf));
    is_int(xbdfront_pread(h, 0, rbuf, sizeof(rbuf), 4096, 0), -ETIMEDOUT,
           "a read while the backend is gone: -ETIMEDOUT");
    diag("message: %s", xbdfront_get_error());
    ok(strstr(xbdfront_get_error(), "read of 4096 bytes at offset 4096: no "
              "response from the backend in 300 ms (the backend went away "
              "and has not come back)") != NULL,
       "the message says the backend went away");
    xbdfront_process(h, 0, 0);
    is_int(xbdfront_in_flight(h, 0), 1,
           "the given-up read is dropped at once, the asynchronous one waits");
    is_int(async.calls, 0, "its callback has not run");
    counts(h, 1, 0, "abandoned, no late response");
    xbdfront_close(h);
    ok(async.calls == 1 && async.err == -ECANCELED,
       "close completes the asynchronous one once, -ECANCELED");
}

int
main(int argc, char **argv)
{
    struct xbdfront *h;
    bool gone;

    if (argc != 3 || (strcmp(argv[2], "late") != 0 &&
                      strcmp(argv[2], "gone") != 0))
        bail_out("usage: xbdf-timeout-client DEV late|gone");
    gone = strcmp(argv[2], "gone") == 0;
    if (xbdfront_create(&h) < 0)
        bail_out("create: %s", xbdfront_get_error());
    is_int(xbdfront_get_sync_timeout_ms(h), 0, "by default no limit");
    is_int(xbdfront_set_sync_timeout_ms(h, (unsigned int)INT_MAX + 1u),
           -EINVAL, "a limit beyond INT_MAX ms is refused");
    if (gone && xbdfront_set_log_callback(h, on_log, NULL) < 0)
        bail_out("log callback: %s", xbdfront_get_error());
    if (xbdfront_connect(h, argv[1]) < 0)
        bail_out("connect: %s", xbdfront_get_error());
    is_int(xbdfront_set_sync_timeout_ms(h, LIMIT_MS), 0,
           "a limit may be set while connected");
    is_int(xbdfront_get_sync_timeout_ms(h), (int)LIMIT_MS, "and read back");
    if (gone)
        test_gone(h);
    else
        test_late(h);
    return done_testing();
}
