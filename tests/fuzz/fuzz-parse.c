/* Fuzz harness: the strict xenstore value parsers (common/xbd-parse.c).
 *
 * Besides "no crash", it checks the parsers' promise: a value is accepted
 * only if it is decimal digits and nothing else, and the number returned
 * is the number written (compared against an independent reading).
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference: digits only, no overflow; computed the slow way. */
static bool
reference_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == 0)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[64];
    uint64_t v, ref;
    uint32_t v32, lo = 0, hi = UINT32_MAX;
    bool b;

    if (size > 4) {         /* the first bytes choose a range */
        lo = data[0] * 1000u;
        hi = lo + data[1] * 100000u;
        data += 2;
        size -= 2;
    }
    if (size >= sizeof(s))
        size = sizeof(s) - 1;
    memcpy(s, data, size);
    s[size] = 0;

    bool ok = reference_u64(s, &ref);
    int r = xbd_parse_u64(s, &v);
    if ((r == 0) != ok || (ok && v != ref))
        abort();

    r = xbd_parse_u32_range(s, lo, hi, &v32);
    if (r == 0 && (!ok || ref != v32 || v32 < lo || v32 > hi))
        abort();
    if (r != 0 && ok && ref >= lo && ref <= hi)
        abort();

    r = xbd_parse_bool(s, &b);
    if (r == 0 && !((strcmp(s, "0") == 0 && !b) || (strcmp(s, "1") == 0 && b)))
        abort();
    return 0;
}
