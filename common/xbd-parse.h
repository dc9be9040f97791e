/* xbdkit — strict parsers for xenstore values.
 *
 * Every number a peer writes into the store is hostile input.  These accept
 * exactly what blkif.h says a node holds — decimal digits, nothing else: no
 * sign, no leading or trailing space, no trailing junk, no empty string, no
 * overflow — and return -EINVAL otherwise (-ERANGE for out of bounds).
 * A leading zero is accepted ("0", "007") because the spec does not forbid it.
 */
#ifndef XBD_PARSE_H
#define XBD_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* Parse a decimal uint64. */
int xbd_parse_u64(const char *s, uint64_t *out);

/* Parse a decimal uint32 within [min, max]. */
int xbd_parse_u32_range(const char *s, uint32_t min, uint32_t max,
                        uint32_t *out);

/* Parse a boolean node: "0" or "1" only. */
int xbd_parse_bool(const char *s, bool *out);

/* True when v is a power of two (0 is not). */
static inline bool
xbd_is_pow2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* log2 of a power of two. */
static inline unsigned int
xbd_log2(uint64_t v)
{
    return (unsigned int)__builtin_ctzll(v);
}

#endif /* XBD_PARSE_H */
