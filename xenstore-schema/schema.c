/* xbdkit — libxbdschema: the schema table, lookups, value checks, trees.
 *
 * See xbd-schema.h for the contract.  The table is blkif.def expanded by
 * the C preprocessor: nothing about a key is written anywhere else.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-parse.h"
#include "xbd-schema.h"

/* ====================================================================== */
/* The table                                                              */
/* ====================================================================== */

const struct xbd_key xbd_schema_keys[] = {
#define XBD_NODE(side, name, pattern, writers, type, min, max, values, dflt, \
                 req, flags, alias, scheme, meaning)                        \
    { XBD_SIDE_##side, #name, pattern, writers, type, min, max, values,     \
      dflt, req, flags, alias, scheme, meaning },
#include "blkif.def"
#undef XBD_NODE
};

const size_t xbd_schema_nkeys = sizeof xbd_schema_keys / sizeof xbd_schema_keys[0];

/* ====================================================================== */
/* Lookup                                                                 */
/* ====================================================================== */

/* Match one %u: "0" or [1-9][0-9]* below 2^31.  Returns chars consumed or 0. */
static size_t
match_index(const char *s, unsigned *out)
{
    size_t i = 0;
    uint64_t v = 0;

    if (s[0] == '0') {
        *out = 0;
        return 1;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > 0x7fffffffu)
            return 0;
        i++;
    }
    if (i == 0)
        return 0;
    *out = (unsigned)v;
    return i;
}

/* Does relpath match pattern exactly?  Fills idx. */
static bool
pattern_match(const char *pat, const char *s, unsigned idx[2])
{
    int n = 0;

    while (*pat) {
        if (pat[0] == '%' && pat[1] == 'u') {
            unsigned v;
            size_t used = match_index(s, &v);
            if (used == 0 || n >= 2)
                return false;
            idx[n++] = v;
            s += used;
            pat += 2;
        } else if (*pat++ != *s++) {
            return false;
        }
    }
    return *s == '\0';
}

const struct xbd_key *
xbd_schema_lookup(enum xbd_side side, const char *relpath, unsigned idx[2])
{
    unsigned tmp[2] = { 0, 0 };

    if (relpath == NULL)
        return NULL;
    for (size_t i = 0; i < xbd_schema_nkeys; i++) {
        const struct xbd_key *k = &xbd_schema_keys[i];
        if (k->side != side)
            continue;
        if (pattern_match(k->pattern, relpath, tmp)) {
            if (idx) {
                idx[0] = tmp[0];
                idx[1] = tmp[1];
            }
            return k;
        }
    }
    return NULL;
}

/* ====================================================================== */
/* Values                                                                 */
/* ====================================================================== */

static bool
enum_has(const char *values, const char *v)
{
    size_t len = strlen(v);
    const char *p = values;

    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t wl = bar ? (size_t)(bar - p) : strlen(p);
        if (wl == len && memcmp(p, v, len) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* Lower-case hex without prefix, 1..8 digits. */
static bool
is_hex_part(const char *s, size_t n)
{
    if (n == 0 || n > 8)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool
is_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

int
xbd_schema_check_value(const struct xbd_key *k, const char *v,
                       const char **why)
{
    const char *dummy;
    uint64_t u;
    bool b;

    if (why == NULL)
        why = &dummy;
    *why = NULL;

    switch (k->type) {
    case XBD_T_DIR:
        if (v[0] != '\0') {
            *why = "a directory with an empty value";
            return -EINVAL;
        }
        return 0;
    case XBD_T_BOOL:
        if (xbd_parse_bool(v, &b) < 0) {
            *why = "0 or 1";
            return -EINVAL;
        }
        return 0;
    case XBD_T_UINT:
    case XBD_T_DOMID:
    case XBD_T_STATE:
        if (xbd_parse_u64(v, &u) < 0) {
            *why = "a decimal unsigned integer";
            return -EINVAL;
        }
        if (u < k->min || u > k->max) {
            *why = "a value within the key's range";
            return -ERANGE;
        }
        if ((k->flags & XBD_F_POW2) && !xbd_is_pow2(u)) {
            *why = "a power of two";
            return -ERANGE;
        }
        return 0;
    case XBD_T_STRING:
        if (!is_printable(v)) {
            *why = "printable text";
            return -EINVAL;
        }
        if (strlen(v) < k->min) {
            *why = "a non-empty string";
            return -EINVAL;
        }
        return 0;
    case XBD_T_ENUM:
        if (!enum_has(k->values, v)) {
            *why = "one of the listed words";
            return -EINVAL;
        }
        return 0;
    case XBD_T_PATH:
    case XBD_T_FSPATH:
        if (v[0] != '/' || !is_printable(v) || strstr(v, "//") != NULL ||
            (k->type == XBD_T_PATH && strlen(v) > 1 && v[strlen(v) - 1] == '/')) {
            *why = k->type == XBD_T_PATH ? "an absolute xenstore path"
                                         : "an absolute file-system path";
            return -EINVAL;
        }
        return 0;
    case XBD_T_DEVNUM: {
        const char *colon = strchr(v, ':');
        if (colon == NULL || !is_hex_part(v, (size_t)(colon - v)) ||
            !is_hex_part(colon + 1, strlen(colon + 1))) {
            *why = "MAJOR:MINOR in lower-case hex (e.g. 7:0, fe:10)";
            return -EINVAL;
        }
        return 0;
    }
    }
    *why = "a known type";
    return -EINVAL;
}

/* ====================================================================== */
/* Names                                                                  */
/* ====================================================================== */

const char *
xbd_schema_type_name(enum xbd_type t)
{
    switch (t) {
    case XBD_T_DIR: return "dir";
    case XBD_T_UINT: return "uint";
    case XBD_T_BOOL: return "bool";
    case XBD_T_STRING: return "string";
    case XBD_T_ENUM: return "enum";
    case XBD_T_PATH: return "xs-path";
    case XBD_T_FSPATH: return "fs-path";
    case XBD_T_DOMID: return "domid";
    case XBD_T_STATE: return "state";
    case XBD_T_DEVNUM: return "devnum";
    }
    return "?";
}

const char *
xbd_schema_side_name(enum xbd_side s)
{
    return s == XBD_SIDE_BE ? "backend" : "frontend";
}

const char *
xbd_schema_scheme_name(enum xbd_scheme s)
{
    switch (s) {
    case XBD_SCHEME_NONE: return "";
    case XBD_SCHEME_CITRIX: return "ring-page-order";
    case XBD_SCHEME_REDHAT: return "ring-pages";
    }
    return "?";
}

const char *
xbd_schema_writers_str(unsigned w, char *buf, size_t len)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { XBD_WR_TOOLSTACK, "toolstack" },
        { XBD_WR_BACKEND, "backend" },
        { XBD_WR_FRONTEND, "frontend" },
        { XBD_WR_HOTPLUG, "hotplug" },
    };
    size_t off = 0;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(w & names[i].bit))
            continue;
        int r = snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
                         names[i].name);
        if (r < 0 || (size_t)r >= len - off)
            break;
        off += (size_t)r;
    }
    return buf;
}

/* ====================================================================== */
/* Trees                                                                  */
/* ====================================================================== */

void
xbd_tree_init(struct xbd_tree *t)
{
    t->nodes = NULL;
    t->n = t->cap = 0;
}

void
xbd_tree_free(struct xbd_tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->nodes[i].path);
        free(t->nodes[i].value);
    }
    free(t->nodes);
    xbd_tree_init(t);
}

const struct xbd_tree_node *
xbd_tree_get(const struct xbd_tree *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->nodes[i].path, path) == 0)
            return &t->nodes[i];
    return NULL;
}

int
xbd_tree_add(struct xbd_tree *t, const char *path, const char *value,
             const struct xbd_perm *perms, int nperms)
{
    struct xbd_tree_node *n;
    char *p, *v;
    size_t plen;

    if (path == NULL || path[0] != '/' || value == NULL ||
        nperms > XBD_MAX_PERMS || (perms == NULL && nperms > 0))
        return -EINVAL;
    p = strdup(path);
    v = strdup(value);
    if (p == NULL || v == NULL) {
        free(p);
        free(v);
        return -ENOMEM;
    }
    plen = strlen(p);
    while (plen > 1 && p[plen - 1] == '/')
        p[--plen] = '\0';

    n = (struct xbd_tree_node *)xbd_tree_get(t, p);
    if (n != NULL) {
        free(n->path);
        free(n->value);
    } else {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 64;
            struct xbd_tree_node *nn = realloc(t->nodes, cap * sizeof *nn);
            if (nn == NULL) {
                free(p);
                free(v);
                return -ENOMEM;
            }
            t->nodes = nn;
            t->cap = cap;
        }
        n = &t->nodes[t->n++];
    }
    n->path = p;
    n->value = v;
    n->nperms = perms ? nperms : -1;
    for (int i = 0; perms && i < nperms; i++)
        n->perms[i] = perms[i];
    return 0;
}

int
xbd_perms_parse(const char *s, struct xbd_perm *perms, int max)
{
    int n = 0;

    if (*s == '(')
        s++;
    while (*s && *s != ')') {
        char c = *s++;
        uint64_t id = 0;
        int digits = 0;

        if (c != 'n' && c != 'r' && c != 'w' && c != 'b')
            return -EINVAL;
        while (*s >= '0' && *s <= '9') {
            id = id * 10 + (uint64_t)(*s++ - '0');
            if (++digits > 5)
                return -EINVAL;
        }
        if (digits == 0 || n >= max)
            return -EINVAL;
        perms[n].domid = (unsigned)id;
        perms[n].perm = c;
        n++;
        if (*s == ',')
            s++;
        else if (*s && *s != ')')
            return -EINVAL;
    }
    if (n == 0)
        return -EINVAL;
    if (*s == ')' && s[1] != '\0')
        return -EINVAL;
    return n;
}

void
xbd_perms_format(const struct xbd_perm *perms, int n, char *buf, size_t len)
{
    size_t off = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int r = snprintf(buf + off, len - off, "%s%c%u", i ? "," : "",
                         perms[i].perm, perms[i].domid);
        if (r < 0 || (size_t)r >= len - off)
            return;
        off += (size_t)r;
    }
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int
xbd_tree_parse_line(struct xbd_tree *t, const char *line)
{
    const char *eq, *q;
    char *path = NULL, *value = NULL;
    size_t vlen = 0;
    struct xbd_perm perms[XBD_MAX_PERMS];
    int nperms = 0, r;
    bool have_perms = false;

    if (line[0] != '/')
        return 0;               /* diagnostics such as "xenstore-ls: ..." */
    eq = strstr(line, " = \"");
    if (eq == NULL)
        return -EINVAL;
    path = strndup(line, (size_t)(eq - line));
    value = malloc(strlen(eq) + 1);
    if (path == NULL || value == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (q = eq + 4; *q && *q != '"'; q++) {
        char c = *q;
        if (c == '\\') {
            q++;
            switch (*q) {
            case '\\': c = '\\'; break;
            case '"': c = '"'; break;
            case 't': c = '\t'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 'x':
                if (hexval(q[1]) < 0 || hexval(q[2]) < 0) {
                    r = -EINVAL;
                    goto out;
                }
                c = (char)(hexval(q[1]) * 16 + hexval(q[2]));
                q += 2;
                break;
            default:
                if (q[0] >= '0' && q[0] <= '7' && q[1] >= '0' && q[1] <= '7' &&
                    q[2] >= '0' && q[2] <= '7') {
                    c = (char)((q[0] - '0') * 64 + (q[1] - '0') * 8 + (q[2] - '0'));
                    q += 2;
                } else {
                    r = -EINVAL;
                    goto out;
                }
            }
        }
        value[vlen++] = c;
    }
    if (*q != '"') {
        r = -EINVAL;            /* unterminated value */
        goto out;
    }
    value[vlen] = '\0';
    q++;
    while (*q == ' ' || *q == '\t')
        q++;
    if (*q == '(') {
        const char *end = strchr(q, ')');
        char buf[128];
        if (end == NULL || (size_t)(end - q) + 2 > sizeof buf) {
            r = -EINVAL;
            goto out;
        }
        memcpy(buf, q, (size_t)(end - q) + 1);
        buf[end - q + 1] = '\0';
        nperms = xbd_perms_parse(buf, perms, XBD_MAX_PERMS);
        if (nperms < 0) {
            r = -EINVAL;
            goto out;
        }
        have_perms = true;
        q = end + 1;
    }
    while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
        q++;
    if (*q != '\0') {
        r = -EINVAL;
        goto out;
    }
    r = xbd_tree_add(t, path, value, have_perms ? perms : NULL, nperms);
    if (r == 0)
        r = 1;
out:
    free(path);
    free(value);
    return r;
}
