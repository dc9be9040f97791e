/* libxbdfront internals — what the library's files share.
 *
 *   xbdf-error.c    errors (xbdf_set_error)
 *   libxbdfront.c   version, device names
 *   xbdf-queue.c    one queue: requests in, ring requests out (xbdf-queue.h)
 *   xbdf-ring.c     shadow table, push, response validation   (xbdf-ring.h)
 *   xbdf-req.c      checks, splitting, building, backend nodes (xbdf-req.h)
 *   xbdf-negotiate.c choosing, frontend nodes, the state table (xbdf-negotiate.h)
 *   xbdf-handle.c   handles, connect, the control thread, public I/O calls
 */
#ifndef XBDF_INTERNAL_H
#define XBDF_INTERNAL_H

/* Set this thread's error message and errno; returns -|err| so that
 * `return xbdf_set_error(-EINVAL, "...")` reads naturally. */
__attribute__((format(printf, 2, 3)))
int xbdf_set_error(int err, const char *fmt, ...);

#endif /* XBDF_INTERNAL_H */
