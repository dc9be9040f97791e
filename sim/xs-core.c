/* xbd-sim — the pure xenstore store core.  See xs-core.h for semantics and
 * the error convention. */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/io/xs_wire.h>

#include "xs-core.h"

/* Internal permission bit: "may do anything" (owner or privileged). */
#define PERM_OWNER 4u

/* ======================================================================
 * Data structures
 * ====================================================================== */

struct xs_node {
    char *name;                  /* leaf name; "" for the root */
    struct xs_node *parent;
    struct xs_node **children;   /* creation order */
    size_t nchildren, cap;
    char *value;
    size_t len;
    struct xs_core_perm *perms;  /* >= 1 entry: [0] is the owner */
    size_t nperms;
    uint64_t gen;                /* changes on any change to this node */
    bool lazy;                   /* in a transaction's view: a copy whose
                                  * children are not copied yet */
};

/* One node a transaction looked at: its generation then (0 = absent). */
struct tx_access {
    char *path;
    uint64_t gen;
};

enum tx_op_type { OP_WRITE, OP_MKDIR, OP_RM, OP_SETPERMS };

/* A modification, replayed on the live tree at commit. */
struct tx_op {
    enum tx_op_type type;
    char *path;
    char *val;                   /* OP_WRITE */
    size_t len;
    struct xs_core_perm *perms;  /* OP_SETPERMS */
    size_t nperms;
};

struct xs_tx {
    struct xs_tx *next;
    uint32_t id;
    uint32_t domid;
    void *owner;
    struct xs_node *root;        /* the tx's view: copied from the live
                                  * tree on demand, modified by the tx */
    struct tx_access *acc;
    size_t nacc, capacc;
    struct tx_op *ops;
    size_t nops, capops;
    unsigned int created;        /* nodes created (for the node quota) */
};

struct xs_watch {
    struct xs_watch *next;
    void *owner;
    uint32_t domid;
    char *path;                  /* absolute, or "@name" */
    char *token;
    bool relative;               /* events relative to the domain path */
};

struct owned {
    uint32_t domid;
    unsigned int count;
};

struct xs_store {
    struct xs_node *root;
    uint64_t gen;
    struct xs_core_limits lim;
    xs_core_event_fn *fire;
    void *opaque;
    struct xs_watch *watches;    /* registration order */
    struct xs_tx *txs;
    uint32_t next_txid;
    struct owned *owned;
    size_t nowned;
    uint32_t *introduced;
    size_t nintroduced;
    size_t live_nodes;
};

/* Context of one operation: the live tree, or a transaction's view. */
struct ctx {
    struct xs_store *st;
    struct xs_tx *tx;            /* NULL: live tree */
    struct xs_node *root;
    uint32_t domid;
};

/* ======================================================================
 * Small helpers
 * ====================================================================== */

static bool
privileged(uint32_t domid)
{
    return domid == 0;
}

static struct owned *
owned_slot(struct xs_store *st, uint32_t domid, bool create)
{
    for (size_t i = 0; i < st->nowned; i++)
        if (st->owned[i].domid == domid)
            return &st->owned[i];
    if (!create)
        return NULL;
    struct owned *n = realloc(st->owned, (st->nowned + 1) * sizeof(*n));
    if (n == NULL)
        return NULL;
    st->owned = n;
    n[st->nowned].domid = domid;
    n[st->nowned].count = 0;
    return &n[st->nowned++];
}

static void
owned_add(struct xs_store *st, uint32_t domid, int delta)
{
    struct owned *o = owned_slot(st, domid, delta > 0);

    if (o == NULL)
        return;
    if (delta < 0 && o->count < (unsigned int)-delta)
        o->count = 0;
    else
        o->count = (unsigned int)((int)o->count + delta);
}

unsigned int
xs_core_nodes_owned(const struct xs_store *st, uint32_t domid)
{
    for (size_t i = 0; i < st->nowned; i++)
        if (st->owned[i].domid == domid)
            return st->owned[i].count;
    return 0;
}

size_t
xs_core_live_nodes(const struct xs_store *st)
{
    return st->live_nodes;
}

/* Is `child` equal to `parent` or below it? */
static bool
is_child(const char *child, const char *parent)
{
    size_t pl = strlen(parent);

    if (strcmp(parent, "/") == 0)
        return child[0] == '/';
    if (strncmp(child, parent, pl) != 0)
        return false;
    return child[pl] == '\0' || child[pl] == '/';
}

static unsigned int
perm_for(uint32_t domid, const struct xs_node *n)
{
    if (privileged(domid) || n->perms[0].domid == domid)
        return XS_CORE_PERM_READ | XS_CORE_PERM_WRITE | PERM_OWNER;
    for (size_t i = 1; i < n->nperms; i++)
        if (n->perms[i].domid == domid)
            return n->perms[i].perms;
    return n->perms[0].perms;
}

/* ======================================================================
 * Nodes
 * ====================================================================== */

static struct xs_node *
node_new(struct xs_store *st, const char *name, size_t namelen,
         const struct xs_core_perm *perms, size_t nperms)
{
    struct xs_node *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    n->name = strndup(name, namelen);
    n->value = strdup("");
    n->perms = malloc(nperms * sizeof(*perms));
    if (n->name == NULL || n->value == NULL || n->perms == NULL) {
        free(n->name);
        free(n->value);
        free(n->perms);
        free(n);
        return NULL;
    }
    memcpy(n->perms, perms, nperms * sizeof(*perms));
    n->nperms = nperms;
    n->gen = ++st->gen;
    st->live_nodes++;
    return n;
}

/* Free a subtree; `live` nodes leave the owner counts. */
static void
node_free(struct xs_store *st, struct xs_node *n, bool live)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nchildren; i++)
        node_free(st, n->children[i], live);
    if (live)
        owned_add(st, n->perms[0].domid, -1);
    free(n->children);
    free(n->name);
    free(n->value);
    free(n->perms);
    free(n);
    st->live_nodes--;
}

static int
node_add_child(struct xs_node *parent, struct xs_node *child)
{
    if (parent->nchildren == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        struct xs_node **c = realloc(parent->children, cap * sizeof(*c));
        if (c == NULL)
            return -ENOMEM;
        parent->children = c;
        parent->cap = cap;
    }
    parent->children[parent->nchildren++] = child;
    child->parent = parent;
    return 0;
}

static void
node_del_child(struct xs_node *parent, struct xs_node *child)
{
    for (size_t i = 0; i < parent->nchildren; i++) {
        if (parent->children[i] == child) {
            memmove(&parent->children[i], &parent->children[i + 1],
                    (parent->nchildren - i - 1) * sizeof(child));
            parent->nchildren--;
            return;
        }
    }
}

static struct xs_node *
node_child(const struct xs_node *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        const char *cn = n->children[i]->name;
        if (strncmp(cn, name, len) == 0 && cn[len] == '\0')
            return n->children[i];
    }
    return NULL;
}

static int materialize(struct xs_store *st, struct xs_node *n);

/* Walk `path` (canonical, absolute).  Returns the node or NULL; *deepest
 * (may be NULL) receives the deepest existing node on the way and *used the
 * length of the path prefix it corresponds to.  With `mat` (a transaction's
 * view of that store) each node's children are copied in before the walk
 * looks at them; *err (may be NULL without `mat`) is then 0 or -ENOMEM. */
static struct xs_node *
lookup_in(struct xs_store *mat, struct xs_node *root, const char *path,
          struct xs_node **deepest, size_t *used, int *err)
{
    struct xs_node *n = root;
    const char *p = path + 1;

    if (deepest)
        *deepest = root;
    if (used)
        *used = 1;
    if (err)
        *err = 0;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        struct xs_node *c;
        if (mat != NULL && (*err = materialize(mat, n)) < 0)
            return NULL;
        c = node_child(n, p, l);
        if (c == NULL)
            return NULL;
        n = c;
        if (deepest)
            *deepest = n;
        if (used)
            *used = (size_t)(p + l - path);
        p += l;
        if (*p == '/')
            p++;
    }
    return n;
}

/* lookup_in() of the live tree (or of a subtree of it). */
static struct xs_node *
lookup(struct xs_node *root, const char *path, struct xs_node **deepest,
       size_t *used)
{
    return lookup_in(NULL, root, path, deepest, used, NULL);
}

/* ======================================================================
 * Transaction views: copied from the live tree on demand
 *
 * A transaction does not copy the tree when it starts.  Its view begins as
 * a copy of the root alone; a node's children are copied (each without
 * its own children) the first time the transaction needs them, and the
 * copies keep the live generations.  So the transaction sees each node as
 * it was when it first came near it, and it records that generation when
 * it first looks at the node: anything changed after that conflicts at
 * commit.  A copy made before the node is recorded can only make the
 * recorded generation older, never newer, so the check stays sound (at
 * worst a conflict more).  This is cxenstored's "generation at first
 * access" rule; the cost of a transaction is now the paths it touches,
 * not the size of the tree.
 * ====================================================================== */

/* A copy of `src` without children, to be filled in by materialize(). */
static struct xs_node *
node_copy(struct xs_store *st, const struct xs_node *src)
{
    struct xs_node *n = node_new(st, src->name, strlen(src->name),
                                 src->perms, src->nperms);

    if (n == NULL)
        return NULL;
    free(n->value);
    n->value = malloc(src->len + 1);
    if (n->value == NULL) {
        node_free(st, n, false);
        return NULL;
    }
    memcpy(n->value, src->value, src->len + 1);
    n->len = src->len;
    n->gen = src->gen;
    n->lazy = true;
    return n;
}

/* The absolute path of a node of a transaction's view.  -EINVAL if it
 * does not fit (it cannot: every node was created from a canonical
 * path). */
static int
node_path(const struct xs_node *n, char *buf, size_t sz)
{
    size_t pos = sz - 1;

    buf[pos] = '\0';
    if (n->parent == NULL) {
        if (sz < 2)
            return -EINVAL;
        buf[0] = '/';
        buf[1] = '\0';
        return 0;
    }
    for (; n->parent != NULL; n = n->parent) {
        size_t l = strlen(n->name);
        if (pos < l + 1)
            return -EINVAL;
        pos -= l;
        memcpy(buf + pos, n->name, l);
        buf[--pos] = '/';
    }
    memmove(buf, buf + pos, sz - pos);
    return 0;
}

/* Give a copied node of a transaction's view the children the live node
 * at its path has now (none if it is gone from the live tree: then the
 * transaction conflicts as soon as it uses anything there). */
static int
materialize(struct xs_store *st, struct xs_node *n)
{
    char path[XENSTORE_ABS_PATH_MAX + 1];
    const struct xs_node *src;
    int r;

    if (!n->lazy)
        return 0;
    r = node_path(n, path, sizeof(path));
    if (r < 0)
        return r;
    src = lookup(st->root, path, NULL, NULL);
    for (size_t i = 0; src != NULL && i < src->nchildren; i++) {
        struct xs_node *c = node_copy(st, src->children[i]);
        if (c == NULL || node_add_child(n, c) < 0) {
            node_free(st, c, false);
            while (n->nchildren > 0)
                node_free(st, n->children[--n->nchildren], false);
            return -ENOMEM;
        }
    }
    n->lazy = false;
    return 0;
}

/* ======================================================================
 * Paths and permission strings
 * ====================================================================== */

static bool
valid_chars(const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '/' || c == '_' ||
              c == '@'))
            return false;
    }
    return true;
}

int
xs_core_canonical(uint32_t domid, const char *in, bool special, char *out,
                  size_t outsz, bool *relative)
{
    size_t inlen = strlen(in);
    int n;

    *relative = false;
    if (inlen == 0 || !valid_chars(in))
        return -EINVAL;
    if (in[0] == '@') {
        if (!special || inlen > XENSTORE_ABS_PATH_MAX || strchr(in, '/'))
            return -EINVAL;
        if (inlen + 1 > outsz)
            return -EINVAL;
        memcpy(out, in, inlen + 1);
        return 0;
    }
    if (in[0] == '/') {
        if (inlen > XENSTORE_ABS_PATH_MAX || inlen + 1 > outsz)
            return -EINVAL;
        memcpy(out, in, inlen + 1);
    } else {
        if (inlen > XENSTORE_REL_PATH_MAX)
            return -EINVAL;
        n = snprintf(out, outsz, "/local/domain/%u/%s", domid, in);
        if (n < 0 || (size_t)n >= outsz || n > XENSTORE_ABS_PATH_MAX)
            return -EINVAL;
        *relative = true;
    }
    if (strstr(out, "//") != NULL)
        return -EINVAL;
    if (strcmp(out, "/") != 0 && out[strlen(out) - 1] == '/')
        return -EINVAL;
    return 0;
}

int
xs_core_perm_parse(const char *s, struct xs_core_perm *out)
{
    unsigned long v = 0;
    const char *p;

    switch (s[0]) {
    case 'n': out->perms = XS_CORE_PERM_NONE; break;
    case 'r': out->perms = XS_CORE_PERM_READ; break;
    case 'w': out->perms = XS_CORE_PERM_WRITE; break;
    case 'b': out->perms = XS_CORE_PERM_READ | XS_CORE_PERM_WRITE; break;
    default: return -EINVAL;
    }
    if (s[1] == '\0')
        return -EINVAL;
    for (p = s + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)       /* domids are 16 bits (DOMID_* included) */
            return -EINVAL;
    }
    out->domid = (uint32_t)v;
    return 0;
}

void
xs_core_perm_format(const struct xs_core_perm *p, char out[16])
{
    static const char letters[] = "nrwb";

    snprintf(out, 16, "%c%u", letters[p->perms & 3u], p->domid);
}

/* ======================================================================
 * Watches: matching and delivery
 * ====================================================================== */

static void
deliver(struct xs_store *st, struct xs_watch *w, const char *path)
{
    char prefix[32];
    size_t pl;

    if (w->relative) {
        pl = (size_t)snprintf(prefix, sizeof(prefix), "/local/domain/%u/",
                              w->domid);
        if (strncmp(path, prefix, pl) == 0) {
            st->fire(st->opaque, w->owner, path + pl, w->token);
            return;
        }
    }
    st->fire(st->opaque, w->owner, path, w->token);
}

/* A change to `path` (node n, now existing). */
static void
fire_change(struct xs_store *st, const char *path, const struct xs_node *n)
{
    for (struct xs_watch *w = st->watches; w; w = w->next) {
        if (w->path[0] == '@' || !is_child(path, w->path))
            continue;
        if (perm_for(w->domid, n) & XS_CORE_PERM_READ)
            deliver(st, w, path);
    }
}

/* Removal of the subtree `n` at `path` (still attached). */
static void
fire_rm(struct xs_store *st, const char *path, struct xs_node *n)
{
    for (struct xs_watch *w = st->watches; w; w = w->next) {
        if (w->path[0] == '@')
            continue;
        if (is_child(path, w->path)) {
            if (perm_for(w->domid, n) & XS_CORE_PERM_READ)
                deliver(st, w, path);
        } else if (is_child(w->path, path)) {
            /* The watched node was inside the removed subtree: the event
             * names the watch's own path; check the node it names if it
             * existed, else the removed root. */
            struct xs_node *deep = NULL;
            struct xs_node *wn = lookup(n, w->path + strlen(path),
                                        &deep, NULL);
            const struct xs_node *pn = wn ? wn : deep ? deep : n;
            if (perm_for(w->domid, pn) & XS_CORE_PERM_READ)
                deliver(st, w, w->path);
        }
    }
}

void
xs_core_fire_special(struct xs_store *st, const char *name)
{
    for (struct xs_watch *w = st->watches; w; w = w->next)
        if (strcmp(w->path, name) == 0 && privileged(w->domid))
            st->fire(st->opaque, w->owner, name, w->token);
}

/* ======================================================================
 * Transactions: access records and the op log
 * ====================================================================== */

static struct xs_tx *
tx_find(struct xs_store *st, void *owner, uint32_t id)
{
    for (struct xs_tx *t = st->txs; t; t = t->next)
        if (t->id == id && t->owner == owner)
            return t;
    return NULL;
}

/* Remember the generation of `path` the first time the tx looks at it. */
static int
record(struct ctx *c, const char *path, size_t pathlen,
       const struct xs_node *n)
{
    struct xs_tx *t = c->tx;

    if (t == NULL)
        return 0;
    for (size_t i = 0; i < t->nacc; i++)
        if (strncmp(t->acc[i].path, path, pathlen) == 0 &&
            t->acc[i].path[pathlen] == '\0')
            return 0;
    if (!privileged(t->domid) && t->nacc >= XS_CORE_TX_MAX_NODES)
        return -ENOSPC;
    if (t->nacc == t->capacc) {
        size_t cap = t->capacc ? t->capacc * 2 : 8;
        struct tx_access *a = realloc(t->acc, cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        t->acc = a;
        t->capacc = cap;
    }
    t->acc[t->nacc].path = strndup(path, pathlen);
    if (t->acc[t->nacc].path == NULL)
        return -ENOMEM;
    t->acc[t->nacc].gen = n ? n->gen : 0;
    t->nacc++;
    return 0;
}

static int
log_op(struct ctx *c, enum tx_op_type type, const char *path,
       const void *val, size_t len, const struct xs_core_perm *perms,
       size_t nperms)
{
    struct xs_tx *t = c->tx;
    struct tx_op *op;

    if (t == NULL)
        return 0;
    if (!privileged(t->domid) && t->nops >= XS_CORE_TX_MAX_NODES)
        return -ENOSPC;
    if (t->nops == t->capops) {
        size_t cap = t->capops ? t->capops * 2 : 8;
        struct tx_op *o = realloc(t->ops, cap * sizeof(*o));
        if (o == NULL)
            return -ENOMEM;
        t->ops = o;
        t->capops = cap;
    }
    op = &t->ops[t->nops];
    memset(op, 0, sizeof(*op));
    op->type = type;
    op->path = strdup(path);
    if (op->path == NULL)
        return -ENOMEM;
    if (type == OP_WRITE) {
        op->val = malloc(len + 1);
        if (op->val == NULL) {
            free(op->path);
            return -ENOMEM;
        }
        memcpy(op->val, val, len);
        op->len = len;
    }
    if (type == OP_SETPERMS) {
        op->perms = malloc(nperms * sizeof(*perms));
        if (op->perms == NULL) {
            free(op->path);
            return -ENOMEM;
        }
        memcpy(op->perms, perms, nperms * sizeof(*perms));
        op->nperms = nperms;
    }
    t->nops++;
    return 0;
}

static void
tx_free(struct xs_store *st, struct xs_tx *t)
{
    node_free(st, t->root, false);
    for (size_t i = 0; i < t->nacc; i++)
        free(t->acc[i].path);
    free(t->acc);
    for (size_t i = 0; i < t->nops; i++) {
        free(t->ops[i].path);
        free(t->ops[i].val);
        free(t->ops[i].perms);
    }
    free(t->ops);
    free(t);
}

static void
tx_unlink(struct xs_store *st, struct xs_tx *t)
{
    for (struct xs_tx **pp = &st->txs; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            return;
        }
    }
}

/* Set up the context for an operation: live tree or the tx's view. */
static int
ctx_init(struct ctx *c, struct xs_store *st, uint32_t domid, void *owner,
         uint32_t tx)
{
    c->st = st;
    c->domid = domid;
    c->tx = NULL;
    c->root = st->root;
    if (tx != 0) {
        c->tx = tx_find(st, owner, tx);
        if (c->tx == NULL)
            return -ENOENT;
        c->root = c->tx->root;
    }
    return 0;
}

/* ======================================================================
 * Node operations
 * ====================================================================== */

/* lookup() in the operation's tree: the live one, or the transaction's
 * view (copied in as the walk goes).  0 or -ENOMEM. */
static int
walk(struct ctx *c, const char *path, struct xs_node **out,
     struct xs_node **deepest, size_t *used)
{
    int err = 0;

    *out = lookup_in(c->tx ? c->st : NULL, c->root, path, deepest, used,
                     &err);
    return err;
}

/* Error for a missing node: EACCES if the caller may not read the nearest
 * existing ancestor (so existence does not leak), else ENOENT. */
static int
missing(struct ctx *c, const struct xs_node *deepest)
{
    return (perm_for(c->domid, deepest) & XS_CORE_PERM_READ) ? -ENOENT
                                                              : -EACCES;
}

/* Find a readable node. */
static int
get_readable(struct ctx *c, const char *path, struct xs_node **out)
{
    struct xs_node *deep, *n;
    int r = walk(c, path, &n, &deep, NULL);

    if (r == 0)
        r = record(c, path, strlen(path), n);
    if (r < 0)
        return r;
    if (n == NULL)
        return missing(c, deep);
    if (!(perm_for(c->domid, n) & XS_CORE_PERM_READ))
        return -EACCES;
    *out = n;
    return 0;
}

int
xs_core_read(struct xs_store *st, uint32_t domid, void *owner, uint32_t tx,
             const char *path, char **val, size_t *len)
{
    struct ctx c;
    struct xs_node *n;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = get_readable(&c, path, &n);
    if (r < 0)
        return r;
    *val = malloc(n->len + 1);
    if (*val == NULL)
        return -ENOMEM;
    memcpy(*val, n->value, n->len + 1);
    *len = n->len;
    return 0;
}

/* Create `path` and missing parents (write: with value on the last).
 * Existing node: write replaces the value, mkdir leaves it. */
static int
do_create(struct ctx *c, const char *path, const void *val, size_t len,
          bool is_write)
{
    struct xs_store *st = c->st;
    struct xs_node *deep, *n, *parent;
    size_t used, newnodes = 0;
    const char *p;
    int r;

    if (is_write && !privileged(c->domid) && len > st->lim.value_size)
        return -ENOSPC;
    r = walk(c, path, &n, &deep, &used);
    if (r == 0)
        r = record(c, path, strlen(path), n);
    if (r < 0)
        return r;
    if (n != NULL) {
        if (!(perm_for(c->domid, n) & XS_CORE_PERM_WRITE))
            return -EACCES;
        if (!is_write)
            return 0;
        char *v = malloc(len + 1);
        if (v == NULL)
            return -ENOMEM;
        memcpy(v, val, len);
        v[len] = '\0';
        free(n->value);
        n->value = v;
        n->len = len;
        n->gen = ++st->gen;
        if (c->tx == NULL)
            fire_change(st, path, n);
        return 0;
    }

    /* New node(s) under `deep`, which the caller must be able to write. */
    if (!(perm_for(c->domid, deep) & XS_CORE_PERM_WRITE))
        return -EACCES;
    r = record(c, path, used, deep);
    if (r < 0)
        return r;
    for (p = path + used; *p; p++)
        if (*p == '/')
            newnodes++;
    if (path[used] != '/')   /* the root: "/a" has used == 1, no slash */
        newnodes++;
    if (!privileged(c->domid)) {
        unsigned int have = xs_core_nodes_owned(st, c->domid) +
                            (c->tx ? c->tx->created : 0);
        if (have + newnodes > st->lim.nodes)
            return -ENOSPC;
    }

    /* In a transaction, record every path about to be created as seen
     * absent, so later accesses in the same transaction do not record the
     * view's new nodes as "seen"; all of it before creating anything,
     * so a refused record leaves the view untouched. */
    if (c->tx != NULL) {
        for (p = path + used + (path[used] == '/'); *p;) {
            const char *e = strchr(p, '/');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            r = record(c, path, (size_t)(p + l - path), NULL);
            if (r < 0)
                return r;
            p += l;
            if (*p == '/')
                p++;
        }
    }

    parent = deep;
    p = path + used;
    if (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        struct xs_node *nn = node_new(st, p, l, parent->perms, parent->nperms);
        if (nn == NULL)
            return -ENOMEM;
        if (!privileged(c->domid))
            nn->perms[0].domid = c->domid;
        if (node_add_child(parent, nn) < 0) {
            node_free(st, nn, false);
            return -ENOMEM;
        }
        if (c->tx == NULL)
            owned_add(st, nn->perms[0].domid, 1);
        else if (!privileged(c->domid))
            c->tx->created++;
        parent->gen = ++st->gen;
        parent = nn;
        p += l;
        if (*p == '/')
            p++;
    }
    n = parent;
    if (is_write) {
        char *v = malloc(len + 1);
        if (v == NULL)
            return -ENOMEM;    /* the empty node stays: harmless */
        memcpy(v, val, len);
        v[len] = '\0';
        free(n->value);
        n->value = v;
        n->len = len;
    }
    if (c->tx == NULL)
        fire_change(st, path, n);
    return 0;
}

int
xs_core_write(struct xs_store *st, uint32_t domid, void *owner, uint32_t tx,
              const char *path, const void *val, size_t len)
{
    struct ctx c;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = do_create(&c, path, val, len, true);
    if (r == 0)
        r = log_op(&c, OP_WRITE, path, val, len, NULL, 0);
    return r;
}

int
xs_core_mkdir(struct xs_store *st, uint32_t domid, void *owner, uint32_t tx,
              const char *path)
{
    struct ctx c;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = do_create(&c, path, NULL, 0, false);
    if (r == 0)
        r = log_op(&c, OP_MKDIR, path, NULL, 0, NULL, 0);
    return r;
}

/* Before a transaction removes the subtree `n` at `path` from its
 * view, record every node in it with the generation it has now (the
 * first record of a path wins, so nodes the transaction looked at or
 * created earlier keep what they had).  Without this, a node recreated
 * below `path` later in the same transaction would be recorded as "seen
 * absent" while the live tree still has it, and the commit would conflict
 * with itself; and a change another connection makes inside the removed
 * subtree must conflict, as in cxenstored. */
static int
record_subtree(struct ctx *c, char *path, size_t len, struct xs_node *n)
{
    int r = record(c, path, len, n);

    if (r == 0)
        r = materialize(c->st, n);
    for (size_t i = 0; r == 0 && i < n->nchildren; i++) {
        struct xs_node *ch = n->children[i];
        size_t l = strlen(ch->name);

        /* Paths in the tree were canonical when created: they fit. */
        if (len + 1 + l > XENSTORE_ABS_PATH_MAX)
            return -EINVAL;
        path[len] = '/';
        memcpy(path + len + 1, ch->name, l + 1);
        r = record_subtree(c, path, len + 1 + l, ch);
        path[len] = '\0';
    }
    return r;
}

static int
do_rm(struct ctx *c, const char *path)
{
    struct xs_node *deep, *n, *parent;
    size_t used;
    int r;

    if (strcmp(path, "/") == 0)
        return -EINVAL;
    r = walk(c, path, &n, &deep, &used);
    if (r == 0)
        r = record(c, path, strlen(path), n);
    if (r < 0)
        return r;
    if (n == NULL) {
        /* Not an error if the parent exists (and is visible). */
        const char *slash = strrchr(path, '/');
        size_t plen = (size_t)(slash - path);
        if (plen == 0)
            plen = 1;
        if (used == plen || (plen == 1 && deep == c->root)) {
            r = record(c, path, plen, deep);
            if (r < 0)
                return r;
            return (perm_for(c->domid, deep) & XS_CORE_PERM_READ) ? 0
                                                                   : -EACCES;
        }
        return missing(c, deep);
    }
    if (!(perm_for(c->domid, n) & XS_CORE_PERM_WRITE))
        return -EACCES;
    parent = n->parent;
    {
        const char *slash = strrchr(path, '/');
        size_t plen = slash == path ? 1 : (size_t)(slash - path);
        r = record(c, path, plen, parent);
        if (r < 0)
            return r;
    }
    if (c->tx != NULL) {
        char buf[XENSTORE_ABS_PATH_MAX + 1];
        size_t len = strlen(path);

        memcpy(buf, path, len + 1);
        r = record_subtree(c, buf, len, n);
        if (r < 0)
            return r;
    } else {
        fire_rm(c->st, path, n);
    }
    node_del_child(parent, n);
    parent->gen = ++c->st->gen;
    node_free(c->st, n, c->tx == NULL);
    return 0;
}

int
xs_core_rm(struct xs_store *st, uint32_t domid, void *owner, uint32_t tx,
           const char *path)
{
    struct ctx c;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = do_rm(&c, path);
    if (r == 0)
        r = log_op(&c, OP_RM, path, NULL, 0, NULL, 0);
    return r;
}

int
xs_core_directory(struct xs_store *st, uint32_t domid, void *owner,
                  uint32_t tx, const char *path, char **buf, size_t *len,
                  uint64_t *gen)
{
    struct ctx c;
    struct xs_node *n;
    size_t total = 0, off = 0;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = get_readable(&c, path, &n);
    if (r == 0 && c.tx != NULL)
        r = materialize(st, n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n->nchildren; i++)
        total += strlen(n->children[i]->name) + 1;
    *buf = malloc(total + 1);
    if (*buf == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n->nchildren; i++) {
        size_t l = strlen(n->children[i]->name) + 1;
        memcpy(*buf + off, n->children[i]->name, l);
        off += l;
    }
    (*buf)[total] = '\0';
    *len = total;
    if (gen)
        *gen = n->gen;
    return 0;
}

int
xs_core_get_perms(struct xs_store *st, uint32_t domid, void *owner,
                  uint32_t tx, const char *path,
                  struct xs_core_perm **perms, size_t *nperms)
{
    struct ctx c;
    struct xs_node *n;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = get_readable(&c, path, &n);
    if (r < 0)
        return r;
    *perms = malloc(n->nperms * sizeof(**perms));
    if (*perms == NULL)
        return -ENOMEM;
    memcpy(*perms, n->perms, n->nperms * sizeof(**perms));
    *nperms = n->nperms;
    return 0;
}

static int
do_set_perms(struct ctx *c, const char *path, const struct xs_core_perm *perms,
             size_t nperms)
{
    struct xs_node *deep, *n;
    struct xs_core_perm *np;
    int r;

    if (nperms == 0)
        return -EINVAL;
    r = walk(c, path, &n, &deep, NULL);
    if (r == 0)
        r = record(c, path, strlen(path), n);
    if (r < 0)
        return r;
    if (n == NULL)
        return missing(c, deep);
    if ((perm_for(c->domid, n) & (PERM_OWNER | XS_CORE_PERM_WRITE)) !=
        (PERM_OWNER | XS_CORE_PERM_WRITE))
        return -EACCES;
    if (!privileged(c->domid) && perms[0].domid != n->perms[0].domid)
        return -EPERM;
    np = malloc(nperms * sizeof(*np));
    if (np == NULL)
        return -ENOMEM;
    memcpy(np, perms, nperms * sizeof(*np));
    if (c->tx == NULL && np[0].domid != n->perms[0].domid) {
        owned_add(c->st, n->perms[0].domid, -1);
        owned_add(c->st, np[0].domid, 1);
    }
    free(n->perms);
    n->perms = np;
    n->nperms = nperms;
    n->gen = ++c->st->gen;
    if (c->tx == NULL)
        fire_change(c->st, path, n);
    return 0;
}

int
xs_core_set_perms(struct xs_store *st, uint32_t domid, void *owner,
                  uint32_t tx, const char *path,
                  const struct xs_core_perm *perms, size_t nperms)
{
    struct ctx c;
    int r = ctx_init(&c, st, domid, owner, tx);

    if (r == 0)
        r = do_set_perms(&c, path, perms, nperms);
    if (r == 0)
        r = log_op(&c, OP_SETPERMS, path, NULL, 0, perms, nperms);
    return r;
}

/* ======================================================================
 * Watches: registration
 * ====================================================================== */

unsigned int
xs_core_watch_count(const struct xs_store *st, void *owner)
{
    unsigned int n = 0;

    for (const struct xs_watch *w = st->watches; w; w = w->next)
        if (w->owner == owner)
            n++;
    return n;
}

int
xs_core_watch(struct xs_store *st, uint32_t domid, void *owner,
              const char *path, const char *token)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    struct xs_watch *w, **tail;
    bool rel;
    int r = xs_core_canonical(domid, path, true, abs, sizeof(abs), &rel);

    if (r < 0)
        return r;
    for (tail = &st->watches; *tail; tail = &(*tail)->next) {
        w = *tail;
        if (w->owner == owner && strcmp(w->path, abs) == 0 &&
            strcmp(w->token, token) == 0)
            return -EEXIST;
    }
    if (!privileged(domid) && xs_core_watch_count(st, owner) >= st->lim.watches)
        return -E2BIG;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->path = strdup(abs);
    w->token = strdup(token);
    if (w->path == NULL || w->token == NULL) {
        free(w->path);
        free(w->token);
        free(w);
        return -ENOMEM;
    }
    w->owner = owner;
    w->domid = domid;
    w->relative = rel;
    *tail = w;
    /* The initial fire, with the path as registered. */
    deliver(st, w, w->path);
    return 0;
}

int
xs_core_unwatch(struct xs_store *st, uint32_t domid, void *owner,
                const char *path, const char *token)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    bool rel;
    int r = xs_core_canonical(domid, path, true, abs, sizeof(abs), &rel);

    if (r < 0)
        return r;
    for (struct xs_watch **pp = &st->watches; *pp; pp = &(*pp)->next) {
        struct xs_watch *w = *pp;
        if (w->owner == owner && strcmp(w->path, abs) == 0 &&
            strcmp(w->token, token) == 0) {
            *pp = w->next;
            free(w->path);
            free(w->token);
            free(w);
            return 0;
        }
    }
    return -ENOENT;
}

/* ======================================================================
 * Transactions: start and end
 * ====================================================================== */

int
xs_core_tx_start(struct xs_store *st, uint32_t domid, void *owner,
                 uint32_t *id)
{
    struct xs_tx *t;
    unsigned int open = 0, dom_open = 0;

    for (t = st->txs; t; t = t->next) {
        if (t->owner == owner)
            open++;
        if (t->domid == domid)
            dom_open++;
    }
    /* A transaction's view can grow to a copy of the whole tree, so a
     * domain opening many connections must not multiply them without
     * bound. */
    if (!privileged(domid) &&
        (open >= st->lim.transactions ||
         dom_open >= XS_CORE_TX_PER_DOMAIN * st->lim.transactions))
        return -ENOSPC;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->root = node_copy(st, st->root);
    if (t->root == NULL) {
        free(t);
        return -ENOMEM;
    }
    do {
        t->id = st->next_txid++;
    } while (t->id == 0 || tx_find(st, owner, t->id) != NULL);
    t->domid = domid;
    t->owner = owner;
    t->next = st->txs;
    st->txs = t;
    *id = t->id;
    return 0;
}

int
xs_core_tx_end(struct xs_store *st, uint32_t domid, void *owner, uint32_t id,
               bool commit)
{
    struct xs_tx *t = tx_find(st, owner, id);
    struct ctx c;
    int r = 0;

    (void)domid;
    if (t == NULL)
        return -ENOENT;
    tx_unlink(st, t);
    if (!commit)
        goto out;
    /* Conflict: anything the transaction looked at changed since. */
    for (size_t i = 0; i < t->nacc; i++) {
        struct xs_node *n = lookup(st->root, t->acc[i].path, NULL, NULL);
        if ((n ? n->gen : 0) != t->acc[i].gen) {
            r = -EAGAIN;
            goto out;
        }
    }
    /* The node quota is shared with the domain's other connections, which
     * may have created nodes meanwhile: check it before applying anything
     * (conservatively: every creation counts, removals do not). */
    if (!privileged(t->domid) &&
        xs_core_nodes_owned(st, t->domid) + t->created > st->lim.nodes) {
        r = -ENOSPC;
        goto out;
    }
    /* Replay on the live tree; watches fire here.  Nothing it touched
     * changed, so the permission checks that passed on the view pass
     * again and the quota was checked above: only ENOMEM can stop the
     * replay part way. */
    c.st = st;
    c.tx = NULL;
    c.root = st->root;
    c.domid = t->domid;
    for (size_t i = 0; i < t->nops && r == 0; i++) {
        struct tx_op *op = &t->ops[i];
        switch (op->type) {
        case OP_WRITE: r = do_create(&c, op->path, op->val, op->len, true); break;
        case OP_MKDIR: r = do_create(&c, op->path, NULL, 0, false); break;
        case OP_RM: r = do_rm(&c, op->path); break;
        case OP_SETPERMS:
            r = do_set_perms(&c, op->path, op->perms, op->nperms);
            break;
        }
    }
out:
    tx_free(st, t);
    return r;
}

bool
xs_core_tx_exists(struct xs_store *st, void *owner, uint32_t id)
{
    return tx_find(st, owner, id) != NULL;
}

void
xs_core_drop_owner(struct xs_store *st, void *owner)
{
    for (struct xs_watch **pp = &st->watches; *pp;) {
        struct xs_watch *w = *pp;
        if (w->owner == owner) {
            *pp = w->next;
            free(w->path);
            free(w->token);
            free(w);
        } else {
            pp = &w->next;
        }
    }
    for (struct xs_tx **pp = &st->txs; *pp;) {
        struct xs_tx *t = *pp;
        if (t->owner == owner) {
            *pp = t->next;
            tx_free(st, t);
        } else {
            pp = &t->next;
        }
    }
}

/* ======================================================================
 * Domains
 * ====================================================================== */

bool
xs_core_is_introduced(const struct xs_store *st, uint32_t domid)
{
    for (size_t i = 0; i < st->nintroduced; i++)
        if (st->introduced[i] == domid)
            return true;
    return false;
}

int
xs_core_mark_introduced(struct xs_store *st, uint32_t domid, bool on)
{
    for (size_t i = 0; i < st->nintroduced; i++) {
        if (st->introduced[i] == domid) {
            if (!on)
                st->introduced[i] = st->introduced[--st->nintroduced];
            return 0;
        }
    }
    if (on) {
        uint32_t *n = realloc(st->introduced,
                              (st->nintroduced + 1) * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        st->introduced = n;
        n[st->nintroduced++] = domid;
    }
    return 0;
}

int
xs_core_introduce(struct xs_store *st, uint32_t domid, const char *name)
{
    char path[64], sub[80], idstr[16];
    struct xs_core_perm perm = { .domid = domid, .perms = XS_CORE_PERM_NONE };
    int r;

    if (domid >= 0x7FF0)   /* DOMID_FIRST_RESERVED */
        return -EINVAL;
    snprintf(path, sizeof(path), "/local/domain/%u", domid);
    r = xs_core_mkdir(st, 0, NULL, 0, path);
    if (r == 0 && domid != 0)
        r = xs_core_set_perms(st, 0, NULL, 0, path, &perm, 1);
    snprintf(sub, sizeof(sub), "%s/domid", path);
    snprintf(idstr, sizeof(idstr), "%u", domid);
    if (r == 0)
        r = xs_core_write(st, 0, NULL, 0, sub, idstr, strlen(idstr));
    if (r == 0 && name != NULL) {
        snprintf(sub, sizeof(sub), "%s/name", path);
        r = xs_core_write(st, 0, NULL, 0, sub, name, strlen(name));
    }
    /* Domain 0 is introduced from the start (xs_core_new); only its
     * nodes are written, as xen-init-dom0 does at boot. */
    if (r == 0 && domid != 0)
        r = xs_core_mark_introduced(st, domid, true);
    if (r == 0 && domid != 0)
        xs_core_fire_special(st, "@introduceDomain");
    return r;
}

int
xs_core_release(struct xs_store *st, uint32_t domid)
{
    char path[64];
    int r;

    if (domid == 0)
        return -EINVAL;
    snprintf(path, sizeof(path), "/local/domain/%u", domid);
    r = xs_core_rm(st, 0, NULL, 0, path);
    if (r < 0 && r != -ENOENT)
        return r;
    xs_core_mark_introduced(st, domid, false);
    xs_core_fire_special(st, "@releaseDomain");
    return 0;
}

/* ======================================================================
 * Creation
 * ====================================================================== */

struct xs_store *
xs_core_new(const struct xs_core_limits *limits, xs_core_event_fn *fire,
            void *opaque)
{
    static const struct xs_core_perm dom0 = { 0, XS_CORE_PERM_NONE };
    struct xs_store *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    if (limits)
        st->lim = *limits;
    if (st->lim.nodes == 0)
        st->lim.nodes = 1000;
    if (st->lim.watches == 0)
        st->lim.watches = 128;
    if (st->lim.transactions == 0)
        st->lim.transactions = 10;
    if (st->lim.value_size == 0)
        st->lim.value_size = XENSTORE_PAYLOAD_MAX;
    st->fire = fire;
    st->opaque = opaque;
    st->next_txid = 1;
    st->root = node_new(st, "", 0, &dom0, 1);
    if (st->root == NULL) {
        free(st);
        return NULL;
    }
    owned_add(st, 0, 1);
    if (xs_core_mkdir(st, 0, NULL, 0, "/local/domain/0") < 0 ||
        xs_core_mark_introduced(st, 0, true) < 0) {
        xs_core_free(st);
        return NULL;
    }
    return st;
}

void
xs_core_free(struct xs_store *st)
{
    if (st == NULL)
        return;
    while (st->watches) {
        struct xs_watch *w = st->watches;
        st->watches = w->next;
        free(w->path);
        free(w->token);
        free(w);
    }
    while (st->txs) {
        struct xs_tx *t = st->txs;
        st->txs = t->next;
        tx_free(st, t);
    }
    node_free(st, st->root, true);
    free(st->owned);
    free(st->introduced);
    free(st);
}
