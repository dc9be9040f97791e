/* xbd-backd — the xenstore side of the control path.
 *
 * Watches /local/domain/<self>/backend/<kind> for every kind served, each
 * claimed device's <frontend>/state (never the whole frontend directory: a
 * guest can write there at will, XSA-349) and @releaseDomain.  A watch
 * event only marks devices dirty; after the events pending have been read,
 * every dirty device takes one step of its state machine, which reads the
 * current facts and acts on them (level-triggered, negotiate.h has the
 * table).  Our own writes fire our backend watch too; the step that
 * follows finds nothing to do.
 *
 * Claim rule (also in xbd-backd(8)): a device of a served kind is ours when
 * we move its `state` from Initialising (1) to InitWait in a transaction
 * that read it as 1 with `online` not 0 — a backend that got there first
 * makes the transaction conflict (EAGAIN), and on retry we see its state and
 * leave the device alone.  A device found Closed with online=1 (left so by
 * an xbd-backd that stopped) is adopted and served again when its frontend
 * starts over.  A device found InitWait, Connected or Closing is taken over
 * only when the ownership record of the daemon before us lists it with the
 * mark its xbd-backd-claim node still holds (take_over(), "ownership
 * record" below).  `vbd` is served only when no kernel blkback is loaded.
 * Nothing else is ever taken over, and we never remove a node we did not
 * write.
 *
 * Threads: all of this runs on the control thread, except on_fail() (on
 * a dataplane thread) and reap() (a short-lived thread per closing
 * connection that stops its queues); both only record under a device's
 * fail_lock and write the eventfd that wakes the control thread.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#include "backd.h"
#include "negotiate.h"
#include "request.h"
#include "xbd-keys.h"
#include "xbd-parse.h"
#include "xbd-ring.h"

/* Transactions that keep conflicting mean a broken store, not a busy one. */
#define TX_RETRIES 100

/* Watch events handled per call before the dirty devices get their step:
 * a guest flooding its state node cannot keep us from acting. */
#define EVENTS_PER_RUN 1024

/* Steps one device may take per wakeup (REINIT then CONNECT, say). */
#define STEPS_PER_RUN 4

enum claim { CLAIM_NEW, CLAIM_FOREIGN, CLAIM_OURS };

/* Our mark in xbd-backd-claim: 16 hex digits, new for every daemon run. */
#define XBD_MARK_LEN 16

/* Bounds on an ownership record we read back (it is ours, but a truncated
 * or edited file must not take the daemon down). */
#define RECORD_MAX_ENTRIES 4096

/* struct xbd_queue_stats, field by field; in_flight is a level, not a
 * count, and is not carried over when a queue stops. */
#define STAT_FIELDS(X) \
    X(req_read) X(req_write) X(req_flush) X(req_barrier) X(req_discard) \
    X(req_indirect) X(req_unsupported) X(bytes_read) X(bytes_written) \
    X(err_bad_request) X(err_grant) X(err_io) X(in_flight) X(ring_full) \
    X(notify_sent) X(notify_received) X(spurious_wakeups) X(polls) X(poll_hits) \
    X(poll_preempted) \
    X(grant_copies) X(grant_maps) X(pgrant_hits) X(pgrant_misses) \
    X(pgrant_evictions) X(batches) X(storm_pauses) X(direct_io)

#define NO_FAIL (-2)

struct device {
    struct device *next;
    struct xbd_daemon *d;
    int kind;                       /* index into xbd_kind_names */
    uint32_t fdom, devid;
    char name[48];                  /* "qdisk/5/51712", for logs */
    char be[128];                   /* our directory */
    char fe[128];                   /* the only frontend dir we accept */
    enum claim claim;
    int ours;                       /* XenbusState we last set */
    bool dirty;
    bool mark_pending;              /* our mark is about to go into its node */
    bool recorded;                  /* the record on disk lists it as ours */
    bool fe_watched;
    bool domain_gone;               /* @releaseDomain: frontend domain died */
    int fail_fe;                    /* frontend state when we failed it;
                                       NO_FAIL: not failed */

    struct xbd_probe probe;         /* the toolstack's nodes, parsed */
    struct xbd_backing *backing;    /* open while claimed and healthy */
    struct xbd_backing_info info;
    uint64_t sectors;               /* published, 512-byte units */

    struct xbd_limits lim;          /* advertised at the last InitWait */
    unsigned int max_indirect;
    struct xbd_negotiated neg;      /* valid while nq > 0 */
    unsigned int nq;                /* queues running */
    unsigned int pgrant_max;        /* their persistent-grant cache bound */
    struct xbd_queue *q[XBD_MAX_QUEUES];
    struct xbd_queue_stats past;    /* counters of queues already stopped */
    struct xbd_ratelimit rl;        /* failures: the guest can provoke them */
    struct xbd_ratelimit rl_state;  /* state changes: a flapping frontend too */

    uint64_t offline_since;         /* ms when online=0 was seen; 0: online */
    char error[320];                /* the last failure, for status */

    /* Draining: the queues of the last connection are being stopped by
     * a reaper thread (see disconnect()); nothing that needs them gone
     * (Closed, InitWait, closing the backing, freeing) happens meanwhile. */
    bool draining;
    pthread_t reaper;

    /* Written on other threads (on_fail() on a dataplane thread, the
     * reaper when done), read by the control thread; under fail_lock. */
    pthread_mutex_t fail_lock;
    bool fail_pending;
    unsigned int fail_queue;
    char fail_why[200];
    bool reaped;
};

/* One line of the ownership record an earlier daemon left. */
struct prior_claim {
    char be[128];
    char mark[XBD_MARK_LEN + 1];
};

struct xbd_daemon {
    struct xbd_config cfg;
    struct xbd_platform *platform;
    struct xs_handle *xs;
    uint32_t self;
    char base[48];                  /* /local/domain/<self>/backend */
    unsigned int kinds;             /* what we actually serve */
    int wake_fd;                    /* eventfd: a queue failed, a drain ended */
    struct device *devices;

    /* Restart takeover (see "ownership record" below). */
    char mark[XBD_MARK_LEN + 1];    /* our xbd-backd-claim value */
    char record[300];               /* the record's path; "": none kept */
    bool record_dirty;              /* the set of claimed devices changed */
    bool record_failed;             /* the last write failed (logged) */
    struct prior_claim *prior;      /* the record found at start, until the */
    unsigned int nprior;            /* first pass over the devices is done */
};

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- store access ------------------------------------------------------------ */

static char *
xs_get(struct xbd_daemon *d, xs_transaction_t t, const char *dir, const char *key)
{
    char path[320];
    unsigned int len;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, key) >= sizeof(path))
        return NULL;
    return xs_read(d->xs, t, path, &len);
}

__attribute__((format(printf, 5, 6))) static bool
xs_put(struct xbd_daemon *d, xs_transaction_t t, const char *dir,
       const char *key, const char *fmt, ...)
{
    char path[320], val[512];
    va_list ap;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    return xs_write(d->xs, t, path, val, (unsigned int)strlen(val));
}

/* Remove one of OUR nodes; absent is fine. */
static bool
xs_del(struct xbd_daemon *d, xs_transaction_t t, const char *dir, const char *key)
{
    char path[320];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_rm(d->xs, t, path) || errno == ENOENT;
}

struct getter {
    struct xbd_daemon *d;
    const char *dir;
};

static char *
get_node(void *ctx, const char *key)
{
    struct getter *g = ctx;

    return xs_get(g->d, XBT_NULL, g->dir, key);
}

static int
read_state(struct xbd_daemon *d, const char *dir, bool *present)
{
    char *v = xs_get(d, XBT_NULL, dir, XBDK_STATE);
    int s = xbd_parse_state(v);

    if (present)
        *present = v != NULL;
    free(v);
    return s;
}

/* Run fn inside a transaction, retried on EAGAIN.  fn returns 1 to commit,
 * 0 to abort (nothing to do), -1 on error (abort).  Returns fn's verdict
 * after a successful commit, 0 after an abort, -1 on failure. */
static int
in_transaction(struct device *dev, const char *what,
               int (*fn)(struct device *, xs_transaction_t, void *), void *arg)
{
    struct xbd_daemon *d = dev->d;

    for (int i = 0; i < TX_RETRIES; i++) {
        xs_transaction_t t = xs_transaction_start(d->xs);
        int r;

        if (t == XBT_NULL) {
            xbd_log(LOG_ERR, "%s: %s: starting a transaction: %s", dev->name, what,
                    strerror(errno));
            return -1;
        }
        r = fn(dev, t, arg);
        if (r <= 0) {
            int e = errno;

            xs_transaction_end(d->xs, t, true);
            if (r < 0)
                xbd_log(LOG_ERR, "%s: %s: %s", dev->name, what, strerror(e));
            return r;
        }
        if (xs_transaction_end(d->xs, t, false))
            return 1;
        if (errno != EAGAIN) {
            xbd_log(LOG_ERR, "%s: %s: commit: %s", dev->name, what, strerror(errno));
            return -1;
        }
    }
    xbd_log(LOG_ERR, "%s: %s: %d conflicting transactions in a row; giving up",
            dev->name, what, TX_RETRIES);
    return -1;
}

/* ---- state ----------------------------------------------------------------- */

static bool write_limits(struct device *dev, xs_transaction_t t);
static void record_ahead(struct device *dev);

/* What goes into the store with a state change, in one transaction. */
struct state_change {
    int state;
    const char *error;              /* also write the `error` node */
    bool limits;                    /* also (re)publish our limits */
};

/* Never re-create a directory the toolstack removed meanwhile: everything
 * is written only if `state` still exists, in the same transaction. */
static int
tx_state(struct device *dev, xs_transaction_t t, void *arg)
{
    const struct state_change *c = arg;
    char *v = xs_get(dev->d, t, dev->be, XBDK_STATE);
    int cur = xbd_parse_state(v);

    if (v == NULL)
        return 0;
    free(v);
    if (c->limits && !write_limits(dev, t))
        return -1;
    if (c->error != NULL && !xs_put(dev->d, t, dev->be, XBDK_ERROR, "%s", c->error))
        return -1;
    if (cur != c->state && !xs_put(dev->d, t, dev->be, XBDK_STATE, "%d", c->state))
        return -1;
    return 1;
}

/* Idempotent: writes only what the store does not already say; one log
 * line per change. */
static void
change_state(struct device *dev, const struct state_change *c)
{
    /* -1: logged, the next step retries; 0: the directory is gone. */
    if (c->limits)
        record_ahead(dev);              /* the limits carry our mark */
    if (in_transaction(dev, "state", tx_state, (void *)c) <= 0)
        return;
    if (dev->ours != c->state)
        xbd_log_limited(&dev->rl_state, LOG_INFO, "%s: %s -> %s", dev->name,
                        xbd_state_name(dev->ours), xbd_state_name(c->state));
    dev->ours = c->state;
}

static void
set_state(struct device *dev, int s)
{
    struct state_change c = { .state = s };

    change_state(dev, &c);
}

/* ---- queues ------------------------------------------------------------------ */

/* On a dataplane thread: record, wake the control thread, return. */
static void
on_fail(void *ctx, unsigned int index, const char *why)
{
    struct device *dev = ctx;
    uint64_t one = 1;

    pthread_mutex_lock(&dev->fail_lock);
    if (!dev->fail_pending) {
        dev->fail_pending = true;
        dev->fail_queue = index;
        snprintf(dev->fail_why, sizeof(dev->fail_why), "%s", why ? why : "?");
    }
    pthread_mutex_unlock(&dev->fail_lock);
    if (write(dev->d->wake_fd, &one, sizeof(one)) < 0) {
        /* The counter cannot overflow in practice; nothing else to do. */
    }
}

/* What a reaper thread stops: one connection's queues. */
struct reap_job {
    struct device *dev;
    unsigned int n;
    unsigned int drain_ms;
    struct xbd_queue *q[XBD_MAX_QUEUES];
};

static void
stop_queues(struct xbd_queue *const *q, unsigned int n, unsigned int drain_ms)
{
    uint64_t deadline = now_ms() + drain_ms;

    for (unsigned int i = n; i-- > 0;) {
        uint64_t now = now_ms();
        unsigned int left = now < deadline ? (unsigned int)(deadline - now) : 0;

        /* Every queue gets a moment even after a slow one. */
        xbd_queue_stop(q[i], left > 100 ? left : 100);
    }
}

static void *
reap(void *arg)
{
    struct reap_job *job = arg;
    struct device *dev = job->dev;
    uint64_t one = 1;

    stop_queues(job->q, job->n, job->drain_ms);
    pthread_mutex_lock(&dev->fail_lock);
    dev->reaped = true;
    pthread_mutex_unlock(&dev->fail_lock);
    if (write(dev->d->wake_fd, &one, sizeof(one)) < 0) {
        /* Cannot overflow in practice. */
    }
    free(job);
    return NULL;
}

/* Stop every queue: drain in-flight I/O within the configured bound, join
 * the threads, unmap, unbind.  Done by a reaper thread, so that a device
 * whose storage hangs does not hold up every other device's state changes
 * for --drain-ms: afterwards dev->draining is set until the reaper is done
 * (xbd_daemon_run_failures() then joins it and steps the device again).
 * Callers that need the queues gone check dev->draining and come back
 * later.  Safe to repeat. */
static void
disconnect(struct device *dev)
{
    struct reap_job *job;

    if (dev->nq == 0)
        return;
    xbd_log(LOG_DEBUG, "%s: stopping %u queue(s)", dev->name, dev->nq);
    for (unsigned int i = 0; i < dev->nq; i++) {
        struct xbd_queue_stats s;

        /* Keep the device's counters across reconnects. */
        xbd_queue_get_stats(dev->q[i], &s);
        s.in_flight = 0;
#define X(n) dev->past.n += s.n;
        STAT_FIELDS(X)
#undef X
    }
    job = calloc(1, sizeof(*job));
    if (job != NULL) {
        job->dev = dev;
        job->n = dev->nq;
        job->drain_ms = dev->d->cfg.drain_ms;
        memcpy(job->q, dev->q, dev->nq * sizeof(dev->q[0]));
        if (pthread_create(&dev->reaper, NULL, reap, job) == 0) {
            dev->draining = true;
            dev->nq = 0;
            return;
        }
        free(job);
    }
    /* No thread to spare: stop them here. */
    stop_queues(dev->q, dev->nq, dev->d->cfg.drain_ms);
    dev->nq = 0;
    /* A failure reported by a queue now gone belongs to the old rings. */
    pthread_mutex_lock(&dev->fail_lock);
    dev->fail_pending = false;
    pthread_mutex_unlock(&dev->fail_lock);
}

/* Called on the control thread once the reaper said it is done (or, with
 * wait, blocking until it is). */
static void
join_reaper(struct device *dev, bool wait)
{
    bool done;

    if (!dev->draining)
        return;
    pthread_mutex_lock(&dev->fail_lock);
    done = dev->reaped;
    pthread_mutex_unlock(&dev->fail_lock);
    if (!done && !wait)
        return;
    pthread_join(dev->reaper, NULL);
    pthread_mutex_lock(&dev->fail_lock);
    dev->reaped = false;
    dev->fail_pending = false;      /* belonged to the stopped rings */
    pthread_mutex_unlock(&dev->fail_lock);
    dev->draining = false;
    dev->dirty = true;
    xbd_log(LOG_DEBUG, "%s: queues stopped", dev->name);
}

/* The device is broken (bad frontend values, a queue failed): say why in
 * the `error` node, drain, and go to Closing until the frontend closes. */
static void
fail_device(struct device *dev, const char *why)
{
    struct state_change c = { .state = XenbusStateClosing, .error = why };

    xbd_log_limited(&dev->rl, LOG_ERR, "%s: %s", dev->name, why);
    snprintf(dev->error, sizeof(dev->error), "%s", why);
    change_state(dev, &c);
    disconnect(dev);
    dev->fail_fe = read_state(dev->d, dev->fe, NULL);
}

/* ---- ownership record ------------------------------------------------------ */

/* A daemon killed with SIGKILL (or crashed) leaves its devices InitWait,
 * Connected or Closing, and the claim rule lets nobody touch a device in
 * those states.  So every claim writes our mark (random, new each run)
 * into the device's xbd-backd-claim node, and a file beside the control
 * socket lists "<backend directory> <mark>" for every device we hold,
 * rewritten atomically (temporary file, fsync, rename) whenever that set
 * changes.  A daemon starting on the same control socket (only one can:
 * xbd_control_open refuses a second) reads it; a device listed there whose
 * node still holds the listed mark is provably the dead daemon's (any
 * other backend's claim, even of a directory re-created meanwhile, would
 * not carry it) and is taken over.  A clean exit leaves every device
 * Closed and removes the file.
 *
 * The record is written ahead: a device is listed with our mark before the
 * first transaction that puts our mark into its node (claim, takeover, an
 * InitWait after adoption), and until our first pass over the devices is
 * done the lines of the record we found are kept too.  So a daemon killed
 * at any point - between that transaction and the next rewrite, or in the
 * middle of taking devices over - leaves a record that lists whatever mark
 * its devices' nodes hold; lines naming a mark that never made it into a
 * node match nothing and are harmless. */

/* Read the record at path into d->prior; a missing file is no record. */
static void
load_record(struct xbd_daemon *d, const char *path)
{
    char line[320];
    unsigned int lineno = 0, bad = 0;
    size_t bl = strlen(d->base);
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        if (errno != ENOENT)
            xbd_log(LOG_WARNING, "ownership record %s: %s; taking nothing over",
                    path, strerror(errno));
        return;
    }
    d->prior = calloc(RECORD_MAX_ENTRIES, sizeof(*d->prior));
    while (d->prior != NULL && fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        char *sp, *mark;
        bool ok;

        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof(f)) {
            /* Longer than any line we write: skip the rest of it. */
            int c;

            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            bad++;
            continue;
        }
        if (line[0] == '#' || line[0] == '\0')
            continue;
        sp = strchr(line, ' ');
        mark = sp ? sp + 1 : NULL;
        ok = sp != NULL && (size_t)(sp - line) < sizeof(d->prior[0].be) &&
             strncmp(line, d->base, bl) == 0 && line[bl] == '/' &&
             strlen(mark) == XBD_MARK_LEN &&
             strspn(mark, "0123456789abcdef") == XBD_MARK_LEN;
        if (!ok || d->nprior == RECORD_MAX_ENTRIES) {
            bad++;
            continue;
        }
        *sp = '\0';
        snprintf(d->prior[d->nprior].be, sizeof(d->prior[0].be), "%s", line);
        snprintf(d->prior[d->nprior].mark, sizeof(d->prior[0].mark), "%s", mark);
        d->nprior++;
    }
    fclose(f);
    if (bad > 0)
        xbd_log(LOG_WARNING, "ownership record %s: %u unusable line%s ignored",
                path, bad, bad == 1 ? "" : "s");
    if (d->nprior > 0)
        xbd_log(LOG_INFO, "ownership record %s: %u device%s claimed by an "
                "earlier xbd-backd", path, d->nprior, d->nprior == 1 ? "" : "s");
}

/* Does the record we found list dev's directory (with mark, if not NULL)?
 * A directory may be listed twice: a daemon killed while taking it over
 * lists its predecessor's mark and its own. */
static bool
prior_lists(const struct device *dev, const char *mark)
{
    const struct xbd_daemon *d = dev->d;

    for (unsigned int i = 0; i < d->nprior; i++)
        if (strcmp(d->prior[i].be, dev->be) == 0 &&
            (mark == NULL || strcmp(d->prior[i].mark, mark) == 0))
            return true;
    return false;
}

/* Is dev listed in the record write_record() is about to write? */
static bool
record_lists(const struct device *dev, bool at_exit)
{
    if (dev->mark_pending)
        return true;
    return dev->claim == CLAIM_OURS && !(at_exit && dev->ours == XenbusStateClosed);
}

/* Write the record: every device we hold or are about to mark, and the
 * record found at start until the first pass is done (at_exit: only the
 * devices we could not leave Closed; none removes the file). */
static void
write_record(struct xbd_daemon *d, bool at_exit)
{
    char tmp[sizeof(d->record) + 8];
    unsigned int n = 0;
    bool ok;
    FILE *f;

    if (d->record[0] == '\0')
        return;
    d->record_dirty = false;
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->record);
    f = fopen(tmp, "we");
    if (f == NULL) {
        ok = false;
    } else {
        fprintf(f, "# xbd-backd ownership record (xbd-backd(8), FILES): the devices "
                "pid %ld holds, with its mark\n", (long)getpid());
        for (const struct device *dev = d->devices; dev != NULL; dev = dev->next) {
            if (!record_lists(dev, at_exit))
                continue;
            fprintf(f, "%s %s\n", dev->be, d->mark);
            n++;
        }
        for (unsigned int i = 0; i < d->nprior; i++) {
            fprintf(f, "%s %s\n", d->prior[i].be, d->prior[i].mark);
            n++;
        }
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        if (ok && at_exit && n == 0)
            ok = (unlink(tmp) == 0 && unlink(d->record) == 0) || errno == ENOENT;
        else if (ok)
            ok = rename(tmp, d->record) == 0;
    }
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next)
        dev->recorded = ok && record_lists(dev, at_exit);
    if (!ok) {
        int e = errno;

        unlink(tmp);
        d->record_dirty = true;         /* try again next time */
        if (!d->record_failed)
            xbd_log(LOG_ERR, "ownership record %s: %s (a restart after a crash "
                    "will not take the devices over)", d->record, strerror(e));
    } else if (d->record_failed) {
        xbd_log(LOG_INFO, "ownership record %s: written again", d->record);
    }
    d->record_failed = !ok;
}

/* Before a transaction that puts our mark into dev's node: list it. */
static void
record_ahead(struct device *dev)
{
    if (dev->recorded || dev->d->record[0] == '\0')
        return;
    dev->mark_pending = true;
    write_record(dev->d, false);
}

/* After it: a device that did not become ours leaves the record at the
 * next rewrite. */
static void
record_settle(struct device *dev)
{
    if (!dev->mark_pending)
        return;
    dev->mark_pending = false;
    if (dev->claim != CLAIM_OURS)
        dev->d->record_dirty = true;
}

/* ---- probe and claim ------------------------------------------------------- */

/* The transport limits a frontend reads before it chooses. */
static bool
write_limits(struct device *dev, xs_transaction_t t)
{
    struct xbd_daemon *d = dev->d;
    const struct xbd_config *c = &d->cfg;
    bool ok;

    dev->lim.max_ring_order = c->max_ring_order;
    dev->lim.max_queues = c->max_queues;
    /* A backing that cannot serve several queues coherently (an NBD server
     * without multi-conn) caps what we offer: decided on the opened
     * backing, before the frontend chooses. */
    if (dev->backing != NULL && dev->info.max_queues != 0 &&
        dev->info.max_queues < dev->lim.max_queues)
        dev->lim.max_queues = dev->info.max_queues;
    dev->lim.persistent = c->persistent_max > 0;
    dev->max_indirect = c->max_indirect;
    /* Our mark goes with every claim and InitWait: see take_over(). */
    ok = xs_put(d, t, dev->be, XBDK_XBD_BACKD_CLAIM, "%s", d->mark) &&
         xs_put(d, t, dev->be, XBDK_MAX_RING_PAGE_ORDER, "%u", c->max_ring_order) &&
         xs_put(d, t, dev->be, XBDK_MAX_RING_PAGES, "%u", 1u << c->max_ring_order) &&
         xs_put(d, t, dev->be, XBDK_MULTI_QUEUE_MAX_QUEUES, "%u", dev->lim.max_queues) &&
         xs_put(d, t, dev->be, XBDK_FEATURE_PERSISTENT, "%d", dev->lim.persistent);
    /* No indirect: the node must not exist (blkif.h). */
    if (ok && c->max_indirect > 0)
        ok = xs_put(d, t, dev->be, XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, "%u",
                    c->max_indirect);
    else if (ok)
        ok = xs_del(d, t, dev->be, XBDK_FEATURE_MAX_INDIRECT_SEGMENTS);
    return ok;
}

/* Claim transaction: state still Initialising and online not 0. */
static int
tx_claim(struct device *dev, xs_transaction_t t, void *arg)
{
    const char *failure = arg;
    char *st = xs_get(dev->d, t, dev->be, XBDK_STATE);
    char *on = xs_get(dev->d, t, dev->be, XBDK_ONLINE);
    bool online = true;
    int s = xbd_parse_state(st);
    int r = 1;

    free(st);
    if (xbd_parse_online(on, &online) < 0)
        online = true;
    free(on);
    if (s != XenbusStateInitialising || !online)
        return 0;                       /* someone else's, or being removed */
    if (failure != NULL) {
        if (!xs_put(dev->d, t, dev->be, XBDK_XBD_BACKD_CLAIM, "%s", dev->d->mark) ||
            !xs_put(dev->d, t, dev->be, XBDK_HOTPLUG_STATUS, "error") ||
            !xs_put(dev->d, t, dev->be, XBDK_HOTPLUG_ERROR, "%s", failure) ||
            !xs_put(dev->d, t, dev->be, XBDK_ERROR, "%s", failure) ||
            !xs_put(dev->d, t, dev->be, XBDK_STATE, "%d", XenbusStateClosing))
            r = -1;
    } else if (!write_limits(dev, t) ||
               !xs_put(dev->d, t, dev->be, XBDK_STATE, "%d", XenbusStateInitWait)) {
        r = -1;
    }
    return r;
}

static void
watch_frontend(struct device *dev)
{
    char path[160];

    if (dev->fe_watched || dev->fe[0] == '\0')
        return;
    snprintf(path, sizeof(path), "%s/%s", dev->fe, XBDK_STATE);
    if (xs_watch(dev->d->xs, path, "fe"))
        dev->fe_watched = true;
    else
        xbd_log(LOG_ERR, "%s: watching %s: %s", dev->name, path, strerror(errno));
}

static void
unwatch_frontend(struct device *dev)
{
    char path[160];

    if (!dev->fe_watched)
        return;
    snprintf(path, sizeof(path), "%s/%s", dev->fe, XBDK_STATE);
    xs_unwatch(dev->d->xs, path, "fe");
    dev->fe_watched = false;
}

static void
close_backing(struct device *dev)
{
    if (dev->backing != NULL) {
        xbd_backing_close(dev->backing);
        dev->backing = NULL;
    }
}

/* Open what `params` names.  Returns 0, or -1 with the reason in err. */
static int
open_backing(struct device *dev, char *err, size_t errlen)
{
    struct xbd_backing_opts o = {
        .read_only = dev->probe.read_only,
        .direct_io = dev->probe.direct_io_safe,
        .discard_enable = dev->probe.discard_enable,
    };
    int r = xbd_backing_open(dev->probe.params, &o, &dev->backing, err, errlen);

    if (r < 0) {
        dev->backing = NULL;
        return -1;
    }
    r = xbd_backing_info(dev->backing, &dev->info);
    if (r < 0) {
        snprintf(err, errlen, "%s: cannot read its size: %s", dev->probe.params,
                 strerror(-r));
        close_backing(dev);
        return -1;
    }
    return 0;
}

/* Parse the toolstack's nodes and open the backing they name: 0, or -1
 * with the reason in err (dev->probe may be filled). */
static int
probe_and_open(struct device *dev, char *err, size_t errlen)
{
    struct getter g = { dev->d, dev->be };

    if (xbd_probe_parse(get_node, &g, dev->fdom, dev->devid, &dev->probe, err,
                        errlen) < 0)
        return -1;
    return open_backing(dev, err, errlen);
}

/* A device in Initialising (or left Closed by an earlier xbd-backd): parse
 * the toolstack's nodes, open the backing, claim. */
static void
probe_and_claim(struct device *dev, int be_state)
{
    char err[256] = "";
    int r;

    r = probe_and_open(dev, err, sizeof(err));

    if (be_state == XenbusStateClosed) {
        /* Adoption: nothing to write until the frontend starts over. */
        if (r < 0) {
            xbd_probe_free(&dev->probe);
            dev->claim = CLAIM_FOREIGN;
            return;
        }
        dev->claim = CLAIM_OURS;
        dev->ours = XenbusStateClosed;
        dev->d->record_dirty = true;
        xbd_log(LOG_INFO, "%s: adopted (Closed, online): %s", dev->name,
                dev->probe.params);
        watch_frontend(dev);
        return;
    }

    record_ahead(dev);                  /* the claim writes our mark */
    if (r < 0) {
        char *msg = err;

        if (in_transaction(dev, "claim", tx_claim, msg) == 1) {
            dev->claim = CLAIM_OURS;
            dev->ours = XenbusStateClosing;
            dev->d->record_dirty = true;
            dev->fail_fe = read_state(dev->d, dev->fe, NULL);
            snprintf(dev->error, sizeof(dev->error), "%s", msg);
            xbd_log(LOG_ERR, "%s: cannot serve: %s", dev->name, msg);
            xbd_log(LOG_INFO, "%s: Initialising -> Closing", dev->name);
            watch_frontend(dev);
        } else {
            dev->claim = CLAIM_FOREIGN;
            xbd_probe_free(&dev->probe);
        }
        record_settle(dev);
        return;
    }
    if (in_transaction(dev, "claim", tx_claim, NULL) == 1) {
        dev->claim = CLAIM_OURS;
        dev->ours = XenbusStateInitWait;
        dev->d->record_dirty = true;
        xbd_log(LOG_INFO, "%s: serving %s (%s%s, %" PRIu64 " bytes%s)", dev->name,
                dev->probe.params, dev->probe.read_only ? "read-only" : "read-write",
                dev->probe.devtype == XBD_DEVTYPE_CDROM ? ", cdrom" : "",
                dev->info.size, dev->lim.max_queues == 1 && dev->info.max_queues == 1 ?
                ", one queue: the backing cannot share flushes across queues" : "");
        xbd_log(LOG_INFO, "%s: Initialising -> InitWait", dev->name);
        watch_frontend(dev);
    } else {
        dev->claim = CLAIM_FOREIGN;
        close_backing(dev);
        xbd_probe_free(&dev->probe);
    }
    record_settle(dev);
}


/* States a daemon that died leaves behind, the only ones take_over() acts
 * on (Initialising and Closed are the claim rule's own business). */
static bool
left_live(int state)
{
    return state == XenbusStateInitWait || state == XenbusStateConnected ||
           state == XenbusStateClosing;
}

struct takeover {
    const char *error;              /* cannot serve: also this error node */
    int seen;                       /* the state found */
};

/* Still a dead daemon's (a mark the record lists) and still live: ours,
 * Closing. */
static int
tx_take_over(struct device *dev, xs_transaction_t t, void *arg)
{
    struct takeover *to = arg;
    char *st = xs_get(dev->d, t, dev->be, XBDK_STATE);
    char *mk = xs_get(dev->d, t, dev->be, XBDK_XBD_BACKD_CLAIM);
    bool same = mk != NULL && prior_lists(dev, mk);

    to->seen = xbd_parse_state(st);
    free(st);
    free(mk);
    if (!same || !left_live(to->seen))
        return 0;
    if (to->error != NULL && !xs_put(dev->d, t, dev->be, XBDK_ERROR, "%s", to->error))
        return -1;
    return xs_put(dev->d, t, dev->be, XBDK_XBD_BACKD_CLAIM, "%s", dev->d->mark) &&
           xs_put(dev->d, t, dev->be, XBDK_STATE, "%d", XenbusStateClosing) ? 1 : -1;
}

/* A device our record lists, found InitWait, Connected or Closing with a
 * mark the record gives: the daemon before us died holding it, and its
 * rings died with it.  Do what a backend that lost its ring does: Closing.
 * The frontend closes (libxbdfront: recovery), we follow to Closed, it
 * starts over as Initialising and we serve it again (REINIT), all through
 * the ordinary state machine.  The backing is opened first; one that
 * cannot be opened fails the device in the same transaction. */
static void
take_over(struct device *dev)
{
    struct takeover to = { .error = NULL };
    char err[256] = "";
    int r;

    r = probe_and_open(dev, err, sizeof(err));
    if (r < 0)
        to.error = err;
    record_ahead(dev);                  /* the takeover writes our mark */
    if (in_transaction(dev, "take over", tx_take_over, &to) != 1) {
        /* Changed meanwhile (or the store failed): not provably ours. */
        close_backing(dev);
        xbd_probe_free(&dev->probe);
        dev->claim = CLAIM_FOREIGN;
        record_settle(dev);
        return;
    }
    dev->claim = CLAIM_OURS;
    dev->ours = XenbusStateClosing;
    dev->d->record_dirty = true;
    record_settle(dev);
    xbd_log(LOG_INFO, "%s: taken over from an earlier xbd-backd (it left it %s): "
            "%s -> Closing (reset)", dev->name, xbd_state_name(to.seen),
            xbd_state_name(to.seen));
    if (r < 0) {
        xbd_probe_free(&dev->probe);
        snprintf(dev->error, sizeof(dev->error), "%s", err);
        xbd_log(LOG_ERR, "%s: cannot serve: %s", dev->name, err);
        dev->fail_fe = read_state(dev->d, dev->fe, NULL);
    }
    watch_frontend(dev);
}

/* ---- connect ----------------------------------------------------------------- */

static unsigned int
vdisk_info(const struct device *dev)
{
    unsigned int i = 0;

    if (dev->probe.devtype == XBD_DEVTYPE_CDROM)
        i |= VDISK_CDROM | VDISK_REMOVABLE;
    if (dev->probe.read_only || dev->info.read_only)
        i |= VDISK_READONLY;
    return i;
}

static bool
discard_offered(const struct device *dev)
{
    return dev->info.discard && dev->probe.discard_enable &&
           !dev->probe.read_only && !dev->info.read_only;
}

static int
tx_connect(struct device *dev, xs_transaction_t t, void *arg)
{
    struct xbd_daemon *d = dev->d;
    const struct xbd_backing_info *in = &dev->info;
    char *st = xs_get(d, t, dev->be, XBDK_STATE);
    int s = xbd_parse_state(st);
    bool ok;

    free(st);
    /* The toolstack may have asked us to close meanwhile. */
    if (s != XenbusStateInitWait) {
        *(int *)arg = s;
        return 0;
    }
    ok = xs_put(d, t, dev->be, XBDK_SECTORS, "%" PRIu64, dev->sectors) &&
         xs_put(d, t, dev->be, XBDK_INFO, "%u", vdisk_info(dev)) &&
         xs_put(d, t, dev->be, XBDK_SECTOR_SIZE, "%u", in->sector_size) &&
         xs_put(d, t, dev->be, XBDK_PHYSICAL_SECTOR_SIZE, "%u",
                in->physical_sector_size ? in->physical_sector_size : in->sector_size) &&
         xs_put(d, t, dev->be, XBDK_FEATURE_FLUSH_CACHE, "%d", in->flush) &&
         xs_put(d, t, dev->be, XBDK_FEATURE_BARRIER, "%d", in->flush) &&
         xs_put(d, t, dev->be, XBDK_FEATURE_PERSISTENT, "%d", dev->lim.persistent) &&
         xs_put(d, t, dev->be, XBDK_FEATURE_DISCARD, "%d", discard_offered(dev));
    if (ok && discard_offered(dev))
        ok = xs_put(d, t, dev->be, XBDK_DISCARD_GRANULARITY, "%u",
                    in->discard_granularity ? in->discard_granularity : in->sector_size) &&
             xs_put(d, t, dev->be, XBDK_DISCARD_ALIGNMENT, "%u", in->discard_alignment) &&
             xs_put(d, t, dev->be, XBDK_DISCARD_SECURE, "%d", in->discard_secure);
    else if (ok)
        ok = xs_del(d, t, dev->be, XBDK_DISCARD_GRANULARITY) &&
             xs_del(d, t, dev->be, XBDK_DISCARD_ALIGNMENT) &&
             xs_del(d, t, dev->be, XBDK_DISCARD_SECURE);
    ok = ok && xs_del(d, t, dev->be, XBDK_ERROR) &&
         xs_put(d, t, dev->be, XBDK_STATE, "%d", XenbusStateConnected);
    return ok ? 1 : -1;
}

static void
fill_cfg(struct device *dev, struct xbd_queue_cfg *c, char *name, size_t namelen)
{
    const struct xbd_config *k = &dev->d->cfg;

    snprintf(name, namelen, "%s q%u", dev->name, c->index);
    c->platform = dev->d->platform;
    c->name = name;
    c->fe_domid = dev->fdom;
    c->max_indirect = dev->max_indirect;
    /* auto: as many as this connection's ring can have in use. */
    c->persistent_max = k->persistent_max != XBD_PERSISTENT_AUTO ? k->persistent_max :
                        xbd_pgrant_auto(xbd_abi_ring_entries(c->abi, c->ring_pages),
                                        dev->max_indirect);
    c->grant_map = k->grant_map;
    c->poll_start_rate = k->poll_start_rate;
    c->poll_idle_us = k->poll_idle_us;
    c->batch_budget = k->batch_budget;
    c->uring_depth = k->uring_depth;
    c->backing = dev->backing;
    c->read_only = dev->probe.read_only || dev->info.read_only;
    c->flush = dev->info.flush;
    c->discard = discard_offered(dev);
    c->discard_secure = c->discard && dev->info.discard_secure;
    c->sector_size = dev->info.sector_size;
    c->sectors = dev->sectors;
    c->on_fail = on_fail;
    c->ctx = dev;
}

/* The frontend chose more queues than the backing can serve coherently
 * (an NBD server without multi-conn: each queue has its own connection,
 * and a flush on one would not cover the others' writes)?  It read our
 * cap before choosing, unless the backing changed since (reopened): say
 * so plainly rather than fail on the second connection.  -1 with why. */
static int
backing_queue_cap(struct device *dev, char *why, size_t whylen)
{
    char *v;
    uint32_t n;
    int r;

    if (dev->info.max_queues == 0)
        return 0;
    v = xs_get(dev->d, XBT_NULL, dev->fe, XBDK_MULTI_QUEUE_NUM_QUEUES);
    /* Absent: one queue; malformed: xbd_negotiate says what is wrong. */
    r = v != NULL ? xbd_parse_u32_range(v, 1, UINT32_MAX, &n) : -1;
    free(v);
    if (r < 0 || n <= dev->info.max_queues)
        return 0;
    snprintf(why, whylen, "%s is %" PRIu32 ", but %s serves at most %u queue%s "
             "(an NBD server without multi-conn: a flush on one connection would "
             "not cover the others' writes); %s is %u", XBDK_MULTI_QUEUE_NUM_QUEUES,
             n, dev->probe.params, dev->info.max_queues,
             dev->info.max_queues == 1 ? "" : "s", XBDK_MULTI_QUEUE_MAX_QUEUES,
             dev->lim.max_queues);
    return -1;
}

static void
connect_device(struct device *dev)
{
    struct getter g = { dev->d, dev->fe };
    struct xbd_queue_cfg *cfgs;
    char err[256], why[320];
    int seen = -1, r;

    if (dev->backing == NULL) {
        /* Closed earlier (resize failure, reopen): open again. */
        if (open_backing(dev, err, sizeof(err)) < 0) {
            fail_device(dev, err);
            return;
        }
    } else if ((r = xbd_backing_info(dev->backing, &dev->info)) < 0) {
        snprintf(why, sizeof(why), "%s: cannot read its size: %s",
                 dev->probe.params, strerror(-r));
        fail_device(dev, why);
        return;
    }
    dev->sectors = dev->info.size >> XBD_SECTOR_SHIFT;

    if (backing_queue_cap(dev, why, sizeof(why)) < 0) {
        fail_device(dev, why);
        return;
    }
    cfgs = calloc(dev->lim.max_queues, sizeof(*cfgs));
    if (cfgs == NULL) {
        fail_device(dev, "out of memory");
        return;
    }
    if (xbd_negotiate(get_node, &g, &dev->lim, &dev->neg, cfgs, err, sizeof(err)) < 0) {
        snprintf(why, sizeof(why), "bad frontend node: %s", err);
        free(cfgs);
        fail_device(dev, why);
        return;
    }
    for (unsigned int i = 0; i < dev->neg.queues; i++) {
        char qname[64];

        fill_cfg(dev, &cfgs[i], qname, sizeof(qname));
        r = xbd_queue_start(&cfgs[i], &dev->q[i], err, sizeof(err));
        if (r < 0) {
            snprintf(why, sizeof(why), "queue %u: %s", i, err);
            free(cfgs);
            fail_device(dev, why);      /* stops the queues started so far */
            return;
        }
        dev->nq = i + 1;
    }
    dev->pgrant_max = dev->neg.persistent ? cfgs[0].persistent_max : 0;
    free(cfgs);

    r = in_transaction(dev, "connect", tx_connect, &seen);
    if (r == 1) {
        xbd_log(LOG_INFO, "%s: InitWait -> Connected", dev->name);
        dev->ours = XenbusStateConnected;
        dev->fail_fe = NO_FAIL;
        dev->error[0] = '\0';
        xbd_log(LOG_INFO, "%s: ring connected: %u page%s x %u queue%s, indirect %u, "
                "persistent %s, protocol %s; %" PRIu64 " sectors, sector-size %u%s%s",
                dev->name, dev->neg.ring_pages, dev->neg.ring_pages == 1 ? "" : "s",
                dev->neg.queues, dev->neg.queues == 1 ? "" : "s", dev->max_indirect,
                dev->neg.persistent ? "yes" : "no", dev->neg.protocol, dev->sectors,
                dev->info.sector_size, dev->info.flush ? ", flush" : "",
                discard_offered(dev) ? ", discard" : "");
    } else if (r == 0) {
        /* The toolstack wrote another state meanwhile: the next step acts
         * on it with the queues stopped. */
        xbd_log(LOG_INFO, "%s: not connecting: state is now %s", dev->name,
                xbd_state_name(seen));
        disconnect(dev);
    } else {
        fail_device(dev, "cannot publish the connection in xenstore");
    }
}

/* ---- resize ------------------------------------------------------------------- */

static int
tx_resize(struct device *dev, xs_transaction_t t, void *arg)
{
    char *st = xs_get(dev->d, t, dev->be, XBDK_STATE);
    int s = xbd_parse_state(st);

    free(st);
    if (s != XenbusStateConnected)
        return 0;
    /* Re-writing Connected fires the frontend's watch on our state: that is
     * how it learns to re-read `sectors` (Linux blkback does the same). */
    return xs_put(dev->d, t, dev->be, XBDK_SECTORS, "%" PRIu64, *(uint64_t *)arg) &&
           xs_put(dev->d, t, dev->be, XBDK_STATE, "%d", XenbusStateConnected) ? 1 : -1;
}

static void
resize_check(struct device *dev)
{
    struct xbd_backing_info in;
    uint64_t sectors;

    if (dev->nq == 0 || dev->ours != XenbusStateConnected || dev->backing == NULL)
        return;
    if (xbd_backing_info(dev->backing, &in) < 0)
        return;
    sectors = in.size >> XBD_SECTOR_SHIFT;
    if (sectors == dev->sectors)
        return;
    /* Shrinking: stop requests beyond the new end before telling anyone.
     * Growing: tell the frontend only once the queues accept the new end. */
    for (unsigned int i = 0; i < dev->nq; i++)
        xbd_queue_set_sectors(dev->q[i], sectors);
    if (in_transaction(dev, "resize", tx_resize, &sectors) == 1)
        xbd_log(LOG_INFO, "%s: resized: %" PRIu64 " -> %" PRIu64 " sectors", dev->name,
                dev->sectors, sectors);
    dev->sectors = sectors;
    dev->info.size = in.size;
}

/* ---- the step ------------------------------------------------------------------ */

static void
reinit(struct device *dev)
{
    char err[256];

    disconnect(dev);
    if (dev->draining)
        return;                         /* again once the queues are gone */
    if (dev->probe.params == NULL) {
        /* The first probe failed: the toolstack may have fixed its nodes. */
        struct getter g = { dev->d, dev->be };

        if (xbd_probe_parse(get_node, &g, dev->fdom, dev->devid, &dev->probe, err,
                            sizeof(err)) < 0) {
            fail_device(dev, err);
            return;
        }
    }
    if (dev->backing == NULL && open_backing(dev, err, sizeof(err)) < 0) {
        fail_device(dev, err);
        return;
    }
    {
        struct state_change c = { .state = XenbusStateInitWait, .limits = true };

        change_state(dev, &c);
    }
}

static void
free_device(struct device *dev)
{
    struct device **pp;

    disconnect(dev);
    join_reaper(dev, true);             /* only at shutdown does this wait */

    if (dev->claim == CLAIM_OURS)
        dev->d->record_dirty = true;
    for (pp = &dev->d->devices; *pp != NULL; pp = &(*pp)->next)
        if (*pp == dev) {
            *pp = dev->next;
            break;
        }
    disconnect(dev);
    unwatch_frontend(dev);
    close_backing(dev);
    xbd_probe_free(&dev->probe);
    pthread_mutex_destroy(&dev->fail_lock);
    free(dev);
}

/* Take a device down for good: drain, Closed, forget (the toolstack
 * removes the directory). */
static bool
release(struct device *dev, const char *why)
{
    disconnect(dev);
    if (dev->draining)
        return true;                    /* again once the queues are gone */
    set_state(dev, XenbusStateClosed);
    xbd_log(LOG_INFO, "%s: released (%s)", dev->name, why);
    free_device(dev);
    return false;
}

/* One step; returns false when the device was freed. */
static bool
step(struct device *dev)
{
    struct xbd_daemon *d = dev->d;

    for (int round = 0; round < STEPS_PER_RUN; round++) {
        struct xbd_facts f;

        enum xbd_action a;
        bool present;
        int bs;
        char *v;

        /* The reaper marks the device dirty when the queues are gone. */
        if (dev->draining)
            return true;
        bs = read_state(d, dev->be, &present);

        if (!present) {
            disconnect(dev);
            if (dev->draining)
                return true;            /* freed once the queues are gone */
            if (dev->claim == CLAIM_OURS)
                xbd_log(LOG_INFO, "%s: released (backend directory removed)",
                        dev->name);
            free_device(dev);
            return false;
        }
        if (dev->claim != CLAIM_OURS) {
            bool listed = dev->claim == CLAIM_NEW && prior_lists(dev, NULL);
            bool online = true;

            v = xs_get(d, XBT_NULL, dev->be, XBDK_ONLINE);
            xbd_parse_online(v, &online);
            free(v);
            /* Left live by the daemon before us (its record and mark);
             * with online=0 too: the toolstack is waiting for it to close,
             * and the state machine releases it at once. */
            if (listed && left_live(bs)) {
                take_over(dev);
                if (dev->claim == CLAIM_OURS)
                    continue;
            }
            /* Closed devices are adopted only when first seen (left by an
             * xbd-backd that stopped), never from a live backend. */
            if (online && (bs == XenbusStateInitialising ||
                           (bs == XenbusStateClosed && dev->claim == CLAIM_NEW))) {
                probe_and_claim(dev, bs);
                if (dev->claim == CLAIM_OURS)
                    continue;
            }
            dev->claim = CLAIM_FOREIGN;
            return true;
        }

        /* Adopt what the toolstack wrote into our state node. */
        if (bs != dev->ours) {
            if (bs == XenbusStateClosing && dev->ours != XenbusStateClosed) {
                xbd_log(LOG_INFO, "%s: %s -> Closing (by the toolstack)", dev->name,
                        xbd_state_name(dev->ours));
                dev->ours = XenbusStateClosing;
            } else if (bs == XenbusStateClosed) {
                disconnect(dev);
                xbd_log(LOG_INFO, "%s: %s -> Closed (by the toolstack)", dev->name,
                        xbd_state_name(dev->ours));
                dev->ours = XenbusStateClosed;
            } else if (bs == XenbusStateInitialising) {
                /* Re-created under our feet: forget it and claim afresh. */
                xbd_log(LOG_INFO, "%s: reset to Initialising by the toolstack",
                        dev->name);
                disconnect(dev);
                if (dev->draining)
                    return true;        /* again once the queues are gone */
                close_backing(dev);
                unwatch_frontend(dev);
                xbd_probe_free(&dev->probe);
                dev->claim = CLAIM_NEW;
                d->record_dirty = true;
                dev->fail_fe = NO_FAIL;
                dev->error[0] = '\0';
                continue;
            }
        }

        f.ours = dev->ours;
        f.connected = dev->nq > 0;
        v = xs_get(d, XBT_NULL, dev->be, XBDK_ONLINE);
        if (xbd_parse_online(v, &f.online) < 0) {
            xbd_log(LOG_WARNING, "%s: online is \"%.20s\": taking it as 1", dev->name, v);
            f.online = true;
        }
        free(v);
        if (!f.online && dev->offline_since == 0)
            dev->offline_since = now_ms();
        else if (f.online)
            dev->offline_since = 0;
        f.grace_over = !f.online &&
                       now_ms() - dev->offline_since >= d->cfg.detach_grace_ms;
        f.fe_state = read_state(d, dev->fe, NULL);
        if (dev->fail_fe != NO_FAIL && f.fe_state != dev->fail_fe)
            dev->fail_fe = NO_FAIL;     /* the frontend moved on */
        f.failed = dev->fail_fe != NO_FAIL;

        a = dev->domain_gone ? XBD_ACT_RELEASE : xbd_next_action(&f);
        if (a != XBD_ACT_NONE && a != XBD_ACT_RESIZE_CHECK)
            xbd_log(LOG_DEBUG, "%s: ours %s, frontend %s, online %d: %s", dev->name,
                    xbd_state_name(f.ours), xbd_state_name(f.fe_state), f.online,
                    xbd_action_name(a));
        switch (a) {
        case XBD_ACT_NONE:
        case XBD_ACT_RESIZE_CHECK:      /* the tick polls the size */
            return true;
        case XBD_ACT_CONNECT:
            connect_device(dev);
            break;
        case XBD_ACT_CLOSING:
            set_state(dev, XenbusStateClosing);
            break;
        case XBD_ACT_CLOSE:
            disconnect(dev);
            if (dev->draining)
                return true;            /* Closed once the queues are gone */
            set_state(dev, XenbusStateClosed);
            break;
        case XBD_ACT_REINIT:
            reinit(dev);
            break;
        case XBD_ACT_RELEASE:
            return release(dev, dev->domain_gone ? "frontend domain gone"
                                : f.grace_over && f.connected
                                ? "detached; frontend did not close in time" : "detached");
        }
    }
    return true;
}

static void
run_dirty(struct xbd_daemon *d)
{
    struct device *dev, *next;

    for (dev = d->devices; dev != NULL; dev = next) {
        next = dev->next;
        if (dev->dirty) {
            dev->dirty = false;
            step(dev);
        }
    }
    /* The first pass saw every device there was at start (xbd_daemon_new
     * listed them): the earlier daemon's record has served, and its lines
     * leave ours. */
    if (d->nprior > 0)
        d->record_dirty = true;
    free(d->prior);
    d->prior = NULL;
    d->nprior = 0;
    if (d->record_dirty)
        write_record(d, false);
}

/* ---- watch events -------------------------------------------------------------- */

static struct device *
find_device(struct xbd_daemon *d, int kind, uint32_t fdom, uint32_t devid)
{
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next)
        if (dev->kind == kind && dev->fdom == fdom && dev->devid == devid)
            return dev;
    return NULL;
}

static struct device *
add_device(struct xbd_daemon *d, int kind, uint32_t fdom, uint32_t devid)
{
    struct device *dev = find_device(d, kind, fdom, devid);

    if (dev != NULL)
        return dev;
    dev = calloc(1, sizeof(*dev));
    if (dev == NULL) {
        xbd_log(LOG_ERR, "out of memory for device %s/%u/%u", xbd_kind_names[kind],
                fdom, devid);
        return NULL;
    }
    dev->d = d;
    dev->kind = kind;
    dev->fdom = fdom;
    dev->devid = devid;
    dev->ours = XenbusStateInitialising;
    dev->fail_fe = NO_FAIL;
    dev->rl_state.burst = 40;       /* a few reconnects' worth per 5 s */
    /* The only frontend directory the probe accepts. */
    snprintf(dev->fe, sizeof(dev->fe), "/local/domain/%u/device/vbd/%u", fdom, devid);
    snprintf(dev->name, sizeof(dev->name), "%s/%u/%u", xbd_kind_names[kind], fdom, devid);
    snprintf(dev->be, sizeof(dev->be), "%s/%s/%u/%u", d->base, xbd_kind_names[kind],
             fdom, devid);
    pthread_mutex_init(&dev->fail_lock, NULL);
    dev->next = d->devices;
    d->devices = dev;
    return dev;
}

/* A domid or devid directory name: decimal, in range. */
static bool
parse_id(const char *s, size_t len, uint32_t max, uint32_t *out)
{
    char buf[16];

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return xbd_parse_u32_range(buf, 0, max, out) == 0;
}

/* List backend/<kind>/ and mark every device there (and every known one of
 * that kind) dirty. */
static void
scan_kind(struct xbd_daemon *d, int kind)
{
    char path[96];
    unsigned int nd = 0;
    char **doms;

    for (struct device *dev = d->devices; dev != NULL; dev = dev->next)
        if (dev->kind == kind)
            dev->dirty = true;
    snprintf(path, sizeof(path), "%s/%s", d->base, xbd_kind_names[kind]);
    doms = xs_directory(d->xs, XBT_NULL, path, &nd);
    for (unsigned int i = 0; doms != NULL && i < nd; i++) {
        char sub[128];
        unsigned int nv = 0;
        uint32_t fdom;
        char **devs;

        if (!parse_id(doms[i], strlen(doms[i]), 0x7fef, &fdom))
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, doms[i]);
        devs = xs_directory(d->xs, XBT_NULL, sub, &nv);
        for (unsigned int j = 0; devs != NULL && j < nv; j++) {
            uint32_t devid;
            struct device *dev;

            if (!parse_id(devs[j], strlen(devs[j]), UINT32_MAX, &devid))
                continue;
            dev = add_device(d, kind, fdom, devid);
            if (dev != NULL)
                dev->dirty = true;
        }
        free(devs);
    }
    free(doms);
}

/* An event under our backend tree: <base>/<kind>[/<fdom>[/<devid>[/...]]]. */
static void
backend_event(struct xbd_daemon *d, const char *path)
{
    size_t bl = strlen(d->base);
    const char *p, *s;
    uint32_t fdom, devid;
    int kind;

    if (strncmp(path, d->base, bl) != 0 || path[bl] != '/')
        return;
    p = path + bl + 1;
    s = strchr(p, '/');
    for (kind = 0; kind < XBD_KIND_COUNT; kind++) {
        size_t kl = strlen(xbd_kind_names[kind]);

        if (strncmp(p, xbd_kind_names[kind], kl) == 0 && (p[kl] == '/' || p[kl] == '\0'))
            break;
    }
    if (kind == XBD_KIND_COUNT || !(d->kinds & (1u << kind)))
        return;
    if (s == NULL) {                    /* the kind directory itself */
        scan_kind(d, kind);
        return;
    }
    p = s + 1;
    s = strchr(p, '/');
    if (s == NULL || !parse_id(p, (size_t)(s - p), 0x7fef, &fdom)) {
        scan_kind(d, kind);             /* a whole domain's directory */
        return;
    }
    p = s + 1;
    s = strchr(p, '/');
    if (!parse_id(p, s ? (size_t)(s - p) : strlen(p), UINT32_MAX, &devid))
        return;
    {
        struct device *dev = add_device(d, kind, fdom, devid);

        if (dev != NULL)
            dev->dirty = true;
    }
}

static void
frontend_event(struct xbd_daemon *d, const char *path)
{
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        size_t fl = strlen(dev->fe);

        if (dev->fe_watched && strncmp(path, dev->fe, fl) == 0 && path[fl] == '/')
            dev->dirty = true;
    }
}

static void
release_event(struct xbd_daemon *d)
{
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        if (dev->claim != CLAIM_OURS || dev->domain_gone)
            continue;
        if (!xs_is_domain_introduced(d->xs, dev->fdom)) {
            xbd_log(LOG_INFO, "%s: frontend domain %u is gone", dev->name, dev->fdom);
            dev->domain_gone = true;
            dev->dirty = true;
        }
    }
}

bool
xbd_daemon_run_watches(struct xbd_daemon *d)
{
    char **ev = NULL;
    int n = 0;

    while (n < EVENTS_PER_RUN && (ev = xs_check_watch(d->xs)) != NULL) {
        n++;
        const char *path = ev[XS_WATCH_PATH], *token = ev[XS_WATCH_TOKEN];

        if (strcmp(token, "be") == 0)
            backend_event(d, path);
        else if (strcmp(token, "fe") == 0)
            frontend_event(d, path);
        else if (strcmp(token, "rel") == 0)
            release_event(d);
        free(ev);
    }
    run_dirty(d);
    /* Stopped by the bound: more may be queued, and libxenstore does not
     * promise that its fd polls readable for them. */
    return n == EVENTS_PER_RUN;
}

void
xbd_daemon_run_failures(struct xbd_daemon *d)
{
    uint64_t v;

    if (read(d->wake_fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: woken for nothing. */
    }
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        char why[sizeof(dev->fail_why) + 32];
        bool pending;

        pthread_mutex_lock(&dev->fail_lock);
        pending = dev->fail_pending;
        if (pending)
            snprintf(why, sizeof(why), "queue %u: %s", dev->fail_queue, dev->fail_why);
        pthread_mutex_unlock(&dev->fail_lock);
        if (pending && dev->nq > 0) {
            fail_device(dev, why);
        } else if (pending && !dev->draining) {
            pthread_mutex_lock(&dev->fail_lock);
            dev->fail_pending = false;  /* from rings already stopped */
            pthread_mutex_unlock(&dev->fail_lock);
        }
        join_reaper(dev, false);        /* done draining: step again */
    }
    run_dirty(d);
}

int
xbd_daemon_tick(struct xbd_daemon *d)
{
    unsigned int n;
    char **l;

    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        if (dev->claim != CLAIM_OURS)
            continue;
        resize_check(dev);
        if (dev->offline_since != 0)
            dev->dirty = true;          /* the detach grace may be over */
    }
    run_dirty(d);

    /* A dead store does not make our watch fd readable (libxenstore's
     * reader thread just stops); one cheap request a second finds out. */
    l = xs_directory(d->xs, XBT_NULL, d->base, &n);
    if (l == NULL && errno != ENOENT && errno != EACCES && errno != E2BIG) {
        xbd_log(LOG_ERR, "lost the connection to xenstore: %s", strerror(errno));
        return -1;
    }
    free(l);
    return 0;
}

/* ---- setup and teardown ------------------------------------------------------- */

/* Whether the kernel's blkback is there to serve backend/vbd. */
static bool
kernel_blkback(void)
{
    return access("/sys/bus/xen-backend/drivers/vbd", F_OK) == 0 ||
           access("/sys/module/xen_blkback", F_OK) == 0;
}

/* A fresh mark: random, or (no entropy yet) time and pid mixed. */
static void
make_mark(char *out)
{
    uint64_t v;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 40);
        v *= 0x9e3779b97f4a7c15u;
    }
    snprintf(out, XBD_MARK_LEN + 1, "%016" PRIx64, v);
}

struct xbd_daemon *
xbd_daemon_new(const struct xbd_config *cfg, struct xbd_platform *platform,
               const char *record, char *err, size_t errlen)
{
    struct xbd_daemon *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->cfg = *cfg;
    d->platform = platform;
    d->self = xbd_platform_domid(platform);
    d->kinds = cfg->kinds;
    d->wake_fd = -1;
    snprintf(d->base, sizeof(d->base), "/local/domain/%u/backend", d->self);
    make_mark(d->mark);
    if (record != NULL && snprintf(d->record, sizeof(d->record), "%s", record) >=
                          (int)sizeof(d->record)) {
        snprintf(err, errlen, "ownership record path too long: %s", record);
        goto fail;
    }

    if ((d->kinds & XBD_KIND_VBD) && strcmp(xbd_platform_name(platform), "xen") == 0 &&
        kernel_blkback()) {
        xbd_log(LOG_ERR, "not serving backend/vbd: the kernel's xen-blkback is loaded "
                "and serves it (unload it, or use --kind qdisk)");
        d->kinds &= ~(unsigned int)XBD_KIND_VBD;
        if (d->kinds == 0) {
            snprintf(err, errlen, "nothing to serve: backend/vbd belongs to the "
                     "kernel's xen-blkback");
            goto fail;
        }
    }

    d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    d->xs = xs_open(0);
    if (d->xs == NULL) {
        snprintf(err, errlen, "cannot connect to xenstore: %s (is xenstored "
                 "running%s?)", strerror(errno),
                 getenv("XENSTORED_PATH") ? ", and XENSTORED_PATH right" : "");
        goto fail;
    }
    for (int k = 0; k < XBD_KIND_COUNT; k++) {
        char path[96];

        if (!(d->kinds & (1u << k)))
            continue;
        snprintf(path, sizeof(path), "%s/%s", d->base, xbd_kind_names[k]);
        if (!xs_watch(d->xs, path, "be")) {
            snprintf(err, errlen, "watching %s: %s", path, strerror(errno));
            goto fail;
        }
        xbd_log(LOG_INFO, "serving %s", path);
    }
    if (!xs_watch(d->xs, "@releaseDomain", "rel")) {
        snprintf(err, errlen, "watching @releaseDomain: %s", strerror(errno));
        goto fail;
    }
    /* The record is consulted in the first pass over the devices: list
     * them now rather than wait for the watches' initial fire. */
    if (d->record[0] != '\0')
        load_record(d, d->record);
    for (int k = 0; k < XBD_KIND_COUNT; k++)
        if (d->kinds & (1u << k))
            scan_kind(d, k);
    return d;
fail:
    if (d->xs)
        xs_close(d->xs);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    free(d->prior);
    free(d);
    return NULL;
}

int
xbd_daemon_xs_fd(const struct xbd_daemon *d)
{
    return xs_fileno(d->xs);
}

int
xbd_daemon_wake_fd(const struct xbd_daemon *d)
{
    return d->wake_fd;
}

void
xbd_daemon_set_config(struct xbd_daemon *d, const struct xbd_config *cfg)
{
    unsigned int kinds = d->kinds;

    d->cfg = *cfg;
    d->kinds = kinds;               /* fixed until a restart */
}

unsigned int
xbd_daemon_device_count(const struct xbd_daemon *d)
{
    unsigned int n = 0;

    for (const struct device *dev = d->devices; dev != NULL; dev = dev->next)
        n += dev->claim == CLAIM_OURS;
    return n;
}

void
xbd_daemon_free(struct xbd_daemon *d)
{
    unsigned int n = 0;

    if (d == NULL)
        return;
    /* Stop taking requests everywhere at once, the drains in parallel... */
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        if (dev->claim != CLAIM_OURS)
            continue;
        if (dev->ours == XenbusStateConnected)
            set_state(dev, XenbusStateClosing);
        disconnect(dev);
    }
    /* ... then, as each is done, tell the frontend. */
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        join_reaper(dev, true);
        if (dev->claim == CLAIM_OURS) {
            set_state(dev, XenbusStateClosed);
            n++;
        }
    }
    /* Everything Closed: no record is needed (a device left otherwise, the
     * store gone, stays listed for the next daemon). */
    write_record(d, true);
    while (d->devices != NULL)
        free_device(d->devices);
    free(d->prior);
    xbd_log(LOG_INFO, "closed %u device%s", n, n == 1 ? "" : "s");
    xs_close(d->xs);
    close(d->wake_fd);
    free(d);
}

/* ---- status ----------------------------------------------------------------- */

static void
json_stats(FILE *f, const struct xbd_queue_stats *s)
{
    const char *sep = "";

#define X(n) fprintf(f, "%s\"" #n "\":%" PRIu64, sep, s->n); sep = ",";
    STAT_FIELDS(X)
#undef X
}

static void
json_device(FILE *f, struct device *dev, bool with_stats)
{
    int fe = read_state(dev->d, dev->fe, NULL);

    fprintf(f, "{\"name\":");
    xbd_json_string(f, dev->name);
    fprintf(f, ",\"kind\":\"%s\",\"domid\":%u,\"devid\":%u,\"state\":\"%s\","
            "\"frontend_state\":\"%s\",\"backing\":", xbd_kind_names[dev->kind],
            dev->fdom, dev->devid, xbd_state_name(dev->ours), xbd_state_name(fe));
    xbd_json_string(f, dev->probe.params ? dev->probe.params : "");
    fprintf(f, ",\"read_only\":%s,\"sectors\":%" PRIu64 ",\"sector_size\":%u",
            dev->probe.read_only || dev->info.read_only ? "true" : "false",
            dev->info.size >> XBD_SECTOR_SHIFT, dev->info.sector_size);
    if (dev->nq > 0)
        fprintf(f, ",\"ring_pages\":%u,\"queues\":%u,\"indirect\":%u,"
                "\"persistent\":%s,\"persistent_cache\":%u,\"protocol\":\"%s\"",
                dev->neg.ring_pages, dev->neg.queues, dev->max_indirect,
                dev->neg.persistent ? "true" : "false", dev->pgrant_max,
                dev->neg.protocol);
    else
        fprintf(f, ",\"ring_pages\":0,\"queues\":0,\"indirect\":0,"
                "\"persistent\":false,\"persistent_cache\":0,\"protocol\":null");
    fprintf(f, ",\"draining\":%s,\"error\":", dev->draining ? "true" : "false");
    xbd_json_string(f, dev->error);
    if (with_stats) {
        struct xbd_queue_stats tot = dev->past, s;

        fprintf(f, ",\"queue_stats\":[");
        for (unsigned int i = 0; i < dev->nq; i++) {
            xbd_queue_get_stats(dev->q[i], &s);
#define X(n) tot.n += s.n;
            STAT_FIELDS(X)
#undef X
            fprintf(f, "%s{\"queue\":%u,", i ? "," : "", i);
            json_stats(f, &s);
            fputc('}', f);
        }
        fprintf(f, "],\"totals\":{");
        json_stats(f, &tot);
        fputc('}', f);
    }
    fputc('}', f);
}

char *
xbd_daemon_status_json(struct xbd_daemon *d, bool with_stats)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *sep = "";
    char pm[16];
    const char *pmt = xbd_config_persistent_text(d->cfg.persistent_max, pm, sizeof(pm));
    const char *pq = d->cfg.persistent_max == XBD_PERSISTENT_AUTO ? "\"" : "";

    if (f == NULL)
        return NULL;
    fprintf(f, "{\"daemon\":{\"pid\":%ld,\"version\":\"%s\",\"platform\":\"%s\","
            "\"domid\":%u,\"kinds\":[", (long)getpid(), PACKAGE_VERSION,
            xbd_platform_name(d->platform), d->self);
    for (int k = 0; k < XBD_KIND_COUNT; k++)
        if (d->kinds & (1u << k)) {
            fprintf(f, "%s\"%s\"", sep, xbd_kind_names[k]);
            sep = ",";
        }
    /* persistent_max: a number, or "auto" (sized per connection). */
    fprintf(f, "],\"max_ring_order\":%u,\"max_queues\":%u,\"max_indirect\":%u,"
            "\"persistent_max\":%s%s%s,\"grant_map\":%s,\"poll_start_rate\":%u,"
            "\"poll_idle_us\":%u},\"devices\":[", d->cfg.max_ring_order,
            d->cfg.max_queues, d->cfg.max_indirect, pq, pmt, pq,
            d->cfg.grant_map ? "true" : "false", d->cfg.poll_start_rate,
            d->cfg.poll_idle_us);
    sep = "";
    for (struct device *dev = d->devices; dev != NULL; dev = dev->next) {
        if (dev->claim != CLAIM_OURS)
            continue;
        fputs(sep, f);
        json_device(f, dev, with_stats);
        sep = ",";
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
