/* libxbdfront internals — checking, splitting and building requests, and
 * reading what the backend published.  See xbdf-req.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbdf-req.h"

#define SECTOR 512u

/* ======================================================================
 * Checks and splitting
 * ====================================================================== */

int
xbdf_check_rw(const struct xbdf_geom *g, bool write, uint64_t offset,
              uint64_t len, char *why, size_t whylen)
{
    if (len == 0) {
        snprintf(why, whylen, "zero-length request");
        return -EINVAL;
    }
    if (offset % g->sector_size != 0 || len % g->sector_size != 0) {
        snprintf(why, whylen, "offset %" PRIu64 " and length %" PRIu64
                 " must be multiples of the sector size %" PRIu32,
                 offset, len, g->sector_size);
        return -EINVAL;
    }
    if (offset > g->size || len > g->size - offset) {
        snprintf(why, whylen, "request [%" PRIu64 ", +%" PRIu64 ") goes "
                 "beyond the end of the device (%" PRIu64 " bytes)",
                 offset, len, g->size);
        return -EINVAL;
    }
    if (write && g->readonly) {
        snprintf(why, whylen, "the device is read-only");
        return -EROFS;
    }
    return 0;
}

unsigned int
xbdf_max_segs(const struct xbdf_geom *g, uint8_t op)
{
    /* Only READ and WRITE may go through BLKIF_OP_INDIRECT. */
    if ((op == BLKIF_OP_READ || op == BLKIF_OP_WRITE) &&
        g->max_indirect_segs > BLKIF_MAX_SEGMENTS_PER_REQUEST)
        return g->max_indirect_segs;
    return BLKIF_MAX_SEGMENTS_PER_REQUEST;
}

uint64_t
xbdf_split_len(const struct xbdf_geom *g, uint8_t op, uint32_t page_off,
               uint64_t remaining)
{
    uint64_t cap = (uint64_t)xbdf_max_segs(g, op) * XBD_PAGE_SIZE -
                   (page_off % XBD_PAGE_SIZE);

    if (remaining <= cap)
        return remaining;
    /* Every piece stays a whole number of logical sectors: the backend
     * checks each request's alignment.  0 when one sector does not fit. */
    return cap - cap % g->sector_size;
}

/* ======================================================================
 * Building
 * ====================================================================== */

/* Fill the segments of `len` bytes starting `page_off` into the first page. */
static void
fill_segs(struct blkif_request_segment *seg, unsigned int nseg,
          const uint32_t *grefs, uint32_t page_off, uint32_t len)
{
    uint64_t pos = page_off;            /* byte offset from first page start */
    uint64_t end = (uint64_t)page_off + len;

    for (unsigned int i = 0; i < nseg; i++) {
        uint64_t pstart = (uint64_t)i * XBD_PAGE_SIZE;
        uint64_t s = pos > pstart ? pos : pstart;
        uint64_t e = end < pstart + XBD_PAGE_SIZE ? end : pstart + XBD_PAGE_SIZE;

        seg[i].gref = grefs[i];
        seg[i].first_sect = (uint8_t)((s - pstart) / SECTOR);
        seg[i].last_sect = (uint8_t)((e - pstart - 1) / SECTOR);
    }
}

int
xbdf_build_rw(union xbdf_req *req, const struct xbdf_rw_desc *d,
              char *why, size_t whylen)
{
    unsigned int nseg;

    if (d->len == 0 || d->len % SECTOR != 0 || d->page_off % SECTOR != 0 ||
        d->page_off >= XBD_PAGE_SIZE || d->offset % SECTOR != 0) {
        snprintf(why, whylen, "request of %" PRIu32 " bytes at page offset "
                 "%" PRIu32 ", device offset %" PRIu64 " is not in whole "
                 "512-byte sectors", d->len, d->page_off, d->offset);
        return -EINVAL;
    }
    if (d->op != BLKIF_OP_READ && d->op != BLKIF_OP_WRITE &&
        d->op != BLKIF_OP_WRITE_BARRIER && d->op != BLKIF_OP_FLUSH_DISKCACHE) {
        snprintf(why, whylen, "operation %u carries no data", d->op);
        return -EINVAL;
    }
    nseg = xbdf_pages_spanned(d->page_off, d->len);
    memset(req, 0, sizeof(*req));
    if (nseg <= BLKIF_MAX_SEGMENTS_PER_REQUEST) {
        req->rw.operation = d->op;
        req->rw.nr_segments = (uint8_t)nseg;
        req->rw.handle = d->handle;
        req->rw.id = d->id;
        req->rw.sector_number = d->offset / SECTOR;
        fill_segs(req->rw.seg, nseg, d->grefs, d->page_off, d->len);
        return 0;
    }
    if ((d->op != BLKIF_OP_READ && d->op != BLKIF_OP_WRITE) ||
        d->ind_pages == NULL || d->ind_grefs == NULL ||
        nseg > XBD_MAX_INDIRECT_SEGMENTS) {
        snprintf(why, whylen, "%u segments need an indirect READ or WRITE "
                 "with indirect pages (at most %u segments)", nseg,
                 (unsigned int)XBD_MAX_INDIRECT_SEGMENTS);
        return -EINVAL;
    }
    req->indirect.operation = BLKIF_OP_INDIRECT;
    req->indirect.indirect_op = d->op;
    req->indirect.nr_segments = (uint16_t)nseg;
    req->indirect.id = d->id;
    req->indirect.sector_number = d->offset / SECTOR;
    req->indirect.handle = d->handle;
    for (unsigned int i = 0;
         i < (nseg + XBD_SEGS_PER_INDIRECT_PAGE - 1) / XBD_SEGS_PER_INDIRECT_PAGE;
         i++)
        req->indirect.indirect_grefs[i] = d->ind_grefs[i];
    /* The segment pages are ours (granted read-only): written here, never
     * read back.  Page by page: they need not be adjacent in memory. */
    for (unsigned int first = 0; first < nseg;
         first += XBD_SEGS_PER_INDIRECT_PAGE) {
        unsigned int n = nseg - first < XBD_SEGS_PER_INDIRECT_PAGE
                         ? nseg - first : XBD_SEGS_PER_INDIRECT_PAGE;
        uint64_t skip = (uint64_t)first * XBD_PAGE_SIZE;
        uint64_t start = first == 0 ? d->page_off : 0;
        uint64_t end = (uint64_t)d->page_off + d->len - skip;

        fill_segs(d->ind_pages[first / XBD_SEGS_PER_INDIRECT_PAGE], n,
                  d->grefs + first, (uint32_t)start, (uint32_t)(end - start));
    }
    return 0;
}

int
xbdf_build_flush(union xbdf_req *req, uint8_t op, uint16_t handle,
                 uint64_t id)
{
    if (op != BLKIF_OP_FLUSH_DISKCACHE && op != BLKIF_OP_WRITE_BARRIER)
        return -EINVAL;
    memset(req, 0, sizeof(*req));
    req->rw.operation = op;
    req->rw.nr_segments = 0;
    req->rw.handle = handle;
    req->rw.id = id;
    return 0;
}

int
xbdf_flush_op(const struct xbdf_geom *g)
{
    if (g->flush)
        return BLKIF_OP_FLUSH_DISKCACHE;
    if (g->barrier)
        return BLKIF_OP_WRITE_BARRIER;
    return -EOPNOTSUPP;
}

int
xbdf_discard_range(const struct xbdf_geom *g, bool secure, uint64_t offset,
                   uint64_t len, uint64_t *out_offset, uint64_t *out_len,
                   char *why, size_t whylen)
{
    uint64_t gran, align, s, e;
    int err;

    if (!g->discard || (secure && !g->discard_secure)) {
        snprintf(why, whylen, "the backend does not offer %sdiscard",
                 secure ? "secure " : "");
        return -EOPNOTSUPP;
    }
    err = xbdf_check_rw(g, true, offset, len, why, whylen);
    if (err < 0)
        return err;
    gran = g->discard_granularity ? g->discard_granularity : g->sector_size;
    align = g->discard_alignment % gran;
    /* Extents start at align + k * gran: round the start up to one and the
     * end down to one. */
    s = offset < align ? align : align + (offset - align + gran - 1) / gran * gran;
    e = offset + len;
    e = e < align ? 0 : align + (e - align) / gran * gran;
    *out_offset = s;
    *out_len = e > s ? e - s : 0;
    return 0;
}

int
xbdf_build_discard(union xbdf_req *req, uint16_t handle, uint64_t id,
                   uint64_t offset, uint64_t len, bool secure)
{
    if (len == 0 || offset % SECTOR != 0 || len % SECTOR != 0)
        return -EINVAL;
    memset(req, 0, sizeof(*req));
    req->discard.operation = BLKIF_OP_DISCARD;
    req->discard.flag = secure ? BLKIF_DISCARD_SECURE : 0;
    req->discard.handle = handle;
    req->discard.id = id;
    req->discard.sector_number = offset / SECTOR;
    req->discard.nr_sectors = len / SECTOR;
    return 0;
}

/* ======================================================================
 * What the backend published
 * ====================================================================== */

/* Read an optional u32 node: absent → def; malformed → -EPROTO. */
static int
read_u32(xbdf_read_fn rd, void *arg, const char *key, uint32_t def,
         uint32_t *out, char *why, size_t whylen)
{
    char *v = rd(arg, key);
    int err;

    if (v == NULL) {
        *out = def;
        return 0;
    }
    err = xbd_parse_u32_range(v, 0, UINT32_MAX, out);
    if (err < 0)
        snprintf(why, whylen, "backend node %s = \"%.40s\" is not a decimal "
                 "32-bit number", key, v);
    free(v);
    return err < 0 ? -EPROTO : 0;
}

static int
read_bool(xbdf_read_fn rd, void *arg, const char *key, bool *out,
          char *why, size_t whylen)
{
    char *v = rd(arg, key);
    int err;

    if (v == NULL) {
        *out = false;
        return 0;
    }
    err = xbd_parse_bool(v, out);
    if (err < 0)
        snprintf(why, whylen, "backend node %s = \"%.40s\" is not 0 or 1",
                 key, v);
    free(v);
    return err < 0 ? -EPROTO : 0;
}

int
xbdf_read_limits(xbdf_read_fn rd, void *arg, struct xbdf_be_limits *out,
                 char *why, size_t whylen)
{
    uint32_t order, pages, queues, indirect;
    int err;

    memset(out, 0, sizeof(*out));
    if ((err = read_u32(rd, arg, XBDK_MAX_RING_PAGE_ORDER, 0, &order, why,
                        whylen)) < 0 ||
        (err = read_u32(rd, arg, XBDK_MAX_RING_PAGES, 1, &pages, why,
                        whylen)) < 0 ||
        (err = read_u32(rd, arg, XBDK_MULTI_QUEUE_MAX_QUEUES, 1, &queues, why,
                        whylen)) < 0 ||
        (err = read_u32(rd, arg, XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, 0,
                        &indirect, why, whylen)) < 0 ||
        (err = read_bool(rd, arg, XBDK_FEATURE_PERSISTENT, &out->persistent,
                         why, whylen)) < 0)
        return err;
    if (!xbd_is_pow2(pages)) {
        snprintf(why, whylen, "backend node %s = %" PRIu32 " is not a power "
                 "of two", XBDK_MAX_RING_PAGES, pages);
        return -EPROTO;
    }
    /* Either scheme may be the one the backend speaks: the larger wins
     * (blkif.h: max = MAX(ffs(max-ring-pages) - 1, max-ring-page-order)),
     * then our own ceiling. */
    if (xbd_log2(pages) > order)
        order = xbd_log2(pages);
    out->max_ring_order = order > XBD_RING_ORDER_LIMIT ? XBD_RING_ORDER_LIMIT
                                                       : order;
    if (queues == 0)
        queues = 1;         /* nonsense, but "one queue" is always safe */
    out->max_queues = queues > XBDF_MAX_QUEUES ? XBDF_MAX_QUEUES : queues;
    /* Fewer than 12 segments is no better than a direct request. */
    if (indirect <= BLKIF_MAX_SEGMENTS_PER_REQUEST)
        indirect = 0;
    out->max_indirect_segs = indirect > XBD_MAX_INDIRECT_SEGMENTS
                                 ? XBD_MAX_INDIRECT_SEGMENTS : indirect;
    return 0;
}

int
xbdf_read_props(xbdf_read_fn rd, void *arg, struct xbdf_geom *g,
                uint32_t *info_out, char *why, size_t whylen)
{
    uint64_t sectors;
    uint32_t ssize, info, gran, align;
    char *v;
    int err;

    v = rd(arg, XBDK_SECTORS);
    if (v == NULL) {
        snprintf(why, whylen, "backend is Connected but has no %s node",
                 XBDK_SECTORS);
        return -EPROTO;
    }
    err = xbd_parse_u64(v, &sectors);
    if (err < 0)
        snprintf(why, whylen, "backend node %s = \"%.40s\" is not a decimal "
                 "64-bit number", XBDK_SECTORS, v);
    free(v);
    if (err < 0)
        return -EPROTO;
    if (sectors == 0 || sectors > UINT64_MAX / SECTOR) {
        snprintf(why, whylen, "backend node %s = %" PRIu64 " is not a "
                 "usable size", XBDK_SECTORS, sectors);
        return -EPROTO;
    }
    if ((err = read_u32(rd, arg, XBDK_SECTOR_SIZE, SECTOR, &ssize, why,
                        whylen)) < 0 ||
        (err = read_u32(rd, arg, XBDK_INFO, 0, &info, why, whylen)) < 0 ||
        (err = read_bool(rd, arg, XBDK_FEATURE_FLUSH_CACHE, &g->flush, why,
                         whylen)) < 0 ||
        (err = read_bool(rd, arg, XBDK_FEATURE_BARRIER, &g->barrier, why,
                         whylen)) < 0 ||
        (err = read_bool(rd, arg, XBDK_FEATURE_DISCARD, &g->discard, why,
                         whylen)) < 0)
        return err;
    if (!xbd_is_pow2(ssize) || ssize < SECTOR || ssize > 65536) {
        snprintf(why, whylen, "backend node %s = %" PRIu32 " is not a power "
                 "of two in [512, 65536]", XBDK_SECTOR_SIZE, ssize);
        return -EPROTO;
    }
    if (sectors * SECTOR % ssize != 0) {
        snprintf(why, whylen, "backend size %" PRIu64 " sectors of 512 bytes "
                 "is not a multiple of its %s %" PRIu32, sectors,
                 XBDK_SECTOR_SIZE, ssize);
        return -EPROTO;
    }
    g->size = sectors * SECTOR;
    g->sector_size = ssize;
    g->readonly = (info & VDISK_READONLY) != 0;
    g->discard_secure = false;
    g->discard_granularity = ssize;
    g->discard_alignment = 0;
    if (g->discard) {
        if ((err = read_u32(rd, arg, XBDK_DISCARD_GRANULARITY, ssize, &gran,
                            why, whylen)) < 0 ||
            (err = read_u32(rd, arg, XBDK_DISCARD_ALIGNMENT, 0, &align, why,
                            whylen)) < 0 ||
            (err = read_bool(rd, arg, XBDK_DISCARD_SECURE, &g->discard_secure,
                             why, whylen)) < 0)
            return err;
        /* A granularity that is not a whole number of sectors cannot be
         * honoured: treat it as the sector size.  An alignment is an
         * offset within one granule. */
        if (gran < ssize || gran % ssize != 0)
            gran = ssize;
        g->discard_granularity = gran;
        g->discard_alignment = (align % gran) / ssize * ssize;
    }
    *info_out = info;
    return 0;
}
