/* xbdf-depth-client — what a large ring and a large indirect limit give,
 * for test-frontend-depth.sh (run as a guest against tests/xbdf-fakeback
 * offering 64 ring pages and 4096 indirect segments).  Prints TAP; exits 0
 * when every check passed.
 *
 *   xbdf-depth-client DEV depth    the library's default indirect limit
 *   xbdf-depth-client DEV big      4096 indirect segments
 *
 * Counts, never times:
 *   - small requests fill the whole ring: right after 2048 4-KiB reads are
 *     submitted on a 64-page ring (2048 slots), all 2048 are on the ring
 *     and none waited for room (the grant pool used to stop at ~257);
 *   - a 16 MiB request goes out as one indirect request of 4096 segments
 *     (8 indirect pages, a pool in several shares) and reads back intact;
 *   - busy-polling cuts the backend's notifications: with polling, far
 *     fewer than one per response (rsp_event is armed only before a
 *     sleep); without, about one each;
 *   - the log callback replaces stderr (nothing to say here: no message). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xbdfront.h"

#define SMALL 2048u             /* 64 ring pages x 32 slots */
#define BIG (16u << 20)         /* 4096 segments */
#define SYNC_OPS 200

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

static void
on_log(void *ud, const char *msg)
{
    int *n = ud;

    (*n)++;
    diag("library message: %s", msg);
}

static struct xbdfront_stats
stats(struct xbdfront *h)
{
    struct xbdfront_stats st;

    if (xbdfront_get_stats(h, 0, &st, sizeof(st)) < 0)
        bail_out("stats: %s", xbdfront_get_error());
    return st;
}

/* Sync reads of 4 KiB; returns the notifications received meanwhile. */
static uint64_t
sync_reads(struct xbdfront *h, char *buf)
{
    struct xbdfront_stats a = stats(h), b;

    for (int i = 0; i < SYNC_OPS; i++)
        if (xbdfront_pread(h, 0, buf, 4096, (uint64_t)i * 4096, 0) < 0)
            bail_out("pread: %s", xbdfront_get_error());
    b = stats(h);
    if (b.completed - a.completed != SYNC_OPS)
        bail_out("%d reads, %" PRIu64 " completions", SYNC_OPS,
                 b.completed - a.completed);
    return b.notify_received - a.notify_received;
}

int
main(int argc, char **argv)
{
    static struct done d[SMALL];
    struct xbdfront_stats st0, st1;
    struct done big = { 0, 0 };
    struct xbdfront *h;
    char *small, *wbig, *rbig;
    uint64_t n_plain, n_poll;
    int nlog = 0, left, idle = 0, good = 1;
    bool want_big;

    if (argc != 3 || (strcmp(argv[2], "depth") != 0 &&
                      strcmp(argv[2], "big") != 0))
        bail_out("usage: xbdf-depth-client DEV depth|big");
    want_big = strcmp(argv[2], "big") == 0;
    small = malloc((size_t)SMALL * 4096);
    wbig = malloc(BIG);
    rbig = malloc(BIG);
    if (small == NULL || wbig == NULL || rbig == NULL)
        bail_out("out of memory");
    if (xbdfront_create(&h) < 0 || xbdfront_set_ring_pages(h, 64) < 0 ||
        (want_big && xbdfront_set_indirect_segments(h, 4096) < 0) ||
        xbdfront_set_log_callback(h, on_log, &nlog) < 0 ||
        xbdfront_connect(h, argv[1]) < 0)
        bail_out("connect: %s", xbdfront_get_error());
    is_int(xbdfront_get_ring_pages(h), 64, "64 ring pages");
    if (xbdfront_get_size(h) < 2 * (int64_t)BIG)
        bail_out("the device needs at least %u bytes", 2 * BIG);
    if (want_big)
        goto big;
    ok(xbdfront_get_pool_pages(h) >= (int)SMALL + 256 + 1,
       "the pool holds a page per slot and a full request: %d pages",
       xbdfront_get_pool_pages(h));

    /* The whole ring in use by small bounced requests. */
    st0 = stats(h);
    for (unsigned int i = 0; i < SMALL; i++)
        if (xbdfront_aio_pread(h, 0, small + (size_t)i * 4096, 4096,
                               (uint64_t)i * 4096, 0, on_done, &d[i]) < 0)
            bail_out("aio_pread %u: %s", i, xbdfront_get_error());
    st1 = stats(h);
    is_int(st1.ring_requests - st0.ring_requests, SMALL,
           "all %u small reads went on the ring at once", SMALL);
    is_int(st1.ring_full - st0.ring_full, 0, "none waited for room");
    is_int(xbdfront_in_flight(h, 0), SMALL, "%u in flight", SMALL);
    while ((left = xbdfront_in_flight(h, 0)) > 0 && idle < 30) {
        int n = xbdfront_poll(h, 0, 1000, 0);

        if (n < 0)
            bail_out("poll: %s", xbdfront_get_error());
        idle = n == 0 ? idle + 1 : 0;
    }
    is_int(left, 0, "every read completed");
    for (unsigned int i = 0; i < SMALL; i++)
        if (d[i].calls != 1 || d[i].err != 0)
            good = 0;
    ok(good, "each callback ran once with 0");

    /* Notifications per response, sleeping against busy-polling. */
    n_plain = sync_reads(h, small);
    ok(n_plain >= SYNC_OPS / 2, "without polling: %" PRIu64 " notifications "
       "for %d responses", n_plain, SYNC_OPS);
    xbdfront_set_poll_us(h, 1000000);
    n_poll = sync_reads(h, small);
    ok(n_poll < SYNC_OPS / 2, "busy-polling: %" PRIu64 " notifications for "
       "%d responses", n_poll, SYNC_OPS);
    goto out;

big:
    /* One 16 MiB request: one ring slot, 8 indirect pages, from a pool
     * larger than one grant share may be. */
    is_int(xbdfront_get_indirect_segments(h), 4096, "4096 indirect segments");
    ok(xbdfront_get_pool_pages(h) >= (int)SMALL + 4096 + 8,
       "the pool holds a page per slot and a full request: %d pages",
       xbdfront_get_pool_pages(h));
    for (size_t i = 0; i < BIG; i++)
        wbig[i] = (char)(i * 7 + i / 4096);
    st0 = stats(h);
    is_int(xbdfront_pwrite(h, 0, wbig, BIG, BIG, 0), 0, "16 MiB write");
    st1 = stats(h);
    is_int(st1.ring_requests - st0.ring_requests, 1,
           "as one ring request (4096 segments)");
    is_int(xbdfront_aio_pread(h, 0, rbig, BIG, BIG, 0, on_done, &big), 0,
           "16 MiB read submitted");
    while (big.calls == 0 && xbdfront_poll(h, 0, 1000, 0) >= 0)
        ;
    ok(big.calls == 1 && big.err == 0 && memcmp(wbig, rbig, BIG) == 0,
       "read back intact");

out:
    xbdfront_close(h);         /* joins the thread that logs */
    is_int(nlog, 0, "nothing logged");
    free(small);
    free(wbig);
    free(rbig);
    return done_testing();
}
