/* libxbdfront internals — what the library's files share.
 *
 *   libxbdfront.c   errors, version, device names
 *   xbdf-ring.c     shadow table, push, response validation   (xbdf-ring.h)
 *   xbdf-req.c      checks, splitting, building, backend nodes (xbdf-req.h)
 */
#ifndef XBDF_INTERNAL_H
#define XBDF_INTERNAL_H

/* Set this thread's error message and errno; returns -|err| so that
 * `return xbdf_set_error(-EINVAL, "...")` reads naturally. */
__attribute__((format(printf, 2, 3)))
int xbdf_set_error(int err, const char *fmt, ...);

#endif /* XBDF_INTERNAL_H */
