/* xbd-backd — the rbd driver's `params` parser, apart from librbd so that
 * it can be tested without a cluster.  See rbd.c for the syntax. */
#ifndef XBD_RBD_H
#define XBD_RBD_H

#include <stddef.h>

#define XBD_RBD_MAX_OPTS 16

struct xbd_rbd_spec {
    char *buf;                      /* owns every string below */
    const char *pool;
    const char *ns;                 /* namespace, or NULL */
    const char *image;
    const char *snap;               /* NULL: the image's head */
    const char *conf;               /* conf=: NULL searches as librados does */
    const char *id;                 /* id=: the client name without "client." */
    unsigned int nopts;             /* everything else: Ceph settings */
    struct { const char *key, *value; } opts[XBD_RBD_MAX_OPTS];
};

/* Parse arg (params after "rbd:").  Returns 0, or -EINVAL with the reason
 * in err.  Free with xbd_rbd_spec_free even on failure. */
int xbd_rbd_parse(const char *arg, struct xbd_rbd_spec *spec, char *err, size_t errlen);
void xbd_rbd_spec_free(struct xbd_rbd_spec *spec);

#endif /* XBD_RBD_H */
