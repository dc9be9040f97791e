/* xbdkit — the platform layer: choosing an implementation, dispatching to
 * it, and the thread-local error message.  See xbd-platform.h. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform-impl.h"

/* ---- Errors --------------------------------------------------------------- */

static _Thread_local char errmsg[512];

const char *
xbd_platform_error(void)
{
    return errmsg[0] ? errmsg : "no error";
}

int
xbd_platform_fail(int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
    va_end(ap);
    return -err;
}

/* ---- Opening -------------------------------------------------------------- */

static const struct xbd_platform_ops *
detect(const char *mode)
{
    const char *env;

    if (mode == NULL) {
        env = getenv("XBD_PLATFORM");
        if (env != NULL && env[0] != '\0')
            mode = env;
    }
    if (mode != NULL) {
        if (strcmp(mode, "sim") == 0)
            return &xbd_platform_sim_ops;
        if (strcmp(mode, "xen") == 0)
            return &xbd_platform_xen_ops;
        xbd_platform_fail(EINVAL, "unknown platform \"%s\": use \"sim\" or \"xen\"",
                          mode);
        return NULL;
    }
    env = getenv("XBD_SIM_DIR");
    if (env != NULL && env[0] != '\0')
        return &xbd_platform_sim_ops;
    if (access("/dev/xen/gntdev", F_OK) == 0 || access("/dev/xen/evtchn", F_OK) == 0)
        return &xbd_platform_xen_ops;
    xbd_platform_fail(ENOENT, "no /dev/xen/gntdev and no xbd-sim found: "
                      "start `xbd-sim` or run on a Xen host");
    return NULL;
}

int
xbd_platform_open(struct xbd_platform **out, const char *mode)
{
    const struct xbd_platform_ops *ops = detect(mode);
    struct xbd_platform *p;
    int r;

    *out = NULL;
    if (ops == NULL)
        return mode != NULL || getenv("XBD_PLATFORM") ? -EINVAL : -ENOENT;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    p->ops = ops;
    r = ops->open(p);
    if (r < 0) {
        free(p);
        return r;
    }
    *out = p;
    return 0;
}

void
xbd_platform_close(struct xbd_platform *p)
{
    if (p == NULL)
        return;
    p->ops->close(p);
    free(p);
}

const char *
xbd_platform_name(const struct xbd_platform *p)
{
    return p->ops->name;
}

uint32_t
xbd_platform_domid(const struct xbd_platform *p)
{
    return p->domid;
}

/* ---- Handles -------------------------------------------------------------- */

#define OPEN_HANDLE(type, op)                                           \
    int                                                                 \
    xbd_##type##_open(struct xbd_platform *p, struct xbd_##type **out)  \
    {                                                                   \
        struct xbd_##type *h = calloc(1, sizeof(*h));                   \
        int r;                                                          \
                                                                        \
        *out = NULL;                                                    \
        if (h == NULL)                                                  \
            return xbd_platform_fail(ENOMEM, "out of memory");          \
        h->p = p;                                                       \
        r = p->ops->op##_open(h);                                       \
        if (r < 0) {                                                    \
            free(h);                                                    \
            return r;                                                   \
        }                                                               \
        *out = h;                                                       \
        return 0;                                                       \
    }                                                                   \
    void                                                                \
    xbd_##type##_close(struct xbd_##type *h)                            \
    {                                                                   \
        if (h == NULL)                                                  \
            return;                                                     \
        h->p->ops->op##_close(h);                                       \
        free(h);                                                        \
    }

OPEN_HANDLE(gnttab, gnttab)
OPEN_HANDLE(gntshr, gntshr)
OPEN_HANDLE(evtchn, evtchn)

int
xbd_gnttab_map(struct xbd_gnttab *g, uint32_t domid, uint32_t count,
               const uint32_t *refs, int writable, void **addr_out)
{
    *addr_out = NULL;
    if (count == 0 || refs == NULL)
        return xbd_platform_fail(EINVAL, "grant map: no references given");
    return g->p->ops->gnttab_map(g, domid, count, refs, writable, addr_out);
}

int
xbd_gnttab_unmap(struct xbd_gnttab *g, void *addr, uint32_t count)
{
    return g->p->ops->gnttab_unmap(g, addr, count);
}

int
xbd_gnttab_copy(struct xbd_gnttab *g, uint32_t count, struct xbd_gnt_copy_seg *segs)
{
    if (count == 0)
        return 0;
    return g->p->ops->gnttab_copy(g, count, segs);
}

int
xbd_gntshr_share(struct xbd_gntshr *s, uint32_t domid, uint32_t count,
                 int writable, uint32_t *refs_out, void **addr_out)
{
    *addr_out = NULL;
    if (count == 0)
        return xbd_platform_fail(EINVAL, "grant share: count is 0");
    return s->p->ops->gntshr_share(s, domid, count, writable, refs_out, addr_out);
}

int
xbd_gntshr_unshare(struct xbd_gntshr *s, void *addr, uint32_t count)
{
    return s->p->ops->gntshr_unshare(s, addr, count);
}

int xbd_evtchn_fd(struct xbd_evtchn *e) { return e->p->ops->evtchn_fd(e); }

int
xbd_evtchn_bind_unbound(struct xbd_evtchn *e, uint32_t remote_domid)
{
    return e->p->ops->evtchn_bind_unbound(e, remote_domid);
}

int
xbd_evtchn_bind_interdomain(struct xbd_evtchn *e, uint32_t remote_domid,
                            uint32_t remote_port)
{
    return e->p->ops->evtchn_bind_interdomain(e, remote_domid, remote_port);
}

int xbd_evtchn_notify(struct xbd_evtchn *e, uint32_t port) { return e->p->ops->evtchn_notify(e, port); }
int xbd_evtchn_pending(struct xbd_evtchn *e) { return e->p->ops->evtchn_pending(e); }
int xbd_evtchn_unmask(struct xbd_evtchn *e, uint32_t port) { return e->p->ops->evtchn_unmask(e, port); }
int xbd_evtchn_unbind(struct xbd_evtchn *e, uint32_t port) { return e->p->ops->evtchn_unbind(e, port); }
