/* xbd-backd — the control path's private header: a table of contents.
 *
 *   config.c     the knobs: one table drives the command line, the config
 *                file, --help and SIGHUP reloads
 *   xenbus.c     the xenstore side: watches, claims, the device state
 *                machine (decisions in negotiate.c), connect/teardown,
 *                resize polling, status as JSON
 *   control.c    the unix control socket ("status", "stats")
 *   main.c       option parsing, signals, the poll loop
 *
 * Object graph (all owned by the control thread):
 *
 *   struct xbd_daemon ──► xs handle, platform, eventfd for on_fail
 *        │
 *        └─► devices (list) ──► backing (xbd_backing_open)
 *                         └──► queues[0..n) (xbd_queue_start; each has its
 *                              own dataplane thread, which only calls back
 *                              through on_fail)
 *
 * Threads: everything here runs on the one control thread, except the
 * on_fail callback (xenbus.c), which runs on a dataplane thread and only
 * records the reason under the device's fail_lock and writes the eventfd.
 * A device is freed only after xbd_queue_stop joined its threads, so on_fail
 * never sees a freed device.
 */
#ifndef XBD_BACKD_PRIV_H
#define XBD_BACKD_PRIV_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "xbd-backd.h"

/* ---- config.c ---------------------------------------------------------- */

/* Backend kinds we may serve: the directory under backend/. */
enum {
    XBD_KIND_VBD = 1u << 0,
    XBD_KIND_QDISK = 1u << 1,
    XBD_KIND_VBD3 = 1u << 2,
};
#define XBD_KIND_COUNT 3
extern const char *const xbd_kind_names[XBD_KIND_COUNT];

struct xbd_config {
    unsigned int kinds;             /* XBD_KIND_* mask; 0 until set: qdisk */
    unsigned int max_ring_order;    /* advertised max-ring-page-order */
    unsigned int max_queues;        /* advertised multi-queue-max-queues */
    unsigned int max_indirect;      /* feature-max-indirect-segments; 0: none */
    unsigned int persistent_max;    /* per-queue grant cache; 0: no persistent;
                                       XBD_PERSISTENT_AUTO: sized per
                                       connection (xbd_pgrant_auto) */
    bool grant_map;                 /* map each request's grants instead of
                                       copying (without persistent grants) */
    unsigned int poll_start_rate;   /* requests/s before polling starts */
    unsigned int poll_idle_us;      /* idle time that stops polling; 0: off */
    unsigned int uring_depth;       /* 0: sized from the ring */
    unsigned int batch_budget;      /* requests per wakeup */
    unsigned int drain_ms;          /* bound on draining a device at close */
    unsigned int detach_grace_ms;   /* online=0: wait this long for the fe */
    bool use_syslog;
    bool debug;
    char platform[8];               /* "", "sim", "xen" */
    char pidfile[256];
    char control_socket[256];       /* "": the default for the platform */
    char config_file[256];
    /* Which options the command line set: a reload leaves them alone. */
    uint64_t cmdline_set;
};

#define XBD_PERSISTENT_AUTO UINT32_MAX

/* "auto" or the number, for logs and status. */
const char *xbd_config_persistent_text(unsigned int v, char *buf, size_t len);

/* Defaults for everything. */
void xbd_config_defaults(struct xbd_config *c);

/* Set option `name` (a long option name without "--") from text.  from_file
 * refuses options that make no sense in a file (config) and skips those the
 * command line already set.  Returns 0, or -EINVAL with err set. */
int xbd_config_set(struct xbd_config *c, const char *name, const char *value,
                   bool from_file, char *err, size_t errlen);

/* Read a config file: "key = value" lines, '#' comments, blank lines; the
 * keys are the long option names.  Returns 0, or -errno with err set
 * ("FILE:LINE: ..."). */
int xbd_config_load(struct xbd_config *c, const char *path, char *err,
                    size_t errlen);

/* Parse argv into c (options only; operands are an error).  Returns 0,
 * 1 when --help or --version was handled (exit 0), -EINVAL with err set. */
int xbd_config_parse_args(struct xbd_config *c, int argc, char **argv,
                          char *err, size_t errlen);

/* --help text, from the option table. */
void xbd_config_usage(FILE *f);

/* For a SIGHUP reload: put back into next every option that needs a
 * restart (kind, platform, pidfile, control-socket, syslog, config) and
 * differs from cur; returns how many, their names in err. */
unsigned int xbd_config_keep_fixed(const struct xbd_config *cur,
                                   struct xbd_config *next, char *err,
                                   size_t errlen);

/* ---- xenbus.c ----------------------------------------------------------- */

struct xbd_daemon;

/* Connect to the store, register the watches, list the devices there (the
 * first xbd_daemon_run_watches claims what it may).  record: the path of
 * the ownership record (xbd-backd(8), FILES; NULL: none), read now to take
 * over the devices an earlier daemon on the same control socket died
 * holding, and kept up to date from then on.  Returns NULL with err set on
 * failure. */
struct xbd_daemon *xbd_daemon_new(const struct xbd_config *cfg,
                                  struct xbd_platform *platform,
                                  const char *record, char *err, size_t errlen);

/* The fds the main loop polls: the store's and the on_fail eventfd. */
int xbd_daemon_xs_fd(const struct xbd_daemon *d);
int xbd_daemon_wake_fd(const struct xbd_daemon *d);

/* Handle whatever is pending: watch events (returns true when it stopped
 * at its bound with more perhaps queued: call again without waiting),
 * failed queues and finished drains.  Never blocks on the store except for
 * its own requests. */
bool xbd_daemon_run_watches(struct xbd_daemon *d);
void xbd_daemon_run_failures(struct xbd_daemon *d);

/* Once a second: resize polling, detach grace periods, and a check that
 * the store still answers (-1 when it does not: the daemon cannot go on). */
int xbd_daemon_tick(struct xbd_daemon *d);

/* New limits for future connects (SIGHUP). */
void xbd_daemon_set_config(struct xbd_daemon *d, const struct xbd_config *cfg);

/* Take every device down to Closed (draining in-flight I/O), stop serving,
 * free everything.  Used on SIGTERM/SIGINT. */
void xbd_daemon_free(struct xbd_daemon *d);

/* The JSON document for "status" (with_stats false) or "stats" (true), in
 * a malloc()ed, NUL-terminated buffer; NULL on allocation failure. */
char *xbd_daemon_status_json(struct xbd_daemon *d, bool with_stats);

/* Number of devices claimed (for the shutdown log line and tests). */
unsigned int xbd_daemon_device_count(const struct xbd_daemon *d);

/* ---- control.c ------------------------------------------------------------ */

struct xbd_control;

/* Listen on a unix stream socket for path (creating its directory, 0755,
 * when missing; the socket is 0660).  Refuses when another daemon answers
 * there; removes a stale socket.  The socket is bound under a private name
 * (path.PID) until xbd_control_publish links it to path: the daemon calls
 * that when it is ready, so the socket's appearance means ready. */
struct xbd_control *xbd_control_open(const char *path, char *err,
                                     size_t errlen);
int xbd_control_publish(struct xbd_control *c, char *err, size_t errlen);

/* The service manager's readiness protocol (sd_notify(3), without
 * libsystemd): send state ("READY=1", "RELOADING=1", "STOPPING=1", ...) as
 * one datagram to $NOTIFY_SOCKET (a path, or @name in the abstract
 * namespace).  0 when sent or when NOTIFY_SOCKET is unset; else -errno. */
int xbd_sd_notify(const char *state);
void xbd_control_close(struct xbd_control *c);

/* Poll set management: fill up to max pollfds, return how many. */
int xbd_control_pollfds(struct xbd_control *c, struct pollfd *pfd, int max);

/* After poll: accept, read commands, answer through the daemon, write. */
void xbd_control_handle(struct xbd_control *c, const struct pollfd *pfd,
                        int n, struct xbd_daemon *d);

/* JSON string escaping, shared by xenbus.c's status writer. */
void xbd_json_string(FILE *f, const char *s);

#endif /* XBD_BACKD_PRIV_H */
