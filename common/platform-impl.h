/* xbdkit — the platform layer's inside: what platform.c dispatches to.
 *
 * Private to common/.  Each implementation (platform-xen.c, platform-sim.c)
 * exports one ops table; platform.c owns the public handles, chooses the
 * implementation and keeps the thread-local error message.  Every op
 * returns >= 0 or a negative errno after setting the message with
 * xbd_platform_fail() (the convention of xbd-platform.h).
 */
#ifndef XBD_PLATFORM_IMPL_H
#define XBD_PLATFORM_IMPL_H

#include "xbd-platform.h"

struct xbd_platform_ops {
    const char *name;
    int (*open)(struct xbd_platform *p);          /* sets p->domid, p->priv */
    void (*close)(struct xbd_platform *p);

    int (*gnttab_open)(struct xbd_gnttab *g);
    void (*gnttab_close)(struct xbd_gnttab *g);
    int (*gnttab_map)(struct xbd_gnttab *g, uint32_t domid, uint32_t count,
                      const uint32_t *refs, int writable, void **addr_out);
    int (*gnttab_unmap)(struct xbd_gnttab *g, void *addr, uint32_t count);
    int (*gnttab_copy)(struct xbd_gnttab *g, uint32_t count,
                       struct xbd_gnt_copy_seg *segs);

    int (*gntshr_open)(struct xbd_gntshr *s);
    void (*gntshr_close)(struct xbd_gntshr *s);
    int (*gntshr_share)(struct xbd_gntshr *s, uint32_t domid, uint32_t count,
                        int writable, uint32_t *refs_out, void **addr_out);
    int (*gntshr_unshare)(struct xbd_gntshr *s, void *addr, uint32_t count);

    int (*evtchn_open)(struct xbd_evtchn *e);
    void (*evtchn_close)(struct xbd_evtchn *e);
    int (*evtchn_fd)(struct xbd_evtchn *e);
    int (*evtchn_bind_unbound)(struct xbd_evtchn *e, uint32_t remote_domid);
    int (*evtchn_bind_interdomain)(struct xbd_evtchn *e, uint32_t remote_domid,
                                   uint32_t remote_port);
    int (*evtchn_notify)(struct xbd_evtchn *e, uint32_t port);
    int (*evtchn_pending)(struct xbd_evtchn *e);
    int (*evtchn_unmask)(struct xbd_evtchn *e, uint32_t port);
    int (*evtchn_unbind)(struct xbd_evtchn *e, uint32_t port);
};

struct xbd_platform {
    const struct xbd_platform_ops *ops;
    uint32_t domid;
    void *priv;                 /* the implementation's */
};

/* The handles: the implementation hangs its state on priv. */
struct xbd_gnttab { struct xbd_platform *p; void *priv; };
struct xbd_gntshr { struct xbd_platform *p; void *priv; };
struct xbd_evtchn { struct xbd_platform *p; void *priv; };

extern const struct xbd_platform_ops xbd_platform_xen_ops;
extern const struct xbd_platform_ops xbd_platform_sim_ops;

/* Set the thread's error message; returns -err (err > 0) for tail calls. */
__attribute__((format(printf, 2, 3)))
int xbd_platform_fail(int err, const char *fmt, ...);

#endif /* XBD_PLATFORM_IMPL_H */
