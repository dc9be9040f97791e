/* xbdkit — libxbdschema: the tree checker.
 *
 * xbd_check_tree() walks an in-memory copy of a xenstore tree, finds every
 * blkif device directory (backend kinds vbd, qdisk, vbd3; frontend kind vbd)
 * and reports, one finding per problem:
 *   - nodes the schema does not know, values of the wrong type or range;
 *   - permissions that let the wrong side write a node (derived from the
 *     recorded libxl trees: every node of <be> is (n<bdom>,r<fdom>), every
 *     node of <fe> is (n<fdom>,r<bdom>); an owner is the only writer apart
 *     from dom0, so a node of <be> owned by the frontend domain, or an ACL
 *     entry granting w/b to anyone but the owner, lets the wrong side write);
 *   - nodes missing for the side's current state (the req_states column of
 *     blkif.def) and the conditional rules the table cannot express: rings,
 *     queues, the two ring-size schemes, discard parameters;
 *   - <be> and <fe> that do not point at each other.
 * Nothing here does I/O.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-schema.h"

#define PATH_MAX_LEN 512
#define MAX_QUEUES 1024
#define MAX_PAGES 1024

const char *
xbd_finding_class_name(enum xbd_finding_class c)
{
    switch (c) {
    case XBD_FIND_UNKNOWN: return "unknown";
    case XBD_FIND_TYPE: return "type";
    case XBD_FIND_RANGE: return "range";
    case XBD_FIND_PERM: return "perm";
    case XBD_FIND_MISSING: return "missing";
    case XBD_FIND_CONFLICT: return "conflict";
    case XBD_FIND_MISMATCH: return "mismatch";
    }
    return "?";
}

/* ====================================================================== */
/* Reporting                                                              */
/* ====================================================================== */

struct ctx {
    const struct xbd_tree *t;
    xbd_finding_fn *fn;
    void *opaque;
    int count;
};

__attribute__((format(printf, 5, 6)))
static void
report(struct ctx *c, enum xbd_finding_class cls, const char *path,
       const char *expect, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    struct xbd_finding f;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    f.cls = cls;
    f.path = path;
    f.what = what;
    f.expect = expect;
    c->count++;
    if (c->fn)
        c->fn(c->opaque, &f);
}

/* ====================================================================== */
/* Finding the device directories                                         */
/* ====================================================================== */

struct dev {
    enum xbd_side side;
    char dir[PATH_MAX_LEN];     /* absolute path of <be> or <fe> */
    unsigned own;               /* domain whose tree holds it */
    unsigned peer;              /* frontend domid for <be>; for <fe> the
                                   backend-id value, or own if unknown */
    unsigned devid;
    bool peer_known;
};

/* Parse a decimal path component; returns chars used or 0. */
static size_t
comp_uint(const char *s, unsigned *out)
{
    size_t n = strcspn(s, "/");
    char buf[16];
    uint32_t v;

    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (xbd_parse_u32_range(buf, 0, 0xffffffffu, &v) < 0)
        return 0;
    *out = v;
    return n;
}

/* If path is or lies under a device directory, fill d and return the
 * offset of the relative part (at the end of the dir, or after its '/'),
 * else -1.  Nodes above the device directories (backend/vbd/F) give -1. */
static int
classify(const char *path, struct dev *d)
{
    const char *p = path;
    unsigned dom, a, b;
    size_t n;

    if (strncmp(p, "/local/domain/", 14) != 0)
        return -1;
    p += 14;
    if ((n = comp_uint(p, &dom)) == 0)
        return -1;
    p += n;
    if (strncmp(p, "/backend/", 9) == 0) {
        static const char *const kinds[] = { "vbd/", "qdisk/", "vbd3/" };
        size_t kl = 0;
        p += 9;
        for (size_t i = 0; i < 3; i++)
            if (strncmp(p, kinds[i], strlen(kinds[i])) == 0)
                kl = strlen(kinds[i]);
        if (kl == 0)
            return -1;
        p += kl;
        if ((n = comp_uint(p, &a)) == 0 || p[n] != '/')
            return -1;
        p += n + 1;
        if ((n = comp_uint(p, &b)) == 0 || (p[n] != '/' && p[n] != '\0'))
            return -1;
        p += n;
        d->side = XBD_SIDE_BE;
        d->own = dom;
        d->peer = a;
        d->peer_known = true;
        d->devid = b;
    } else if (strncmp(p, "/device/vbd/", 12) == 0) {
        p += 12;
        if ((n = comp_uint(p, &b)) == 0 || (p[n] != '/' && p[n] != '\0'))
            return -1;
        p += n;
        d->side = XBD_SIDE_FE;
        d->own = dom;
        d->peer = dom;
        d->peer_known = false;
        d->devid = b;
    } else {
        return -1;
    }
    if ((size_t)(p - path) >= sizeof d->dir)
        return -1;
    memcpy(d->dir, path, (size_t)(p - path));
    d->dir[p - path] = '\0';
    return (int)(p - path) + (*p == '/' ? 1 : 0);
}

/* A path in a blkif subtree (backend/{vbd,qdisk,vbd3} or device/vbd of
 * some domain) that is neither a device directory, nor inside one, nor one
 * of the directories above them (KIND, KIND/<fdom>): stray junk. */
static bool
is_stray(const char *path)
{
    static const char *const kinds[] = {
        "/backend/vbd", "/backend/qdisk", "/backend/vbd3", "/device/vbd",
    };
    const char *p = path;
    unsigned dom, fdom;
    size_t n;
    struct dev d;

    if (strncmp(p, "/local/domain/", 14) != 0)
        return false;
    p += 14;
    if ((n = comp_uint(p, &dom)) == 0)
        return false;
    p += n;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t kl = strlen(kinds[i]);
        if (strncmp(p, kinds[i], kl) != 0 || (p[kl] != '/' && p[kl] != '\0'))
            continue;
        if (classify(path, &d) >= 0)
            return false;
        p += kl;
        if (*p == '\0')
            return false;               /* .../backend/vbd itself */
        p++;
        if (i < 3 && (n = comp_uint(p, &fdom)) != 0 && p[n] == '\0')
            return false;               /* .../backend/vbd/<fdom> */
        return true;
    }
    return false;
}

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

static const struct xbd_tree_node *
get_rel(struct ctx *c, const char *dir, const char *rel)
{
    char path[PATH_MAX_LEN * 2];

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return xbd_tree_get(c->t, path);
}

/* Read a uint node that also passed the schema check; false if absent or
 * invalid (invalid values are reported by the per-node pass). */
static bool
get_u64(struct ctx *c, const char *dir, const char *rel, uint64_t *out)
{
    const struct xbd_tree_node *n = get_rel(c, dir, rel);
    const struct xbd_key *k;

    struct dev d;

    if (n == NULL || classify(dir, &d) < 0)
        return false;
    k = xbd_schema_lookup(d.side, rel, NULL);
    if (k && xbd_schema_check_value(k, n->value, NULL) < 0)
        return false;
    return xbd_parse_u64(n->value, out) == 0;
}

static void
describe_key(const struct xbd_key *k, char *buf, size_t len)
{
    char w[64];

    xbd_schema_writers_str(k->writers, w, sizeof w);
    switch (k->type) {
    case XBD_T_UINT:
    case XBD_T_DOMID:
    case XBD_T_STATE:
        snprintf(buf, len, "%s %s in [%llu, %llu]%s, written by %s",
                 xbd_schema_type_name(k->type), k->pattern,
                 (unsigned long long)k->min, (unsigned long long)k->max,
                 (k->flags & XBD_F_POW2) ? " and a power of two" : "", w);
        break;
    case XBD_T_ENUM:
        snprintf(buf, len, "%s one of %s, written by %s", k->pattern,
                 k->values, w);
        break;
    default:
        snprintf(buf, len, "%s %s, written by %s", k->pattern,
                 xbd_schema_type_name(k->type), w);
    }
}

/* ====================================================================== */
/* Per-node checks: known, typed, in range, permissions                   */
/* ====================================================================== */

static void
check_perms(struct ctx *c, const struct dev *d, const struct xbd_tree_node *n)
{
    const char *side = xbd_schema_side_name(d->side);
    const char *other = d->side == XBD_SIDE_BE ? "frontend" : "backend";
    char expect[96];
    /* The owner always reads its node. */
    bool peer_reads = d->peer_known &&
                      (d->peer == d->own || n->perms[0].domid == d->peer);

    if (n->nperms < 1)
        return;
    if (d->peer_known)
        snprintf(expect, sizeof expect, "(n%u,r%u): owned by the %s domain, readable by the %s domain",
                 d->own, d->peer, side, other);
    else
        snprintf(expect, sizeof expect, "(n%u,r<backend-id>): owned by the %s domain",
                 d->own, side);

    if (n->perms[0].domid != d->own) {
        if (d->peer_known && n->perms[0].domid == d->peer)
            report(c, XBD_FIND_PERM, n->path, expect,
                   "owned by domain %u, the %s domain: the %s side can write it",
                   n->perms[0].domid, other, other);
        else
            report(c, XBD_FIND_PERM, n->path, expect,
                   "owned by domain %u, not by the %s domain %u",
                   n->perms[0].domid, side, d->own);
    }
    if (n->perms[0].perm != 'n')
        report(c, XBD_FIND_PERM, n->path, expect,
               "every domain has '%c' access", n->perms[0].perm);
    for (int i = 1; i < n->nperms; i++) {
        const struct xbd_perm *p = &n->perms[i];
        bool writes = p->perm == 'w' || p->perm == 'b';
        if (d->peer_known && p->domid == d->peer) {
            if (p->perm == 'r' || p->perm == 'b')
                peer_reads = true;
            if (writes && p->domid != d->own)
                report(c, XBD_FIND_PERM, n->path, expect,
                       "the %s domain %u may write it ('%c')", other,
                       p->domid, p->perm);
        } else if (writes && p->domid != d->own) {
            report(c, XBD_FIND_PERM, n->path, expect,
                   "domain %u may write it ('%c')", p->domid, p->perm);
        }
    }
    if (d->peer_known && !peer_reads)
        report(c, XBD_FIND_PERM, n->path, expect,
               "the %s domain %u cannot read it", other, d->peer);
}

static void
check_node(struct ctx *c, const struct dev *d, const struct xbd_tree_node *n,
           const char *rel)
{
    const struct xbd_key *k;
    const char *why;
    char desc[256];
    int r;

    check_perms(c, d, n);
    if (rel[0] == '\0') {
        if (n->value[0] != '\0')
            report(c, XBD_FIND_TYPE, n->path, "an empty directory value",
                   "device directory has value \"%s\"", n->value);
        return;
    }
    k = xbd_schema_lookup(d->side, rel, NULL);
    if (k == NULL) {
        /* A key of the other side in this directory is a classic mistake. */
        const struct xbd_key *o = xbd_schema_lookup(
            d->side == XBD_SIDE_BE ? XBD_SIDE_FE : XBD_SIDE_BE, rel, NULL);
        if (o != NULL)
            report(c, XBD_FIND_UNKNOWN, n->path,
                   "only keys of docs/xenstore-keys.md for this side",
                   "\"%s\" is a %s key, found in the %s directory", rel,
                   xbd_schema_side_name(o->side),
                   xbd_schema_side_name(d->side));
        else
            report(c, XBD_FIND_UNKNOWN, n->path,
                   "only keys of docs/xenstore-keys.md for this side",
                   "\"%s\" is not a blkif %s key", rel,
                   xbd_schema_side_name(d->side));
        return;
    }
    r = xbd_schema_check_value(k, n->value, &why);
    if (r < 0) {
        describe_key(k, desc, sizeof desc);
        report(c, r == -ERANGE ? XBD_FIND_RANGE : XBD_FIND_TYPE, n->path,
               desc, "value \"%s\" is not %s", n->value, why);
    }
}

/* ====================================================================== */
/* Per-device rules                                                       */
/* ====================================================================== */

static const char *
state_name(unsigned s)
{
    static const char *const names[] = {
        "Unknown", "Initialising", "InitWait", "Initialised", "Connected",
        "Closing", "Closed", "Reconfiguring", "Reconfigured",
    };
    return s < sizeof names / sizeof names[0] ? names[s] : "invalid";
}

static void
check_required(struct ctx *c, const struct dev *d, unsigned state)
{
    for (size_t i = 0; i < xbd_schema_nkeys; i++) {
        const struct xbd_key *k = &xbd_schema_keys[i];
        char path[PATH_MAX_LEN * 2], w[64], expect[160];

        if (k->side != d->side || !(k->req_states & XBD_STATE_BIT(state)))
            continue;
        if (get_rel(c, d->dir, k->pattern) != NULL)
            continue;
        snprintf(path, sizeof path, "%s/%s", d->dir, k->pattern);
        snprintf(expect, sizeof expect, "written by %s; present whenever the %s is %s",
                 xbd_schema_writers_str(k->writers, w, sizeof w),
                 xbd_schema_side_name(d->side),
                 k->req_states == XBD_REQ_ALWAYS ? "Initialising..Closed"
                                                 : state_name(state));
        report(c, XBD_FIND_MISSING, path, expect,
               "absent while the %s is %s (%u)",
               xbd_schema_side_name(d->side), state_name(state), state);
    }
}

static void
check_backend(struct ctx *c, const struct dev *d, unsigned state)
{
    uint64_t order, pages, gran, ss, pss, info, v;
    bool has_order = get_u64(c, d->dir, XBDK_MAX_RING_PAGE_ORDER, &order);
    bool has_pages = get_u64(c, d->dir, XBDK_MAX_RING_PAGES, &pages);
    const struct xbd_tree_node *n;
    char path[PATH_MAX_LEN * 2];

    if (has_order && has_pages && order < 63 && pages != (1ull << order)) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_MAX_RING_PAGES);
        report(c, XBD_FIND_CONFLICT, path,
               "max-ring-pages = 1 << max-ring-page-order (publish both schemes alike)",
               "%llu pages but max-ring-page-order is %llu",
               (unsigned long long)pages, (unsigned long long)order);
    }

    bool has_gran = get_rel(c, d->dir, XBDK_DISCARD_GRANULARITY) != NULL;
    bool has_align = get_rel(c, d->dir, XBDK_DISCARD_ALIGNMENT) != NULL;
    if (has_gran != has_align) {
        snprintf(path, sizeof path, "%s/%s", d->dir,
                 has_gran ? XBDK_DISCARD_ALIGNMENT : XBDK_DISCARD_GRANULARITY);
        report(c, XBD_FIND_MISSING, path,
               "discard-granularity and discard-alignment together (blkif.h note 4)",
               "absent while %s is present",
               has_gran ? XBDK_DISCARD_GRANULARITY : XBDK_DISCARD_ALIGNMENT);
    }
    n = get_rel(c, d->dir, XBDK_HOTPLUG_STATUS);
    if (n && strcmp(n->value, "error") == 0 &&
        get_rel(c, d->dir, XBDK_HOTPLUG_ERROR) == NULL) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_HOTPLUG_ERROR);
        report(c, XBD_FIND_MISSING, path,
               "a reason beside hotplug-status=error, for the operator",
               "absent while hotplug-status is error");
    }
    if (get_u64(c, d->dir, XBDK_FEATURE_DISCARD, &v) && v == 1 &&
        get_u64(c, d->dir, XBDK_DISCARD_ENABLE, &gran) && gran == 0) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_FEATURE_DISCARD);
        report(c, XBD_FIND_CONFLICT, path,
               "feature-discard 0 or absent when discard-enable is 0",
               "discard offered although the toolstack wrote discard-enable=0");
    }
    if (get_u64(c, d->dir, XBDK_SECTOR_SIZE, &ss) &&
        get_u64(c, d->dir, XBDK_PHYSICAL_SECTOR_SIZE, &pss) &&
        pss % ss != 0) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_PHYSICAL_SECTOR_SIZE);
        report(c, XBD_FIND_CONFLICT, path, "a multiple of sector-size",
               "%llu is not a multiple of sector-size %llu",
               (unsigned long long)pss, (unsigned long long)ss);
    }
    if (get_u64(c, d->dir, XBDK_INFO, &info)) {
        n = get_rel(c, d->dir, XBDK_MODE);
        if (n && strcmp(n->value, "r") == 0 && !(info & 4)) {
            snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_INFO);
            report(c, XBD_FIND_CONFLICT, path,
                   "VDISK_READONLY (4) set when mode is r",
                   "info %llu lacks VDISK_READONLY for a read-only device",
                   (unsigned long long)info);
        }
        n = get_rel(c, d->dir, XBDK_DEVICE_TYPE);
        if (n && strcmp(n->value, "cdrom") == 0 && !(info & 1)) {
            snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_INFO);
            report(c, XBD_FIND_CONFLICT, path,
                   "VDISK_CDROM (1) set when device-type is cdrom",
                   "info %llu lacks VDISK_CDROM for a CD-ROM",
                   (unsigned long long)info);
        }
    }
    (void)state;
}

/* Check the ring of one queue level ("" for top level, "queue-N/"). */
static void
check_ring(struct ctx *c, const struct dev *d, const char *prefix,
           uint64_t npages, bool must_exist)
{
    char rel[64], path[PATH_MAX_LEN * 2], expect[160];
    bool has_single, has_multi = false;

    snprintf(rel, sizeof rel, "%s%s", prefix, XBDK_RING_REF);
    has_single = get_rel(c, d->dir, rel) != NULL;
    snprintf(rel, sizeof rel, "%sring-ref0", prefix);
    has_multi = get_rel(c, d->dir, rel) != NULL;

    if (has_single && has_multi) {
        snprintf(path, sizeof path, "%s/%sring-ref", d->dir, prefix);
        report(c, XBD_FIND_CONFLICT, path,
               "ring-ref for a one-page ring or ring-ref0..N-1, never both",
               "both %sring-ref and %sring-ref0 are present", prefix, prefix);
    }
    if (has_single && !has_multi && npages != 1) {
        snprintf(path, sizeof path, "%s/%sring-ref", d->dir, prefix);
        snprintf(expect, sizeof expect, "ring-ref0..ring-ref%llu for %llu pages",
                 (unsigned long long)npages - 1, (unsigned long long)npages);
        report(c, XBD_FIND_CONFLICT, path, expect,
               "single ring-ref but the ring has %llu pages",
               (unsigned long long)npages);
    }
    if (has_multi || (!has_single && must_exist)) {
        /* One finding per ring, at the first hole, with the count. */
        uint64_t first = npages, absent = 0;
        for (uint64_t i = 0; i < npages; i++) {
            snprintf(rel, sizeof rel, "%sring-ref%llu", prefix,
                     (unsigned long long)i);
            if (get_rel(c, d->dir, rel) == NULL) {
                if (absent++ == 0)
                    first = i;
            }
        }
        if (absent > 0) {
            snprintf(path, sizeof path, "%s/%sring-ref%llu", d->dir, prefix,
                     (unsigned long long)first);
            snprintf(expect, sizeof expect,
                     "ring-ref0..ring-ref%llu (%llu pages)%s",
                     (unsigned long long)npages - 1,
                     (unsigned long long)npages,
                     npages == 1 ? " or ring-ref" : "");
            if (absent == 1)
                report(c, XBD_FIND_MISSING, path, expect,
                       "absent for a ring of %llu pages",
                       (unsigned long long)npages);
            else
                report(c, XBD_FIND_MISSING, path, expect,
                       "absent, with %llu more of the ring's %llu refs",
                       (unsigned long long)absent - 1,
                       (unsigned long long)npages);
        }
    }
    /* Refs beyond the ring. */
    size_t plen = strlen(d->dir) + 1 + strlen(prefix);
    for (size_t i = 0; i < c->t->n; i++) {
        const char *p = c->t->nodes[i].path;
        unsigned idx;
        char *end;
        if (strncmp(p, d->dir, strlen(d->dir)) != 0 || strlen(p) <= plen ||
            p[strlen(d->dir)] != '/' ||
            strncmp(p + strlen(d->dir) + 1, prefix, strlen(prefix)) != 0 ||
            strncmp(p + plen, "ring-ref", 8) != 0 || p[plen + 8] < '0' ||
            p[plen + 8] > '9')
            continue;
        unsigned long l = strtoul(p + plen + 8, &end, 10);
        if (*end != '\0' || l > 0x7fffffffu)
            continue;
        idx = (unsigned)l;
        if (idx >= npages) {
            snprintf(expect, sizeof expect, "ring refs 0..%llu only",
                     (unsigned long long)npages - 1);
            report(c, XBD_FIND_CONFLICT, p, expect,
                   "page %u is beyond the ring's %llu pages", idx,
                   (unsigned long long)npages);
        }
    }

    snprintf(rel, sizeof rel, "%s%s", prefix, XBDK_EVENT_CHANNEL);
    if (must_exist && get_rel(c, d->dir, rel) == NULL) {
        snprintf(path, sizeof path, "%s/%s", d->dir, rel);
        report(c, XBD_FIND_MISSING, path,
               "written by the frontend before Initialised",
               "absent while the frontend is Initialised or Connected");
    }
}

/* The backend directory this frontend names, if it is in the tree. */
static const char *
fe_backend_dir(struct ctx *c, const struct dev *d)
{
    const struct xbd_tree_node *n = get_rel(c, d->dir, XBDK_BACKEND);

    if (n == NULL || xbd_tree_get(c->t, n->value) == NULL)
        return NULL;
    return n->value;
}

static void
check_frontend(struct ctx *c, const struct dev *d, unsigned state)
{
    const char *be = fe_backend_dir(c, d);
    bool live = state == 3 || state == 4;
    uint64_t order = 0, nrp = 0, nq = 1, bmax_order = 0, v, maxq = 1;
    bool has_order = get_u64(c, d->dir, XBDK_RING_PAGE_ORDER, &order);
    bool has_nrp = get_u64(c, d->dir, XBDK_NUM_RING_PAGES, &nrp);
    bool has_nq = get_u64(c, d->dir, XBDK_MULTI_QUEUE_NUM_QUEUES, &nq);
    uint64_t npages;
    char path[PATH_MAX_LEN * 2], expect[160], rel[64];

    if (has_order && has_nrp && order < 63 && nrp != (1ull << order)) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_NUM_RING_PAGES);
        report(c, XBD_FIND_CONFLICT, path,
               "num-ring-pages = 1 << ring-page-order",
               "%llu pages but ring-page-order is %llu",
               (unsigned long long)nrp, (unsigned long long)order);
    }
    npages = has_order ? (1ull << order) : has_nrp ? nrp : 1;
    if (npages > MAX_PAGES)
        npages = MAX_PAGES;

    if (be != NULL) {
        if (get_u64(c, be, XBDK_MAX_RING_PAGE_ORDER, &v))
            bmax_order = v;
        if (get_u64(c, be, XBDK_MAX_RING_PAGES, &v) && xbd_is_pow2(v) &&
            xbd_log2(v) > bmax_order)
            bmax_order = xbd_log2(v);
        if (get_u64(c, be, XBDK_MULTI_QUEUE_MAX_QUEUES, &v))
            maxq = v;
        if ((has_order || has_nrp) && xbd_log2(npages) > bmax_order) {
            snprintf(path, sizeof path, "%s/%s", d->dir,
                     has_order ? XBDK_RING_PAGE_ORDER : XBDK_NUM_RING_PAGES);
            snprintf(expect, sizeof expect,
                     "at most the backend's maximum order %llu (max-ring-page-order/max-ring-pages)",
                     (unsigned long long)bmax_order);
            report(c, XBD_FIND_RANGE, path, expect,
                   "ring of %llu pages exceeds what the backend accepts",
                   (unsigned long long)npages);
        }
        if (has_nq && nq > maxq) {
            snprintf(path, sizeof path, "%s/%s", d->dir,
                     XBDK_MULTI_QUEUE_NUM_QUEUES);
            snprintf(expect, sizeof expect,
                     "at most the backend's multi-queue-max-queues %llu",
                     (unsigned long long)maxq);
            report(c, XBD_FIND_RANGE, path, expect,
                   "%llu queues requested", (unsigned long long)nq);
        }
    }
    if (nq > MAX_QUEUES)
        nq = MAX_QUEUES;

    /* queue-N directories agree with multi-queue-num-queues. */
    for (size_t i = 0; i < c->t->n; i++) {
        const char *p = c->t->nodes[i].path;
        size_t dl = strlen(d->dir);
        unsigned idx[2];
        const struct xbd_key *k;
        if (strncmp(p, d->dir, dl) != 0 || p[dl] != '/')
            continue;
        k = xbd_schema_lookup(XBD_SIDE_FE, p + dl + 1, idx);
        if (k == NULL || strcmp(k->pattern, XBDK_QUEUE_FMT) != 0)
            continue;
        if (nq <= 1) {
            report(c, XBD_FIND_CONFLICT, p,
                   "queue-N/ only when multi-queue-num-queues > 1",
                   "queue directory present but multi-queue-num-queues is %s",
                   has_nq ? "1" : "absent (1)");
        } else if (idx[0] >= nq) {
            snprintf(expect, sizeof expect, "queue-0..queue-%llu",
                     (unsigned long long)nq - 1);
            report(c, XBD_FIND_CONFLICT, p, expect,
                   "queue %u is beyond multi-queue-num-queues %llu", idx[0],
                   (unsigned long long)nq);
        }
    }

    if (nq <= 1) {
        check_ring(c, d, "", npages, live);
        return;
    }
    /* Multi-queue: nothing of the ring at the top level. */
    static const char *const top[] = { XBDK_EVENT_CHANNEL, XBDK_RING_REF, "ring-ref0" };
    for (size_t i = 0; i < 3; i++) {
        if (get_rel(c, d->dir, top[i]) == NULL)
            continue;
        snprintf(path, sizeof path, "%s/%s", d->dir, top[i]);
        report(c, XBD_FIND_CONFLICT, path,
               "ring refs and event channels under queue-N/ when multi-queue-num-queues > 1",
               "top-level %s with %llu queues", top[i], (unsigned long long)nq);
    }
    for (uint64_t q = 0; q < nq; q++) {
        snprintf(rel, sizeof rel, "queue-%llu", (unsigned long long)q);
        if (get_rel(c, d->dir, rel) == NULL) {
            if (live) {
                snprintf(path, sizeof path, "%s/%s", d->dir, rel);
                report(c, XBD_FIND_MISSING, path,
                       "queue-0..queue-N-1 for multi-queue-num-queues N",
                       "absent with multi-queue-num-queues %llu",
                       (unsigned long long)nq);
            }
            continue;
        }
        snprintf(rel, sizeof rel, "queue-%llu/", (unsigned long long)q);
        check_ring(c, d, rel, npages, live);
    }
}

/* <be> and <fe> must name each other. */
static void
check_pairing(struct ctx *c, const struct dev *d)
{
    const struct xbd_tree_node *n;
    char path[PATH_MAX_LEN * 2], expect[PATH_MAX_LEN + 64];
    uint64_t v;

    if (d->side == XBD_SIDE_BE) {
        n = get_rel(c, d->dir, XBDK_FRONTEND);
        if (n != NULL) {
            snprintf(expect, sizeof expect, "/local/domain/%u/device/vbd/%u",
                     d->peer, d->devid);
            if (strcmp(n->value, expect) != 0)
                report(c, XBD_FIND_MISMATCH, n->path, expect,
                       "frontend is \"%s\", not the directory of domain %u device %u",
                       n->value, d->peer, d->devid);
            else if (xbd_tree_get(c->t, n->value) == NULL)
                report(c, XBD_FIND_MISMATCH, n->path,
                       "the frontend directory to exist",
                       "frontend directory %s is absent", n->value);
        }
        if (get_u64(c, d->dir, XBDK_FRONTEND_ID, &v) && v != d->peer) {
            snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_FRONTEND_ID);
            snprintf(expect, sizeof expect, "%u (the domain in the path)", d->peer);
            report(c, XBD_FIND_MISMATCH, path, expect,
                   "frontend-id is %llu", (unsigned long long)v);
        }
        return;
    }
    n = get_rel(c, d->dir, XBDK_BACKEND);
    if (n != NULL) {
        struct dev b;
        int off = classify(n->value, &b);
        if (off < 0 || n->value[off] != '\0' || b.side != XBD_SIDE_BE ||
            b.peer != d->own || b.devid != d->devid) {
            snprintf(expect, sizeof expect,
                     "/local/domain/<backend-id>/backend/<kind>/%u/%u", d->own,
                     d->devid);
            report(c, XBD_FIND_MISMATCH, n->path, expect,
                   "backend \"%s\" is not a backend directory for this device",
                   n->value);
        } else {
            if (xbd_tree_get(c->t, n->value) == NULL)
                report(c, XBD_FIND_MISMATCH, n->path,
                       "the backend directory to exist",
                       "backend directory %s is absent", n->value);
            if (get_u64(c, d->dir, XBDK_BACKEND_ID, &v) && v != b.own) {
                snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_BACKEND_ID);
                snprintf(expect, sizeof expect, "%u (the domain of backend)", b.own);
                report(c, XBD_FIND_MISMATCH, path, expect,
                       "backend-id is %llu", (unsigned long long)v);
            }
        }
    }
    if (get_u64(c, d->dir, XBDK_VIRTUAL_DEVICE, &v) && v != d->devid) {
        snprintf(path, sizeof path, "%s/%s", d->dir, XBDK_VIRTUAL_DEVICE);
        snprintf(expect, sizeof expect, "%u (the device id in the path)", d->devid);
        report(c, XBD_FIND_MISMATCH, path, expect, "virtual-device is %llu",
               (unsigned long long)v);
    }
}

/* ====================================================================== */
/* Entry point                                                            */
/* ====================================================================== */

int
xbd_check_tree(const struct xbd_tree *t, xbd_finding_fn *fn, void *opaque)
{
    struct ctx c = { t, fn, opaque, 0 };
    struct dev *devs = NULL;
    size_t ndevs = 0;

    /* Pass 1: collect device directories, in tree order. */
    for (size_t i = 0; i < t->n; i++) {
        struct dev d;
        bool seen = false;
        if (classify(t->nodes[i].path, &d) < 0) {
            if (is_stray(t->nodes[i].path))
                report(&c, XBD_FIND_UNKNOWN, t->nodes[i].path,
                       "backend/<kind>/<fdom>/<devid> or device/vbd/<devid> with decimal ids",
                       "not a blkif device directory");
            continue;
        }
        for (size_t j = 0; j < ndevs && !seen; j++)
            seen = strcmp(devs[j].dir, d.dir) == 0;
        if (seen)
            continue;
        struct dev *nd = realloc(devs, (ndevs + 1) * sizeof *nd);
        if (nd == NULL) {
            free(devs);
            return -ENOMEM;
        }
        devs = nd;
        devs[ndevs++] = d;
    }

    for (size_t j = 0; j < ndevs; j++) {
        struct dev *d = &devs[j];
        uint64_t v;

        /* The frontend's peer is whoever its backend-id names. */
        if (d->side == XBD_SIDE_FE &&
            get_u64(&c, d->dir, XBDK_BACKEND_ID, &v)) {
            d->peer = (unsigned)v;
            d->peer_known = true;
        }
        /* Pass 2: every node of this device. */
        for (size_t i = 0; i < t->n; i++) {
            struct dev nd;
            int off = classify(t->nodes[i].path, &nd);
            if (off < 0 || strcmp(nd.dir, d->dir) != 0)
                continue;
            check_node(&c, d, &t->nodes[i], t->nodes[i].path + off);
        }
        /* Pass 3: state rules and pairing. */
        if (get_u64(&c, d->dir, XBDK_STATE, &v)) {
            check_required(&c, d, (unsigned)v);
            if (d->side == XBD_SIDE_BE)
                check_backend(&c, d, (unsigned)v);
            else
                check_frontend(&c, d, (unsigned)v);
        } else {
            check_required(&c, d, 1);
        }
        check_pairing(&c, d);
    }
    free(devs);
    return c.count;
}
