/* xbd-sim — the xenstore daemon: its interface to the rest of the sim.
 *
 * The store itself is a pure core (xs-core.h: tree, permissions, watches,
 * transactions, quotas; no I/O) with its own unit tests.  This server puts
 * the xenstore wire protocol (<xen/io/xs_wire.h>) on top, over one unix
 * socket per domain: the socket a client connected to is its identity, and
 * dom0's socket is privileged.  libxenstore's xs_open() and Debian's
 * xenstore-* tools reach it through XENSTORED_PATH.
 *
 * The host side of the sim (domains, grants, event channels) drives it
 * through the calls below; everything runs on the sim's single loop thread.
 *
 * The int-returning calls return 0 on success or a negative errno.
 * Implementation: sim/xs-wire.c (transport), sim/xs-core.c (store).
 *
 * What a client meets besides the quotas below (see xs-wire.c):
 *  - at most 64 simultaneous connections per guest domain (dom0: no cap);
 *  - a connection whose queued replies reach `outstanding` messages or
 *    256 KiB is not read until it drains, and watch events for it are
 *    dropped meanwhile (logged once on stderr);
 *  - a header announcing a payload over XENSTORE_PAYLOAD_MAX closes the
 *    connection, as xenstored does; an unknown type gets ENOSYS;
 *  - a closed connection's watches and transactions are dropped.
 */
#ifndef XBD_SIM_XS_SERVER_H
#define XBD_SIM_XS_SERVER_H

#include <stdint.h>

struct sim_loop;
struct xs_server;

/* Per-domain quotas; 0 means the default given in the comment. */
struct xs_server_limits {
    unsigned int nodes;          /* nodes a guest may own (default 1000) */
    unsigned int watches;        /* watches per connection (default 128) */
    unsigned int transactions;   /* open transactions per conn (default 10) */
    unsigned int outstanding;    /* queued requests/replies per conn (default 1024) */
    unsigned int value_size;     /* bytes per value (default XENSTORE_PAYLOAD_MAX) */
};

/* Create the server and the store: the root, /local, /local/domain and
 * /local/domain/0 exist, owned by dom0, as xenstored starts them. */
struct xs_server *xs_server_new(struct sim_loop *loop,
                                const struct xs_server_limits *limits);
/* Close every connection and socket and free the store. */
void xs_server_free(struct xs_server *srv);

/* Accept connections for domain `domid` on a new unix socket at `path`
 * (created here, unlinked by xs_server_free or xs_server_release).
 * domid 0 is privileged. */
int xs_server_listen(struct xs_server *srv, uint32_t domid, const char *path);

/* The toolstack and hypervisor's part of creating a domain: make
 * /local/domain/<domid> owned by it (readable by it), with "domid" and
 * "name" nodes as libxl writes them, mark it introduced
 * (XS_IS_DOMAIN_INTRODUCED says yes) and fire @introduceDomain.
 * domid 0 only gets its "domid" and "name" nodes (xen-init-dom0's part). */
int xs_server_introduce(struct xs_server *srv, uint32_t domid,
                        const char *name);

/* Destroying a domain: close its connections and its socket, drop its
 * watches and transactions, remove /local/domain/<domid> (as libxl would),
 * and fire @releaseDomain. */
int xs_server_release(struct xs_server *srv, uint32_t domid);

#endif /* XBD_SIM_XS_SERVER_H */
