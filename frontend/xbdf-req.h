/* libxbdfront internals — checking, splitting and building requests, and
 * reading what the backend published.
 *
 * Pure code, unit-tested: nothing here touches the ring, xenstore or grants.
 *
 * Units: every ring field (sector_number, first_sect/last_sect, discard
 * nr_sectors) and the backend's `sectors` node are in 512-byte units, as
 * blkif.h says since Xen 4.20; `sector-size` only constrains alignment:
 * every offset and length must be a multiple of it.
 *
 * Error convention: negative errno, with a message in why[] for a human.
 */
#ifndef XBDF_REQ_H
#define XBDF_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xbdf-ring.h"

/* What a request is checked against: the device and what was negotiated. */
struct xbdf_geom {
    uint64_t size;              /* bytes, a multiple of sector_size */
    uint32_t sector_size;       /* power of two >= 512 */
    uint32_t max_indirect_segs; /* negotiated; 0 = no BLKIF_OP_INDIRECT */
    bool readonly;
    bool flush;                 /* feature-flush-cache */
    bool barrier;               /* feature-barrier */
    bool discard;               /* feature-discard */
    bool discard_secure;        /* discard-secure */
    uint32_t discard_granularity;  /* bytes, >= sector_size */
    uint32_t discard_alignment;    /* bytes, < discard_granularity */
};

/* Check a read or write of [offset, offset+len) in bytes: len > 0, both
 * multiples of sector_size, no 64-bit wrap, within the device; a write to a
 * read-only device is -EROFS. */
int xbdf_check_rw(const struct xbdf_geom *g, bool write, uint64_t offset,
                  uint64_t len, char *why, size_t whylen);

/* Segments (pages) one ring request may carry for operation `op`: 11
 * direct, or the negotiated indirect count for READ/WRITE. */
unsigned int xbdf_max_segs(const struct xbdf_geom *g, uint8_t op);

/* Bytes the next ring request can carry when the data starts `page_off`
 * bytes into its first page (a multiple of 512) and `remaining` bytes are
 * left: as many as fit in xbdf_max_segs() pages, in whole logical sectors
 * (0 when not even one sector fits). */
uint64_t xbdf_split_len(const struct xbdf_geom *g, uint8_t op,
                        uint32_t page_off, uint64_t remaining);

/* Pages touched by len bytes starting page_off into the first page. */
static inline unsigned int
xbdf_pages_spanned(uint32_t page_off, uint64_t len)
{
    return (unsigned int)((page_off + len + XBD_PAGE_SIZE - 1) / XBD_PAGE_SIZE);
}

/* A read or write to put in one ring slot. */
struct xbdf_rw_desc {
    uint8_t op;                 /* READ, WRITE, WRITE_BARRIER or
                                 * FLUSH_DISKCACHE (with data) */
    uint16_t handle;            /* the virtual-device number */
    uint64_t id;                /* from xbdf_shadow_get() */
    uint64_t offset;            /* bytes on the device */
    uint32_t page_off;          /* where data starts in the first page */
    uint32_t len;               /* bytes */
    const uint32_t *grefs;      /* one grant per data page spanned */
    /* For more than 11 pages: the frontend's indirect pages (mapped here,
     * granted read-only to the backend), one pointer per page (they need
     * not be adjacent), and their grants. */
    struct blkif_request_segment *const *ind_pages;
    const uint32_t *ind_grefs;
};

/* Build the request in *req (the shadow's private copy): direct for up to
 * 11 pages, BLKIF_OP_INDIRECT beyond (then the segments are written into
 * ind_pages).  -EINVAL for a descriptor that breaks blkif's rules. */
int xbdf_build_rw(union xbdf_req *req, const struct xbdf_rw_desc *d,
                  char *why, size_t whylen);

/* A flush (FLUSH_DISKCACHE or WRITE_BARRIER) carrying no data. */
int xbdf_build_flush(union xbdf_req *req, uint8_t op, uint16_t handle,
                     uint64_t id);

/* The operation a flush uses on this device: FLUSH_DISKCACHE when offered,
 * else WRITE_BARRIER when offered, else -EOPNOTSUPP (no volatile cache). */
int xbdf_flush_op(const struct xbdf_geom *g);

/* Check a discard and shrink [offset, offset+len) to whole granularity
 * units (placed at discard_alignment).  *out_len 0: nothing to discard.
 * -EOPNOTSUPP when discard (or secure discard) is not offered. */
int xbdf_discard_range(const struct xbdf_geom *g, bool secure,
                       uint64_t offset, uint64_t len, uint64_t *out_offset,
                       uint64_t *out_len, char *why, size_t whylen);

int xbdf_build_discard(union xbdf_req *req, uint16_t handle, uint64_t id,
                       uint64_t offset, uint64_t len, bool secure);

/* ---- What the backend published ---------------------------------------- */

/* Reads one key of the backend directory: a malloc'd string, or NULL when
 * the node is absent. */
typedef char *(*xbdf_read_fn)(void *arg, const char *key);

/* Local ceilings, whatever the backend says. */
#define XBDF_MAX_QUEUES 64u

/* Transport limits, read when the backend reaches InitWait. */
struct xbdf_be_limits {
    unsigned int max_ring_order;    /* clamped to XBD_RING_ORDER_LIMIT */
    unsigned int max_queues;        /* 1 .. XBDF_MAX_QUEUES */
    unsigned int max_indirect_segs; /* 0 .. XBD_MAX_INDIRECT_SEGMENTS */
    bool persistent;
};

/* Absent nodes take blkif.h's defaults; values beyond our ceilings are
 * clamped; malformed ones (not a decimal number, overflow, a
 * max-ring-pages that is not a power of two) are -EPROTO. */
int xbdf_read_limits(xbdf_read_fn rd, void *arg, struct xbdf_be_limits *out,
                     char *why, size_t whylen);

/* Device properties, read when the backend is Connected (and again on a
 * resize).  `sectors` must be > 0, its byte size must not overflow and
 * must be a multiple of `sector-size`, a power of two in [512, 64 KiB].
 * Anything else is -EPROTO: the frontend refuses to connect. */
int xbdf_read_props(xbdf_read_fn rd, void *arg, struct xbdf_geom *g,
                    uint32_t *info_out, char *why, size_t whylen);

#endif /* XBDF_REQ_H */
