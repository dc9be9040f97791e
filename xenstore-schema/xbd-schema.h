/* xbdkit — the blkif xenstore schema as C tables, and the tree checker.
 *
 * libxbdschema is pure: no I/O, no xenstore connection, no globals that
 * change.  It describes every node of a virtual block device (built from
 * blkif.def, the single source) and validates an in-memory copy of a
 * xenstore tree against it.  Reading a live tree or a dump file is the job
 * of xbd-check-tree (or of any caller that fills a struct xbd_tree).
 *
 * Error convention: functions returning int return 0 on success or a
 * negative errno (-EINVAL bad argument, -ENOMEM); lookups return NULL when
 * nothing matches.  Nothing here prints.
 *
 * Thread safety: the tables are constant; a struct xbd_tree belongs to one
 * thread at a time.
 */
#ifndef XBD_SCHEMA_H
#define XBD_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The schema ---------------------------------------------------------- */

/* Which directory a key lives in. */
enum xbd_side {
    XBD_SIDE_BE = 0,            /* <be> = /local/domain/B/backend/KIND/F/DEVID */
    XBD_SIDE_FE = 1,            /* <fe> = /local/domain/F/device/vbd/DEVID */
};

/* Who writes a key (a bitmask: state is created by the toolstack, then
 * owned by its side). */
enum xbd_writer {
    XBD_WR_TOOLSTACK = 1u << 0, /* libxl / xbdctl, in the attach transaction */
    XBD_WR_BACKEND   = 1u << 1, /* the backend (xbd-backd, blkback, QEMU) */
    XBD_WR_FRONTEND  = 1u << 2, /* the frontend (guest) */
    XBD_WR_HOTPLUG   = 1u << 3, /* the hotplug script (QEMU for qdisk) */
};

enum xbd_type {
    XBD_T_DIR,      /* a directory: value must be empty */
    XBD_T_UINT,     /* decimal unsigned integer in [min, max] */
    XBD_T_BOOL,     /* "0" or "1" */
    XBD_T_STRING,   /* free text of at least min bytes */
    XBD_T_ENUM,     /* one of the '|'-separated words in values */
    XBD_T_PATH,     /* absolute xenstore path */
    XBD_T_FSPATH,   /* absolute file-system path */
    XBD_T_DOMID,    /* domain id in [min, max] */
    XBD_T_STATE,    /* XenbusState, decimal 0..8 */
    XBD_T_DEVNUM,   /* MAJOR:MINOR in lower-case hex */
};

enum xbd_flag {
    XBD_F_PRIVATE     = 1u << 0, /* only for the side whose tree holds it */
    XBD_F_DEPRECATED  = 1u << 1, /* only for interop with legacy peers */
    XBD_F_POW2        = 1u << 2, /* value must be a power of two */
    XBD_F_NOT_IN_SPEC = 1u << 3, /* seen in the wild, not in blkif.h */
    XBD_F_COND        = 1u << 4, /* required under conditions the checker
                                    rules state (rings, queues) */
};

/* Ring-size schemes (PROTOCOL.md §1.1.3). */
enum xbd_scheme {
    XBD_SCHEME_NONE = 0,
    XBD_SCHEME_CITRIX,          /* max-ring-page-order / ring-page-order */
    XBD_SCHEME_REDHAT,          /* max-ring-pages / num-ring-pages */
};

/* A set of XenbusStates (bit n = state n) in which a key must exist. */
#define XBD_STATE_BIT(s)     (1u << (s))
#define XBD_REQ_NONE         0u
/* Initialising .. Closed: the toolstack wrote it before anyone probed. */
#define XBD_REQ_ALWAYS       0x7eu
#define XBD_REQ_CONNECTED    XBD_STATE_BIT(4)

/* One schema entry. */
struct xbd_key {
    enum xbd_side side;
    const char *name;           /* macro suffix: XBDK_<name> */
    const char *pattern;        /* relative path; %u = a decimal index */
    unsigned writers;           /* enum xbd_writer bits */
    enum xbd_type type;
    uint64_t min, max;          /* UINT/DOMID/STATE: range; STRING: min length */
    const char *values;         /* ENUM: "a|b|c"; else NULL */
    const char *dflt;           /* value meant when absent: a literal, or the
                                   name of another key of the same side; NULL
                                   when there is no default */
    unsigned req_states;        /* XBD_STATE_BIT set: must exist in these
                                   states of its own side */
    unsigned flags;             /* enum xbd_flag bits */
    const char *alias_of;       /* DEPRECATED alias: the key it mirrors */
    enum xbd_scheme scheme;
    const char *meaning;        /* one line */
};

/* The table, in blkif.def order. */
extern const struct xbd_key xbd_schema_keys[];
extern const size_t xbd_schema_nkeys;

/* Find the entry whose pattern matches relpath (relative to <be> or <fe>,
 * e.g. "queue-1/ring-ref3").  %u matches "0" or a decimal without leading
 * zero below 2^31; idx[] (may be NULL; room for 2) receives the numbers.
 * NULL when the path is not part of the schema. */
const struct xbd_key *xbd_schema_lookup(enum xbd_side side, const char *relpath,
                                        unsigned idx[2]);

/* Validate a value against its entry (type, range, pow2, enum).  Returns 0
 * or -EINVAL/-ERANGE; when non-zero and why != NULL, *why is a static
 * description of what the schema expects. */
int xbd_schema_check_value(const struct xbd_key *k, const char *value,
                           const char **why);

/* Readable names for the doc generator and messages. */
const char *xbd_schema_type_name(enum xbd_type t);
const char *xbd_schema_side_name(enum xbd_side s);   /* "backend"/"frontend" */
const char *xbd_schema_scheme_name(enum xbd_scheme s);
/* Writers as "toolstack, backend" into buf; returns buf. */
const char *xbd_schema_writers_str(unsigned writers, char *buf, size_t len);

/* ---- In-memory trees -------------------------------------------------------- */

/* One xenstore permission entry: the first entry of a node names its owner
 * and the access everybody else has; later entries grant per-domain access.
 * perm is 'n' (none), 'r' (read), 'w' (write) or 'b' (both). */
struct xbd_perm {
    unsigned domid;
    char perm;
};

#define XBD_MAX_PERMS 8

struct xbd_tree_node {
    char *path;                 /* absolute, no trailing '/' */
    char *value;                /* NUL-terminated copy */
    int nperms;                 /* -1: permissions unknown (dump without -p) */
    struct xbd_perm perms[XBD_MAX_PERMS];
};

/* A flat list of nodes; the order of insertion is kept. */
struct xbd_tree {
    struct xbd_tree_node *nodes;
    size_t n, cap;
};

void xbd_tree_init(struct xbd_tree *t);
void xbd_tree_free(struct xbd_tree *t);
/* Add (or replace) a node.  perms may be NULL (unknown).  -ENOMEM, or
 * -EINVAL when nperms > XBD_MAX_PERMS or the path is not absolute. */
int xbd_tree_add(struct xbd_tree *t, const char *path, const char *value,
                 const struct xbd_perm *perms, int nperms);
const struct xbd_tree_node *xbd_tree_get(const struct xbd_tree *t,
                                         const char *path);
/* Parse "(n0,r2)" or "n0,r2" into perms; returns the count or -EINVAL. */
int xbd_perms_parse(const char *s, struct xbd_perm *perms, int max);
/* Format perms as "n0,r2" into buf. */
void xbd_perms_format(const struct xbd_perm *perms, int n, char *buf,
                      size_t len);

/* Parse one line of `xenstore-ls -f` (optionally -p) output:
 *   /path = "value"   (n0,r2)
 * Values are unescaped (\\ \" \t \n \r \ooo \xHH).  Returns 1 when a node
 * was added, 0 for a line that is not a node (xenstore-ls diagnostics,
 * blank), -EINVAL for a malformed node line, -ENOMEM. */
int xbd_tree_parse_line(struct xbd_tree *t, const char *line);

/* ---- The checker ------------------------------------------------------------ */

enum xbd_finding_class {
    XBD_FIND_UNKNOWN,       /* node not in the schema */
    XBD_FIND_TYPE,          /* value of the wrong type / syntax */
    XBD_FIND_RANGE,         /* value out of range or not a power of two */
    XBD_FIND_PERM,          /* owner/ACL let the wrong side write (or the
                               peer cannot read) */
    XBD_FIND_MISSING,       /* required in the current state but absent */
    XBD_FIND_CONFLICT,      /* nodes that contradict each other */
    XBD_FIND_MISMATCH,      /* <be> and <fe> do not point at each other */
};

struct xbd_finding {
    enum xbd_finding_class cls;
    const char *path;       /* the node concerned (absolute) */
    const char *what;       /* what is wrong */
    const char *expect;     /* what the schema expects */
};

/* Called once per finding; the strings live only during the call. */
typedef void xbd_finding_fn(void *opaque, const struct xbd_finding *f);

/* Check every device under /local/domain/ * /backend/{vbd,qdisk,vbd3}/ * / *
 * and /local/domain/ * /device/vbd/ * in t.  Nodes outside those trees are
 * ignored.  Returns the number of findings (0 = clean) or a negative errno. */
int xbd_check_tree(const struct xbd_tree *t, xbd_finding_fn *fn, void *opaque);

const char *xbd_finding_class_name(enum xbd_finding_class c);

#ifdef __cplusplus
}
#endif

#endif /* XBD_SCHEMA_H */
