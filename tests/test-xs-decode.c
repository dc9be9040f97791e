/* Unit tests for the pure xenstore message decoding (sim/xs-wire.h). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <xen/io/xs_wire.h>

#include "tap.h"
#include "xs-wire.h"

static unsigned char buf[sizeof(struct xsd_sockmsg) + XENSTORE_PAYLOAD_MAX + 8];

static size_t
put(uint32_t type, uint32_t req, uint32_t tx, uint32_t len, const void *p,
    size_t plen)
{
    struct xsd_sockmsg h = { type, req, tx, len };

    memcpy(buf, &h, sizeof(h));
    if (plen)
        memcpy(buf + sizeof(h), p, plen);
    return sizeof(h) + plen;
}

int
main(void)
{
    struct xs_wire_msg m;
    const char *argv[4], *rest;
    size_t restlen, n;

    n = put(XS_READ, 7, 3, 6, "/a/b\0", 6);
    is_int(xs_wire_decode(buf, n, &m), (int)n, "complete message: its size");
    ok(m.type == XS_READ && m.req_id == 7 && m.tx_id == 3 && m.len == 6 &&
       m.payload == (const char *)buf + sizeof(struct xsd_sockmsg),
       "header fields and payload pointer");
    is_int(xs_wire_decode(buf, n - 1, &m), 0, "payload incomplete: need more");
    is_int(xs_wire_decode(buf, 15, &m), 0, "header incomplete: need more");
    is_int(xs_wire_decode(buf, 0, &m), 0, "nothing: need more");
    is_int(xs_wire_decode(buf, n + 5, &m), (int)n,
           "trailing bytes (next message) not consumed");

    n = put(XS_WRITE, 1, 0, XENSTORE_PAYLOAD_MAX, NULL, 0);
    memset(buf + n, 'x', XENSTORE_PAYLOAD_MAX);
    is_int(xs_wire_decode(buf, n + XENSTORE_PAYLOAD_MAX, &m),
           (int)(n + XENSTORE_PAYLOAD_MAX), "payload of exactly the maximum");
    put(XS_WRITE, 1, 0, XENSTORE_PAYLOAD_MAX + 1, NULL, 0);
    is_int(xs_wire_decode(buf, sizeof(buf), &m), -E2BIG,
           "payload over the maximum: E2BIG");
    put(XS_WRITE, 1, 0, UINT32_MAX, NULL, 0);
    is_int(xs_wire_decode(buf, 16, &m), -E2BIG,
           "huge length: E2BIG from the header alone");
    put(0xFFFF, 1, 0, 0, NULL, 0);
    is_int(xs_wire_decode(buf, 16, &m), 16,
           "unknown type decodes (the dispatcher refuses it)");

    is_int(xs_wire_args("a\0bc\0", 5, argv, 4, &rest, &restlen), 2,
           "two strings");
    ok(strcmp(argv[0], "a") == 0 && strcmp(argv[1], "bc") == 0 &&
       restlen == 0, "their values, nothing left over");
    is_int(xs_wire_args("a\0value", 7, argv, 4, &rest, &restlen), 1,
           "unterminated tail not counted");
    ok(restlen == 5 && memcmp(rest, "value", 5) == 0, "tail returned");
    is_int(xs_wire_args("a\0b\0c\0d\0e\0", 10, argv, 2, NULL, NULL), 5,
           "counts beyond max without writing past argv");
    is_int(xs_wire_args("", 0, argv, 4, &rest, &restlen), 0, "empty");
    is_int(xs_wire_args("\0\0", 2, argv, 4, NULL, NULL), 2,
           "empty strings count");

    ok(strcmp(xs_wire_errname(ENOENT), "ENOENT") == 0, "ENOENT name");
    ok(strcmp(xs_wire_errname(EAGAIN), "EAGAIN") == 0, "EAGAIN name");
    ok(strcmp(xs_wire_errname(E2BIG), "E2BIG") == 0, "E2BIG name");
    ok(strcmp(xs_wire_errname(EBADF), "EIO") == 0,
       "an errno xsd_errors lacks becomes EIO");
    return done_testing();
}
