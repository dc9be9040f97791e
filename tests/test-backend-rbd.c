/* The rbd driver without a cluster: the params syntax (every part, escapes,
 * the errors) and the open errors that need no cluster — a configuration
 * file that is missing, a Ceph setting that does not exist, monitors that
 * do not answer (within the connect timeout given in params).  Reads,
 * writes, flushes, discards and resize against a real cluster are in
 * `make check-rbd` (tests/ceph-lane/). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "drivers/rbd/rbd.h"
#include "tap.h"

static char err[512];

static void
test_parse_ok(void)
{
    struct xbd_rbd_spec s;

    is_int(xbd_rbd_parse("vms/guest1", &s, err, sizeof(err)), 0, "pool/image");
    ok(strcmp(s.pool, "vms") == 0 && strcmp(s.image, "guest1") == 0 && s.ns == NULL &&
       s.snap == NULL && s.conf == NULL && s.id == NULL && s.nopts == 0, "  its parts");
    xbd_rbd_spec_free(&s);

    is_int(xbd_rbd_parse("vms/tenant/guest1@golden:conf=/etc/ceph/x.conf:id=xen:"
                         "keyring=/etc/ceph/k:rbd_cache=false", &s, err, sizeof(err)),
           0, "namespace, snapshot and settings");
    ok(strcmp(s.pool, "vms") == 0 && strcmp(s.ns, "tenant") == 0 &&
       strcmp(s.image, "guest1") == 0 && strcmp(s.snap, "golden") == 0, "  names");
    ok(strcmp(s.conf, "/etc/ceph/x.conf") == 0 && strcmp(s.id, "xen") == 0, "  conf, id");
    ok(s.nopts == 2 && strcmp(s.opts[0].key, "keyring") == 0 &&
       strcmp(s.opts[0].value, "/etc/ceph/k") == 0 &&
       strcmp(s.opts[1].key, "rbd_cache") == 0 && strcmp(s.opts[1].value, "false") == 0,
       "  other settings in order");
    xbd_rbd_spec_free(&s);

    is_int(xbd_rbd_parse("p/a\\:b\\@c:mon_host=[v2\\:127.0.0.1\\:3300]", &s, err,
                         sizeof(err)), 0, "escapes");
    ok(strcmp(s.image, "a:b@c") == 0 && s.nopts == 1 &&
       strcmp(s.opts[0].value, "[v2:127.0.0.1:3300]") == 0, "  unescaped: %s, %s",
       s.image, s.nopts ? s.opts[0].value : "");
    xbd_rbd_spec_free(&s);
}

static void
test_parse_bad(void)
{
    static const char *const bad[] = {
        "", "image", "/image", "pool/", "pool//image", "a/b/c/d", "pool/image@",
        "pool/image:", "pool/image:conf", "pool/image:conf=", "pool/image:=x",
        "pool/image:id=a:id=b", "pool/image:conf=a:conf=b", "pool/image:x=1:x=2",
        "pool/image:bad/key=1", "pool/@snap", "pool/image:key=AQBsecret==",
        "pool/image:secret=x",
    };
    struct xbd_rbd_spec s;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        is_int(xbd_rbd_parse(bad[i], &s, err, sizeof(err)), -EINVAL, "refused: '%s'",
               bad[i]);
        ok(err[0] != '\0', "  with a reason: %s", err);
        xbd_rbd_spec_free(&s);
    }
}

/* Opening through the params prefix, as the control path does. */
static void
test_open_errors(void)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_backing *b = NULL;
    int r;

    r = xbd_backing_open("rbd:nopool", &opts, &b, err, sizeof(err));
    ok(r == -EINVAL && b == NULL && strstr(err, "POOL") != NULL, "bad params: %s", err);

    /* libxl's qdisk form of the same target reaches the rbd driver. */
    r = xbd_backing_open("aio:rbd:nopool", &opts, &b, err, sizeof(err));
    ok(r == -EINVAL && b == NULL && strstr(err, "rbd:nopool: no pool") != NULL,
       "aio:rbd:... goes to the rbd driver: %s", err);

    r = xbd_backing_open("rbd:p/i:conf=/nonexistent/ceph.conf", &opts, &b, err, sizeof(err));
    ok(r < 0 && b == NULL && strstr(err, "/nonexistent/ceph.conf") != NULL,
       "missing configuration file: %s", err);

    r = xbd_backing_open("rbd:p/i:conf=/dev/null:no_such_ceph_setting=1", &opts, &b, err,
                         sizeof(err));
    ok(r < 0 && b == NULL && strstr(err, "no_such_ceph_setting") != NULL,
       "unknown Ceph setting: %s", err);

    /* Nothing listens on port 9 of loopback: connecting gives up after
     * the timeout params set, with a message that says so. */
    r = xbd_backing_open("rbd:p/i:conf=/dev/null:mon_host=127.0.0.1\\:9:auth_client_required=none:"
                         "client_mount_timeout=1", &opts, &b, err, sizeof(err));
    ok(r < 0 && b == NULL && strstr(err, "cannot connect") != NULL,
       "monitors unreachable: %s", err);
}

int
main(void)
{
    test_parse_ok();
    test_parse_bad();
    test_open_errors();
    return done_testing();
}
