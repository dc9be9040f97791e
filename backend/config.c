/* xbd-backd — the knobs.  One table drives the command line (getopt_long),
 * the config file ("key = value", the same names), --help and what a
 * SIGHUP may change.  See backd.h and xbd-backd(8). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backd.h"
#include "xbd-parse.h"
#include "xbd-ring.h"
#include "negotiate.h"

const char *const xbd_kind_names[XBD_KIND_COUNT] = { "vbd", "qdisk", "vbd3" };

enum opt_type { OPT_UINT, OPT_BOOL, OPT_STR, OPT_KIND };

/* Flags: where an option may appear and whether SIGHUP may change it. */
#define F_NOFILE  1u    /* command line only */
#define F_FIXED   2u    /* needs a restart */

struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    size_t size;            /* OPT_STR: buffer size */
    unsigned int min, max, dflt;
    unsigned int flags;
    const char *arg;
    const char *help;
};

#define U(f) offsetof(struct xbd_config, f), 0
#define S(f) offsetof(struct xbd_config, f), sizeof(((struct xbd_config *)0)->f)

static const struct opt opts[] = {
    { "kind", OPT_KIND, U(kinds), 0, 0, 0, F_FIXED, "KIND",
      "serve backend/KIND: vbd, qdisk or vbd3; repeat\n"
      "or list with commas (default qdisk)" },
    { "max-ring-order", OPT_UINT, U(max_ring_order), 0, XBD_RING_ORDER_LIMIT, 6, 0, "N",
      "advertise rings of up to 2^N pages (default 6,\n"
      "limit 8; Linux frontends take at most 4)" },
    { "max-queues", OPT_UINT, U(max_queues), 1, XBD_MAX_QUEUES, 4, 0, "N",
      "advertise up to N queues (rings) per device\n"
      "(default 4, limit 64)" },
    { "max-indirect", OPT_UINT, U(max_indirect), 0, XBD_MAX_INDIRECT_SEGMENTS, 256, 0,
      "N", "advertise N indirect segments per request:\n"
      "0 (none) or 12..4096 (default 256 = 1 MiB)" },
    { "persistent-max", OPT_UINT, U(persistent_max), 0, 1u << 20, XBD_PERSISTENT_AUTO, 0,
      "N|auto", "keep up to N persistent grants mapped per queue;\n"
      "auto (default): ring entries x segments per\n"
      "request, 1024..16384; 0: no feature-persistent" },
    { "grant-map", OPT_BOOL, U(grant_map), 0, 1, 0, 0, NULL,
      "without persistent grants, map each request's\n"
      "grants instead of copying them (the default)" },
    { "poll-start-rate", OPT_UINT, U(poll_start_rate), 0, UINT32_MAX, 20000, 0, "N",
      "poll a ring once requests arrive faster than N\n"
      "per second (default 20000), or soon after the\n"
      "queue's previous work (4 x --poll-idle-us)" },
    { "poll-idle-us", OPT_UINT, U(poll_idle_us), 0, 1000000, 50, 0, "US",
      "stop polling after US microseconds without work\n"
      "(default 50; 0: never poll)" },
    { "uring-depth", OPT_UINT, U(uring_depth), 0, 32768, 0, 0, "N",
      "io_uring entries per queue (default 0: sized\n"
      "from the ring)" },
    { "batch-budget", OPT_UINT, U(batch_budget), 1, 65536, 128, 0, "N",
      "requests a queue takes per wakeup before\n"
      "yielding (default 128)" },
    { "drain-ms", OPT_UINT, U(drain_ms), 100, 600000, 5000, 0, "MS",
      "wait at most MS for in-flight I/O when a device\n"
      "closes (default 5000)" },
    { "detach-grace-ms", OPT_UINT, U(detach_grace_ms), 0, 600000, 5000, 0, "MS",
      "after online=0, wait MS for a connected frontend\n"
      "to close before closing anyway (default 5000;\n"
      "libxl gives up after 10 s)" },
    { "config", OPT_STR, S(config_file), 0, 0, 0, F_NOFILE | F_FIXED, "FILE",
      "read options from FILE (key = value); the\n"
      "command line wins" },
    { "syslog", OPT_BOOL, U(use_syslog), 0, 1, 0, F_FIXED, NULL,
      "log to syslog (daemon facility) instead of stderr" },
    { "debug", OPT_BOOL, U(debug), 0, 1, 0, 0, NULL, "log debug lines too" },
    { "platform", OPT_STR, S(platform), 0, 0, 0, F_FIXED, "sim|xen",
      "grants and event channels from xbd-sim or Xen\n"
      "(default: detect)" },
    { "pidfile", OPT_STR, S(pidfile), 0, 0, 0, F_FIXED, "FILE",
      "write the daemon's pid to FILE; removed at exit" },
    { "control-socket", OPT_STR, S(control_socket), 0, 0, 0, F_FIXED, "PATH",
      "answer xbdctl on PATH (default\n"
      "/run/xbd-backd/control.sock; with the sim:\n"
      "$XBD_SIM_DIR/xbd-backd.sock)" },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

__attribute__((format(printf, 3, 4))) static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

const char *
xbd_config_persistent_text(unsigned int v, char *buf, size_t len)
{
    if (v == XBD_PERSISTENT_AUTO)
        return "auto";
    snprintf(buf, len, "%u", v);
    return buf;
}

void
xbd_config_defaults(struct xbd_config *c)
{
    memset(c, 0, sizeof(*c));
    /* memcpy: the table knows the offsets, not the alignment. */
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].type == OPT_UINT)
            memcpy((char *)c + opts[i].off, &opts[i].dflt, sizeof(unsigned int));
}

static const struct opt *
find(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

static int
parse_bool_word(const char *v, bool *out)
{
    if (strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
        strcmp(v, "on") == 0)
        *out = true;
    else if (strcmp(v, "0") == 0 || strcmp(v, "no") == 0 ||
             strcmp(v, "false") == 0 || strcmp(v, "off") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int
parse_kinds(const char *v, unsigned int *mask, char *err, size_t errlen)
{
    char buf[64], *save = NULL;

    if (strlen(v) >= sizeof(buf))
        return fail(err, errlen, "kind \"%.20s...\": too long", v);
    strcpy(buf, v);
    for (char *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
        int k;

        for (k = 0; k < XBD_KIND_COUNT; k++)
            if (strcmp(w, xbd_kind_names[k]) == 0)
                break;
        if (k == XBD_KIND_COUNT)
            return fail(err, errlen, "kind \"%s\": expected vbd, qdisk or vbd3", w);
        *mask |= 1u << k;
    }
    return 0;
}

int
xbd_config_set(struct xbd_config *c, const char *name, const char *value,
               bool from_file, char *err, size_t errlen)
{
    const struct opt *o = find(name);
    uint64_t bit;
    char *field;
    uint32_t u;
    bool b;

    if (o == NULL)
        return fail(err, errlen, "unknown option \"%s\" (see xbd-backd --help)", name);
    bit = 1ull << (o - opts);
    if (from_file && (o->flags & F_NOFILE))
        return fail(err, errlen, "\"%s\" cannot be set in a config file", name);
    if (from_file && (c->cmdline_set & bit))
        return 0;                       /* the command line wins */
    field = (char *)c + o->off;
    switch (o->type) {
    case OPT_UINT:
        if (o->dflt == XBD_PERSISTENT_AUTO && strcmp(value, "auto") == 0)
            u = XBD_PERSISTENT_AUTO;
        else if (xbd_parse_u32_range(value, o->min, o->max, &u) < 0)
            return fail(err, errlen, "%s \"%s\": expected a number %u..%u%s", name,
                        value, o->min, o->max,
                        o->dflt == XBD_PERSISTENT_AUTO ? " or auto" : "");
        if (strcmp(name, "max-indirect") == 0 && u != 0 &&
            u <= BLKIF_MAX_SEGMENTS_PER_REQUEST)
            return fail(err, errlen, "max-indirect %u: expected 0 or %u..%u", u,
                        BLKIF_MAX_SEGMENTS_PER_REQUEST + 1, o->max);
        memcpy(field, &(unsigned int){ u }, sizeof(unsigned int));
        break;
    case OPT_BOOL:
        if (parse_bool_word(value, &b) < 0)
            return fail(err, errlen, "%s \"%s\": expected yes or no", name, value);
        *(bool *)field = b;
        break;
    case OPT_STR:
        if (strlen(value) >= o->size)
            return fail(err, errlen, "%s: longer than %zu bytes", name, o->size - 1);
        if (strcmp(name, "platform") == 0 && strcmp(value, "sim") != 0 &&
            strcmp(value, "xen") != 0)
            return fail(err, errlen, "platform \"%s\": expected sim or xen", value);
        strcpy(field, value);
        break;
    case OPT_KIND:
        /* The first --kind replaces the default; later ones add. */
        if (!from_file && !(c->cmdline_set & bit))
            c->kinds = 0;
        if (parse_kinds(value, &c->kinds, err, errlen) < 0)
            return -EINVAL;
        break;
    }
    if (!from_file)
        c->cmdline_set |= bit;
    return 0;
}

static char *
trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

int
xbd_config_load(struct xbd_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char line[1024], sub[200];
    bool kinds_seen = false;
    int n = 0, r = 0;

    if (f == NULL) {
        int e = errno;

        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
        char *k, *v, *eq;

        n++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            r = fail(err, errlen, "%s:%d: line too long", path, n);
            break;
        }
        k = trim(line);
        if (*k == '\0' || *k == '#')
            continue;
        eq = strchr(k, '=');
        if (eq == NULL) {
            r = fail(err, errlen, "%s:%d: expected \"key = value\"", path, n);
            break;
        }
        *eq = '\0';
        k = trim(k);
        v = trim(eq + 1);
        /* Kinds in a file replace the default, then accumulate. */
        if (strcmp(k, "kind") == 0 && !kinds_seen &&
            !(c->cmdline_set & (1ull << (find("kind") - opts)))) {
            c->kinds = 0;
            kinds_seen = true;
        }
        if (xbd_config_set(c, k, v, true, sub, sizeof(sub)) < 0)
            r = fail(err, errlen, "%s:%d: %s", path, n, sub);
    }
    fclose(f);
    return r;
}

void
xbd_config_usage(FILE *f)
{
    fprintf(f, "Usage: xbd-backd [OPTION]...\n"
               "The userspace blkback daemon: serves Xen block devices (blkif) from\n"
               "xenstore, on Xen or on xbd-sim.  See xbd-backd(8).\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char head[48];
        const char *h = opts[i].help;

        snprintf(head, sizeof(head), "--%s%s%s", opts[i].name,
                 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-26s ", head);
        for (; *h; h++) {
            fputc(*h, f);
            if (*h == '\n')
                fprintf(f, "  %-26s ", "");
        }
        fputc('\n', f);
    }
    fprintf(f, "  %-26s %s\n  %-26s %s\n", "--help", "show this help and exit",
            "--version", "show the version and exit");
}

int
xbd_config_parse_args(struct xbd_config *c, int argc, char **argv, char *err,
                      size_t errlen)
{
    struct option lo[NOPTS + 3];
    size_t i;
    int ch, idx;

    for (i = 0; i < NOPTS; i++) {
        lo[i].name = opts[i].name;
        lo[i].has_arg = opts[i].type == OPT_BOOL ? no_argument : required_argument;
        lo[i].flag = NULL;
        lo[i].val = 0x100 + (int)i;
    }
    lo[i++] = (struct option){ "help", no_argument, NULL, 'h' };
    lo[i++] = (struct option){ "version", no_argument, NULL, 'V' };
    lo[i] = (struct option){ NULL, 0, NULL, 0 };

    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hV", lo, &idx)) != -1) {
        if (ch == 'h') {
            xbd_config_usage(stdout);
            return 1;
        }
        if (ch == 'V') {
            printf("xbd-backd %s\n", PACKAGE_VERSION);
            return 1;
        }
        if (ch < 0x100)
            return fail(err, errlen, "%s: unknown option or missing argument "
                        "(see xbd-backd --help)",
                        optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        {
            const struct opt *o = &opts[ch - 0x100];

            if (xbd_config_set(c, o->name, o->type == OPT_BOOL ? "1" : optarg,
                               false, err, errlen) < 0)
                return -EINVAL;
        }
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument \"%s\" (see xbd-backd --help)",
                    argv[optind]);
    if (c->kinds == 0)
        c->kinds = XBD_KIND_QDISK;
    return 0;
}

unsigned int
xbd_config_keep_fixed(const struct xbd_config *cur, struct xbd_config *next,
                      char *err, size_t errlen)
{
    unsigned int n = 0;
    size_t used = 0;

    err[0] = '\0';
    for (size_t i = 0; i < NOPTS; i++) {
        const char *a = (const char *)cur + opts[i].off;
        char *b = (char *)next + opts[i].off;
        size_t sz = opts[i].type == OPT_STR ? opts[i].size
                  : opts[i].type == OPT_BOOL ? sizeof(bool) : sizeof(unsigned int);

        if (!(opts[i].flags & F_FIXED) || memcmp(a, b, sz) == 0)
            continue;
        memcpy(b, a, sz);
        if (used < errlen)
            used += (size_t)snprintf(err + used, errlen - used, "%s%s",
                                     n ? ", " : "", opts[i].name);
        n++;
    }
    return n;
}
