/* xbdkit — blkif ring access: Xen's io/blkif.h and io/ring.h, plus the
 * memory barriers ring.h expects its user to supply.
 *
 * Always include this instead of <xen/io/blkif.h> directly.
 *
 * Barriers (the shared ring is ordinary cache-coherent memory shared with
 * another process or domain):
 *   xen_mb()   full fence: our store must be visible before our next load
 *              (producer index published before reading the peer's *_event).
 *   xen_rmb()  loads after it are not satisfied before loads before it
 *              (read req_prod before reading the requests it covers).
 *   xen_wmb()  stores before it are visible before stores after it
 *              (requests written before req_prod moves).
 * On x86 only xen_mb() emits an instruction; the others stop the compiler.
 */
#ifndef XBD_RING_H
#define XBD_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef __XEN_INTERFACE_VERSION__
#error "build with -D__XEN_INTERFACE_VERSION__ (see common-flags.am)"
#endif

#define xen_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/* A compiler barrier: after copying a request out of shared memory, this
 * stops the compiler from re-reading the shared copy instead of ours. */
#define xbd_barrier() __asm__ __volatile__("" ::: "memory")

#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>
#include <xen/grant_table.h>

#include "xbd-platform.h"

/* Ring geometry.  The largest order we will ever speak: 2^8 = 256 pages,
 * 8192 entries.  Linux caps at order 4 (16 pages); our own peers go further. */
#define XBD_RING_ORDER_LIMIT 8u

/* Entries in a blkif ring of `pages` pages, as __CONST_RING_SIZE computes for
 * a constant size: (bytes - header) / entry size, rounded down to a power of
 * two.  The entry size is the same for the native, x86_32 and x86_64 ABIs
 * up to its rounding, so this holds for every protocol we accept. */
static inline unsigned int
xbd_ring_entries(unsigned int pages)
{
    size_t bytes = (size_t)pages * XBD_PAGE_SIZE;
    size_t n = (bytes - offsetof(struct blkif_sring, ring)) /
               sizeof(union blkif_sring_entry);
    unsigned int p2 = 1;

    while ((size_t)p2 * 2 <= n)
        p2 *= 2;
    return p2;
}

/* Bytes of data one request may carry: 512-byte sectors within 4 KiB pages. */
#define XBD_SECTOR_SHIFT 9
#define XBD_SECTORS_PER_PAGE (XBD_PAGE_SIZE >> XBD_SECTOR_SHIFT)

/* Segments per indirect page and the absolute maximum per request. */
#define XBD_SEGS_PER_INDIRECT_PAGE \
    (XBD_PAGE_SIZE / sizeof(struct blkif_request_segment))
#define XBD_MAX_INDIRECT_SEGMENTS \
    (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * XBD_SEGS_PER_INDIRECT_PAGE)

#endif /* XBD_RING_H */
