/* Fuzz harness: the backend's copy-and-validate path (backend/request.c)
 * fed arbitrary ring contents, in all three ABIs, with direct, discard and
 * indirect layouts.
 *
 * Input: byte 0 chooses the ABI and the device's limits, bytes 1..8 the
 * device size, then one ring slot (XBD_REQ_SLOT_MAX bytes, zero-padded),
 * then the indirect pages (zero-padded) when the request asks for them.
 * The slot is placed in a real one-page ring at a chosen index and copied
 * out with xbd_req_copy, as the dataplane does.
 *
 * Checked for every accepted request — the promises the dataplane relies
 * on before it touches a grant or the backing:
 *   - the operation is allowed by the limits (no write on a read-only
 *     device, no flush/discard unless advertised, indirect within limits);
 *   - every segment has first_sect <= last_sect <= 7;
 *   - the sectors add up, lie inside the device without 64-bit wrap, and
 *     are aligned to the logical sector size.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned int indirect_limits[] = { 0, 8, 32, 256, 512, 4096 };

static void
check(const struct xbd_req *r, const struct xbd_req_limits *lim)
{
    uint64_t total = 0;

    if (lim->read_only && (r->kind == XBD_REQ_WRITE || r->kind == XBD_REQ_DISCARD ||
                           (r->kind != XBD_REQ_READ && r->nr_segments > 0)))
        abort();
    if ((r->kind == XBD_REQ_FLUSH || r->kind == XBD_REQ_BARRIER) && !lim->flush)
        abort();
    if (r->kind == XBD_REQ_DISCARD) {
        if (!lim->discard || (r->secure && !lim->discard_secure))
            abort();
        if (r->sector + r->nr_sectors < r->sector ||
            r->sector + r->nr_sectors > lim->sectors)
            abort();
        return;
    }
    if (r->indirect && (lim->max_indirect == 0 || r->nr_segments > lim->max_indirect))
        abort();
    if (!r->indirect && r->nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST)
        abort();
    for (unsigned int i = 0; i < r->nr_segments; i++) {
        if (r->seg[i].first_sect > r->seg[i].last_sect || r->seg[i].last_sect > 7)
            abort();
        total += (uint64_t)(r->seg[i].last_sect - r->seg[i].first_sect + 1);
    }
    if (total != r->nr_sectors)
        abort();
    if ((r->kind == XBD_REQ_READ || r->kind == XBD_REQ_WRITE) && r->nr_segments == 0)
        abort();
    if (r->nr_sectors > 0) {
        if (r->sector + r->nr_sectors < r->sector ||
            r->sector + r->nr_sectors > lim->sectors)
            abort();
        uint64_t per = lim->sector_size / 512u;
        if (r->sector % per != 0 || r->nr_sectors % per != 0)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct xbd_seg segs[XBD_MAX_INDIRECT_SEGMENTS];
    uint8_t slot_in[XBD_REQ_SLOT_MAX], slot[XBD_REQ_SLOT_MAX];
    struct xbd_req_limits lim;
    struct xbd_req req;
    const char *why = NULL;
    uint64_t sectors = 0;

    if (size < 9)
        return 0;
    uint8_t cfg = data[0];
    memcpy(&sectors, data + 1, 8);
    data += 9;
    size -= 9;

    enum xbd_abi abi = (enum xbd_abi)(cfg % 3);
    memset(&lim, 0, sizeof(lim));
    lim.sectors = sectors;
    lim.sector_size = (cfg & 0x04) ? 4096 : 512;
    lim.read_only = (cfg & 0x08) != 0;
    lim.flush = (cfg & 0x10) != 0;
    lim.discard = (cfg & 0x20) != 0;
    lim.discard_secure = lim.discard && (cfg & 0x40);
    lim.max_indirect = indirect_limits[(cfg >> 4) % 6];
    if (lim.max_indirect > XBD_MAX_INDIRECT_SEGMENTS)
        lim.max_indirect = XBD_MAX_INDIRECT_SEGMENTS;

    /* Put the slot into a real one-page ring at index idx and copy it out
     * exactly as the dataplane does. */
    size_t n = size < sizeof(slot_in) ? size : sizeof(slot_in);
    memset(slot_in, 0, sizeof(slot_in));
    memcpy(slot_in, data, n);
    data += n;
    size -= n;

    unsigned int ents = xbd_abi_ring_entries(abi, 1);
    uint32_t idx = (uint32_t)cfg * 7u;
    uint8_t *ring = calloc(1, XBD_PAGE_SIZE);
    if (ring == NULL)
        return 0;
    size_t esz = xbd_abi_entry_size(abi);
    size_t off = offsetof(struct blkif_sring, ring) + (size_t)(idx % ents) * esz;
    memcpy(ring + off, slot_in, esz < sizeof(slot_in) ? esz : sizeof(slot_in));
    xbd_req_copy(ring, ents, abi, idx, slot);

    memset(&req, 0, sizeof(req));
    req.seg = segs;
    int r = xbd_req_parse(slot, abi, &lim, &req, &why);
    if (r == XBD_REQ_NEED_INDIRECT) {
        if (req.nr_indirect_pages == 0 ||
            req.nr_indirect_pages > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST)
            abort();
        size_t plen = (size_t)req.nr_indirect_pages * XBD_PAGE_SIZE;
        uint8_t *pages = calloc(1, plen);
        if (pages != NULL) {
            memcpy(pages, data, size < plen ? size : plen);
            r = xbd_req_parse_indirect(pages, &lim, &req, &why);
            free(pages);
        }
    }
    if (r == XBD_REQ_OK)
        check(&req, &lim);
    else if (r != -EINVAL && r != -EOPNOTSUPP && r != XBD_REQ_NEED_INDIRECT)
        abort();
    else if (r < 0 && why == NULL)
        abort();                /* every refusal says why */

    /* The response goes back into the same slot: within the ring, padding
     * zeroed. */
    xbd_rsp_write(ring, ents, abi, idx, req.id, req.operation, BLKIF_RSP_OKAY);
    free(ring);
    return 0;
}
