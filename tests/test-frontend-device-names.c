/* Unit tests for xbdfront_parse_device (Xen's vbd-interface encoding),
 * through the installed library's exported symbols. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "xbdfront.h"
#include "tap.h"

static void
good(const char *name, uint32_t want)
{
    uint32_t v = 0;
    int r = xbdfront_parse_device(name, &v);

    ok(r == 0 && v == want, "%s -> %u (got %d, %u)", name, want, r, v);
}

static void
bad(const char *name)
{
    uint32_t v;
    int r = xbdfront_parse_device(name, &v);

    ok(r == -EINVAL && xbdfront_get_errno() == EINVAL &&
       strlen(xbdfront_get_error()) > 0, "\"%s\" refused: %s", name,
       xbdfront_get_error());
}

int
main(void)
{
    good("xvda", 51712);
    good("xvdb", 51728);
    good("xvda1", 51713);
    good("xvdp15", (202u << 8) | (15 << 4) | 15);
    good("xvdq", (1u << 28) | (16 << 8));
    good("xvda16", (1u << 28) | 16);
    good("xvdaa", (1u << 28) | (26 << 8));
    good("hda", 3u << 8);
    good("hdb1", (3u << 8) | 64 | 1);
    good("hdc", 22u << 8);
    good("sda", 8u << 8);
    good("sdb2", (8u << 8) | 16 | 2);
    good("d0", 51712);
    good("d1p2", 51730);
    good("d20p3", (1u << 28) | (20 << 8) | 3);
    good("51712", 51712);
    good("268439552", 268439552u);
    bad("");
    bad("xvd");
    bad("xvdA");
    bad("xvda0x");
    bad("xvda01");
    bad("xvda256");
    bad("hde");
    bad("sdq");
    bad("d");
    bad("d1p");
    bad("d20p300");
    bad("d01");
    bad("0");
    bad("-1");
    bad("vda");
    ok(strlen(xbdfront_get_version()) > 0, "version %s", xbdfront_get_version());
    return done_testing();
}
