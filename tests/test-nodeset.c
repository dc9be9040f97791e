/* The libxl node-set generator against recorded real-Xen trees.
 *
 * For each recording in tests/data/reference-trees/ the generator is given
 * the parameters of that guest's xl disk line; every node it produces must
 * be in the recorded tree with the same permissions and (for nodes only the
 * toolstack writes) the same value, and every toolstack-only node of the
 * recorded device directories must be produced.  Nodes the schema says the
 * backend, frontend or hotplug script (re)write later are compared for
 * presence and permissions only.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xbd-nodeset.h"
#include "xbd-schema.h"

static const char *srcdir;

static int
load_file(const char *name, const char *suffix, struct xbd_tree *t)
{
    char path[1024], *line = NULL;
    size_t cap = 0;
    FILE *fp;
    int r = 0;

    snprintf(path, sizeof path, "%s/data/reference-trees/%s-%s.txt", srcdir,
             name, suffix);
    fp = fopen(path, "r");
    if (fp == NULL)
        bail_out("cannot open %s", path);
    while (getline(&line, &cap, fp) >= 0) {
        line[strcspn(line, "\n")] = '\0';
        if (xbd_tree_parse_line(t, line) < 0)
            r = -1;
    }
    free(line);
    fclose(fp);
    return r;
}

/* The whole recorded tree (values), then its device parts again with
 * permissions; /libxl has no recorded permissions. */
static int
load(const char *name, struct xbd_tree *t)
{
    xbd_tree_init(t);
    if (load_file(name, "xenstore", t) < 0)
        return -1;
    return load_file(name, "xenstore-perms", t);
}

static bool
under(const char *path, const char *dir)
{
    size_t dl = strlen(dir);
    return strncmp(path, dir, dl) == 0 && (path[dl] == '\0' || path[dl] == '/');
}

/* The key of the schema for an absolute path inside dir ("" = the dir). */
static const struct xbd_key *
key_of(const char *dir, const char *path, enum xbd_side side, bool *is_dir)
{
    size_t dl = strlen(dir);

    *is_dir = strcmp(path, dir) == 0;
    if (*is_dir || strncmp(path, dir, dl) != 0 || path[dl] != '/')
        return NULL;
    return xbd_schema_lookup(side, path + dl + 1, NULL);
}

static void
compare(const char *name, const struct xbd_disk_spec *spec)
{
    struct xbd_tree t;
    struct xbd_nodeset set = { 0 };
    int bad_value = 0, bad_perm = 0, absent = 0, extra = 0;
    int nchecked_perms = 0, nlibxl = 0;

    ok(load(name, &t) == 0, "%s: recorded tree parses", name);
    if (xbd_nodeset_build(spec, &set) != 0) {
        ok(0, "%s: node set builds: %s", name, set.error);
        xbd_tree_free(&t);
        return;
    }
    for (size_t i = 0; i < set.n; i++) {
        const struct xbd_set_node *g = &set.nodes[i];
        const struct xbd_tree_node *r = xbd_tree_get(&t, g->path);
        enum xbd_side side = strncmp(g->path, set.be_dir, strlen(set.be_dir)) == 0
                             ? XBD_SIDE_BE : XBD_SIDE_FE;
        bool is_dir;
        const struct xbd_key *k = key_of(side == XBD_SIDE_BE ? set.be_dir : set.fe_dir,
                                         g->path, side, &is_dir);
        char a[64], b[64];

        bool priv = under(g->path, set.libxl_dir);

        if (priv) {
            /* libxl's private copy: only the toolstack writes it. */
            is_dir = true;
            k = NULL;
        }
        if (!is_dir && k == NULL) {
            diag("%s: generated %s is not in the schema", name, g->path);
            extra++;
            continue;
        }
        if (r == NULL) {
            diag("%s: generated %s is not in the recorded tree", name, g->path);
            extra++;
            continue;
        }
        /* Later writers may have changed the value (state 1 -> 4). */
        if ((is_dir || k->writers == XBD_WR_TOOLSTACK) &&
            strcmp(r->value, g->value) != 0) {
            diag("%s: %s = \"%s\", recorded \"%s\"", name, g->path, g->value, r->value);
            bad_value++;
        }
        if (r->nperms < 0) {
            if (!priv) {
                diag("%s: %s has no recorded permissions", name, g->path);
                bad_perm++;
            }
            continue;
        }
        nchecked_perms++;
        xbd_perms_format(g->perms, g->nperms, a, sizeof a);
        xbd_perms_format(r->perms, r->nperms, b, sizeof b);
        if (strcmp(a, b) != 0) {
            diag("%s: %s perms (%s), recorded (%s)", name, g->path, a, b);
            bad_perm++;
        }
    }
    /* Every recorded node only the toolstack writes must be generated. */
    for (size_t i = 0; i < t.n; i++) {
        const char *p = t.nodes[i].path;
        bool is_dir, found = false;
        const struct xbd_key *k = key_of(set.be_dir, p, XBD_SIDE_BE, &is_dir);
        if (!is_dir && k == NULL)
            k = key_of(set.fe_dir, p, XBD_SIDE_FE, &is_dir);
        if (under(p, set.libxl_dir)) {
            nlibxl++;
        } else if (!is_dir && (k == NULL || k->writers != XBD_WR_TOOLSTACK)) {
            continue;
        }
        for (size_t j = 0; j < set.n && !found; j++)
            found = strcmp(set.nodes[j].path, p) == 0;
        if (!found) {
            diag("%s: recorded toolstack node %s not generated", name, p);
            absent++;
        }
    }
    is_int(extra, 0, "%s: every generated node is recorded", name);
    is_int(bad_value, 0, "%s: toolstack-only values match", name);
    is_int(bad_perm, 0, "%s: permissions match", name);
    is_int(absent, 0, "%s: every recorded toolstack node is generated", name);
    ok(nchecked_perms >= 20 && nlibxl >= 14,
       "%s: compared %d permissions, %d /libxl nodes", name, nchecked_perms, nlibxl);
    xbd_nodeset_free(&set);
    xbd_tree_free(&t);
}

static struct xbd_disk_spec
pv_disk(unsigned fdom, const char *target, enum xbd_backendtype bt)
{
    struct xbd_disk_spec s = {
        .backend_domid = 0, .frontend_domid = fdom, .vdev = "xvda",
        .target = target, .format = "raw", .readwrite = true,
        .backendtype = bt, .cdrom = false, .trusted = -1,
        .direct_io_safe = false, .discard_enable = -1, .script = NULL,
        .protocol = "x86_64-abi",
    };
    return s;
}

static const char *
value_of(const struct xbd_nodeset *set, const char *dir, const char *rel)
{
    char path[256];

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->nodes[i].path, path) == 0)
            return set->nodes[i].value;
    return NULL;
}

static void
test_options(void)
{
    struct xbd_disk_spec s = pv_disk(7, "/srv/cd.iso", XBD_BACKENDTYPE_PHY);
    struct xbd_nodeset set = { 0 };
    const char *v;

    s.cdrom = true;
    s.vdev = "hdc";
    s.direct_io_safe = true;
    s.trusted = 0;
    s.script = "xbd-block";
    s.protocol = NULL;
    is_int(xbd_nodeset_build(&s, &set), 0, "cdrom node set builds");
    ok(set.devid == 5632 && strcmp(set.be_dir, "/local/domain/0/backend/vbd/7/5632") == 0,
       "hdc -> devid 5632, backend/vbd");
    ok((v = value_of(&set, set.be_dir, "mode")) && strcmp(v, "r") == 0, "cdrom is read-only");
    ok((v = value_of(&set, set.be_dir, "removable")) && strcmp(v, "1") == 0, "cdrom is removable");
    ok((v = value_of(&set, set.be_dir, "discard-enable")) && strcmp(v, "0") == 0,
       "discard defaults to off for read-only");
    ok((v = value_of(&set, set.be_dir, "direct-io-safe")) && strcmp(v, "1") == 0, "direct-io-safe=1");
    ok((v = value_of(&set, set.be_dir, "script")) &&
       strcmp(v, "/etc/xen/scripts/xbd-block") == 0, "relative script under /etc/xen/scripts");
    ok((v = value_of(&set, set.fe_dir, "trusted")) && strcmp(v, "0") == 0, "untrusted");
    ok((v = value_of(&set, set.fe_dir, "device-type")) && strcmp(v, "cdrom") == 0, "fe device-type");
    ok(value_of(&set, set.fe_dir, "protocol") == NULL, "no protocol for HVM");
    xbd_nodeset_free(&set);

    s = pv_disk(3, "/img.qcow2", XBD_BACKENDTYPE_QDISK);
    s.format = "qcow2";
    is_int(xbd_nodeset_build(&s, &set), 0, "qdisk qcow2 builds");
    ok((v = value_of(&set, set.be_dir, "params")) && strcmp(v, "qcow2:/img.qcow2") == 0,
       "qdisk params qcow2:<path>");
    ok(value_of(&set, set.be_dir, "script") == NULL, "qdisk has no script");
    xbd_nodeset_free(&set);

    s = pv_disk(3, "/img.qcow2", XBD_BACKENDTYPE_PHY);
    s.format = "qcow2";
    is_int(xbd_nodeset_build(&s, &set), -EINVAL, "phy refuses qcow2");
    ok(strstr(set.error, "raw") != NULL, "error says why: %s", set.error);
    s = pv_disk(3, "/dev/x", XBD_BACKENDTYPE_PHY);
    s.vdev = "xvd";
    is_int(xbd_nodeset_build(&s, &set), -EINVAL, "invalid vdev refused");
}

static void
count_finding(void *opaque, const struct xbd_finding *f)
{
    diag("finding: %s: %s: %s (expected: %s)", f->path,
         xbd_finding_class_name(f->cls), f->what, f->expect);
    (*(int *)opaque)++;
}

/* A freshly attached device (both states 1) passes the checker. */
static void
test_checker_accepts(enum xbd_backendtype bt, bool cdrom)
{
    struct xbd_disk_spec s = pv_disk(9, "/dev/vg/guest", bt);
    struct xbd_nodeset set = { 0 };
    struct xbd_tree t;
    int n = 0, r;

    s.cdrom = cdrom;
    xbd_tree_init(&t);
    is_int(xbd_nodeset_build(&s, &set), 0, "build %s%s", bt == XBD_BACKENDTYPE_QDISK ? "qdisk" : "phy",
           cdrom ? " cdrom" : "");
    for (size_t i = 0; i < set.n; i++)
        xbd_tree_add(&t, set.nodes[i].path, set.nodes[i].value,
                     set.nodes[i].perms, set.nodes[i].nperms);
    r = xbd_check_tree(&t, count_finding, &n);
    ok(r == 0 && n == 0, "the checker accepts the fresh node set (%d findings)", n);
    xbd_nodeset_free(&set);
    xbd_tree_free(&t);
}

static void
test_parse_line(void)
{
    struct xbd_tree t;
    const struct xbd_tree_node *n;

    xbd_tree_init(&t);
    is_int(xbd_tree_parse_line(&t, "/a = \"x\\\\y\\\"z\\t\\101\\x42\"   (n3,r0,b7)"), 1,
           "escaped value with perms parses");
    n = xbd_tree_get(&t, "/a");
    ok(n && strcmp(n->value, "x\\y\"z\tAB") == 0, "value unescaped");
    ok(n && n->nperms == 3 && n->perms[0].domid == 3 && n->perms[0].perm == 'n' &&
       n->perms[2].domid == 7 && n->perms[2].perm == 'b', "perms parsed");
    is_int(xbd_tree_parse_line(&t, "/b = \"\""), 1, "empty value without perms");
    n = xbd_tree_get(&t, "/b");
    ok(n && n->nperms == -1, "no perms: unknown");
    is_int(xbd_tree_parse_line(&t, "xenstore-ls: xs_directory (/x): No such file"), 0,
           "diagnostic line ignored");
    is_int(xbd_tree_parse_line(&t, "/c = \"open"), -EINVAL, "unterminated value");
    is_int(xbd_tree_parse_line(&t, "/c = \"v\" (q0)"), -EINVAL, "bad perm letter");
    is_int(xbd_tree_parse_line(&t, "/c = \"v\" (n0,r)"), -EINVAL, "perm without domid");
    is_int(xbd_tree_parse_line(&t, "/c = \"v\" junk"), -EINVAL, "trailing junk");
    is_int(xbd_tree_parse_line(&t, "/c = \"\\q\""), -EINVAL, "unknown escape");
    is_int(xbd_tree_parse_line(&t, "/b = \"new\""), 1, "a repeated path replaces");
    ok(t.n == 2 && strcmp(xbd_tree_get(&t, "/b")->value, "new") == 0, "still two nodes");
    xbd_tree_free(&t);
}

int
main(void)
{
    struct xbd_disk_spec s;

    srcdir = getenv("srcdir");
    if (srcdir == NULL)
        srcdir = ".";

    s = pv_disk(2, "/tmp/disk-pf.img", XBD_BACKENDTYPE_PHY);
    compare("phy-file", &s);
    s = pv_disk(1, "/dev/loop0", XBD_BACKENDTYPE_PHY);
    compare("phy-loop", &s);
    s = pv_disk(3, "/dev/loop1", XBD_BACKENDTYPE_PHY);
    compare("multiqueue", &s);
    s = pv_disk(5, "/dev/loop2", XBD_BACKENDTYPE_PHY);
    compare("gnt-domu", &s);
    s = pv_disk(4, "/tmp/disk-qq.img", XBD_BACKENDTYPE_QDISK);
    compare("qdisk-qemu", &s);
    test_options();
    test_checker_accepts(XBD_BACKENDTYPE_PHY, false);
    test_checker_accepts(XBD_BACKENDTYPE_QDISK, false);
    test_checker_accepts(XBD_BACKENDTYPE_PHY, true);
    test_parse_line();
    return done_testing();
}
