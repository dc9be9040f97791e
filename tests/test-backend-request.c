/* Unit tests for backend/request.c: copying a request out of a ring slot
 * and validating it, in all three ABIs.  The slots are built here from byte
 * offsets written down independently of request.c's structs, so a layout
 * mistake there shows up as a failure here. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "tap.h"

/* Byte offsets of each ABI's fields (x86_32: 64-bit fields 4-aligned). */
struct layout {
    const char *name;
    enum xbd_abi abi;
    size_t id, sector, seg;                 /* read/write */
    size_t nr_sectors;                      /* discard */
    size_t ind_handle, ind_grefs;           /* indirect */
    size_t entry, rsp_size, rsp_status;
};

static const struct layout layouts[] = {
    { "native", XBD_ABI_NATIVE, 8, 16, 24, 24, 24, 28, 112, 16, 10 },
    { "x86_32", XBD_ABI_X86_32, 4, 12, 20, 20, 20, 24, 108, 12, 10 },
    { "x86_64", XBD_ABI_X86_64, 8, 16, 24, 24, 24, 28, 112, 16, 10 },
};

static uint8_t slot[XBD_REQ_SLOT_MAX];
static struct xbd_seg segs[4096];

static void
put16(size_t off, uint16_t v) { memcpy(slot + off, &v, 2); }
static void
put32(size_t off, uint32_t v) { memcpy(slot + off, &v, 4); }
static void
put64(size_t off, uint64_t v) { memcpy(slot + off, &v, 8); }

/* A read/write-shaped request with n segments, each sectors [f, l]. */
static void
build_rw(const struct layout *L, uint8_t op, unsigned int n, uint64_t id,
         uint64_t sector, uint8_t f, uint8_t l)
{
    memset(slot, 0xa5, sizeof(slot));       /* padding the guest left dirty */
    slot[0] = op;
    slot[1] = (uint8_t)n;
    put16(2, 7);
    put64(L->id, id);
    put64(L->sector, sector);
    for (unsigned int i = 0; i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++) {
        put32(L->seg + 8 * i, 100 + i);
        slot[L->seg + 8 * i + 4] = f;
        slot[L->seg + 8 * i + 5] = l;
    }
}

static void
build_discard(const struct layout *L, uint8_t flag, uint64_t id,
              uint64_t sector, uint64_t n)
{
    memset(slot, 0x5a, sizeof(slot));
    slot[0] = BLKIF_OP_DISCARD;
    slot[1] = flag;
    put16(2, 7);
    put64(L->id, id);
    put64(L->sector, sector);
    put64(L->nr_sectors, n);
}

static void
build_indirect(const struct layout *L, uint8_t inner, uint16_t n, uint64_t id,
               uint64_t sector)
{
    memset(slot, 0x3c, sizeof(slot));
    slot[0] = BLKIF_OP_INDIRECT;
    slot[1] = inner;
    put16(2, n);
    put64(L->id, id);
    put64(L->sector, sector);
    put16(L->ind_handle, 7);
    for (unsigned int i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++)
        put32(L->ind_grefs + 4 * i, 900 + i);
}

static struct xbd_req_limits
limits(void)
{
    struct xbd_req_limits lim = {
        .sectors = 2048, .sector_size = 512, .max_indirect = 256,
        .flush = true, .discard = true, .discard_secure = true,
    };
    return lim;
}

static int
parse(const struct layout *L, const struct xbd_req_limits *lim,
      struct xbd_req *r, const char **why)
{
    r->seg = segs;
    return xbd_req_parse(slot, L->abi, lim, r, why);
}

/* Expect a failure `want` whose reason mentions `text`. */
static void
expect_fail(const struct layout *L, const struct xbd_req_limits *lim,
            int want, const char *text, const char *what)
{
    struct xbd_req r;
    const char *why;
    int rc = parse(L, lim, &r, &why);

    ok(rc == want && strstr(why, text) != NULL && r.id == 0x1122334455667788ull,
       "%s: %s -> %d (%s), id still echoed", L->name, what, rc, why);
}

static void
test_layout(const struct layout *L)
{
    struct xbd_req_limits lim = limits();
    struct xbd_req r;
    const char *why;
    uint64_t id = 0x1122334455667788ull;
    int rc;

    is_int(xbd_abi_entry_size(L->abi), L->entry, "%s: entry is %zu bytes", L->name, L->entry);
    is_int(xbd_abi_ring_entries(L->abi, 1), 32, "%s: one page holds 32 entries", L->name);
    is_int(xbd_abi_ring_entries(L->abi, 64), 2048, "%s: 64 pages hold 2048", L->name);

    /* ---- good requests ---- */
    build_rw(L, BLKIF_OP_READ, 3, id, 40, 1, 6);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_READ && r.id == id && r.sector == 40 &&
       r.nr_segments == 3 && r.nr_sectors == 18 && segs[2].gref == 102 &&
       segs[2].first_sect == 1 && segs[2].last_sect == 6 && r.operation == BLKIF_OP_READ,
       "%s: read of 3 segments decoded (%s)", L->name, why);

    build_rw(L, BLKIF_OP_WRITE, 11, id, 0, 0, 7);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_WRITE && r.nr_sectors == 88 &&
       segs[10].gref == 110, "%s: write of 11 full segments", L->name);

    build_rw(L, BLKIF_OP_WRITE, 1, id, 2047, 7, 7);
    ok(parse(L, &lim, &r, &why) == XBD_REQ_OK, "%s: write of the last sector", L->name);

    build_rw(L, BLKIF_OP_FLUSH_DISKCACHE, 0, id, ~0ull, 0, 0);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_FLUSH && r.nr_sectors == 0,
       "%s: flush without data ignores the sector", L->name);

    build_rw(L, BLKIF_OP_FLUSH_DISKCACHE, 2, id, 8, 0, 7);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_FLUSH && r.nr_sectors == 16,
       "%s: flush with data", L->name);

    build_rw(L, BLKIF_OP_WRITE_BARRIER, 1, id, 8, 0, 7);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_BARRIER && r.nr_sectors == 8,
       "%s: barrier write", L->name);

    build_discard(L, 0, id, 100, 1948);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.kind == XBD_REQ_DISCARD && r.sector == 100 &&
       r.nr_sectors == 1948 && !r.secure, "%s: discard to the end", L->name);

    build_discard(L, BLKIF_DISCARD_SECURE, id, 0, 8);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && r.secure, "%s: secure discard", L->name);
    lim.discard_secure = false;
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_OK && !r.secure, "%s: secure flag ignored when not advertised", L->name);
    lim = limits();

    /* ---- indirect ---- */
    build_indirect(L, BLKIF_OP_WRITE, 513, id, 16);
    rc = parse(L, &lim, &r, &why);
    is_int(rc, -EINVAL, "%s: 513 indirect segments > 256 advertised", L->name);
    lim.max_indirect = 1024;
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_NEED_INDIRECT && r.indirect && r.kind == XBD_REQ_WRITE &&
       r.nr_indirect_pages == 2 && r.indirect_grefs[0] == 900 && r.indirect_grefs[1] == 901 &&
       r.sector == 16 && r.id == id, "%s: indirect write of 513 segments needs 2 pages", L->name);
    {
        uint8_t *pages = calloc(2, XBD_PAGE_SIZE);

        for (unsigned int i = 0; i < 513; i++) {
            uint32_t g = 5000 + i;

            memcpy(pages + 8 * i, &g, 4);
            pages[8 * i + 4] = 0;
            pages[8 * i + 5] = i == 512 ? 3 : 0;
        }
        lim.sectors = 1000;
        rc = xbd_req_parse_indirect(pages, &lim, &r, &why);
        ok(rc == XBD_REQ_OK && r.nr_sectors == 516 && segs[512].gref == 5512 &&
           segs[512].last_sect == 3, "%s: indirect segments read from the pages", L->name);
        lim.sectors = 531;
        rc = xbd_req_parse_indirect(pages, &lim, &r, &why);
        is_int(rc, -EINVAL, "%s: indirect range checked after the pages (%s)", L->name, why);
        lim.sectors = 1000;
        pages[8 * 300 + 4] = 5;
        pages[8 * 300 + 5] = 4;
        rc = xbd_req_parse_indirect(pages, &lim, &r, &why);
        ok(rc == -EINVAL && strstr(why, "first_sect > last_sect"),
           "%s: bad indirect segment rejected (%s)", L->name, why);
        pages[8 * 300 + 4] = 0;
        pages[8 * 300 + 5] = 8;
        rc = xbd_req_parse_indirect(pages, &lim, &r, &why);
        ok(rc == -EINVAL && strstr(why, "last_sect"),
           "%s: indirect last_sect 8 rejected (%s)", L->name, why);
        free(pages);
    }
    lim = limits();
    build_indirect(L, BLKIF_OP_READ, 256, id, 0);
    rc = parse(L, &lim, &r, &why);
    ok(rc == XBD_REQ_NEED_INDIRECT && r.kind == XBD_REQ_READ && r.nr_indirect_pages == 1,
       "%s: indirect read of 256 segments, one page", L->name);

    /* ---- bad requests, each once ---- */
    build_rw(L, BLKIF_OP_READ, 0, id, 0, 0, 7);
    expect_fail(L, &lim, -EINVAL, "no segments", "read with 0 segments");
    build_rw(L, BLKIF_OP_WRITE, 12, id, 0, 0, 7);
    expect_fail(L, &lim, -EINVAL, "too many segments", "write with 12 segments");
    build_rw(L, BLKIF_OP_READ, 255, id, 0, 0, 7);
    expect_fail(L, &lim, -EINVAL, "too many segments", "read with 255 segments");
    build_rw(L, BLKIF_OP_READ, 1, id, 0, 5, 4);
    expect_fail(L, &lim, -EINVAL, "first_sect > last_sect", "first_sect > last_sect");
    build_rw(L, BLKIF_OP_READ, 1, id, 0, 0, 8);
    expect_fail(L, &lim, -EINVAL, "last_sect", "last_sect 8");
    build_rw(L, BLKIF_OP_READ, 1, id, 0, 0, 255);
    expect_fail(L, &lim, -EINVAL, "last_sect", "last_sect 255");
    build_rw(L, BLKIF_OP_READ, 1, id, 2048, 0, 0);
    expect_fail(L, &lim, -EINVAL, "beyond the end", "read at the end sector");
    build_rw(L, BLKIF_OP_READ, 2, id, 2041, 0, 7);
    expect_fail(L, &lim, -EINVAL, "beyond the end", "read crossing the end");
    build_rw(L, BLKIF_OP_READ, 1, id, ~0ull - 3, 0, 7);
    expect_fail(L, &lim, -EINVAL, "beyond the end", "sector + length wraps 2^64");
    build_discard(L, 0, id, 8, ~0ull - 4);
    expect_fail(L, &lim, -EINVAL, "beyond the end", "discard length wraps 2^64");
    build_discard(L, 0, id, 8, 0);
    expect_fail(L, &lim, -EINVAL, "zero sectors", "discard of 0 sectors");
    build_rw(L, BLKIF_OP_WRITE, 1, id, 0, 0, 7);
    lim.read_only = true;
    expect_fail(L, &lim, -EINVAL, "read-only", "write to read-only");
    build_rw(L, BLKIF_OP_WRITE_BARRIER, 1, id, 0, 0, 7);
    expect_fail(L, &lim, -EINVAL, "read-only", "barrier write to read-only");
    build_discard(L, 0, id, 0, 8);
    expect_fail(L, &lim, -EINVAL, "read-only", "discard on read-only");
    build_indirect(L, BLKIF_OP_WRITE, 20, id, 0);
    expect_fail(L, &lim, -EINVAL, "read-only", "indirect write to read-only");
    build_rw(L, BLKIF_OP_READ, 1, id, 0, 0, 7);
    ok(parse(L, &lim, &r, &why) == XBD_REQ_OK, "%s: read of read-only is fine", L->name);
    lim = limits();

    lim.sector_size = 4096;
    build_rw(L, BLKIF_OP_READ, 1, id, 8, 0, 7);
    ok(parse(L, &lim, &r, &why) == XBD_REQ_OK, "%s: 4K-aligned read on a 4Kn device", L->name);
    build_rw(L, BLKIF_OP_READ, 1, id, 4, 0, 7);
    expect_fail(L, &lim, -EINVAL, "aligned", "read at sector 4 on a 4Kn device");
    build_rw(L, BLKIF_OP_READ, 1, id, 8, 0, 3);
    expect_fail(L, &lim, -EINVAL, "aligned", "2 KiB read on a 4Kn device");
    build_discard(L, 0, id, 8, 12);
    expect_fail(L, &lim, -EINVAL, "aligned", "misaligned discard on a 4Kn device");
    lim = limits();

    build_rw(L, BLKIF_OP_RESERVED_1, 1, id, 0, 0, 7);
    expect_fail(L, &lim, -EOPNOTSUPP, "unknown", "RESERVED_1");
    for (unsigned int op = 7; op < 256; op += 31) {
        build_rw(L, (uint8_t)op, 1, id, 0, 0, 7);
        expect_fail(L, &lim, -EOPNOTSUPP, "unknown", "opcode past INDIRECT");
    }
    lim.flush = false;
    build_rw(L, BLKIF_OP_FLUSH_DISKCACHE, 0, id, 0, 0, 0);
    expect_fail(L, &lim, -EOPNOTSUPP, "not advertised", "flush not advertised");
    build_rw(L, BLKIF_OP_WRITE_BARRIER, 0, id, 0, 0, 0);
    expect_fail(L, &lim, -EOPNOTSUPP, "not advertised", "barrier not advertised");
    lim = limits();
    lim.discard = false;
    build_discard(L, 0, id, 0, 8);
    expect_fail(L, &lim, -EOPNOTSUPP, "not advertised", "discard not advertised");
    lim = limits();
    lim.max_indirect = 0;
    build_indirect(L, BLKIF_OP_READ, 8, id, 0);
    expect_fail(L, &lim, -EOPNOTSUPP, "not advertised", "indirect not advertised");
    lim = limits();
    build_indirect(L, BLKIF_OP_FLUSH_DISKCACHE, 8, id, 0);
    expect_fail(L, &lim, -EINVAL, "inner operation", "indirect flush");
    build_indirect(L, BLKIF_OP_INDIRECT, 8, id, 0);
    expect_fail(L, &lim, -EINVAL, "inner operation", "indirect indirect");
    build_indirect(L, BLKIF_OP_READ, 0, id, 0);
    expect_fail(L, &lim, -EINVAL, "no segments", "indirect with 0 segments");
    lim.max_indirect = 65535;
    build_indirect(L, BLKIF_OP_READ, 4097, id, 0);
    expect_fail(L, &lim, -EINVAL, "too many indirect pages", "indirect needing 9 pages");
    lim = limits();

    /* ---- copy out of a ring, response into it ---- */
    {
        unsigned int n = xbd_abi_ring_entries(L->abi, 2);
        uint8_t *ring = calloc(2, XBD_PAGE_SIZE), got[XBD_REQ_SLOT_MAX];
        uint8_t *s5 = ring + 64 + 5 * L->entry;
        int16_t status;
        uint64_t rid;

        build_rw(L, BLKIF_OP_WRITE, 2, id, 64, 0, 7);
        memcpy(s5, slot, L->entry);
        memset(got, 0, sizeof(got));
        xbd_req_copy(ring, n, L->abi, 5 + n * 3, got);   /* index wraps */
        ok(memcmp(got, slot, L->entry) == 0, "%s: slot 5 copied from index 5 + 3n", L->name);
        memset(s5, 0xee, L->entry);
        xbd_rsp_write(ring, n, L->abi, 5, id, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP);
        memcpy(&rid, s5, 8);
        memcpy(&status, s5 + L->rsp_status, 2);
        ok(rid == id && s5[8] == BLKIF_OP_WRITE && status == BLKIF_RSP_EOPNOTSUPP,
           "%s: response fields at their offsets", L->name);
        ok(s5[9] == 0 && (L->rsp_size == 12 || (s5[12] | s5[13] | s5[14] | s5[15]) == 0),
           "%s: response padding zeroed", L->name);
        ok(s5[L->rsp_size] == 0xee && s5[-1] == 0,
           "%s: nothing written outside the response", L->name);
        free(ring);
    }
}

int
main(void)
{
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
        test_layout(&layouts[i]);

    /* The x86_32 layout really differs: the same bytes mean something else. */
    {
        struct xbd_req_limits lim = limits();
        struct xbd_req r;
        const char *why;

        build_rw(&layouts[1], BLKIF_OP_READ, 1, 42, 8, 0, 7);
        r.seg = segs;
        ok(xbd_req_parse(slot, XBD_ABI_X86_32, &lim, &r, &why) == XBD_REQ_OK && r.id == 42,
           "x86_32 slot parsed as x86_32");
        r.seg = segs;
        xbd_req_parse(slot, XBD_ABI_X86_64, &lim, &r, &why);
        ok(r.id != 42, "x86_32 slot parsed as x86_64 reads another id");
    }
    return done_testing();
}
