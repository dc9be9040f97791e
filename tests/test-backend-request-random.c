/* A fuzz target for backend/request.c: any bytes as a ring slot (and as
 * indirect pages), any ABI, any limits; whatever parses must satisfy the
 * invariants the data path relies on, or the target aborts.
 *
 * This file is the make-check driver: it feeds the target seeded random
 * and mutated valid inputs and prints TAP.  (With -DXBD_LIBFUZZER it is
 * a bare target; the harness CI fuzzes is tests/fuzz/fuzz-backend-request.c.)
 *
 * Input layout: byte 0 picks the ABI and limits, the next
 * XBD_REQ_SLOT_MAX bytes are the slot, the rest (zero-padded) the
 * indirect pages.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static struct xbd_seg segs[XBD_MAX_INDIRECT_SEGMENTS];
static unsigned long accepted, accepted_indirect;  /* for the check driver */
static uint8_t pages[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * XBD_PAGE_SIZE];

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "invariant broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
    abort(); } } while (0)

static void
check_ok(const struct xbd_req *r, const struct xbd_req_limits *lim)
{
    uint64_t total = 0;

    CHECK(r->nr_sectors <= lim->sectors);
    CHECK(r->sector <= lim->sectors - r->nr_sectors || r->nr_sectors == 0);
    if (r->kind == XBD_REQ_DISCARD) {
        CHECK(lim->discard && !lim->read_only && r->nr_sectors > 0);
        CHECK(!r->secure || lim->discard_secure);
        return;
    }
    if (r->kind != XBD_REQ_READ)
        CHECK(!lim->read_only || r->nr_segments == 0);
    if (r->kind == XBD_REQ_FLUSH || r->kind == XBD_REQ_BARRIER)
        CHECK(lim->flush);
    CHECK(r->nr_segments <= (r->indirect ? lim->max_indirect
                                         : BLKIF_MAX_SEGMENTS_PER_REQUEST));
    for (unsigned int i = 0; i < r->nr_segments; i++) {
        CHECK(r->seg[i].first_sect <= r->seg[i].last_sect);
        CHECK(r->seg[i].last_sect < XBD_SECTORS_PER_PAGE);
        total += (uint64_t)(r->seg[i].last_sect - r->seg[i].first_sect + 1);
    }
    CHECK(total == r->nr_sectors);
    CHECK((r->nr_sectors & ((lim->sector_size >> 9) - 1)) == 0);
    CHECK(r->nr_segments > 0 || r->kind == XBD_REQ_FLUSH || r->kind == XBD_REQ_BARRIER);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = { 0, 1, 8, 2048, 1ull << 31, ~0ull };
    struct xbd_req_limits lim;
    struct xbd_req r;
    uint8_t slot[XBD_REQ_SLOT_MAX];
    const char *why = NULL;
    uint8_t sel;
    int rc;

    if (size < 1 + sizeof(slot))
        return 0;
    sel = data[0];
    memcpy(slot, data + 1, sizeof(slot));
    memset(&lim, 0, sizeof(lim));
    lim.sectors = sizes[(sel >> 2) % 6];
    lim.sector_size = sel & 0x10 ? 4096 : 512;
    lim.max_indirect = sel & 0x20 ? 4096 : sel & 0x40 ? 256 : 0;
    lim.read_only = sel & 0x80;
    lim.flush = lim.discard = (sel & 3) != 1;
    lim.discard_secure = (sel & 3) == 2;
    r.seg = segs;
    rc = xbd_req_parse(slot, (enum xbd_abi)((sel & 3) % 3), &lim, &r, &why);
    CHECK(why != NULL);
    CHECK(rc == XBD_REQ_OK || rc == XBD_REQ_NEED_INDIRECT || rc == -EINVAL ||
          rc == -EOPNOTSUPP);
    /* echoed: the wire opcode, or for an indirect request its inner one */
    CHECK(r.operation == (slot[0] == BLKIF_OP_INDIRECT ? slot[1] : slot[0]));
    if (rc == XBD_REQ_NEED_INDIRECT) {
        size_t rest = size - 1 - sizeof(slot);

        CHECK(r.indirect && r.nr_indirect_pages >= 1 &&
              r.nr_indirect_pages <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
        CHECK(r.nr_segments <= (size_t)r.nr_indirect_pages * XBD_SEGS_PER_INDIRECT_PAGE);
        memset(pages, 0, sizeof(pages));
        memcpy(pages, data + 1 + sizeof(slot), rest < sizeof(pages) ? rest : sizeof(pages));
        rc = xbd_req_parse_indirect(pages, &lim, &r, &why);
        CHECK(rc == XBD_REQ_OK || rc == -EINVAL);
    }
    if (rc == XBD_REQ_OK) {
        check_ok(&r, &lim);
        accepted++;
        accepted_indirect += r.indirect;
    }
    return 0;
}

#ifndef XBD_LIBFUZZER
/* ---- The make-check driver ------------------------------------------------- */

#include "tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int
main(void)
{
    static uint8_t in[1 + XBD_REQ_SLOT_MAX + 2 * XBD_PAGE_SIZE];
    unsigned long runs = 0;

    /* Uniformly random bytes: mostly rejections. */
    for (int i = 0; i < 50000; i++, runs++) {
        for (size_t k = 0; k < 1 + XBD_REQ_SLOT_MAX + 64; k++)
            in[k] = (uint8_t)next();
        LLVMFuzzerTestOneInput(in, 1 + XBD_REQ_SLOT_MAX + 64);
    }
    /* Near-valid: small opcodes, counts and sectors, in-page segments (in
     * both ABIs' segment positions and in the indirect pages), so that
     * the accepting paths run too. */
    for (int i = 0; i < 30000; i++, runs++) {
        uint8_t *slot = in + 1, *pg = in + 1 + XBD_REQ_SLOT_MAX;

        for (size_t k = 0; k < 1 + XBD_REQ_SLOT_MAX; k++)
            in[k] = (uint8_t)next();
        for (size_t k = 20; k < XBD_REQ_SLOT_MAX; k++)
            if (k % 8 == 0 || k % 8 == 1 || k % 8 == 4 || k % 8 == 5)
                slot[k] &= 7;
        /* Indirect segments (only as many as slot[2..3] can name). */
        for (size_t k = 0; k < 768 * 8; k++) {
            if (k % 8 == 4)
                pg[k] = (uint8_t)(next() & 7);
            else if (k % 8 == 5)                   /* last_sect: mostly 7 */
                pg[k] = next() % 4096 ? 7 : (uint8_t)next();
            else if (k % 8 == 0)
                pg[k] = (uint8_t)k;
        }
        slot[0] = (uint8_t)(next() % 8);           /* operation */
        slot[1] = (uint8_t)(next() % 13);          /* nr_segments, flag, inner op */
        if (slot[0] == BLKIF_OP_INDIRECT)
            slot[1] = (uint8_t)(next() % 3);
        slot[3] = (uint8_t)(next() % 3);           /* indirect nr_segments: < 768 */
        memset(slot + 12, 0, 8);                   /* sectors: small */
        slot[12] = (uint8_t)next();
        slot[16] = next() & 1 ? (uint8_t)next() : 0;
        slot[17] = slot[18] = slot[19] = 0;
        if (slot[0] == BLKIF_OP_DISCARD) {
            memset(slot + 20, 0, 12);
            slot[20] = (uint8_t)next();
            slot[24] = (uint8_t)next();
        }
        LLVMFuzzerTestOneInput(in, sizeof(in));
    }
    ok(1, "%lu inputs parsed, every accepted request met the invariants", runs);
    ok(accepted > 200 && accepted_indirect > 50,
       "the accepting paths ran: %lu requests accepted, %lu of them indirect",
       accepted, accepted_indirect);
    return done_testing();
}
#endif
