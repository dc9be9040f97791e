/* Unit tests for backend/config.c: defaults, the command line, the config
 * file (the command line wins), bad values, what a reload may change. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backd.h"
#include "tap.h"

static char err[512];
static char file[] = "/tmp/xbd-test-config.XXXXXX";

static int
args(struct xbd_config *c, const char *a1, const char *a2, const char *a3,
     const char *a4)
{
    char *argv[] = { (char *)"xbd-backd", (char *)a1, (char *)a2, (char *)a3,
                     (char *)a4, NULL };
    int argc = 1;

    while (argv[argc] != NULL)
        argc++;
    xbd_config_defaults(c);
    err[0] = '\0';
    return xbd_config_parse_args(c, argc, argv, err, sizeof(err));
}

static void
write_file(const char *text)
{
    FILE *f = fopen(file, "w");

    if (f == NULL)
        bail_out("cannot write %s", file);
    fputs(text, f);
    fclose(f);
}

int
main(void)
{
    struct xbd_config c, n;
    int fd = mkstemp(file);

    if (fd < 0)
        bail_out("mkstemp");
    close(fd);

    is_int(args(&c, NULL, NULL, NULL, NULL), 0, "no options");
    ok(c.kinds == XBD_KIND_QDISK && c.max_ring_order == 6 && c.max_queues == 4 &&
       c.max_indirect == 256 && c.persistent_max > 0 && !c.debug && !c.use_syslog,
       "defaults: qdisk, order 6, 4 queues, 256 indirect, persistent on");
    is_int(c.persistent_max, XBD_PERSISTENT_AUTO, "persistent-max defaults to auto");
    is_int(args(&c, "--persistent-max", "4096", NULL, NULL), 0, "--persistent-max 4096");
    is_int(c.persistent_max, 4096, "a fixed cache bound");
    is_int(args(&c, "--persistent-max", "auto", NULL, NULL), 0, "--persistent-max auto");
    is_int(c.persistent_max, XBD_PERSISTENT_AUTO, "auto set by name");
    ok(args(&c, "--persistent-max", "autox", NULL, NULL) < 0 && strstr(err, "or auto"),
       "persistent-max junk refused (%s)", err);
    ok(args(&c, "--max-queues", "auto", NULL, NULL) < 0, "auto only where documented");

    is_int(args(&c, "--kind", "vbd", "--kind=vbd3", NULL), 0, "--kind twice");
    is_int(c.kinds, XBD_KIND_VBD | XBD_KIND_VBD3, "the first --kind replaces the default");
    is_int(args(&c, "--kind", "qdisk,vbd", NULL, NULL), 0, "--kind with a list");
    is_int(c.kinds, XBD_KIND_VBD | XBD_KIND_QDISK, "a list of kinds");
    ok(args(&c, "--kind", "tap", NULL, NULL) < 0 && strstr(err, "kind \"tap\""),
       "unknown kind refused (%s)", err);

    is_int(args(&c, "--max-ring-order", "8", "--debug", NULL), 0, "order 8, debug");
    ok(c.max_ring_order == 8 && c.debug, "values set");
    ok(args(&c, "--max-ring-order", "9", NULL, NULL) < 0 && strstr(err, "0..8"),
       "order 9 refused (%s)", err);
    ok(args(&c, "--max-queues", "0", NULL, NULL) < 0, "0 queues refused");
    ok(args(&c, "--max-queues", "65", NULL, NULL) < 0, "65 queues refused");
    ok(args(&c, "--max-indirect", "11", NULL, NULL) < 0 && strstr(err, "0 or 12"),
       "11 indirect segments refused (%s)", err);
    is_int(args(&c, "--max-indirect", "0", NULL, NULL), 0, "no indirect");
    ok(args(&c, "--max-queues", "4x", NULL, NULL) < 0, "junk number refused");
    ok(args(&c, "--platform", "kvm", NULL, NULL) < 0 && strstr(err, "sim or xen"),
       "unknown platform refused");
    ok(args(&c, "--bogus", NULL, NULL, NULL) < 0 && strstr(err, "--bogus"),
       "unknown option named (%s)", err);
    ok(args(&c, "extra", NULL, NULL, NULL) < 0 && strstr(err, "extra"),
       "operand refused (%s)", err);

    /* The file, with the command line winning. */
    write_file("# xbd-backd.conf\n"
               "\n"
               "max-queues = 8\n"
               "  max-ring-order=4  \n"
               "kind = vbd\n"
               "kind = vbd3\n"
               "debug = yes\n"
               "poll-idle-us = 0\n");
    args(&c, "--max-queues", "2", NULL, NULL);
    is_int(xbd_config_load(&c, file, err, sizeof(err)), 0, "config file read");
    ok(c.max_queues == 2 && c.max_ring_order == 4 && c.debug && c.poll_idle_us == 0,
       "file values, except what the command line set");
    is_int(c.kinds, XBD_KIND_VBD | XBD_KIND_VBD3, "kinds in a file replace the default");

    write_file("max-queues = 8\nwhat = 1\n");
    args(&c, NULL, NULL, NULL, NULL);
    ok(xbd_config_load(&c, file, err, sizeof(err)) < 0 && strstr(err, ":2:") &&
       strstr(err, "what"), "unknown key with its line number (%s)", err);
    write_file("max-queues 8\n");
    ok(xbd_config_load(&c, file, err, sizeof(err)) < 0 && strstr(err, "key = value"),
       "a line without '=' (%s)", err);
    write_file("config = /etc/other\n");
    ok(xbd_config_load(&c, file, err, sizeof(err)) < 0, "config inside a config refused");
    ok(xbd_config_load(&c, "/nonexistent/xbd.conf", err, sizeof(err)) == -ENOENT,
       "missing file: -ENOENT (%s)", err);

    /* Reload: fixed options come back, the others change. */
    args(&c, "--kind", "qdisk", NULL, NULL);
    n = c;
    n.kinds = XBD_KIND_VBD;
    n.max_queues = 1;
    snprintf(n.pidfile, sizeof(n.pidfile), "/run/other.pid");
    is_int(xbd_config_keep_fixed(&c, &n, err, sizeof(err)), 2, "two fixed options differ");
    ok(n.kinds == XBD_KIND_QDISK && n.pidfile[0] == '\0' && n.max_queues == 1,
       "kind and pidfile kept, max-queues changed");
    ok(strstr(err, "kind") && strstr(err, "pidfile"), "named: %s", err);

    unlink(file);
    return done_testing();
}
