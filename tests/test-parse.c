/* Unit tests for the strict xenstore value parsers (common/xbd-parse.c):
 * every malformed number a hostile peer might write must be refused. */
#include <config.h>

#include <errno.h>
#include <stdint.h>

#include "xbd-parse.h"
#include "tap.h"

int
main(void)
{
    uint64_t v64;
    uint32_t v32;
    bool b;

    /* Accepted forms. */
    is_int(xbd_parse_u64("0", &v64), 0, "\"0\" parses");
    is_int(v64, 0, "\"0\" is 0");
    is_int(xbd_parse_u64("18446744073709551615", &v64), 0, "UINT64_MAX parses");
    ok(v64 == UINT64_MAX, "UINT64_MAX value");
    is_int(xbd_parse_u64("007", &v64), 0, "leading zeros are accepted");
    is_int(v64, 7, "\"007\" is 7");

    /* Rejected forms: each is something a frontend could write. */
    static const char *const bad[] = {
        "", " 1", "1 ", "+1", "-1", "0x10", "1e3", "12abc", "1.0", "\t4",
        "4\n", "--1", "٣", NULL,
    };
    for (int i = 0; bad[i]; i++)
        is_int(xbd_parse_u64(bad[i], &v64), -EINVAL, "rejects \"%s\"", bad[i]);
    is_int(xbd_parse_u64(NULL, &v64), -EINVAL, "rejects NULL");
    is_int(xbd_parse_u64("18446744073709551616", &v64), -ERANGE,
           "UINT64_MAX + 1 overflows");
    is_int(xbd_parse_u64("99999999999999999999999", &v64), -ERANGE,
           "huge number overflows");

    /* Ranges. */
    is_int(xbd_parse_u32_range("6", 0, 8, &v32), 0, "order 6 within [0,8]");
    is_int(v32, 6, "order 6 value");
    is_int(xbd_parse_u32_range("9", 0, 8, &v32), -ERANGE, "order 9 above max");
    is_int(xbd_parse_u32_range("0", 1, 4, &v32), -ERANGE, "0 queues below min");
    is_int(xbd_parse_u32_range("4294967296", 0, UINT32_MAX, &v32), -ERANGE,
           "2^32 does not fit a uint32");
    is_int(xbd_parse_u32_range("4294967295", 0, UINT32_MAX, &v32), 0,
           "UINT32_MAX fits");

    /* Booleans. */
    is_int(xbd_parse_bool("1", &b), 0, "bool 1");
    ok(b, "bool 1 is true");
    is_int(xbd_parse_bool("0", &b), 0, "bool 0");
    ok(!b, "bool 0 is false");
    is_int(xbd_parse_bool("2", &b), -EINVAL, "bool 2 rejected");
    is_int(xbd_parse_bool("10", &b), -EINVAL, "bool 10 rejected");
    is_int(xbd_parse_bool("", &b), -EINVAL, "empty bool rejected");
    is_int(xbd_parse_bool("true", &b), -EINVAL, "bool \"true\" rejected");

    /* Powers of two (ring pages, sector sizes). */
    ok(!xbd_is_pow2(0), "0 is not a power of two");
    ok(xbd_is_pow2(1) && xbd_is_pow2(64) && xbd_is_pow2(1ull << 63),
       "1, 64, 2^63 are powers of two");
    ok(!xbd_is_pow2(3) && !xbd_is_pow2(96), "3, 96 are not");
    is_int(xbd_log2(64), 6, "log2(64)");

    return done_testing();
}
