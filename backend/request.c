/* xbd-backd — copying one request out of the shared ring and validating it.
 *
 * The frontend owns the ring memory and may change it at any time: a slot
 * is read exactly once (xbd_req_copy), and every decision after that is
 * made on the private copy.  See request.h for the three layouts.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "request.h"

/* ---- The foreign layouts -------------------------------------------------
 *
 * Written from blkif.h's field lists and the two ABIs' alignment rules:
 * x86_32 aligns uint64_t to 4 bytes inside structs, x86_64 to 8.  The
 * structs are packed, with explicit padding where x86_64 has it, so their
 * layout is the same whatever this build's own ABI is; the static asserts
 * pin every offset.  Segments (uint32 gref, two uint8 sectors, 2 bytes of
 * tail padding: 8 bytes) are the same in both.
 */
struct seg_wire {
    uint32_t gref;
    uint8_t first_sect, last_sect;
    uint8_t pad[2];
} __attribute__((packed));

struct x32_rw {
    uint8_t operation, nr_segments;
    uint16_t handle;
    uint64_t id;
    uint64_t sector_number;
    struct seg_wire seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
} __attribute__((packed));

struct x32_discard {
    uint8_t operation, flag;
    uint16_t handle;
    uint64_t id;
    uint64_t sector_number;
    uint64_t nr_sectors;
} __attribute__((packed));

struct x32_indirect {
    uint8_t operation, indirect_op;
    uint16_t nr_segments;
    uint64_t id;
    uint64_t sector_number;
    uint16_t handle;
    uint8_t pad1[2];
    uint32_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    uint64_t pad2;                  /* i386 pads the struct to 64 bytes */
} __attribute__((packed));

struct x32_response {
    uint64_t id;
    uint8_t operation, pad;
    int16_t status;
} __attribute__((packed));

struct x64_rw {
    uint8_t operation, nr_segments;
    uint16_t handle;
    uint8_t pad[4];
    uint64_t id;
    uint64_t sector_number;
    struct seg_wire seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
} __attribute__((packed));

struct x64_discard {
    uint8_t operation, flag;
    uint16_t handle;
    uint8_t pad[4];
    uint64_t id;
    uint64_t sector_number;
    uint64_t nr_sectors;
} __attribute__((packed));

struct x64_indirect {
    uint8_t operation, indirect_op;
    uint16_t nr_segments;
    uint8_t pad1[4];
    uint64_t id;
    uint64_t sector_number;
    uint16_t handle;
    uint8_t pad2[2];
    uint32_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    uint8_t pad3[4];                /* tail padding to 8-byte alignment */
} __attribute__((packed));

struct x64_response {
    uint64_t id;
    uint8_t operation, pad1;
    int16_t status;
    uint8_t pad2[4];
} __attribute__((packed));

#define X32_ENTRY_SIZE 108u         /* sizeof(struct x32_rw), the largest */
#define X64_ENTRY_SIZE 112u

_Static_assert(sizeof(struct seg_wire) == sizeof(struct blkif_request_segment),
               "segment layout");
_Static_assert(offsetof(struct x32_rw, id) == 4 &&
               offsetof(struct x32_rw, sector_number) == 12 &&
               offsetof(struct x32_rw, seg) == 20 &&
               sizeof(struct x32_rw) == X32_ENTRY_SIZE, "x86_32 rw layout");
_Static_assert(offsetof(struct x32_discard, nr_sectors) == 20 &&
               sizeof(struct x32_discard) == 28, "x86_32 discard layout");
_Static_assert(offsetof(struct x32_indirect, handle) == 20 &&
               offsetof(struct x32_indirect, indirect_grefs) == 24 &&
               sizeof(struct x32_indirect) == 64, "x86_32 indirect layout");
_Static_assert(sizeof(struct x32_response) == 12, "x86_32 response layout");
_Static_assert(offsetof(struct x64_rw, id) == 8 &&
               offsetof(struct x64_rw, seg) == 24 &&
               sizeof(struct x64_rw) == X64_ENTRY_SIZE, "x86_64 rw layout");
_Static_assert(offsetof(struct x64_discard, nr_sectors) == 24 &&
               sizeof(struct x64_discard) == 32, "x86_64 discard layout");
_Static_assert(offsetof(struct x64_indirect, handle) == 24 &&
               offsetof(struct x64_indirect, indirect_grefs) == 28 &&
               sizeof(struct x64_indirect) == 64, "x86_64 indirect layout");
_Static_assert(sizeof(struct x64_response) == 16, "x86_64 response layout");
_Static_assert(sizeof(union blkif_sring_entry) <= XBD_REQ_SLOT_MAX &&
               X64_ENTRY_SIZE <= XBD_REQ_SLOT_MAX, "slot buffer size");

/* The ring header is ABI independent: four 32-bit indices and padding. */
#define RING_HEADER_SIZE offsetof(struct blkif_sring, ring)
_Static_assert(RING_HEADER_SIZE == 64, "ring header");

size_t
xbd_abi_entry_size(enum xbd_abi abi)
{
    switch (abi) {
    case XBD_ABI_X86_32:
        return X32_ENTRY_SIZE;
    case XBD_ABI_X86_64:
        return X64_ENTRY_SIZE;
    default:
        return sizeof(union blkif_sring_entry);
    }
}

unsigned int
xbd_abi_ring_entries(enum xbd_abi abi, unsigned int pages)
{
    size_t n = ((size_t)pages * XBD_PAGE_SIZE - RING_HEADER_SIZE) /
               xbd_abi_entry_size(abi);
    unsigned int p2 = 1;

    while ((size_t)p2 * 2 <= n)
        p2 *= 2;
    return p2;
}

/* ---- Copy in, copy out ------------------------------------------------- */

void
xbd_req_copy(const void *sring, unsigned int nr_ents, enum xbd_abi abi,
             uint32_t idx, void *slot)
{
    size_t esz = xbd_abi_entry_size(abi);
    const uint8_t *src = (const uint8_t *)sring + RING_HEADER_SIZE +
                         (size_t)(idx & (nr_ents - 1)) * esz;

    memcpy(slot, src, esz);
    /* Every later read must see our copy, never the shared slot again. */
    xbd_barrier();
}

void
xbd_rsp_write(void *sring, unsigned int nr_ents, enum xbd_abi abi,
              uint32_t idx, uint64_t id, uint8_t operation, int16_t status)
{
    uint8_t *dst = (uint8_t *)sring + RING_HEADER_SIZE +
                   (size_t)(idx & (nr_ents - 1)) * xbd_abi_entry_size(abi);

    /* Built zeroed in private memory, then stored whole: no padding byte
     * carries our stack to the guest (XSA-216). */
#define PUT_RSP(T) do {                                                 \
        T r_;                                                           \
        memset(&r_, 0, sizeof(r_));                                     \
        r_.id = id;                                                     \
        r_.operation = operation;                                       \
        r_.status = status;                                             \
        memcpy(dst, &r_, sizeof(r_));                                   \
    } while (0)
    switch (abi) {
    case XBD_ABI_X86_32:
        PUT_RSP(struct x32_response);
        break;
    case XBD_ABI_X86_64:
        PUT_RSP(struct x64_response);
        break;
    default:
        PUT_RSP(struct blkif_response);
        break;
    }
#undef PUT_RSP
}

/* ---- Decoding -------------------------------------------------------------
 *
 * Each layout is first decoded into this ABI-neutral form; the checks
 * below then run once for all three.
 */
struct wire {
    uint8_t operation;
    uint8_t flag;                   /* discard flag / indirect inner op */
    unsigned int nr_segments;
    uint64_t id;
    uint64_t sector;
    uint64_t nr_sectors;            /* discard only */
    struct seg_wire seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
    uint32_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
};

/* Each shape is copied once into a local of its type, then its fields are
 * taken from there; the fields every shape has come first. */
#define DECODE_COMMON(r_, w) do {                                       \
    (w)->operation = (r_).operation;                                    \
    (w)->id = (r_).id;                                                  \
    (w)->sector = (r_).sector_number;                                   \
} while (0)

#define DECODE_RW(T, slot, w) do {                                      \
    T r_;                                                               \
    memcpy(&r_, (slot), sizeof(r_));                                    \
    DECODE_COMMON(r_, w);                                               \
    (w)->nr_segments = r_.nr_segments;                                  \
    memcpy((w)->seg, r_.seg, sizeof(r_.seg));                           \
} while (0)

#define DECODE_DISCARD(T, slot, w) do {                                 \
    T r_;                                                               \
    memcpy(&r_, (slot), sizeof(r_));                                    \
    DECODE_COMMON(r_, w);                                               \
    (w)->flag = r_.flag;                                                \
    (w)->nr_sectors = r_.nr_sectors;                                    \
} while (0)

#define DECODE_INDIRECT(T, slot, w) do {                                \
    T r_;                                                               \
    memcpy(&r_, (slot), sizeof(r_));                                    \
    DECODE_COMMON(r_, w);                                               \
    (w)->flag = r_.indirect_op;                                         \
    (w)->nr_segments = r_.nr_segments;                                  \
    memcpy((w)->indirect_grefs, r_.indirect_grefs,                      \
           sizeof(r_.indirect_grefs));                                  \
} while (0)

/* One ABI's three request shapes, chosen by the opcode. */
#define DECODE_ABI(RW, DISCARD, INDIRECT, op, slot, w) do {             \
    if ((op) == BLKIF_OP_INDIRECT)                                      \
        DECODE_INDIRECT(INDIRECT, slot, w);                             \
    else if ((op) == BLKIF_OP_DISCARD)                                  \
        DECODE_DISCARD(DISCARD, slot, w);                               \
    else                                                                \
        DECODE_RW(RW, slot, w);                                         \
} while (0)

static void
decode(const void *slot, enum xbd_abi abi, struct wire *w)
{
    uint8_t op = *(const uint8_t *)slot;

    memset(w, 0, sizeof(*w));
    switch (abi) {
    case XBD_ABI_X86_32:
        DECODE_ABI(struct x32_rw, struct x32_discard, struct x32_indirect,
                   op, slot, w);
        break;
    case XBD_ABI_X86_64:
        DECODE_ABI(struct x64_rw, struct x64_discard, struct x64_indirect,
                   op, slot, w);
        break;
    default:
        DECODE_ABI(struct blkif_request, struct blkif_request_discard,
                   struct blkif_request_indirect, op, slot, w);
        break;
    }
}

/* ---- Checks -------------------------------------------------------------- */

#define FAIL(code, text) do { *why = (text); return (code); } while (0)

/* [sector, sector + n) inside the device and aligned to its sector size,
 * without trusting any sum not to wrap. */
static int
check_range(const struct xbd_req_limits *lim, uint64_t sector, uint64_t n,
            const char **why)
{
    uint64_t mask = (lim->sector_size >> XBD_SECTOR_SHIFT) - 1;

    if (sector > lim->sectors || n > lim->sectors - sector)
        FAIL(-EINVAL, "sector range beyond the end of the device");
    if ((sector | n) & mask)
        FAIL(-EINVAL, "sector range not aligned to sector-size");
    return XBD_REQ_OK;
}

/* Fill out->seg from `src` and total the sectors. */
static int
take_segments(const struct seg_wire *src, unsigned int n, struct xbd_req *out,
              const char **why)
{
    uint64_t total = 0;
    unsigned int i;

    for (i = 0; i < n; i++) {
        struct seg_wire s;

        memcpy(&s, &src[i], sizeof(s));
        if (s.last_sect >= XBD_SECTORS_PER_PAGE)
            FAIL(-EINVAL, "segment last_sect beyond the page");
        if (s.first_sect > s.last_sect)
            FAIL(-EINVAL, "segment first_sect > last_sect");
        out->seg[i].gref = s.gref;
        out->seg[i].first_sect = s.first_sect;
        out->seg[i].last_sect = s.last_sect;
        total += (uint64_t)(s.last_sect - s.first_sect + 1);
    }
    out->nr_segments = n;
    out->nr_sectors = total;
    return XBD_REQ_OK;
}

static int
parse_rw(const struct wire *w, const struct xbd_req_limits *lim,
         struct xbd_req *out, const char **why)
{
    int r;

    if (w->nr_segments == 0) {
        /* A flush or barrier may carry no data; a read or write must. */
        if (out->kind == XBD_REQ_FLUSH || out->kind == XBD_REQ_BARRIER)
            return XBD_REQ_OK;
        FAIL(-EINVAL, "read/write with no segments");
    }
    if (w->nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST)
        FAIL(-EINVAL, "too many segments for a direct request");
    if (out->kind != XBD_REQ_READ && lim->read_only)
        FAIL(-EINVAL, "write to a read-only device");
    r = take_segments(w->seg, w->nr_segments, out, why);
    if (r < 0)
        return r;
    out->sector = w->sector;
    return check_range(lim, out->sector, out->nr_sectors, why);
}

static int
parse_discard(const struct wire *w, const struct xbd_req_limits *lim,
              struct xbd_req *out, const char **why)
{
    if (lim->read_only)
        FAIL(-EINVAL, "discard on a read-only device");
    /* The secure flag is ignored unless discard-secure was advertised. */
    out->secure = (w->flag & BLKIF_DISCARD_SECURE) && lim->discard_secure;
    out->sector = w->sector;
    out->nr_sectors = w->nr_sectors;
    if (w->nr_sectors == 0)
        FAIL(-EINVAL, "discard of zero sectors");
    return check_range(lim, w->sector, w->nr_sectors, why);
}

static int
parse_indirect(const struct wire *w, const struct xbd_req_limits *lim,
               struct xbd_req *out, const char **why)
{
    unsigned int pages;

    /* The response echoes the inner operation, as Linux blkback does:
     * Linux blkfront disables the device on a response that says
     * BLKIF_OP_INDIRECT ("response has wrong operation (6 instead of 0)",
     * seen in tests/xen-lane). */
    out->operation = w->flag;
    if (lim->max_indirect == 0)
        FAIL(-EOPNOTSUPP, "indirect request, but indirect segments not advertised");
    if (w->flag == BLKIF_OP_READ)
        out->kind = XBD_REQ_READ;
    else if (w->flag == BLKIF_OP_WRITE)
        out->kind = XBD_REQ_WRITE;
    else
        FAIL(-EINVAL, "indirect request with an inner operation other than read/write");
    out->indirect = true;
    if (w->nr_segments == 0)
        FAIL(-EINVAL, "indirect request with no segments");
    if (w->nr_segments > lim->max_indirect)
        FAIL(-EINVAL, "indirect request with more segments than advertised");
    if (out->kind == XBD_REQ_WRITE && lim->read_only)
        FAIL(-EINVAL, "write to a read-only device");
    pages = (w->nr_segments + XBD_SEGS_PER_INDIRECT_PAGE - 1) /
            XBD_SEGS_PER_INDIRECT_PAGE;
    if (pages > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST)
        FAIL(-EINVAL, "indirect request needs too many indirect pages");
    out->nr_segments = w->nr_segments;
    out->nr_indirect_pages = pages;
    memcpy(out->indirect_grefs, w->indirect_grefs, sizeof(out->indirect_grefs));
    out->sector = w->sector;
    return XBD_REQ_NEED_INDIRECT;
}

int
xbd_req_parse(const void *slot, enum xbd_abi abi,
              const struct xbd_req_limits *lim, struct xbd_req *out,
              const char **why)
{
    struct xbd_seg *seg = out->seg;
    struct wire w;

    decode(slot, abi, &w);
    memset(out, 0, sizeof(*out));
    out->seg = seg;
    out->id = w.id;
    out->operation = w.operation;
    *why = "";

    switch (w.operation) {
    case BLKIF_OP_READ:
        out->kind = XBD_REQ_READ;
        return parse_rw(&w, lim, out, why);
    case BLKIF_OP_WRITE:
        out->kind = XBD_REQ_WRITE;
        return parse_rw(&w, lim, out, why);
    case BLKIF_OP_WRITE_BARRIER:
        if (!lim->flush)
            FAIL(-EOPNOTSUPP, "barrier, but feature-barrier not advertised");
        out->kind = XBD_REQ_BARRIER;
        return parse_rw(&w, lim, out, why);
    case BLKIF_OP_FLUSH_DISKCACHE:
        if (!lim->flush)
            FAIL(-EOPNOTSUPP, "flush, but feature-flush-cache not advertised");
        out->kind = XBD_REQ_FLUSH;
        return parse_rw(&w, lim, out, why);
    case BLKIF_OP_DISCARD:
        if (!lim->discard)
            FAIL(-EOPNOTSUPP, "discard, but feature-discard not advertised");
        out->kind = XBD_REQ_DISCARD;
        return parse_discard(&w, lim, out, why);
    case BLKIF_OP_INDIRECT:
        return parse_indirect(&w, lim, out, why);
    default:
        FAIL(-EOPNOTSUPP, "unknown operation");
    }
}

int
xbd_req_parse_indirect(const void *pages, const struct xbd_req_limits *lim,
                       struct xbd_req *out, const char **why)
{
    int r;

    *why = "";
    if (!out->indirect || out->nr_segments == 0 ||
        out->nr_segments > lim->max_indirect)
        FAIL(-EINVAL, "not a parsed indirect request");
    /* Segments are 8-byte records packed across the indirect pages. */
    r = take_segments(pages, out->nr_segments, out, why);
    if (r < 0)
        return r;
    return check_range(lim, out->sector, out->nr_sectors, why);
}
