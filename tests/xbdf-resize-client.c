/* xbdf-resize-client — a libxbdfront program for test-frontend-resize.sh.
 *
 * Run as a guest: connects to DEV, registers a resize callback, reads
 * until the callback has run (at most 10 s), then checks that the handle
 * reports the new size and refuses a read beyond it.  Prints what it saw;
 * exits 0 when all holds. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xbdfront.h"

static atomic_int calls;
static _Atomic uint64_t seen_old, seen_new;

static void
on_resize(void *ud, uint64_t old_size, uint64_t new_size)
{
    (void)ud;
    atomic_store(&seen_old, old_size);
    atomic_store(&seen_new, new_size);
    atomic_fetch_add(&calls, 1);
}

int
main(int argc, char **argv)
{
    struct xbdfront *h;
    static char buf[4096];
    int64_t size;
    int r, i;

    if (argc != 2) {
        fprintf(stderr, "usage: xbdf-resize-client DEV\n");
        return 2;
    }
    if (xbdfront_create(&h) < 0 ||
        xbdfront_set_resize_callback(h, on_resize, NULL) < 0 ||
        xbdfront_connect(h, argv[1]) < 0) {
        fprintf(stderr, "xbdf-resize-client: %s\n", xbdfront_get_error());
        return 1;
    }
    size = xbdfront_get_size(h);
    printf("size %" PRId64 "\n", size);
    /* Reading drives the backend towards its resize; 10 s at most. */
    for (i = 0; i < 10000 && atomic_load(&calls) == 0; i++) {
        r = xbdfront_pread(h, 0, buf, sizeof(buf), 0, 0);
        if (r < 0) {
            fprintf(stderr, "xbdf-resize-client: read: %s\n",
                    xbdfront_get_error());
            xbdfront_close(h);
            return 1;
        }
        if (i > 100) {
            struct timespec ts = { 0, 1000000 };

            nanosleep(&ts, NULL);
        }
    }
    r = 0;
    if (atomic_load(&calls) != 1) {
        fprintf(stderr, "xbdf-resize-client: the callback ran %d times\n",
                atomic_load(&calls));
        r = 1;
    } else {
        uint64_t nsz = atomic_load(&seen_new);

        printf("resized %" PRIu64 " -> %" PRIu64 "\n",
               (uint64_t)atomic_load(&seen_old), nsz);
        if (atomic_load(&seen_old) != (uint64_t)size ||
            xbdfront_get_size(h) != (int64_t)nsz) {
            fprintf(stderr, "xbdf-resize-client: sizes disagree\n");
            r = 1;
        }
        /* The queue applies the new size before its next request. */
        if (nsz < (uint64_t)size &&
            xbdfront_pread(h, 0, buf, sizeof(buf), (uint64_t)size - 4096,
                           0) != -EINVAL) {
            fprintf(stderr, "xbdf-resize-client: a read beyond the new end "
                    "was not refused\n");
            r = 1;
        } else {
            printf("beyond the new end: %s\n", xbdfront_get_error());
        }
    }
    xbdfront_close(h);
    return r;
}
