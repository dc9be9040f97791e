/* Unit tests for blkif ring geometry (common/xbd-ring.h): the number of
 * requests a ring of N pages holds must match what Xen's own
 * __CONST_RING_SIZE computes, since both peers derive it independently. */
#include <config.h>

#include "xbd-ring.h"
#include "tap.h"

int
main(void)
{
    /* Xen's macro, evaluated at compile time for each order we speak. */
    static const unsigned int xen[] = {
        __CONST_RING_SIZE(blkif, 1 * 4096),  __CONST_RING_SIZE(blkif, 2 * 4096),
        __CONST_RING_SIZE(blkif, 4 * 4096),  __CONST_RING_SIZE(blkif, 8 * 4096),
        __CONST_RING_SIZE(blkif, 16 * 4096), __CONST_RING_SIZE(blkif, 32 * 4096),
        __CONST_RING_SIZE(blkif, 64 * 4096), __CONST_RING_SIZE(blkif, 128 * 4096),
        __CONST_RING_SIZE(blkif, 256 * 4096),
    };

    for (unsigned int order = 0; order <= XBD_RING_ORDER_LIMIT; order++) {
        unsigned int pages = 1u << order;
        is_int(xbd_ring_entries(pages), xen[order],
               "%u page(s): %u entries as __CONST_RING_SIZE says", pages,
               xen[order]);
        is_int(xbd_ring_entries(pages), 32u << order,
               "%u page(s) hold 32 x %u requests", pages, pages);
    }

    /* The blkif ABI facts the rest of the code relies on. */
    is_int(sizeof(struct blkif_request), 112, "native request is 112 bytes");
    is_int(sizeof(struct blkif_response), 16, "native response is 16 bytes");
    is_int(sizeof(struct blkif_request_segment), 8, "segment is 8 bytes");
    is_int(XBD_SEGS_PER_INDIRECT_PAGE, 512, "512 segments per indirect page");
    is_int(XBD_MAX_INDIRECT_SEGMENTS, 4096, "8 indirect pages = 4096 segments");
    is_int(offsetof(struct blkif_sring, ring), 64, "shared ring header is 64 bytes");

    return done_testing();
}
