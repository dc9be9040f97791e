/* xbdctl — the toolstack role in xbd-sim: domains and block devices.
 *
 * Run it as dom0 (inside `xbd-sim --run`, or with XBD_SIM_DIR set).  Each
 * command is one entry of the table below: name, usage, handler.  The block
 * commands live in block.c.  See xbdctl(8). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-proto.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xbdctl.h"

static int
control(void)
{
    struct simp_hello_rep h;
    int fds[2];
    int s = xbd_sim_connect(SIMP_ROLE_CONTROL, &h, fds);

    if (s < 0) {
        fprintf(stderr, "xbdctl: %s\n", xbd_platform_error());
        exit(1);
    }
    return s;
}

static int
call_or_die(int s, uint32_t op, const void *req, uint32_t len, void *rep,
            uint32_t max, uint32_t *rep_len)
{
    if (xbd_sim_call(s, op, req, len, rep, max, rep_len, NULL, 0) < 0) {
        fprintf(stderr, "xbdctl: %s\n", xbd_platform_error());
        exit(1);
    }
    return 0;
}

/* NAME or decimal ID -> domid, through the sim's domain list. */
static uint32_t
resolve(int s, const char *what)
{
    static char buf[SIMP_MSG_MAX];
    uint32_t len, id;
    char *line, *save = NULL;

    call_or_die(s, SIMP_DOMAIN_LIST, NULL, 0, buf, sizeof(buf) - 1, &len);
    buf[len] = '\0';
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');

        if (sp == NULL)
            continue;
        *sp = '\0';
        if (strcmp(sp + 1, what) == 0 || strcmp(line, what) == 0)
            if (xbd_parse_u32_range(line, 0, 0x7fef, &id) == 0)
                return id;
    }
    fprintf(stderr, "xbdctl: no domain \"%s\" (see `xbdctl domain-list`)\n", what);
    exit(1);
}

uint32_t
xbdctl_resolve_domain(const char *what)
{
    int s = control();
    uint32_t domid = resolve(s, what);

    close(s);
    return domid;
}

static int
cmd_domain_create(int argc, char **argv)
{
    int s = control();
    uint32_t domid, len;

    call_or_die(s, SIMP_DOMAIN_CREATE, argv[1], (uint32_t)strlen(argv[1]),
                &domid, sizeof(domid), &len);
    if (len != sizeof(domid)) {
        fprintf(stderr, "xbdctl: malformed reply from xbd-sim\n");
        return 1;
    }
    printf("%u\n", domid);
    return 0;
}

static int
cmd_domain_destroy(int argc, char **argv)
{
    int s = control();
    uint32_t domid = resolve(s, argv[1]);

    call_or_die(s, SIMP_DOMAIN_DESTROY, &domid, sizeof(domid), NULL, 0, NULL);
    return 0;
}

static int
cmd_domain_list(int argc, char **argv)
{
    static char buf[SIMP_MSG_MAX];
    int s = control();
    uint32_t len;

    call_or_die(s, SIMP_DOMAIN_LIST, NULL, 0, buf, sizeof(buf), &len);
    printf("%-6s %s\n", "ID", "NAME");
    fwrite(buf, 1, len, stdout);
    return 0;
}

static int
cmd_run_as(int argc, char **argv)
{
    const char *dir = getenv("XBD_SIM_DIR");
    char id[16], xsp[512];
    uint32_t domid;
    int s;

    if (argc < 4 || strcmp(argv[2], "--") != 0)
        return -1;
    s = control();
    domid = resolve(s, argv[1]);
    close(s);
    snprintf(id, sizeof(id), "%u", domid);
    snprintf(xsp, sizeof(xsp), "%s/d%u.xs", dir, domid);
    setenv("XBD_SIM_DOMID", id, 1);
    setenv("XENSTORED_PATH", xsp, 1);
    execvp(argv[3], argv + 3);
    fprintf(stderr, "xbdctl: run-as: %s: %s\n", argv[3], strerror(errno));
    return 127;
}

static const struct command {
    const char *name;
    int nargs;                  /* arguments after the name; -1: at least 3,
                                   -2: at least 2, -3: the handler checks */
    const char *usage;
    const char *help;
    int (*fn)(int argc, char **argv);
} commands[] = {
    { "domain-create", 1, "NAME", "create a domain; prints its domid",
      cmd_domain_create },
    { "domain-destroy", 1, "NAME|ID", "destroy a domain", cmd_domain_destroy },
    { "domain-list", 0, "", "list domains", cmd_domain_list },
    { "run-as", -1, "NAME|ID -- CMD [ARG]...",
      "run CMD as a process of that domain", cmd_run_as },
    { "block-attach", -2, "DOMAIN TARGET [KEY=VALUE]...",
      "attach a disk as libxl 4.17 does (keys: vdev= mode=r|w "
      "backendtype=phy|qdisk\n      devtype=disk|cdrom format= trusted=0|1 "
      "direct-io-safe=0|1 discard-enable=0|1 script=\n      protocol= backend=DOMAIN); "
      "prints the vdev", xbdctl_block_attach },
    { "block-detach", -2, "DOMAIN VDEV|DEVID [--timeout SECONDS]",
      "detach as libxl does: online=0, Closing, wait for Closed (10 s), remove",
      xbdctl_block_detach },
    { "block-list", 1, "DOMAIN",
      "list a domain's disks with backend and frontend states", xbdctl_block_list },
    { "block-resize", 3, "DOMAIN VDEV|DEVID SIZE",
      "grow a file-backed disk to SIZE (k, M, G suffixes); waits until the backend\n"
      "      publishes the new size to a connected frontend", xbdctl_block_resize },
    { "status", -3, "",
      "every device xbd-backd serves: states, ring, queues, features, errors",
      xbdctl_status },
    { "stats", -3, "[--json]",
      "xbd-backd's per-queue counters, as a table or as the daemon's JSON",
      xbdctl_stats },
};

static void
usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: xbdctl COMMAND [ARG]...\n"
               "The toolstack for xbd-sim; run as dom0 (XBD_SIM_DIR set).  status and\n"
               "stats also work on Xen: they only need xbd-backd's control socket.\n\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s %s\n      %s\n", commands[i].name, commands[i].usage,
                commands[i].help);
}

int
main(int argc, char **argv)
{
    size_t i;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *c = &commands[i];
        int r;

        if (strcmp(argv[1], c->name) != 0)
            continue;
        if ((c->nargs >= 0 && argc - 2 != c->nargs) ||
            (c->nargs == -1 && argc < 5) || (c->nargs == -2 && argc < 4)) {
            fprintf(stderr, "Usage: xbdctl %s %s\n", c->name, c->usage);
            return 2;
        }
        r = c->fn(argc - 1, argv + 1);
        if (r < 0) {
            fprintf(stderr, "Usage: xbdctl %s %s\n", c->name, c->usage);
            return 2;
        }
        return r;
    }
    fprintf(stderr, "xbdctl: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
