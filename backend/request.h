/* xbd-backd — one blkif request: copied out of the shared ring, then
 * validated into a private struct (request.c).
 *
 * Everything here is pure: no I/O, no globals, no shared memory access
 * other than the single copy in xbd_req_copy.  The parse functions take
 * byte buffers, so a fuzz harness can drive them directly.
 *
 * Three request layouts exist on the wire, chosen by the frontend's
 * `protocol` node (enum xbd_abi in xbd-backd.h):
 *
 *   native   this build's <xen/io/blkif.h> structs.
 *   x86_32   i386's layout: 64-bit fields aligned to 4 bytes, so `id`
 *            follows the first 4 bytes directly; a ring entry is 108 bytes,
 *            a response 12.
 *   x86_64   natural 8-byte alignment of 64-bit fields: 4 bytes of padding
 *            before `id`; a ring entry is 112 bytes, a response 16.
 *
 * All three share the ring header (producer/consumer indices, 64 bytes).
 */
#ifndef XBD_REQUEST_H
#define XBD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xbd-backd.h"
#include "xbd-ring.h"

/* Largest ring entry of any ABI, for buffers holding one copied slot. */
#define XBD_REQ_SLOT_MAX 112u

/* Bytes of one ring entry (request/response union) in `abi`. */
size_t xbd_abi_entry_size(enum xbd_abi abi);

/* Entries in a ring of `pages` pages in `abi` (a power of two). */
unsigned int xbd_abi_ring_entries(enum xbd_abi abi, unsigned int pages);

/* What the device allows, checked against every request.  The data path
 * refreshes `sectors` on live resize. */
struct xbd_req_limits {
    uint64_t sectors;               /* device size, 512-byte units */
    uint32_t sector_size;           /* 512 or 4096: alignment of I/O */
    unsigned int max_indirect;      /* segments advertised; 0: no INDIRECT */
    bool read_only;
    bool flush;                     /* FLUSH_DISKCACHE and WRITE_BARRIER */
    bool discard;
    bool discard_secure;
};

/* One data segment: a granted page and the sectors of it to move. */
struct xbd_seg {
    uint32_t gref;
    uint8_t first_sect, last_sect;  /* inclusive, 0..7 */
};

/* What the request asks the backing to do. */
enum xbd_req_kind {
    XBD_REQ_READ,
    XBD_REQ_WRITE,
    XBD_REQ_FLUSH,                  /* [write the segments, then] flush */
    XBD_REQ_BARRIER,                /* drain; flush; [write]; flush */
    XBD_REQ_DISCARD,
};

/* A validated request, in private memory.  `seg` is provided by the
 * caller before parsing, with room for max(BLKIF_MAX_SEGMENTS_PER_REQUEST,
 * limits->max_indirect) entries. */
struct xbd_req {
    uint64_t id;                    /* echoed in the response */
    uint8_t operation;              /* echoed: the wire opcode (the inner one of BLKIF_OP_INDIRECT) */
    enum xbd_req_kind kind;
    bool indirect;                  /* came as BLKIF_OP_INDIRECT */
    bool secure;                    /* discard: secure erase asked and allowed */
    uint64_t sector;                /* first sector, 512-byte units */
    uint64_t nr_sectors;            /* total; 0 for a flush without data */
    unsigned int nr_segments;
    unsigned int nr_indirect_pages; /* valid when indirect */
    uint32_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    struct xbd_seg *seg;
};

/* Results of parsing, besides negative errnos. */
#define XBD_REQ_OK              0
#define XBD_REQ_NEED_INDIRECT   1   /* fetch indirect pages, then parse those */

/* Copy ring slot `idx` of the ring whose header is at `sring` (the
 * contiguous mapping of all ring pages; nr_ents entries) into `slot`, which
 * holds XBD_REQ_SLOT_MAX bytes.  The only read of the shared request; a
 * compiler barrier follows, so later reads see our copy. */
void xbd_req_copy(const void *sring, unsigned int nr_ents, enum xbd_abi abi,
                  uint32_t idx, void *slot);

/* Validate a copied slot.  Returns XBD_REQ_OK (request complete),
 * XBD_REQ_NEED_INDIRECT (out->indirect_grefs name the pages; copy them and
 * call xbd_req_parse_indirect), -EINVAL (malformed or not allowed: answer
 * BLKIF_RSP_ERROR) or -EOPNOTSUPP (unknown or unadvertised operation:
 * answer BLKIF_RSP_EOPNOTSUPP).  On every return out->id and
 * out->operation hold what to echo, and on failure *why says what was
 * wrong (a static string). */
int xbd_req_parse(const void *slot, enum xbd_abi abi,
                  const struct xbd_req_limits *lim, struct xbd_req *out,
                  const char **why);

/* Second step of an indirect request: `pages` is a private copy of the
 * out->nr_indirect_pages indirect pages (XBD_PAGE_SIZE bytes each).  Fills
 * and validates out->seg; same returns as xbd_req_parse (never
 * XBD_REQ_NEED_INDIRECT). */
int xbd_req_parse_indirect(const void *pages, const struct xbd_req_limits *lim,
                           struct xbd_req *out, const char **why);

/* Write a response into ring slot `idx`: the whole response struct of
 * `abi`, padding zeroed (XSA-216), in one store of a private copy. */
void xbd_rsp_write(void *sring, unsigned int nr_ents, enum xbd_abi abi,
                   uint32_t idx, uint64_t id, uint8_t operation, int16_t status);

#endif /* XBD_REQUEST_H */
