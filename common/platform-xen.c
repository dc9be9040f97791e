/* xbdkit — the platform layer on real Xen: libxengnttab (gntdev and
 * gntalloc) and libxenevtchn.  A thin pass-through: the hypervisor makes
 * every check.  See xbd-platform.h. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

#include "platform-impl.h"
#include "xbd-parse.h"

/* Our copy segment is laid out as libxengnttab's, so batches pass through. */
static_assert(sizeof(struct xbd_gnt_copy_seg) == sizeof(xengnttab_grant_copy_segment_t),
              "copy segment layout");
static_assert(offsetof(struct xbd_gnt_copy_seg, status) ==
              offsetof(xengnttab_grant_copy_segment_t, status), "copy status");
static_assert(offsetof(struct xbd_gnt_copy_seg, flags) ==
              offsetof(xengnttab_grant_copy_segment_t, flags), "copy flags");
static_assert(XBD_GNTCOPY_SOURCE_GREF == GNTCOPY_source_gref, "copy flag");
static_assert(XBD_GNTCOPY_DEST_GREF == GNTCOPY_dest_gref, "copy flag");

/* Grants one gntdev handle may have mapped at once.  Old kernels enforce a
 * per-handle limit (default 1024) that multi-page rings, persistent grants
 * and indirect segments exceed quickly; newer kernels ignore the call. */
#define XEN_MAX_GRANTS 65536

static int
errno_fail(const char *what)
{
    int err = errno ? errno : EIO;

    return xbd_platform_fail(err, "%s: %s", what, strerror(err));
}

/* Our own domid: the store's relative path "domid" is
 * /local/domain/<self>/domid.  dom0 may lack it on old toolstacks; then
 * /proc/xen/capabilities saying "control_d" means we are dom0. */
static int
xen_open(struct xbd_platform *p)
{
    struct xs_handle *xs = xs_open(XS_OPEN_READONLY);
    unsigned int len = 0;
    char *val = NULL;
    uint32_t domid;
    FILE *f;

    if (xs != NULL) {
        val = xs_read(xs, XBT_NULL, "domid", &len);
        xs_close(xs);
    }
    if (val != NULL) {
        int r = xbd_parse_u32_range(val, 0, 0x7fef, &domid);

        free(val);
        if (r < 0)
            return xbd_platform_fail(EINVAL, "xenstore \"domid\" is not a domain id");
        p->domid = domid;
        return 0;
    }
    f = fopen("/proc/xen/capabilities", "r");
    if (f != NULL) {
        char buf[64] = "";

        if (fgets(buf, sizeof(buf), f) == NULL)
            buf[0] = '\0';
        fclose(f);
        if (strstr(buf, "control_d") != NULL) {
            p->domid = 0;
            return 0;
        }
    }
    return xbd_platform_fail(ENOENT, "cannot tell our domain id: xenstore has no "
                             "\"domid\" and /proc/xen/capabilities does not say "
                             "control_d (is xenstored running?)");
}

static void xen_close(struct xbd_platform *p) { (void)p; }

/* ---- gnttab --------------------------------------------------------------- */

static int
xen_gnttab_open(struct xbd_gnttab *g)
{
    xengnttab_handle *h = xengnttab_open(NULL, 0);

    if (h == NULL)
        return errno_fail("xengnttab_open (/dev/xen/gntdev)");
    /* Best effort, see XEN_MAX_GRANTS. */
    (void)xengnttab_set_max_grants(h, XEN_MAX_GRANTS);
    g->priv = h;
    return 0;
}

static void
xen_gnttab_close(struct xbd_gnttab *g)
{
    xengnttab_close(g->priv);
}

static int
xen_gnttab_map(struct xbd_gnttab *g, uint32_t domid, uint32_t count,
               const uint32_t *refs, int writable, void **addr_out)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *a;

    if (count == 1)
        a = xengnttab_map_grant_ref(g->priv, domid, refs[0], prot);
    else
        a = xengnttab_map_domain_grant_refs(g->priv, count, domid,
                                            (uint32_t *)refs, prot);
    if (a == NULL)
        return errno_fail("grant map");
    *addr_out = a;
    return 0;
}

static int
xen_gnttab_unmap(struct xbd_gnttab *g, void *addr, uint32_t count)
{
    if (xengnttab_unmap(g->priv, addr, count) < 0)
        return errno_fail("grant unmap");
    return 0;
}

static int
xen_gnttab_copy(struct xbd_gnttab *g, uint32_t count, struct xbd_gnt_copy_seg *segs)
{
    if (xengnttab_grant_copy(g->priv, count, (xengnttab_grant_copy_segment_t *)segs) < 0)
        return errno_fail("grant copy");
    return 0;
}

/* ---- gntshr --------------------------------------------------------------- */

static int
xen_gntshr_open(struct xbd_gntshr *s)
{
    xengntshr_handle *h = xengntshr_open(NULL, 0);

    if (h == NULL)
        return errno_fail("xengntshr_open (/dev/xen/gntalloc)");
    s->priv = h;
    return 0;
}

static void
xen_gntshr_close(struct xbd_gntshr *s)
{
    xengntshr_close(s->priv);
}

static int
xen_gntshr_share(struct xbd_gntshr *s, uint32_t domid, uint32_t count,
                 int writable, uint32_t *refs_out, void **addr_out)
{
    void *a = xengntshr_share_pages(s->priv, domid, (int)count, refs_out, writable);

    if (a == NULL) {
        if (errno == ENOMEM || errno == ENOSPC)
            return xbd_platform_fail(ENOSPC, "grant share of %u pages: out of "
                                     "grant references or memory (raise the "
                                     "gntalloc module's limit)", count);
        return errno_fail("grant share");
    }
    *addr_out = a;
    return 0;
}

/* gntalloc defers ending access itself while the peer holds a mapping, so
 * this does not return -EBUSY on Xen (see the header's list). */
static int
xen_gntshr_unshare(struct xbd_gntshr *s, void *addr, uint32_t count)
{
    if (xengntshr_unshare(s->priv, addr, count) < 0)
        return errno_fail("grant unshare");
    return 0;
}

/* ---- evtchn --------------------------------------------------------------- */

/* libxenevtchn opens /dev/xen/evtchn blocking, and xenevtchn_pending() is a
 * read(2) of it: with nothing pending it would wait for the next event
 * instead of failing with EAGAIN, and callers that drain pending ports in a
 * loop (the contract in xbd-platform.h) would hang after the last one.  The
 * device honours O_NONBLOCK; binding, notifying and unmasking are ioctls
 * and writes that it does not affect. */
static int
xen_evtchn_open(struct xbd_evtchn *e)
{
    xenevtchn_handle *h = xenevtchn_open(NULL, 0);
    int fd, fl;

    if (h == NULL)
        return errno_fail("xenevtchn_open (/dev/xen/evtchn)");
    fd = xenevtchn_fd(h);
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int r = errno_fail("event channel device: setting O_NONBLOCK");

        xenevtchn_close(h);
        return r;
    }
    e->priv = h;
    return 0;
}

static void xen_evtchn_close(struct xbd_evtchn *e) { xenevtchn_close(e->priv); }

static int
xen_evtchn_fd(struct xbd_evtchn *e)
{
    return xenevtchn_fd(e->priv);
}

static int
xen_evtchn_bind_unbound(struct xbd_evtchn *e, uint32_t remote_domid)
{
    xenevtchn_port_or_error_t port = xenevtchn_bind_unbound_port(e->priv, remote_domid);

    if (port < 0)
        return errno_fail("event channel alloc unbound");
    return port;
}

static int
xen_evtchn_bind_interdomain(struct xbd_evtchn *e, uint32_t remote_domid,
                            uint32_t remote_port)
{
    xenevtchn_port_or_error_t port =
        xenevtchn_bind_interdomain(e->priv, remote_domid, remote_port);

    if (port < 0)
        return errno_fail("event channel bind interdomain");
    return port;
}

static int
xen_evtchn_notify(struct xbd_evtchn *e, uint32_t port)
{
    if (xenevtchn_notify(e->priv, port) < 0)
        return errno_fail("event channel notify");
    return 0;
}

static int
xen_evtchn_pending(struct xbd_evtchn *e)
{
    xenevtchn_port_or_error_t port = xenevtchn_pending(e->priv);

    if (port < 0) {
        if (errno == EAGAIN)
            return -EAGAIN;
        return errno_fail("event channel pending");
    }
    return port;
}

static int
xen_evtchn_unmask(struct xbd_evtchn *e, uint32_t port)
{
    if (xenevtchn_unmask(e->priv, port) < 0)
        return errno_fail("event channel unmask");
    return 0;
}

static int
xen_evtchn_unbind(struct xbd_evtchn *e, uint32_t port)
{
    if (xenevtchn_unbind(e->priv, port) < 0)
        return errno_fail("event channel unbind");
    return 0;
}

const struct xbd_platform_ops xbd_platform_xen_ops = {
    .name = "xen",
    .open = xen_open,
    .close = xen_close,
    .gnttab_open = xen_gnttab_open,
    .gnttab_close = xen_gnttab_close,
    .gnttab_map = xen_gnttab_map,
    .gnttab_unmap = xen_gnttab_unmap,
    .gnttab_copy = xen_gnttab_copy,
    .gntshr_open = xen_gntshr_open,
    .gntshr_close = xen_gntshr_close,
    .gntshr_share = xen_gntshr_share,
    .gntshr_unshare = xen_gntshr_unshare,
    .evtchn_open = xen_evtchn_open,
    .evtchn_close = xen_evtchn_close,
    .evtchn_fd = xen_evtchn_fd,
    .evtchn_bind_unbound = xen_evtchn_bind_unbound,
    .evtchn_bind_interdomain = xen_evtchn_bind_interdomain,
    .evtchn_notify = xen_evtchn_notify,
    .evtchn_pending = xen_evtchn_pending,
    .evtchn_unmask = xen_evtchn_unmask,
    .evtchn_unbind = xen_evtchn_unbind,
};
