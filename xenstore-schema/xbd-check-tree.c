/* xbdkit — xbd-check-tree: check blkif xenstore nodes against the schema.
 *
 * Reads a live tree through libxenstore (XENSTORED_PATH is honoured by
 * xs_open, so this works against xbd-sim as well as a real xenstored) or a
 * dump in `xenstore-ls -f` format (with or without -p), then runs the
 * checker of libxbdschema and prints one line per finding:
 *
 *   PATH: CLASS: WHAT (expected: EXPECT)
 *
 * Exit status: 0 clean, 1 findings, 2 usage error or the tree could not be
 * read.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenstore.h>

#include "xbd-schema.h"

#define USAGE \
    "Usage: xbd-check-tree [--quiet] [--dump FILE]\n" \
    "Check every blkif device node in xenstore against the xbdkit schema.\n" \
    "\n" \
    "  -d, --dump FILE  read `xenstore-ls -f` (optionally -p) output from FILE\n" \
    "                   ('-' for stdin) instead of a live xenstored\n" \
    "  -q, --quiet      print nothing; the exit status says it all\n" \
    "  -h, --help       show this help\n" \
    "  -V, --version    show the version\n" \
    "\n" \
    "Without --dump the tree is read through libxenstore (honours\n" \
    "XENSTORED_PATH): /local/domain/*/backend/{vbd,qdisk,vbd3}/ and\n" \
    "/local/domain/*/device/vbd/.  One line per finding:\n" \
    "  PATH: CLASS: WHAT (expected: EXPECT)\n" \
    "Exit status: 0 clean, 1 findings, 2 error.  See xbd-check-tree(1).\n"

static const char *progname = "xbd-check-tree";

static void
print_finding(void *opaque, const struct xbd_finding *f)
{
    if (*(const bool *)opaque)
        return;
    printf("%s: %s: %s (expected: %s)\n", f->path,
           xbd_finding_class_name(f->cls), f->what, f->expect);
}

/* ---- dump files --------------------------------------------------------------- */

static int
read_dump(const char *file, struct xbd_tree *t)
{
    FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    int r = 0;

    if (fp == NULL) {
        fprintf(stderr, "%s: %s: %s\n", progname, file, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        int pr = xbd_tree_parse_line(t, line);
        if (pr < 0) {
            fprintf(stderr, "%s: %s:%u: %s: not a `xenstore-ls -f` line\n",
                    progname, file, lineno,
                    pr == -ENOMEM ? "out of memory" : "malformed");
            r = -1;
            break;
        }
    }
    if (ferror(fp)) {
        fprintf(stderr, "%s: %s: read error\n", progname, file);
        r = -1;
    }
    free(line);
    if (fp != stdin)
        fclose(fp);
    return r;
}

/* ---- live trees ---------------------------------------------------------------- */

/* Depth-first copy of path and everything below it.  A node that vanishes
 * while we walk (ENOENT) is skipped: the transaction makes that rare. */
static int
walk(struct xs_handle *xs, xs_transaction_t tx, const char *path,
     struct xbd_tree *t, int depth)
{
    unsigned int len = 0, nperms = 0, nchild = 0;
    char *value;
    struct xs_permissions *xp;
    struct xbd_perm perms[XBD_MAX_PERMS];
    char **children;
    int n = 0, r;

    if (depth > 16)
        return 0;
    value = xs_read(xs, tx, path, &len);
    if (value == NULL)
        return errno == ENOENT ? 0 : -errno;
    xp = xs_get_permissions(xs, tx, path, &nperms);
    if (xp != NULL) {
        for (unsigned i = 0; i < nperms && n < XBD_MAX_PERMS; i++, n++) {
            static const char letters[] = { 'n', 'r', 'w', 'b' };
            perms[n].domid = xp[i].id;
            perms[n].perm = letters[xp[i].perms & 3];
        }
        free(xp);
    }
    r = xbd_tree_add(t, path, value, xp ? perms : NULL, xp ? n : 0);
    free(value);
    if (r < 0)
        return r;
    children = xs_directory(xs, tx, path, &nchild);
    if (children == NULL)
        return 0;
    for (unsigned i = 0; i < nchild && r == 0; i++) {
        size_t plen = strlen(path) + strlen(children[i]) + 2;
        char *child = malloc(plen);
        if (child == NULL) {
            r = -ENOMEM;
            break;
        }
        snprintf(child, plen, "%s/%s", path, children[i]);
        r = walk(xs, tx, child, t, depth + 1);
        free(child);
    }
    free(children);
    return r;
}

static int
read_live(struct xbd_tree *t)
{
    static const char *const subtrees[] = {
        "backend/vbd", "backend/qdisk", "backend/vbd3", "device/vbd",
    };
    struct xs_handle *xs = xs_open(0);
    xs_transaction_t tx;
    unsigned int ndom = 0;
    char **doms;
    int r = 0;

    if (xs == NULL) {
        fprintf(stderr, "%s: cannot connect to xenstored: %s "
                "(is it running? set XENSTORED_PATH for xbd-sim)\n",
                progname, strerror(errno));
        return -1;
    }
    /* One read-only transaction: a consistent snapshot, then aborted. */
    tx = xs_transaction_start(xs);
    doms = xs_directory(xs, tx, "/local/domain", &ndom);
    for (unsigned i = 0; doms && i < ndom && r == 0; i++) {
        for (size_t s = 0; s < sizeof subtrees / sizeof subtrees[0] && r == 0; s++) {
            char path[256];
            snprintf(path, sizeof path, "/local/domain/%s/%s", doms[i], subtrees[s]);
            r = walk(xs, tx, path, t, 0);
        }
    }
    if (doms == NULL && errno != ENOENT) {
        fprintf(stderr, "%s: cannot list /local/domain: %s\n", progname,
                strerror(errno));
        r = -1;
    } else if (r < 0) {
        fprintf(stderr, "%s: reading the tree: %s\n", progname, strerror(-r));
    }
    free(doms);
    if (tx != XBT_NULL)
        xs_transaction_end(xs, tx, true);
    xs_close(xs);
    return r < 0 ? -1 : 0;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dump", required_argument, NULL, 'd' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *dump = NULL;
    bool quiet = false;
    struct xbd_tree t;
    int c, r;

    while ((c = getopt_long(argc, argv, "d:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dump = optarg; break;
        case 'q': quiet = true; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case 'V': printf("%s %s\n", progname, PACKAGE_VERSION); return 0;
        default: fputs(USAGE, stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", progname, argv[optind]);
        fputs(USAGE, stderr);
        return 2;
    }
    xbd_tree_init(&t);
    if ((dump ? read_dump(dump, &t) : read_live(&t)) < 0) {
        xbd_tree_free(&t);
        return 2;
    }
    r = xbd_check_tree(&t, print_finding, &quiet);
    xbd_tree_free(&t);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", progname, strerror(-r));
        return 2;
    }
    if (r > 0 && !quiet)
        fprintf(stderr, "%s: %d finding%s\n", progname, r, r == 1 ? "" : "s");
    return r > 0 ? 1 : 0;
}
