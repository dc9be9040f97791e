/* xbdkit — strict parsers for xenstore values.  See xbd-parse.h. */
#include <config.h>

#include <errno.h>
#include <stddef.h>

#include "xbd-parse.h"

int
xbd_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        unsigned int d;

        if (*s < '0' || *s > '9')
            return -EINVAL;
        d = (unsigned int)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
xbd_parse_u32_range(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    int r = xbd_parse_u64(s, &v);

    if (r < 0)
        return r;
    if (v < min || v > max)
        return -ERANGE;
    *out = (uint32_t)v;
    return 0;
}

int
xbd_parse_bool(const char *s, bool *out)
{
    if (s == NULL || s[0] == '\0' || s[1] != '\0' || (s[0] != '0' && s[0] != '1'))
        return -EINVAL;
    *out = s[0] == '1';
    return 0;
}
