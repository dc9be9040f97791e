/* xbd-hostile-front — a frontend that lies about its ring, for tests.
 *
 *   xbd-hostile-front FRONTEND-DIR
 *   xbd-hostile-front --flood N FRONTEND-DIR
 *
 * --flood: write the frontend's state N times as fast as the store takes
 * it, cycling Initialising, Initialised, Closing, Closed, 9 (no state) with
 * no ring nodes at all, ending with Closed; exits 0.  The backend must
 * come out of it alive and Closed.
 *
 * Run as a guest (xbdctl run-as).  Shares a one-page ring and an event
 * channel with the backend domain honestly, goes Initialised, waits for the
 * backend to connect, then publishes a request producer index far beyond
 * what the ring can hold and notifies.  A sound backend breaks that ring
 * (its `error` node, state Closing) and nothing else.  Exits 0 when the
 * backend reached Closing within 10 s (printing its error node) and,
 * after this frontend closed, Closed with the ring unmapped; 1 otherwise.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbd-ring.h"

static struct xs_handle *xs;

static char *
get(const char *dir, const char *key)
{
    char path[256];
    unsigned int len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_read(xs, XBT_NULL, path, &len);
}

static void
put(const char *dir, const char *key, unsigned int v)
{
    char path[256], val[16];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    snprintf(val, sizeof(val), "%u", v);
    if (!xs_write(xs, XBT_NULL, path, val, (unsigned int)strlen(val))) {
        fprintf(stderr, "xbd-hostile-front: writing %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* Wait up to 10 s for the backend's state to become `want`. */
static int
wait_state(const char *be, uint32_t want)
{
    for (int i = 0; i < 200; i++) {
        char *v = get(be, XBDK_STATE);
        uint32_t s;
        int r = v != NULL && xbd_parse_u32_range(v, 0, 255, &s) == 0 && s == want;

        free(v);
        if (r)
            return 0;
        usleep(50000);
    }
    return -1;
}

static void
die(const char *what, int r)
{
    fprintf(stderr, "xbd-hostile-front: %s: %s (%s)\n", what, strerror(-r),
            xbd_platform_error());
    exit(1);
}

int
main(int argc, char **argv)
{
    struct xbd_platform *p;
    struct xbd_gntshr *gs;
    struct xbd_evtchn *ev;
    struct blkif_sring *sring;
    const char *fe;
    uint32_t ref, bdom;
    void *page;
    char *be, *v;
    int port, r;

    if (argc == 4 && strcmp(argv[1], "--flood") == 0) {
        static const unsigned int cycle[] = { 1, 3, 5, 6, 9 };
        uint32_t n;

        if (xbd_parse_u32_range(argv[2], 1, 1000000, &n) < 0)
            return 2;
        xs = xs_open(0);
        if (xs == NULL)
            return 1;
        for (uint32_t i = 0; i < n; i++)
            put(argv[3], XBDK_STATE, cycle[i % 5]);
        put(argv[3], XBDK_STATE, XenbusStateClosed);
        xs_close(xs);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: xbd-hostile-front [--flood N] FRONTEND-DIR\n");
        return 2;
    }
    fe = argv[1];
    xs = xs_open(0);
    if (xs == NULL) {
        fprintf(stderr, "xbd-hostile-front: xs_open: %s\n", strerror(errno));
        return 1;
    }
    be = get(fe, XBDK_BACKEND);
    v = get(fe, XBDK_BACKEND_ID);
    if (be == NULL || v == NULL || xbd_parse_u32_range(v, 0, 0x7fef, &bdom) < 0) {
        fprintf(stderr, "xbd-hostile-front: %s has no backend\n", fe);
        return 1;
    }
    free(v);
    if (wait_state(be, XenbusStateInitWait) < 0) {
        fprintf(stderr, "xbd-hostile-front: the backend never reached InitWait\n");
        return 1;
    }

    if ((r = xbd_platform_open(&p, NULL)) < 0)
        die("platform", r);
    if ((r = xbd_gntshr_open(p, &gs)) < 0)
        die("gntshr", r);
    if ((r = xbd_gntshr_share(gs, bdom, 1, 1, &ref, &page)) < 0)
        die("share", r);
    sring = page;
    SHARED_RING_INIT(sring);
    if ((r = xbd_evtchn_open(p, &ev)) < 0)
        die("evtchn", r);
    if ((port = xbd_evtchn_bind_unbound(ev, bdom)) < 0)
        die("bind", port);

    put(fe, XBDK_RING_REF, ref);
    put(fe, XBDK_EVENT_CHANNEL, (unsigned int)port);
    put(fe, XBDK_STATE, XenbusStateInitialised);
    if (wait_state(be, XenbusStateConnected) < 0) {
        fprintf(stderr, "xbd-hostile-front: the backend never connected\n");
        return 1;
    }

    /* The lie: 1000 requests in a ring of 32 slots. */
    sring->req_prod = 1000;
    xen_wmb();                  /* the index before the notification */
    xbd_evtchn_notify(ev, (uint32_t)port);

    if (wait_state(be, XenbusStateClosing) < 0) {
        fprintf(stderr, "xbd-hostile-front: the backend did not fail the ring\n");
        return 1;
    }
    v = get(be, XBDK_ERROR);
    printf("%s\n", v ? v : "");
    free(v);

    /* Close like an honest frontend, and take the ring back once the
     * backend let go of it. */
    put(fe, XBDK_STATE, XenbusStateClosed);
    r = wait_state(be, XenbusStateClosed);
    if (r == 0 && (r = xbd_gntshr_unshare(gs, page, 1)) < 0)
        fprintf(stderr, "xbd-hostile-front: unshare after Closed: %s\n", strerror(-r));
    xbd_evtchn_close(ev);
    xbd_gntshr_close(gs);
    xbd_platform_close(p);
    free(be);
    xs_close(xs);
    return r < 0 ? 1 : 0;
}
