/* xbd-tree-cmp — compare what `xbdctl block-attach` and `block-detach` leave
 * in a live store with what libxl 4.17 does, for tests/test-xbdctl-libxl-tree.sh.
 *
 *   xbd-tree-cmp args RECORDING
 *       Two lines: the target of the recording's xl disk line, and the
 *       `xbdctl block-attach` options that say the same (vdev, mode,
 *       backendtype, format, …).
 *   xbd-tree-cmp attach RECORDING LIVE-DUMP LIVE-TARGET
 *       LIVE-DUMP is `xenstore-ls -fp /` right after block-attach.  The
 *       nodes libxl writes for the device (its backend and frontend
 *       directories with their parents, and libxl's copy under /libxl) are
 *       taken from the recorded tree and compared key by key with the live
 *       ones: the same set of paths, values and permissions.
 *   xbd-tree-cmp detach BEFORE-DUMP AFTER-DUMP FE-DOMID DEVID
 *       The nodes gone between the two dumps must be exactly those
 *       libxl__device_destroy removes: the frontend directory, libxl's copy,
 *       the backend directory, and each parent left empty above them
 *       (libxl__xs_path_cleanup).
 *
 * RECORDING is a prefix in tests/data/reference-trees/ (…/phy-file): its
 * -cfg.txt, -xenstore.txt and -xenstore-perms.txt are read.
 *
 * What differs legitimately between the recording and the sim is
 * normalised, never skipped: the frontend's domid (in paths, values and
 * permissions) becomes "$FE" and the disk's target path "$TARGET".  Values
 * that later writers changed on the recorded host come from libxl's own
 * record of what it wrote (/libxl/<domid>/device/vbd/<devid>); the
 * frontend's `state` has no such record and is created as 1
 * (Initialising), as the schema says; its `protocol`, which the guest
 * rewrites with the same ABI name, keeps the recorded value.  libxl's copy has no recorded
 * permissions: libxl creates /libxl/<domid> for dom0 only, (n0).
 *
 * Exit status: 0 when everything matches, 1 with every difference listed
 * on stdout, 2 for bad input.
 */
#include <config.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbd-schema.h"

__attribute__((format(printf, 1, 2), noreturn)) static void
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "xbd-tree-cmp: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

static void
load(struct xbd_tree *t, const char *path)
{
    char *line = NULL;
    size_t cap = 0;
    FILE *fp = fopen(path, "r");

    if (fp == NULL)
        die("cannot open %s", path);
    while (getline(&line, &cap, fp) >= 0) {
        line[strcspn(line, "\n")] = '\0';
        if (xbd_tree_parse_line(t, line) < 0)
            die("malformed line: %s", line);
    }
    free(line);
    fclose(fp);
}

static bool
under(const char *path, const char *dir)
{
    size_t dl = strlen(dir);

    return strncmp(path, dir, dl) == 0 && path[dl] == '/';
}

/* ---- the recording's xl config --------------------------------------------- */

struct disk_line {
    char target[256];
    char opts[512];             /* xbdctl block-attach KEY=VALUE options */
};

static void
read_cfg(const char *rec, struct disk_line *dl)
{
    char path[1024], *line = NULL, *p, *end, *tok, *save;
    size_t cap = 0;
    bool hvm = false, found = false;
    FILE *fp;

    snprintf(path, sizeof path, "%s-cfg.txt", rec);
    fp = fopen(path, "r");
    if (fp == NULL)
        die("cannot open %s", path);
    dl->target[0] = dl->opts[0] = '\0';
    while (getline(&line, &cap, fp) >= 0) {
        if (strncmp(line, "type", 4) == 0 && strstr(line, "\"hvm\"") != NULL)
            hvm = true;
        if (strncmp(line, "disk", 4) != 0)
            continue;
        p = strchr(line, '\'');
        end = p ? strchr(p + 1, '\'') : NULL;
        if (end == NULL)
            die("%s: disk line without a quoted disk", path);
        *end = '\0';
        found = true;
        for (tok = strtok_r(p + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            const char *o;
            char opt[300];

            tok += strspn(tok, " ");
            tok[strcspn(tok, " ")] = '\0';
            if (strncmp(tok, "target=", 7) == 0) {
                snprintf(dl->target, sizeof dl->target, "%s", tok + 7);
                continue;
            }
            /* xl's access=rw|ro is xbdctl's mode=w|r. */
            o = strcmp(tok, "access=rw") == 0 ? "mode=w"
                : strcmp(tok, "access=ro") == 0 ? "mode=r" : tok;
            snprintf(opt, sizeof opt, "%s%s", dl->opts[0] ? " " : "", o);
            if (strlen(dl->opts) + strlen(opt) >= sizeof dl->opts)
                die("%s: disk line too long", path);
            strcat(dl->opts, opt);
        }
    }
    free(line);
    fclose(fp);
    if (!found || dl->target[0] == '\0')
        die("%s: no disk line with a target", path);
    /* libxl writes the guest's native protocol for PV guests only. */
    if (hvm)
        strcat(dl->opts, " protocol=none");
}

/* ---- normalisation ------------------------------------------------------------ */

struct norm {
    unsigned fe;                /* the frontend's domid */
    const char *target;         /* the disk's target path */
};

/* Replace the frontend's domid where a path names it: /local/domain/F,
 * /local/domain/B/backend/KIND/F, /libxl/F. */
static void
norm_path(const struct norm *nm, const char *in, char *out, size_t len)
{
    char id[16], buf[512];
    const char *comp[16];
    int n = 0;
    size_t o = 0;

    snprintf(id, sizeof id, "%u", nm->fe);
    snprintf(buf, sizeof buf, "%s", in);
    for (char *s = buf + 1, *save = NULL, *c = strtok_r(s, "/", &save); c && n < 16;
         c = strtok_r(NULL, "/", &save))
        comp[n++] = c;
    if (n >= 3 && !strcmp(comp[0], "local") && !strcmp(comp[1], "domain") &&
        !strcmp(comp[2], id))
        comp[2] = "$FE";
    if (n >= 6 && !strcmp(comp[0], "local") && !strcmp(comp[1], "domain") &&
        !strcmp(comp[3], "backend") && !strcmp(comp[5], id))
        comp[5] = "$FE";
    if (n >= 2 && !strcmp(comp[0], "libxl") && !strcmp(comp[1], id))
        comp[1] = "$FE";
    out[0] = '\0';
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "/%s", comp[i]);
    if (strlen(in) >= sizeof buf || n == 16)
        snprintf(out, len, "%s", in);   /* deeper than any device node */
}

static void
norm_value(const struct norm *nm, const struct xbd_key *k, const char *in,
           char *out, size_t len)
{
    const char *t;

    if (strncmp(in, "/local/", 7) == 0 || strncmp(in, "/libxl/", 7) == 0) {
        norm_path(nm, in, out, len);
    } else if (k != NULL && k->type == XBD_T_DOMID && strtoul(in, NULL, 10) == nm->fe &&
               strspn(in, "0123456789") == strlen(in) && in[0] != '\0') {
        snprintf(out, len, "$FE");
    } else if (nm->target[0] != '\0' && (t = strstr(in, nm->target)) != NULL) {
        snprintf(out, len, "%.*s$TARGET%s", (int)(t - in), in, t + strlen(nm->target));
    } else {
        snprintf(out, len, "%s", in);
    }
}

static void
norm_perms(const struct norm *nm, const struct xbd_perm *p, int n, char *out, size_t len)
{
    size_t o = 0;

    out[0] = '\0';
    for (int i = 0; i < n && o < len; i++) {
        if (p[i].domid == nm->fe)
            o += (size_t)snprintf(out + o, len - o, "%s%c$FE", i ? "," : "", p[i].perm);
        else
            o += (size_t)snprintf(out + o, len - o, "%s%c%u", i ? "," : "", p[i].perm,
                                  p[i].domid);
    }
}

/* ---- the device in a tree -------------------------------------------------------- */

struct device {
    unsigned fe, be_dom, devid;
    char kind[32];
    char fe_dir[128], be_dir[128], lx_dir[128];
    char be_parent[2][128], fe_parent[128], lx_parent[128];
};

/* Find the one disk in t (devid: any when 0); false when there is none. */
static bool
find_device(const struct xbd_tree *t, unsigned devid, struct device *d)
{
    int found = 0;

    for (size_t i = 0; i < t->n; i++) {
        unsigned f, id;
        int end = 0;
        const struct xbd_tree_node *b;
        char bpath[160];

        if (sscanf(t->nodes[i].path, "/local/domain/%u/device/vbd/%u%n", &f, &id, &end) != 2 ||
            t->nodes[i].path[end] != '\0' || (devid != 0 && id != devid))
            continue;
        if (found++)
            die("more than one disk in the tree (second: %s)", t->nodes[i].path);
        d->fe = f;
        d->devid = id;
        snprintf(d->fe_dir, sizeof d->fe_dir, "%s", t->nodes[i].path);
        snprintf(d->lx_dir, sizeof d->lx_dir, "/libxl/%u/device/vbd/%u", f, id);
        snprintf(bpath, sizeof bpath, "%s/backend", d->lx_dir);
        /* libxl's copy, which the guest cannot rewrite, names the backend. */
        b = xbd_tree_get(t, bpath);
        if (b == NULL)
            die("%s: no libxl record of the backend", bpath);
        snprintf(d->be_dir, sizeof d->be_dir, "%s", b->value);
        if (sscanf(d->be_dir, "/local/domain/%u/backend/%31[^/]/", &d->be_dom, d->kind) != 2)
            die("backend path %s is not /local/domain/B/backend/KIND/F/DEVID", d->be_dir);
    }
    if (!found)
        return false;
    snprintf(d->be_parent[0], sizeof d->be_parent[0], "/local/domain/%u/backend/%s",
             d->be_dom, d->kind);
    snprintf(d->be_parent[1], sizeof d->be_parent[1], "/local/domain/%u/backend/%s/%u",
             d->be_dom, d->kind, d->fe);
    snprintf(d->fe_parent, sizeof d->fe_parent, "/local/domain/%u/device/vbd", d->fe);
    snprintf(d->lx_parent, sizeof d->lx_parent, "/libxl/%u/device/vbd", d->fe);
    return true;
}

enum region { R_NONE, R_PARENT, R_DIR, R_BE, R_FE, R_LX };

/* Where a path lies relative to the device; *key receives the schema entry
 * of a node inside <be>, <fe> or libxl's copy of <be>. */
static enum region
region_of(const struct device *d, const char *p, const struct xbd_key **key)
{
    *key = NULL;
    if (!strcmp(p, d->be_parent[0]) || !strcmp(p, d->be_parent[1]) ||
        !strcmp(p, d->fe_parent) || !strcmp(p, d->lx_parent))
        return R_PARENT;
    if (!strcmp(p, d->be_dir) || !strcmp(p, d->fe_dir) || !strcmp(p, d->lx_dir))
        return R_DIR;
    if (under(p, d->be_dir)) {
        *key = xbd_schema_lookup(XBD_SIDE_BE, p + strlen(d->be_dir) + 1, NULL);
        return R_BE;
    }
    if (under(p, d->fe_dir)) {
        *key = xbd_schema_lookup(XBD_SIDE_FE, p + strlen(d->fe_dir) + 1, NULL);
        return R_FE;
    }
    if (under(p, d->lx_dir)) {
        *key = xbd_schema_lookup(XBD_SIDE_BE, p + strlen(d->lx_dir) + 1, NULL);
        return R_LX;
    }
    return R_NONE;
}

/* One node as compared: normalised path, value and permissions. */
struct cnode {
    char path[256], value[512], perms[96];
};

struct cset {
    struct cnode *v;
    size_t n, cap;
};

static struct cnode *
cset_add(struct cset *s)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL)
            die("%s", "out of memory");
    }
    return memset(&s->v[s->n++], 0, sizeof *s->v);
}

static const struct cnode *
cset_get(const struct cset *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].path, path))
            return &s->v[i];
    return NULL;
}

/* What libxl wrote at attach, from the recorded tree. */
static void
expected_set(const struct xbd_tree *t, const struct device *d, const struct norm *nm,
             struct cset *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct xbd_tree_node *r = &t->nodes[i];
        const struct xbd_key *k;
        enum region rg = region_of(d, r->path, &k);
        const char *value = r->value;
        struct cnode *c;

        if (rg == R_NONE)
            continue;
        /* Inside <be> and <fe>: only what the toolstack writes. */
        if ((rg == R_BE || rg == R_FE) && (k == NULL || !(k->writers & XBD_WR_TOOLSTACK)))
            continue;
        if (rg == R_BE && k->writers != XBD_WR_TOOLSTACK) {
            /* Changed since by the backend: libxl's copy has what it wrote. */
            char mirror[256];
            const struct xbd_tree_node *m;

            snprintf(mirror, sizeof mirror, "%s%s", d->lx_dir, r->path + strlen(d->be_dir));
            m = xbd_tree_get(t, mirror);
            if (m == NULL)
                die("no libxl record of the attach-time value of %s", r->path);
            value = m->value;
        } else if (rg == R_FE && strcmp(k->pattern, XBDK_STATE) == 0) {
            value = "1";        /* XenbusStateInitialising */
        }
        /* The frontend's `protocol` is rewritten by a PV guest with its
         * native ABI, the one libxl wrote: the recorded value stands. */
        c = cset_add(out);
        norm_path(nm, r->path, c->path, sizeof c->path);
        norm_value(nm, k, value, c->value, sizeof c->value);
        if (rg == R_LX || !strcmp(r->path, d->lx_parent) || !strcmp(r->path, d->lx_dir))
            snprintf(c->perms, sizeof c->perms, "n0");
        else if (r->nperms < 0)
            die("the recording has no permissions for %s", r->path);
        else
            norm_perms(nm, r->perms, r->nperms, c->perms, sizeof c->perms);
    }
}

static void
live_set(const struct xbd_tree *t, const struct device *d, const struct norm *nm,
         struct cset *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct xbd_tree_node *r = &t->nodes[i];
        const struct xbd_key *k;
        enum region rg = region_of(d, r->path, &k);
        struct cnode *c;

        if (rg == R_NONE)
            continue;
        c = cset_add(out);
        norm_path(nm, r->path, c->path, sizeof c->path);
        norm_value(nm, k, r->value, c->value, sizeof c->value);
        norm_perms(nm, r->perms, r->nperms < 0 ? 0 : r->nperms, c->perms, sizeof c->perms);
    }
}

static int
cmd_attach(const char *rec, const char *dump, const char *live_target)
{
    struct xbd_tree rt, lt;
    struct device rd, ld;
    struct disk_line dl;
    struct cset want = { 0 }, got = { 0 };
    struct norm rn, ln;
    char path[1024];
    int bad = 0, nperms = 0;

    read_cfg(rec, &dl);
    xbd_tree_init(&rt);
    snprintf(path, sizeof path, "%s-xenstore.txt", rec);
    load(&rt, path);
    snprintf(path, sizeof path, "%s-xenstore-perms.txt", rec);
    load(&rt, path);
    xbd_tree_init(&lt);
    load(&lt, dump);
    if (!find_device(&rt, 0, &rd))
        die("%s: no disk in the recording", rec);
    if (!find_device(&lt, rd.devid, &ld)) {
        printf("missing: no disk with devid %u in the live tree\n", rd.devid);
        return 1;
    }
    rn = (struct norm){ rd.fe, dl.target };
    ln = (struct norm){ ld.fe, live_target };
    expected_set(&rt, &rd, &rn, &want);
    live_set(&lt, &ld, &ln, &got);

    for (size_t i = 0; i < want.n; i++) {
        const struct cnode *w = &want.v[i], *g = cset_get(&got, w->path);

        if (g == NULL) {
            printf("missing: %s (libxl writes \"%s\")\n", w->path, w->value);
            bad++;
            continue;
        }
        if (strcmp(w->value, g->value) != 0) {
            printf("value: %s = \"%s\", libxl writes \"%s\"\n", w->path, g->value, w->value);
            bad++;
        }
        if (strcmp(w->perms, g->perms) != 0) {
            printf("perms: %s (%s), libxl (%s)\n", w->path, g->perms, w->perms);
            bad++;
        }
        nperms++;
    }
    for (size_t i = 0; i < got.n; i++)
        if (cset_get(&want, got.v[i].path) == NULL) {
            printf("extra: %s = \"%s\" (libxl does not write it)\n", got.v[i].path,
                   got.v[i].value);
            bad++;
        }
    if (bad == 0)
        printf("%zu nodes match the recording: paths, values and permissions\n", want.n);
    free(want.v);
    free(got.v);
    xbd_tree_free(&rt);
    xbd_tree_free(&lt);
    return bad ? 1 : 0;
}

/* ---- detach ------------------------------------------------------------------------- */

static bool
has_children(const struct xbd_tree *t, const bool *gone, const char *dir)
{
    for (size_t i = 0; i < t->n; i++)
        if (!gone[i] && under(t->nodes[i].path, dir))
            return true;
    return false;
}

/* libxl__xs_path_cleanup on the tree: remove path and its subtree, then each
 * parent whose value is empty and which has no children left. */
static void
path_cleanup(const struct xbd_tree *t, bool *gone, const char *path)
{
    char p[256];
    char *slash;

    snprintf(p, sizeof p, "%s", path);
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->nodes[i].path, p) || under(t->nodes[i].path, p))
            gone[i] = true;
    while ((slash = strrchr(p, '/')) != NULL && slash != p) {
        const struct xbd_tree_node *n;

        *slash = '\0';
        n = xbd_tree_get(t, p);
        if (n == NULL || n->value[0] != '\0' || has_children(t, gone, p))
            break;
        gone[n - t->nodes] = true;
    }
}

static int
cmd_detach(const char *before, const char *after, unsigned fe, unsigned devid)
{
    struct xbd_tree bt, at;
    struct device d;
    bool *gone;
    int bad = 0, nremoved = 0;

    xbd_tree_init(&bt);
    xbd_tree_init(&at);
    load(&bt, before);
    load(&at, after);
    if (!find_device(&bt, devid, &d) || d.fe != fe)
        die("%s: no such disk in the tree before detach", before);
    gone = calloc(bt.n + 1, sizeof *gone);
    if (gone == NULL)
        die("%s", "out of memory");
    /* libxl__device_destroy's order, in one transaction. */
    path_cleanup(&bt, gone, d.fe_dir);
    path_cleanup(&bt, gone, d.lx_dir);
    path_cleanup(&bt, gone, d.be_dir);
    for (size_t i = 0; i < bt.n; i++) {
        bool present = xbd_tree_get(&at, bt.nodes[i].path) != NULL;

        if (gone[i] && present) {
            printf("left behind: %s (libxl removes it)\n", bt.nodes[i].path);
            bad++;
        } else if (!gone[i] && !present) {
            printf("removed: %s (libxl keeps it)\n", bt.nodes[i].path);
            bad++;
        }
        nremoved += gone[i];
    }
    for (size_t i = 0; i < at.n; i++)
        if (xbd_tree_get(&bt, at.nodes[i].path) == NULL) {
            printf("appeared: %s\n", at.nodes[i].path);
            bad++;
        }
    if (bad == 0)
        printf("detach removed the %d nodes libxl removes, and nothing else\n", nremoved);
    free(gone);
    xbd_tree_free(&bt);
    xbd_tree_free(&at);
    return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "args")) {
        struct disk_line dl;

        read_cfg(argv[2], &dl);
        printf("%s\n%s\n", dl.target, dl.opts);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "attach"))
        return cmd_attach(argv[2], argv[3], argv[4]);
    if (argc == 6 && !strcmp(argv[1], "detach"))
        return cmd_detach(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 10),
                          (unsigned)strtoul(argv[5], NULL, 10));
    fprintf(stderr, "usage: xbd-tree-cmp args RECORDING\n"
            "       xbd-tree-cmp attach RECORDING LIVE-DUMP LIVE-TARGET\n"
            "       xbd-tree-cmp detach BEFORE-DUMP AFTER-DUMP FE-DOMID DEVID\n");
    return 2;
}
