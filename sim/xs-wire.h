/* xbd-sim — xenstore wire message decoding (pure functions).
 *
 * Kept apart from the socket code so a fuzz harness can feed arbitrary
 * bytes straight in.  Nothing here allocates or does I/O.
 */
#ifndef XBD_SIM_XS_WIRE_H
#define XBD_SIM_XS_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One decoded message: `payload` points into the caller's buffer. */
struct xs_wire_msg {
    uint32_t type, req_id, tx_id, len;
    const char *payload;
};

/* Decode the message at the start of buf[0..len).
 * Returns the bytes it occupies (header + payload) when it is complete,
 * 0 when more bytes are needed, -E2BIG when the header announces a payload
 * over XENSTORE_PAYLOAD_MAX (the connection must be dropped, as xenstored
 * does).  The type is not checked here. */
int xs_wire_decode(const void *buf, size_t len, struct xs_wire_msg *out);

/* Split a payload into its NUL-terminated strings: up to `max` pointers in
 * argv.  Returns the number of terminated strings (bytes after the last NUL
 * are not counted; see *rest / *restlen, which may be NULL). */
int xs_wire_args(const char *payload, size_t len, const char **argv, int max,
                 const char **rest, size_t *restlen);

/* The xsd_errors name for a (positive) errno; "EIO" for unknown ones. */
const char *xs_wire_errname(int err);

#endif /* XBD_SIM_XS_WIRE_H */
