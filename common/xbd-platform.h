/* xbdkit — the platform layer: grants and event channels, on Xen or on xbd-sim.
 *
 * The daemon and the frontend library need three things from a Xen host
 * besides the store: mapping and copying other domains' granted pages
 * (backend), granting their own pages (frontend), and event channels (both).
 * This header is the only interface to those; two implementations sit
 * behind it, chosen at run time:
 *
 *   "xen"  libxengnttab / libxengntshr / libxenevtchn on /dev/xen/{gntdev,
 *          gntalloc,evtchn}.  Always built, so it compiles and links in CI.
 *   "sim"  xbd-sim (sim/), reached through the environment that xbd-sim and
 *          `xbdctl run-as` set (see "Finding the sim" below).
 *
 * The store is NOT abstracted: both modes use the real libxenstore, because
 * xbd-sim speaks the xenstore wire protocol on the socket that
 * XENSTORED_PATH names.
 *
 * Choosing: xbd_platform_open(&p, NULL) picks "sim" when XBD_SIM_DIR is set,
 * else "xen" when /dev/xen/gntdev or /dev/xen/evtchn exists, else fails with
 * a message saying what to do.  XBD_PLATFORM=sim|xen forces a choice.
 *
 * Finding the sim (the sim's half of this contract, see xbd-sim(8)):
 *   XBD_SIM_DIR     the sim's run directory
 *   XBD_SIM_DOMID   the domain this process runs as (decimal; 0 = dom0)
 *   XENSTORED_PATH  $XBD_SIM_DIR/d<domid>.xs, that domain's xenstore socket
 *   The platform connects to $XBD_SIM_DIR/d<domid>.host; one socket per
 *   domain is how the sim knows who is calling.  Each handle (gnttab,
 *   gntshr, evtchn) has its own connection, and the sim releases what a
 *   handle held when its connection closes: a process that dies leaves no
 *   pins, ports or (once unpinned) shares behind.  Protocol and shared
 *   layouts: common/sim-proto.h.
 *
 * Where the sim is less faithful than Xen (keep this list exact):
 *   - Identity is the socket a process connects to.  Any local process that
 *     can open dom0's socket is dom0: the sim separates guests from the
 *     backend for testing, it is not a security boundary between local users.
 *   - Guest memory is a memfd per domain; privileged (dom0) processes receive
 *     it whole and map it, where Xen would map only granted frames.  Grant
 *     checks are still made on every map and copy, so code that respects the
 *     API cannot reach an ungranted page, but nothing stops a privileged
 *     process that bypasses the API.
 *   - Grant map/copy validation runs inside the calling process, on grant
 *     and pin tables in shared memory, with the same checks and the same
 *     atomic flag updates Xen makes; Xen runs them in the hypervisor.
 *   - Unsharing a page the peer still has mapped fails with -EBUSY and leaves
 *     it shared (the gnttab_end_foreign_access_ref semantics).  On Xen the
 *     gntalloc driver instead defers the release itself and unshare succeeds.
 *   - Event channels are eventfds: notify is a write(2), the pollable fd is an
 *     epoll fd; pending/mask/unmask semantics follow xenevtchn.h.
 *   - Destroying a domain does not stop its processes: the sim closes their
 *     host and xenstore connections and marks its grant table dead, but a
 *     process that still holds a channel's eventfds can signal its former
 *     peer port until that port is unbound (on Xen the vCPUs are gone).
 *   - There is no IOMMU, no TLB shootdown cost, no paged-out frames (GNTST_eagain
 *     never happens) and no grant table version 2.
 *
 * Error convention: every function returning int returns >= 0 on success
 * and a negative errno on failure; xbd_platform_error() then holds a message
 * for a human (thread-local, valid until the next call on this thread).
 *
 * Threads: a handle (gnttab, gntshr, evtchn) must be used by one thread at a
 * time; open one per thread that needs it (the dataplane opens one evtchn and
 * one gnttab handle per queue).  The xbd_platform itself may be shared.
 *
 * fork: a child must not use handles inherited from its parent; it may only
 * close them.
 */
#ifndef XBD_PLATFORM_H
#define XBD_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XBD_PAGE_SIZE 4096u
#define XBD_PAGE_SHIFT 12

struct xbd_platform;
struct xbd_gnttab;      /* the consumer side of grants: map, unmap, copy */
struct xbd_gntshr;      /* the producer side: share, unshare */
struct xbd_evtchn;      /* event channels */

/* ---- Opening ----------------------------------------------------------- */

/* Open the platform.  mode: NULL (detect), "sim" or "xen". */
int xbd_platform_open(struct xbd_platform **out, const char *mode);
void xbd_platform_close(struct xbd_platform *p);

/* "sim" or "xen". */
const char *xbd_platform_name(const struct xbd_platform *p);

/* The domain this process runs as. */
uint32_t xbd_platform_domid(const struct xbd_platform *p);

/* The message for the last failure on this thread (never NULL). */
const char *xbd_platform_error(void);

/* ---- Grant mapping and copying (backend side) --------------------------- */

int xbd_gnttab_open(struct xbd_platform *p, struct xbd_gnttab **out);
void xbd_gnttab_close(struct xbd_gnttab *g);

/* Map `count` grant references of domain `domid` into one virtually
 * contiguous range (their frames need not be contiguous): the multi-page ring
 * uses this, and so do persistent grants with count 1.  writable: 0 maps
 * read-only and then a read-only grant is acceptable; 1 needs a writable
 * grant.  All or nothing: on failure nothing stays mapped or pinned.
 * Errors: -EINVAL bad ref or count, -EPERM grant not for us / not permitted /
 * read-only, -ESRCH no such domain, -ENOMEM. */
int xbd_gnttab_map(struct xbd_gnttab *g, uint32_t domid, uint32_t count,
                   const uint32_t *refs, int writable, void **addr_out);

/* Unmap what one xbd_gnttab_map returned (same addr, same count). */
int xbd_gnttab_unmap(struct xbd_gnttab *g, void *addr, uint32_t count);

/* One segment of a batched grant copy; the same layout as
 * xengnttab_grant_copy_segment_t so the xen implementation passes it through.
 * The foreign side must satisfy offset + len <= XBD_PAGE_SIZE; the local
 * (virt) side may cross pages. */
struct xbd_gnt_copy_seg {
    union {
        void *virt;
        struct {
            uint32_t ref;
            uint16_t offset;
            uint16_t domid;
        } foreign;
    } source, dest;
    uint16_t len;
    uint16_t flags;             /* XBD_GNTCOPY_SOURCE_GREF | _DEST_GREF */
    int16_t status;             /* out: GNTST_okay (0) or a GNTST_* error */
};
#define XBD_GNTCOPY_SOURCE_GREF 0x1     /* == GNTCOPY_source_gref */
#define XBD_GNTCOPY_DEST_GREF   0x2     /* == GNTCOPY_dest_gref */

/* Copy `count` segments.  Returns 0 when the batch was processed; then each
 * segment's status says whether that segment was copied (GNTST_okay) or why
 * not, with the codes Xen gives: GNTST_bad_gntref (ref outside the table),
 * GNTST_general_error (not a permit-access grant, granted to another domain,
 * or read-only used as a destination), GNTST_bad_domain (no such domain, or
 * it is dying), GNTST_bad_copy_arg (offset + len crosses the page, unknown
 * flags).  A negative return means the batch was not processed at all. */
int xbd_gnttab_copy(struct xbd_gnttab *g, uint32_t count,
                    struct xbd_gnt_copy_seg *segs);

/* ---- Grant sharing (frontend side) -------------------------------------- */

int xbd_gntshr_open(struct xbd_platform *p, struct xbd_gntshr **out);
void xbd_gntshr_close(struct xbd_gntshr *s);

/* Allocate `count` zeroed pages, grant each to `domid` (writable or
 * read-only), and map them contiguously here.  refs_out receives one grant
 * reference per page.  Memory from elsewhere (malloc, mmap) cannot be
 * shared: do I/O in these pages or bounce through them.
 * Errors: -ENOSPC out of grant references or guest memory (the message says
 * which limit and how to raise it), -ENOMEM. */
int xbd_gntshr_share(struct xbd_gntshr *s, uint32_t domid, uint32_t count,
                     int writable, uint32_t *refs_out, void **addr_out);

/* End access to and free what one xbd_gntshr_share returned.  -EBUSY: at
 * least one of the grants is still mapped or being copied by the peer;
 * nothing was released, the pages stay shared, and the caller must not reuse
 * them (quarantine and retry later, or leak them — XSA-396). */
int xbd_gntshr_unshare(struct xbd_gntshr *s, void *addr, uint32_t count);

/* ---- Event channels ----------------------------------------------------- */

int xbd_evtchn_open(struct xbd_platform *p, struct xbd_evtchn **out);
void xbd_evtchn_close(struct xbd_evtchn *e);     /* unbinds every port */

/* A file descriptor that polls readable while a bound port is pending. */
int xbd_evtchn_fd(struct xbd_evtchn *e);

/* Allocate a port that domain `remote_domid` may bind to (EVTCHNOP_alloc_unbound,
 * xenevtchn_bind_unbound_port).  Returns the local port. */
int xbd_evtchn_bind_unbound(struct xbd_evtchn *e, uint32_t remote_domid);

/* Bind to `remote_port`, an unbound port of `remote_domid` allocated for us.
 * Returns the local port.  -EINVAL: no such port, not unbound, or not
 * allocated for this domain. */
int xbd_evtchn_bind_interdomain(struct xbd_evtchn *e, uint32_t remote_domid,
                                uint32_t remote_port);

/* Signal the peer of a bound local port.  Never blocks.  Notifying a port
 * whose peer went away succeeds and does nothing, as on Xen. */
int xbd_evtchn_notify(struct xbd_evtchn *e, uint32_t port);

/* Return a pending local port and mask it; -EAGAIN when none is pending.
 * Call after poll() says the fd is readable. */
int xbd_evtchn_pending(struct xbd_evtchn *e);

/* Unmask a port returned by xbd_evtchn_pending; an event that arrived while
 * it was masked makes the fd readable again at once. */
int xbd_evtchn_unmask(struct xbd_evtchn *e, uint32_t port);

int xbd_evtchn_unbind(struct xbd_evtchn *e, uint32_t port);

#ifdef __cplusplus
}
#endif

#endif /* XBD_PLATFORM_H */
