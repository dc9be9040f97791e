/* Unit tests for request checks, splitting and building
 * (frontend/xbdf-req.c). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-req.h"
#include "tap.h"

static char why[256];

static struct xbdf_geom
geom(uint32_t ssize, uint32_t indirect)
{
    struct xbdf_geom g;

    memset(&g, 0, sizeof(g));
    g.size = UINT64_C(1) << 30;         /* 1 GiB */
    g.sector_size = ssize;
    g.max_indirect_segs = indirect;
    return g;
}

static void
test_checks(void)
{
    struct xbdf_geom g = geom(512, 0), g4k = geom(4096, 0);

    is_int(xbdf_check_rw(&g, false, 0, 512, why, sizeof(why)), 0, "512 at 0");
    is_int(xbdf_check_rw(&g, false, 0, 0, why, sizeof(why)), -EINVAL, "zero length");
    is_int(xbdf_check_rw(&g, false, 100, 512, why, sizeof(why)), -EINVAL,
           "unaligned offset");
    is_int(xbdf_check_rw(&g, false, g.size - 512, 512, why, sizeof(why)), 0,
           "the last sector");
    is_int(xbdf_check_rw(&g, false, g.size - 512, 1024, why, sizeof(why)), -EINVAL,
           "crossing the end");
    is_int(xbdf_check_rw(&g, false, g.size, 512, why, sizeof(why)), -EINVAL,
           "at the end");
    is_int(xbdf_check_rw(&g, false, UINT64_MAX - 511, 1024, why, sizeof(why)),
           -EINVAL, "64-bit wrap");
    is_int(xbdf_check_rw(&g4k, false, 512, 4096, why, sizeof(why)), -EINVAL,
           "4K sectors: 512-aligned offset refused");
    is_int(xbdf_check_rw(&g4k, false, 4096, 512, why, sizeof(why)), -EINVAL,
           "4K sectors: 512-byte length refused");
    ok(strstr(why, "sector size 4096") != NULL, "message names the sector size");
    is_int(xbdf_check_rw(&g4k, false, 8192, 4096, why, sizeof(why)), 0,
           "4K sectors: aligned request");
    g.readonly = true;
    is_int(xbdf_check_rw(&g, true, 0, 512, why, sizeof(why)), -EROFS,
           "write to read-only");
    is_int(xbdf_check_rw(&g, false, 0, 512, why, sizeof(why)), 0,
           "read from read-only");
}

static void
test_split(void)
{
    struct xbdf_geom direct = geom(512, 0), ind = geom(512, 256);

    is_int(xbdf_max_segs(&direct, BLKIF_OP_READ), 11, "direct: 11 segments");
    is_int(xbdf_max_segs(&ind, BLKIF_OP_WRITE), 256, "indirect: 256 segments");
    is_int(xbdf_max_segs(&ind, BLKIF_OP_WRITE_BARRIER), 11,
           "barrier never indirect: 11 segments");
    is_int(xbdf_split_len(&direct, BLKIF_OP_READ, 0, 1 << 20), 11 * 4096,
           "1 MiB direct: first piece 44 KiB");
    is_int(xbdf_split_len(&direct, BLKIF_OP_READ, 512, 1 << 20), 11 * 4096 - 512,
           "unaligned start: the piece ends on a page boundary");
    is_int(xbdf_split_len(&direct, BLKIF_OP_READ, 0, 4096), 4096, "small: whole");
    is_int(xbdf_split_len(&ind, BLKIF_OP_READ, 0, 1 << 20), 1 << 20,
           "1 MiB with 256 indirect segments: one piece");
    is_int(xbdf_split_len(&ind, BLKIF_OP_READ, 0, 3 << 20), 1 << 20,
           "3 MiB: 1 MiB pieces");

    /* Splitting a whole request covers it exactly with valid pieces. */
    {
        uint64_t left = 300 * 1024 + 512, page_off = 1024, pieces = 0, sum = 0;
        int fine = 1;

        while (left > 0) {
            uint64_t n = xbdf_split_len(&direct, BLKIF_OP_WRITE,
                                        (uint32_t)page_off, left);
            if (n == 0 || xbdf_pages_spanned((uint32_t)page_off, n) > 11)
                fine = 0;
            sum += n;
            left -= n;
            page_off = (page_off + n) % XBD_PAGE_SIZE;
            pieces++;
            if (pieces > 100)
                break;
        }
        ok(fine, "every piece fits in 11 pages");
        is_int(sum, 300 * 1024 + 512, "the pieces cover the request");
        is_int(pieces, 7, "300.5 KiB at page offset 1 KiB: 7 pieces");
    }
}

static void
test_build(void)
{
    union xbdf_req req;
    uint32_t grefs[700], igrefs[8] = { 900, 901 };
    /* Two indirect pages in one allocation, handed over in reverse order:
     * the builder must follow the page pointers, not assume adjacency. */
    struct blkif_request_segment *mem = calloc(2 * XBD_SEGS_PER_INDIRECT_PAGE,
                                               sizeof(*mem));
    struct blkif_request_segment *ind = mem + XBD_SEGS_PER_INDIRECT_PAGE;
    struct blkif_request_segment *ind2 = mem;
    struct blkif_request_segment *ipages[2] = { ind, ind2 };
    struct xbdf_rw_desc d;

    for (unsigned int i = 0; i < 700; i++)
        grefs[i] = 100 + i;
    memset(&d, 0, sizeof(d));
    d.op = BLKIF_OP_READ;
    d.handle = 51712;
    d.id = 0x500000003ull;
    d.offset = 4096 * 10;
    d.page_off = 1024;
    d.len = 8192;               /* spans 3 pages: 3 KiB, 4 KiB, 1 KiB */
    d.grefs = grefs;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), 0, "direct read built");
    is_int(req.rw.operation, BLKIF_OP_READ, "operation READ");
    is_int(req.rw.nr_segments, 3, "3 segments");
    is_int(req.rw.sector_number, 80, "sector 80 (512-byte units)");
    is_int(req.rw.handle, 51712, "handle");
    ok(req.rw.id == 0x500000003ull, "id");
    ok(req.rw.seg[0].gref == 100 && req.rw.seg[0].first_sect == 2 &&
       req.rw.seg[0].last_sect == 7, "segment 0: sectors 2..7");
    ok(req.rw.seg[1].gref == 101 && req.rw.seg[1].first_sect == 0 &&
       req.rw.seg[1].last_sect == 7, "segment 1: whole page");
    ok(req.rw.seg[2].gref == 102 && req.rw.seg[2].first_sect == 0 &&
       req.rw.seg[2].last_sect == 1, "segment 2: sectors 0..1");

    d.page_off = 100;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), -EINVAL,
           "data not 512-aligned in its page refused");
    d.page_off = 0;
    d.len = 1000;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), -EINVAL,
           "partial sector refused");
    d.len = 12 * 4096;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), -EINVAL,
           "12 pages without indirect pages refused");

    /* Indirect: 256 segments in 1 indirect page, then 600 over 2. */
    d.len = 256 * 4096;
    d.op = BLKIF_OP_WRITE;
    d.ind_pages = ipages;
    d.ind_grefs = igrefs;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), 0, "256-segment write built");
    is_int(req.indirect.operation, BLKIF_OP_INDIRECT, "operation INDIRECT");
    is_int(req.indirect.indirect_op, BLKIF_OP_WRITE, "indirect_op WRITE");
    is_int(req.indirect.nr_segments, 256, "256 segments");
    is_int(req.indirect.indirect_grefs[0], 900, "indirect page 0 gref");
    is_int(req.indirect.indirect_grefs[1], 0, "no second indirect page used");
    ok(ind[255].gref == 355 && ind[255].first_sect == 0 && ind[255].last_sect == 7,
       "last segment in the indirect page");
    d.len = 600 * 4096;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), 0, "600 segments: 2 pages");
    ok(ind2[599 - XBD_SEGS_PER_INDIRECT_PAGE].gref == 699 &&
       ind2[0].gref == 100 + XBD_SEGS_PER_INDIRECT_PAGE &&
       ind[XBD_SEGS_PER_INDIRECT_PAGE - 1].gref == 99 + XBD_SEGS_PER_INDIRECT_PAGE,
       "segments 512.. go to the second indirect page wherever it lies");
    is_int(req.indirect.indirect_grefs[1], 901, "indirect page 1 gref");
    d.op = BLKIF_OP_WRITE_BARRIER;
    is_int(xbdf_build_rw(&req, &d, why, sizeof(why)), -EINVAL,
           "barrier cannot go indirect");

    is_int(xbdf_build_flush(&req, BLKIF_OP_FLUSH_DISKCACHE, 5, 9), 0, "flush built");
    ok(req.rw.nr_segments == 0 && req.rw.operation == BLKIF_OP_FLUSH_DISKCACHE,
       "flush: no segments");
    is_int(xbdf_build_flush(&req, BLKIF_OP_READ, 5, 9), -EINVAL,
           "a read is not a flush");
    is_int(xbdf_build_discard(&req, 5, 9, 8192, 1 << 20, true), 0, "discard built");
    ok(req.discard.operation == BLKIF_OP_DISCARD && req.discard.sector_number == 16 &&
       req.discard.nr_sectors == 2048 && req.discard.flag == BLKIF_DISCARD_SECURE,
       "discard fields in 512-byte units, secure flag");
    free(mem);
}

static void
test_flush_discard(void)
{
    struct xbdf_geom g = geom(512, 0);
    uint64_t off, len;

    is_int(xbdf_flush_op(&g), -EOPNOTSUPP, "no flush feature");
    g.barrier = true;
    is_int(xbdf_flush_op(&g), BLKIF_OP_WRITE_BARRIER, "barrier only: barrier");
    g.flush = true;
    is_int(xbdf_flush_op(&g), BLKIF_OP_FLUSH_DISKCACHE, "flush preferred");

    is_int(xbdf_discard_range(&g, false, 0, 4096, &off, &len, why, sizeof(why)),
           -EOPNOTSUPP, "discard not offered");
    g.discard = true;
    g.discard_granularity = 65536;
    g.discard_alignment = 0;
    is_int(xbdf_discard_range(&g, true, 0, 65536, &off, &len, why, sizeof(why)),
           -EOPNOTSUPP, "secure discard not offered");
    is_int(xbdf_discard_range(&g, false, 1000, 4096, &off, &len, why, sizeof(why)),
           -EINVAL, "unaligned discard refused");
    is_int(xbdf_discard_range(&g, false, 4096, 200704, &off, &len, why, sizeof(why)),
           0, "discard in 64 KiB granules");
    ok(off == 65536 && len == 131072, "shrunk to [64K, 192K)");
    is_int(xbdf_discard_range(&g, false, 4096, 8192, &off, &len, why, sizeof(why)),
           0, "discard smaller than a granule");
    is_int(len, 0, "nothing to discard");
    g.discard_alignment = 4096;
    is_int(xbdf_discard_range(&g, false, 0, 200704, &off, &len, why, sizeof(why)),
           0, "discard with alignment 4 KiB");
    ok(off == 4096 && len == 196608, "granules start at 4K + k*64K");
    is_int(xbdf_discard_range(&g, false, g.size - 4096, 8192, &off, &len, why,
                              sizeof(why)), -EINVAL, "discard beyond the end");
}

int
main(void)
{
    test_checks();
    test_split();
    test_build();
    test_flush_discard();
    return done_testing();
}
