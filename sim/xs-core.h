/* xbd-sim — the pure xenstore store core.
 *
 * The tree, permissions, watches, transactions and quotas of the sim's
 * xenstore daemon, with no I/O at all: every call takes the caller's domid,
 * transaction id and path explicitly, and watch events leave through one
 * callback.  The transport (xs-wire.c, behind xs-server.h) owns sockets and
 * message framing; tests drive this core directly.
 *
 * Error convention (the whole core): functions return 0 (or a count) on
 * success and a negative errno on failure, using the errno values that real
 * xenstored replies with (the transport turns them into their xsd_errors
 * names): EINVAL bad path or argument, ENOENT no such node/transaction/watch,
 * EACCES permission denied, EPERM unprivileged owner change, EEXIST duplicate
 * watch, ENOSPC node/value/transaction quota, E2BIG watch quota or a reply
 * that does not fit the payload limit, EAGAIN transaction conflict, ENOMEM.
 *
 * Semantics follow cxenstored where the two daemons agree:
 *  - domid 0 is privileged: it may do anything.
 *  - A node's permission list: entry 0 names the owner (who may do
 *    anything) and the access of every domain not listed; later entries
 *    give specific domains r, w, b (both) or n (none).
 *  - A created node inherits its parent's permissions, except that a node
 *    an unprivileged domain creates is owned by that domain.
 *  - Only the owner or a privileged domain may SET_PERMS, and an
 *    unprivileged owner may not give the node away.
 *  - Reading a missing node whose nearest existing ancestor the caller may
 *    not read gives EACCES, not ENOENT (existence is not leaked).
 *  - Watches fire on the path itself and descendants; removing a subtree
 *    fires watches inside it (with the watch's own path) and above it; an
 *    event is delivered only if the watcher may read the node.  @-watches
 *    (@introduceDomain, @releaseDomain) are delivered to privileged watchers.
 *  - A transaction sees each node as it was when the transaction first
 *    came near it (its view is copied from the live tree on demand, not
 *    at start); commit fails with EAGAIN if any node the transaction
 *    read or wrote changed since it first looked at it (cxenstored's
 *    generation rule); watches fire at commit.
 */
#ifndef XBD_SIM_XS_CORE_H
#define XBD_SIM_XS_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_store;

/* Permission bits of one entry. */
#define XS_CORE_PERM_NONE  0u
#define XS_CORE_PERM_READ  1u
#define XS_CORE_PERM_WRITE 2u

struct xs_core_perm {
    uint32_t domid;
    unsigned int perms;          /* XS_CORE_PERM_* */
};

/* Quotas enforced on unprivileged domains (0 = default as in xs-server.h).
 * The watch and transaction quotas count per owner (one connection). */
struct xs_core_limits {
    unsigned int nodes;          /* nodes a domain may own (1000) */
    unsigned int watches;        /* watches per owner (128) */
    unsigned int transactions;   /* open transactions per owner (10) */
    unsigned int value_size;     /* bytes per value (XENSTORE_PAYLOAD_MAX) */
};

/* Distinct nodes an unprivileged transaction may look at, and
 * modifications it may make, before it gets ENOSPC (cxenstored has the same
 * kind of per-transaction quota): the bookkeeping of an open transaction
 * stays bounded however long a guest keeps it open. */
#define XS_CORE_TX_MAX_NODES 1024u

/* A transaction holds copies of the nodes it walked through and their
 * siblings (at worst the whole tree): an unprivileged domain may hold at
 * most this many times its per-connection transaction quota open across
 * all its connections (ENOSPC beyond). */
#define XS_CORE_TX_PER_DOMAIN 4u

/* Watch event delivery: `owner` is what was passed to xs_core_watch, `path`
 * the event path (already made relative for relative watches).  Called
 * synchronously from inside the modifying call; must not call back into the
 * store. */
typedef void xs_core_event_fn(void *opaque, void *owner, const char *path,
                              const char *token);

struct xs_store *xs_core_new(const struct xs_core_limits *limits,
                             xs_core_event_fn *fire, void *opaque);
void xs_core_free(struct xs_store *st);

/* Nodes allocated right now, in the live tree and in transactions' views
 * (for leak checks in tests). */
size_t xs_core_live_nodes(const struct xs_store *st);
/* Nodes of the live tree owned by domid (what the node quota counts). */
unsigned int xs_core_nodes_owned(const struct xs_store *st, uint32_t domid);

/* ---- paths --------------------------------------------------------------- */

/* Turn a path as a client sent it into an absolute one in `out` (size at
 * least XENSTORE_ABS_PATH_MAX + 1): relative paths resolve under
 * /local/domain/<domid>.  Checks characters, "//", trailing '/', emptiness
 * and the XENSTORE_ABS_PATH_MAX / XENSTORE_REL_PATH_MAX limits.  `special`
 * allows "@name" (watch paths only).  *relative is set when the input was
 * relative.  -EINVAL on a bad path. */
int xs_core_canonical(uint32_t domid, const char *in, bool special,
                      char *out, size_t outsz, bool *relative);

/* ---- node operations ------------------------------------------------------
 * `tx` is 0 outside transactions; otherwise it must be a transaction opened
 * by the same `owner`, else -ENOENT.  Paths are absolute (canonical). */

/* Value of a node: *val is malloc'd (NUL-terminated for convenience, the
 * terminator not counted in *len). */
int xs_core_read(struct xs_store *st, uint32_t domid, void *owner,
                 uint32_t tx, const char *path, char **val, size_t *len);
/* Write a value, creating missing parents with empty values. */
int xs_core_write(struct xs_store *st, uint32_t domid, void *owner,
                  uint32_t tx, const char *path, const void *val, size_t len);
/* Create a node (and parents) if missing; existing values are left alone. */
int xs_core_mkdir(struct xs_store *st, uint32_t domid, void *owner,
                  uint32_t tx, const char *path);
/* Remove a node and its subtree.  Missing node with existing parent: 0. */
int xs_core_rm(struct xs_store *st, uint32_t domid, void *owner,
               uint32_t tx, const char *path);
/* Children names, each NUL-terminated, in creation order: *buf malloc'd.
 * *gen (may be NULL) receives the node's generation for DIRECTORY_PART. */
int xs_core_directory(struct xs_store *st, uint32_t domid, void *owner,
                      uint32_t tx, const char *path, char **buf, size_t *len,
                      uint64_t *gen);
/* Permissions: *perms malloc'd, *n entries (at least one). */
int xs_core_get_perms(struct xs_store *st, uint32_t domid, void *owner,
                      uint32_t tx, const char *path,
                      struct xs_core_perm **perms, size_t *n);
int xs_core_set_perms(struct xs_store *st, uint32_t domid, void *owner,
                      uint32_t tx, const char *path,
                      const struct xs_core_perm *perms, size_t n);

/* Parse / format one permission string "r5" etc.  Format needs 12 bytes. */
int xs_core_perm_parse(const char *s, struct xs_core_perm *out);
void xs_core_perm_format(const struct xs_core_perm *p, char out[16]);

/* ---- watches ------------------------------------------------------------- */

/* Register a watch for `owner` (a connection) and fire it once at once.
 * `path` as the client sent it (relative, absolute or @special). */
int xs_core_watch(struct xs_store *st, uint32_t domid, void *owner,
                  const char *path, const char *token);
int xs_core_unwatch(struct xs_store *st, uint32_t domid, void *owner,
                    const char *path, const char *token);
/* Fire a special (@...) event, e.g. "@releaseDomain". */
void xs_core_fire_special(struct xs_store *st, const char *name);
unsigned int xs_core_watch_count(const struct xs_store *st, void *owner);

/* ---- transactions -------------------------------------------------------- */

int xs_core_tx_start(struct xs_store *st, uint32_t domid, void *owner,
                     uint32_t *id);
/* commit=false aborts.  Commit: 0, or -EAGAIN on conflict (the transaction
 * is gone either way). */
int xs_core_tx_end(struct xs_store *st, uint32_t domid, void *owner,
                   uint32_t id, bool commit);

/* Does `owner` have transaction `id` open? */
bool xs_core_tx_exists(struct xs_store *st, void *owner, uint32_t id);

/* Drop every watch and transaction of `owner` (RESET_WATCHES, disconnect). */
void xs_core_drop_owner(struct xs_store *st, void *owner);

/* ---- domains ------------------------------------------------------------- */

/* Create /local/domain/<domid> owned by domid with "domid" and "name" (if
 * name != NULL), mark it introduced and fire @introduceDomain.  For domid 0
 * (introduced from the start, its directory owned by itself) only the
 * "domid" and "name" nodes are written, as xen-init-dom0 does on a Xen
 * host ("Domain-0"). */
int xs_core_introduce(struct xs_store *st, uint32_t domid, const char *name);
/* Mark introduced without touching the tree (wire INTRODUCE). */
int xs_core_mark_introduced(struct xs_store *st, uint32_t domid, bool on);
bool xs_core_is_introduced(const struct xs_store *st, uint32_t domid);
/* Remove /local/domain/<domid>, unmark, fire @releaseDomain. */
int xs_core_release(struct xs_store *st, uint32_t domid);

#endif /* XBD_SIM_XS_CORE_H */
