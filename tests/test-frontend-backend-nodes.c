/* Unit tests for reading what the backend published
 * (frontend/xbdf-req.c xbdf_read_limits, xbdf_read_props): the frontend
 * does not trust the backend — nonsense is refused, huge limits clamped. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbdf-req.h"
#include "tap.h"

/* A backend directory: NULL-terminated key, value pairs. */
static char *
rd(void *arg, const char *key)
{
    const char *const *kv = arg;

    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return strdup(kv[1]);
    return NULL;
}

static char why[256];

static int
limits(const char *const *kv, struct xbdf_be_limits *l)
{
    return xbdf_read_limits(rd, (void *)kv, l, why, sizeof(why));
}

static int
props(const char *const *kv, struct xbdf_geom *g, uint32_t *info)
{
    memset(g, 0, sizeof(*g));
    return xbdf_read_props(rd, (void *)kv, g, info, why, sizeof(why));
}

static void
test_limits(void)
{
    struct xbdf_be_limits l;

    {
        static const char *const kv[] = { NULL };
        is_int(limits(kv, &l), 0, "empty directory: defaults");
        ok(l.max_ring_order == 0 && l.max_queues == 1 &&
           l.max_indirect_segs == 0 && !l.persistent,
           "1 page, 1 queue, no indirect, no persistent");
    }
    {
        static const char *const kv[] = {
            XBDK_MAX_RING_PAGE_ORDER, "4", XBDK_MAX_RING_PAGES, "64",
            XBDK_MULTI_QUEUE_MAX_QUEUES, "4",
            XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, "256",
            XBDK_FEATURE_PERSISTENT, "1", NULL };
        is_int(limits(kv, &l), 0, "a full set");
        is_int(l.max_ring_order, 6, "the larger of the two ring schemes wins");
        is_int(l.max_queues, 4, "4 queues");
        is_int(l.max_indirect_segs, 256, "256 indirect segments");
        ok(l.persistent, "persistent offered");
    }
    {
        static const char *const kv[] = {
            XBDK_MAX_RING_PAGE_ORDER, "30", XBDK_MULTI_QUEUE_MAX_QUEUES, "100000",
            XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, "4000000000", NULL };
        is_int(limits(kv, &l), 0, "huge limits accepted");
        is_int(l.max_ring_order, XBD_RING_ORDER_LIMIT, "ring order clamped");
        is_int(l.max_queues, XBDF_MAX_QUEUES, "queues clamped");
        is_int(l.max_indirect_segs, XBD_MAX_INDIRECT_SEGMENTS, "indirect clamped");
    }
    {
        static const char *const kv[] = {
            XBDK_MULTI_QUEUE_MAX_QUEUES, "0",
            XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, "8", NULL };
        is_int(limits(kv, &l), 0, "0 queues, 8 indirect segments");
        is_int(l.max_queues, 1, "0 queues treated as 1");
        is_int(l.max_indirect_segs, 0, "fewer than 12 segments: no indirect");
    }
    {
        static const char *const kv[] = { XBDK_MAX_RING_PAGES, "3", NULL };
        is_int(limits(kv, &l), -EPROTO, "max-ring-pages 3 refused");
        ok(strstr(why, "power of two") != NULL, "message: %s", why);
    }
    {
        static const char *const kv[] = { XBDK_MAX_RING_PAGE_ORDER, "4x", NULL };
        is_int(limits(kv, &l), -EPROTO, "trailing junk refused");
        ok(strstr(why, XBDK_MAX_RING_PAGE_ORDER) != NULL, "message names the node");
    }
    {
        static const char *const kv[] = { XBDK_MULTI_QUEUE_MAX_QUEUES, "-1", NULL };
        is_int(limits(kv, &l), -EPROTO, "negative refused");
    }
    {
        static const char *const kv[] = { XBDK_MULTI_QUEUE_MAX_QUEUES,
                                          "99999999999999999999", NULL };
        is_int(limits(kv, &l), -EPROTO, "overflow refused");
    }
    {
        static const char *const kv[] = { XBDK_FEATURE_PERSISTENT, "yes", NULL };
        is_int(limits(kv, &l), -EPROTO, "a boolean that is not 0/1 refused");
    }
}

static void
test_props(void)
{
    struct xbdf_geom g;
    uint32_t info;

    {
        static const char *const kv[] = {
            XBDK_SECTORS, "2097152", XBDK_SECTOR_SIZE, "512", XBDK_INFO, "4",
            XBDK_FEATURE_FLUSH_CACHE, "1", NULL };
        is_int(props(kv, &g, &info), 0, "a read-only 1 GiB disk");
        ok(g.size == (UINT64_C(1) << 30) && g.sector_size == 512 && g.readonly &&
           g.flush && !g.barrier && !g.discard, "size, sector size, features");
    }
    {
        static const char *const kv[] = {
            XBDK_SECTORS, "16", XBDK_SECTOR_SIZE, "4096",
            XBDK_FEATURE_DISCARD, "1", XBDK_DISCARD_GRANULARITY, "65536",
            XBDK_DISCARD_ALIGNMENT, "4096", XBDK_DISCARD_SECURE, "1", NULL };
        is_int(props(kv, &g, &info), 0, "a 4K-sector disk with discard");
        ok(g.size == 8192 && g.sector_size == 4096, "sectors are 512-byte units");
        ok(g.discard && g.discard_secure && g.discard_granularity == 65536 &&
           g.discard_alignment == 4096, "discard parameters");
    }
    {
        static const char *const kv[] = {
            XBDK_SECTORS, "16", XBDK_FEATURE_DISCARD, "1",
            XBDK_DISCARD_GRANULARITY, "0", NULL };
        is_int(props(kv, &g, &info), 0, "discard-granularity 0");
        is_int(g.discard_granularity, 512, "treated as the sector size");
    }
    {
        static const char *const kv[] = { XBDK_SECTOR_SIZE, "512", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "no sectors node refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "0", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "zero sectors refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "18446744073709551615", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "a size that overflows bytes refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "12abc", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "non-numeric sectors refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "16",
                                          XBDK_SECTOR_SIZE, "1000", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "sector-size 1000 refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "16",
                                          XBDK_SECTOR_SIZE, "256", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "sector-size 256 refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "16",
                                          XBDK_SECTOR_SIZE, "0", NULL };
        is_int(props(kv, &g, &info), -EPROTO, "sector-size 0 refused");
    }
    {
        static const char *const kv[] = { XBDK_SECTORS, "9",
                                          XBDK_SECTOR_SIZE, "4096", NULL };
        is_int(props(kv, &g, &info), -EPROTO,
               "a size that is not whole 4K sectors refused");
    }
}

int
main(void)
{
    test_limits();
    test_props();
    return done_testing();
}
