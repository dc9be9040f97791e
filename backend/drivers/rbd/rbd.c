/* xbd-backd — the rbd driver: a Ceph RBD image as a backing, through librbd.
 *
 *   params: rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE]...
 *
 *     rbd:vms/guest1
 *     rbd:vms/guest1@golden                  a snapshot: read-only
 *     rbd:vms/guest1:id=xen:conf=/etc/ceph/ceph.conf
 *     rbd:vms/guest1:id=xen:keyring=/etc/ceph/ceph.client.xen.keyring
 *
 * The same spelling as QEMU's legacy `rbd:` filename, so a disk moved from
 * qdisk-with-QEMU keeps its target.  Keys: conf= (the configuration file;
 * without it librados searches $CEPH_CONF, /etc/ceph/ceph.conf,
 * ~/.ceph/config, ./ceph.conf), id= (the client name without "client.",
 * default admin); any other key is a Ceph setting handed to
 * rados_conf_set (keyring=, mon_host=, rbd_cache=, ...), except key= and
 * secret=: the guest can read params in xenstore, so the cephx key must
 * come from a keyring file.  A backslash makes the next character literal
 * (\: \@ \/ \\).
 *
 * Read-only when the toolstack says so (mode=r) and always for a
 * snapshot.  Settings are applied in this order, later ones winning: ours
 * (timeouts, below), the configuration file, params.
 *
 * One cluster connection and one image handle per backing, shared by its
 * queues (librbd's handle is thread-safe, and two handles on one image
 * would fight over its exclusive lock).  Each queue has a "connection"
 * (driver.h): the queue thread starts rbd_aio_* calls; librbd runs their
 * completion callbacks on its own threads, which push the finished
 * operation on a lock-free list (a Treiber stack: one compare-and-swap)
 * and write the connection's eventfd when the list was empty.  The engine
 * polls that eventfd with io_uring, and on the queue thread conn_notify
 * takes the whole list with one exchange and hands each operation to
 * xbd_ioq_complete.  So the queue thread never blocks on librbd and no
 * lock is taken per I/O.
 *
 * Flush: librbd's cache acknowledges writes before the OSDs have them;
 * XBD_IO_FLUSH is rbd_aio_flush, which returns once every write
 * acknowledged before it is durable.  The dataplane starts a guest's flush
 * or barrier only after the requests before it completed, so the flush
 * covers them.  Discard: rbd_aio_discard, granularity the object size
 * (whole objects are freed; librbd may skip parts of objects).  No secure
 * discard: snapshots keep old data.  Size is re-read on each info call
 * (cheap: librbd refreshes its header only after the cluster notified a
 * change, so an `rbd resize` reaches the guest within a tick).
 *
 * Nothing waits forever: unless the configuration or params say otherwise
 * connecting gives up after 10 s (client_mount_timeout), monitor
 * operations after 30 s and OSD operations after 60 s (rados_osd_op_timeout
 * — longer than an OSD failover normally takes), which fail the request
 * with -ETIMEDOUT rather than hang the guest.  A client the cluster
 * blocklisted gets -ESHUTDOWN for each request, logged with a hint.
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "rbd.h"

/* ---- params ------------------------------------------------------------- */

/* Cut the next token from *p, in place, stopping at an unescaped character
 * of `delims`; *found is that character or '\0' at the end. */
static char *
next_tok(char **p, const char *delims, char *found)
{
    char *start = *p, *r = *p, *w = *p;

    *found = '\0';
    while (*r != '\0') {
        if (*r == '\\' && r[1] != '\0') {
            *w++ = r[1];
            r += 2;
            continue;
        }
        if (strchr(delims, *r) != NULL) {
            *found = *r++;
            break;
        }
        *w++ = *r++;
    }
    *w = '\0';
    *p = r;
    return start;
}

static bool
valid_key(const char *k)
{
    if (*k == '\0')
        return false;
    for (; *k != '\0'; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
              (*k >= '0' && *k <= '9') || *k == '_' || *k == '-' || *k == ' '))
            return false;
    return true;
}

void
xbd_rbd_spec_free(struct xbd_rbd_spec *spec)
{
    free(spec->buf);
    memset(spec, 0, sizeof(*spec));
}

int
xbd_rbd_parse(const char *arg, struct xbd_rbd_spec *s, char *err, size_t errlen)
{
    static const char usage[] = "expected rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE]...";
    char *p, *tok, found;

    memset(s, 0, sizeof(*s));
    if (strlen(arg) > 4096)
        return xbd_backing_error(err, errlen, -EINVAL, "rbd: params too long");
    s->buf = p = strdup(arg);
    if (p == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");

    s->pool = next_tok(&p, "/@:", &found);
    if (found != '/' || s->pool[0] == '\0')
        return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: no pool: %s", arg, usage);
    tok = next_tok(&p, "/@:", &found);
    if (found == '/') {
        s->ns = tok;
        tok = next_tok(&p, "/@:", &found);
        if (found == '/')
            return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: too many '/': %s",
                                     arg, usage);
    }
    s->image = tok;
    if (s->image[0] == '\0' || (s->ns != NULL && s->ns[0] == '\0'))
        return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: empty name: %s", arg, usage);
    if (found == '@') {
        s->snap = next_tok(&p, ":", &found);
        if (s->snap[0] == '\0')
            return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: empty snapshot name",
                                     arg);
    }
    while (found == ':') {
        const char *key = next_tok(&p, "=:", &found), *value;

        if (found != '=' || !valid_key(key))
            return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: '%s' is not KEY=VALUE "
                                     "(conf=, id=, keyring= or a Ceph setting)", arg, key);
        value = next_tok(&p, ":", &found);
        if (value[0] == '\0')
            return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: %s= is empty", arg, key);
        /* The frontend can read params: no secrets in it. */
        if (strcmp(key, "key") == 0 || strcmp(key, "secret") == 0)
            return xbd_backing_error(err, errlen, -EINVAL, "rbd: %s= would put the "
                                     "cephx key where the guest can read it (xenstore): "
                                     "use keyring=FILE", key);
        if (strcmp(key, "conf") == 0 && s->conf == NULL) {
            s->conf = value;
        } else if (strcmp(key, "id") == 0 && s->id == NULL) {
            s->id = value;
        } else if (strcmp(key, "conf") == 0 || strcmp(key, "id") == 0) {
            return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: %s= given twice", arg, key);
        } else {
            for (unsigned int i = 0; i < s->nopts; i++)
                if (strcmp(s->opts[i].key, key) == 0)
                    return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: %s= given twice",
                                             arg, key);
            if (s->nopts == XBD_RBD_MAX_OPTS)
                return xbd_backing_error(err, errlen, -EINVAL, "rbd:%s: more than %d "
                                         "settings", arg, XBD_RBD_MAX_OPTS);
            s->opts[s->nopts].key = key;
            s->opts[s->nopts++].value = value;
        }
    }
    return 0;
}

/* ---- Opening ------------------------------------------------------------ */

struct rbd_backing {
    struct xbd_backing b;           /* first: the function table */
    rados_t cluster;
    rados_ioctx_t ioctx;
    rbd_image_t image;
    bool read_only;
    bool discard;
    uint32_t obj_size;
    char name[];                    /* POOL/IMAGE[@SNAP], for messages */
};

/* Our defaults, before the configuration file and params. */
static const struct { const char *key, *value; } default_settings[] = {
    { "client_mount_timeout", "10" },
    { "rados_mon_op_timeout", "30" },
    { "rados_osd_op_timeout", "60" },
};

static void
rbd_free(struct rbd_backing *rb)
{
    if (rb->image != NULL)
        rbd_close(rb->image);
    if (rb->ioctx != NULL)
        rados_ioctx_destroy(rb->ioctx);
    if (rb->cluster != NULL)
        rados_shutdown(rb->cluster);
    free(rb);
}

/* Create the cluster handle, apply settings, connect. */
static int
connect_cluster(struct rbd_backing *rb, const struct xbd_rbd_spec *s, char *err,
                size_t errlen)
{
    int r;

    r = rados_create(&rb->cluster, s->id);
    if (r < 0) {
        rb->cluster = NULL;
        return xbd_backing_error(err, errlen, r, "rbd: cannot create a cluster handle "
                                 "for client.%s: %s", s->id ? s->id : "admin", strerror(-r));
    }
    for (size_t i = 0; i < sizeof(default_settings) / sizeof(default_settings[0]); i++) {
        r = rados_conf_set(rb->cluster, default_settings[i].key, default_settings[i].value);
        if (r < 0)
            return xbd_backing_error(err, errlen, r, "rbd: setting %s: %s",
                                     default_settings[i].key, strerror(-r));
    }
    r = rados_conf_read_file(rb->cluster, s->conf);
    if (r < 0 && (s->conf != NULL || r != -ENOENT))
        return xbd_backing_error(err, errlen, r, "rbd: cannot read the Ceph configuration "
                                 "%s: %s", s->conf ? s->conf : "(default search)",
                                 strerror(-r));
    for (unsigned int i = 0; i < s->nopts; i++) {
        r = rados_conf_set(rb->cluster, s->opts[i].key, s->opts[i].value);
        if (r < 0)
            return xbd_backing_error(err, errlen, r, "rbd: Ceph setting %s=%s: %s",
                                     s->opts[i].key, s->opts[i].value,
                                     r == -ENOENT ? "no such setting" : strerror(-r));
    }
    r = rados_connect(rb->cluster);
    if (r < 0)
        return xbd_backing_error(err, errlen, r, "rbd: cannot connect to the Ceph cluster "
                                 "as client.%s (configuration %s): %s%s",
                                 s->id ? s->id : "admin", s->conf ? s->conf : "default",
                                 strerror(-r), r == -ETIMEDOUT ? " (are the monitors "
                                 "reachable?)" : r == -EACCES || r == -EPERM ?
                                 " (check id= and the keyring)" : "");
    return 0;
}

static int
rbd_open_backing(const char *arg, const struct xbd_backing_opts *opts,
                 struct xbd_backing **out, char *err, size_t errlen)
{
    struct xbd_rbd_spec s;
    struct rbd_backing *rb = NULL;
    rbd_image_info_t st;
    char name[600];
    int r;

    r = xbd_rbd_parse(arg, &s, err, errlen);
    if (r < 0)
        goto out;
    snprintf(name, sizeof(name), "%s/%s%s%s%s%s", s.pool, s.ns ? s.ns : "", s.ns ? "/" : "",
             s.image, s.snap ? "@" : "", s.snap ? s.snap : "");
    rb = calloc(1, sizeof(*rb) + strlen(name) + 1);
    if (rb == NULL) {
        r = xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    rb->b.drv = &xbd_driver_rbd;
    strcpy(rb->name, name);
    r = connect_cluster(rb, &s, err, errlen);
    if (r < 0)
        goto out;
    r = rados_ioctx_create(rb->cluster, s.pool, &rb->ioctx);
    if (r < 0) {
        rb->ioctx = NULL;
        xbd_backing_error(err, errlen, r, "rbd: pool '%s': %s", s.pool,
                          r == -ENOENT ? "no such pool" : strerror(-r));
        goto out;
    }
    if (s.ns != NULL)
        rados_ioctx_set_namespace(rb->ioctx, s.ns);
    rb->read_only = opts->read_only || s.snap != NULL;
    if (rb->read_only)
        r = rbd_open_read_only(rb->ioctx, s.image, &rb->image, s.snap);
    else
        r = rbd_open(rb->ioctx, s.image, &rb->image, NULL);
    if (r < 0) {
        rb->image = NULL;
        xbd_backing_error(err, errlen, r, "rbd: cannot open image %s: %s", name,
                          r == -ENOENT ? (s.snap ? "no such image or snapshot" :
                                          "no such image") : strerror(-r));
        goto out;
    }
    r = rbd_stat(rb->image, &st, sizeof(st));
    if (r < 0) {
        xbd_backing_error(err, errlen, r, "rbd: %s: cannot read its size: %s", name,
                          strerror(-r));
        goto out;
    }
    if (st.size < 512) {
        r = xbd_backing_error(err, errlen, -EINVAL, "rbd: %s: size %llu is less than one "
                              "sector", name, (unsigned long long)st.size);
        goto out;
    }
    rb->obj_size = st.obj_size <= (1u << 30) ? (uint32_t)st.obj_size : 0;
    rb->discard = !rb->read_only && opts->discard_enable && rb->obj_size >= 512;
    xbd_log(LOG_INFO, "rbd: opened %s%s: %llu bytes, objects of %llu bytes", name,
            rb->read_only ? " read-only" : "", (unsigned long long)st.size,
            (unsigned long long)st.obj_size);
    *out = &rb->b;
    rb = NULL;
    r = 0;
out:
    if (rb != NULL)
        rbd_free(rb);
    xbd_rbd_spec_free(&s);
    return r;
}

static int
rbd_info(struct xbd_backing *b, struct xbd_backing_info *out)
{
    struct rbd_backing *rb = (struct rbd_backing *)b;
    uint64_t size;
    int r = rbd_get_size(rb->image, &size);

    if (r < 0)
        return r;
    out->size = size & ~(uint64_t)511;
    out->sector_size = 512;
    out->physical_sector_size = 512;
    out->read_only = rb->read_only;
    out->flush = !rb->read_only;
    out->discard = rb->discard;
    out->discard_granularity = rb->discard ? rb->obj_size : 0;
    return 0;
}

static void
rbd_close_backing(struct xbd_backing *b)
{
    rbd_free((struct rbd_backing *)b);
}

/* ---- Per-queue connections ------------------------------------------------ */

/* One started operation.  Records are allocated and recycled on the queue
 * thread only; librbd's threads touch a record between the aio call and
 * the push onto conn->done. */
struct rbd_op {
    struct rbd_op *next;            /* free list, or the done stack */
    struct rbd_conn *c;
    struct xbd_io *io;
    int64_t ret;                    /* rbd_aio_get_return_value */
};

struct rbd_conn {
    struct rbd_backing *rb;
    struct xbd_ioq *q;
    int efd;                        /* readable: done is not empty */
    struct rbd_op *done;            /* atomic: pushed by librbd's threads */
    unsigned int busy;              /* atomic: callbacks not yet returned */
    struct rbd_op *free_ops;        /* queue thread only */
    struct xbd_ratelimit rl;
};

static int
rbd_conn_open(struct xbd_backing *b, struct xbd_ioq *q, void **conn,
              char *err, size_t errlen)
{
    struct rbd_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        int r = -errno;

        free(c);
        return xbd_backing_error(err, errlen, r, "eventfd: %s", strerror(-r));
    }
    c->rb = (struct rbd_backing *)b;
    c->q = q;
    *conn = c;
    return 0;
}

static void
rbd_conn_close(void *conn)
{
    struct rbd_conn *c = conn;
    struct rbd_op *op;

    /* The engine closes a connection only when every operation was reaped,
     * but a callback may still be returning after its push: wait for it
     * before the eventfd and the records go. */
    while (__atomic_load_n(&c->busy, __ATOMIC_ACQUIRE) != 0)
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    while ((op = c->free_ops) != NULL) {
        c->free_ops = op->next;
        free(op);
    }
    close(c->efd);
    free(c);
}

/* librbd's completion callback, on one of its threads: record the result,
 * push, wake the queue thread if it may be asleep. */
static void
on_complete(rbd_completion_t comp, void *arg)
{
    struct rbd_op *op = arg;
    struct rbd_conn *c = op->c;
    struct rbd_op *head = __atomic_load_n(&c->done, __ATOMIC_RELAXED);
    uint64_t one = 1;

    op->ret = rbd_aio_get_return_value(comp);
    rbd_aio_release(comp);
    do {
        op->next = head;
    } while (!__atomic_compare_exchange_n(&c->done, &head, op, true, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    /* Only the push onto an empty stack writes: the queue thread reads the
     * eventfd before it takes the stack, so nothing is missed. */
    if (head == NULL)
        (void)!write(c->efd, &one, sizeof(one));
    __atomic_fetch_sub(&c->busy, 1, __ATOMIC_RELEASE);
}

static int
rbd_conn_start(void *conn, struct xbd_io *io)
{
    struct rbd_conn *c = conn;
    rbd_image_t img = c->rb->image;
    rbd_completion_t comp;
    struct rbd_op *op = c->free_ops;
    int r;

    if (io->op == XBD_IO_DISCARD_SECURE)
        return -EOPNOTSUPP;
    if (op != NULL) {
        c->free_ops = op->next;
    } else if ((op = malloc(sizeof(*op))) == NULL) {
        return -ENOMEM;
    }
    op->c = c;
    op->io = io;
    r = rbd_aio_create_completion(op, on_complete, &comp);
    if (r < 0)
        goto fail;
    __atomic_fetch_add(&c->busy, 1, __ATOMIC_RELAXED);
    switch (io->op) {
    case XBD_IO_READ:
        r = rbd_aio_read(img, io->offset, io->len, io->buf, comp);
        break;
    case XBD_IO_WRITE:
        r = rbd_aio_write(img, io->offset, io->len, io->buf, comp);
        break;
    case XBD_IO_FLUSH:
        r = rbd_aio_flush(img, comp);
        break;
    default:                        /* XBD_IO_DISCARD */
        r = rbd_aio_discard(img, io->offset, io->len, comp);
        break;
    }
    if (r >= 0)
        return 0;
    /* Not started: the callback will not run. */
    __atomic_fetch_sub(&c->busy, 1, __ATOMIC_RELAXED);
    rbd_aio_release(comp);
fail:
    op->next = c->free_ops;
    c->free_ops = op;
    return r;
}

static short
rbd_conn_poll(void *conn, int *fd)
{
    struct rbd_conn *c = conn;

    *fd = c->efd;
    return POLLIN;
}

/* What librbd's return value means for io. */
static int64_t
op_result(struct rbd_conn *c, const struct rbd_op *op)
{
    const struct xbd_io *io = op->io;

    if (op->ret < 0) {
        if (op->ret == -ESHUTDOWN)
            xbd_log_limited(&c->rl, LOG_ERR, "rbd: %s: this client was blocklisted by "
                            "the cluster (another client took the image's lock?): "
                            "every request fails until the disk is re-attached",
                            c->rb->name);
        else if (op->ret == -ETIMEDOUT)
            xbd_log_limited(&c->rl, LOG_ERR, "rbd: %s: the cluster did not answer within "
                            "rados_osd_op_timeout", c->rb->name);
        return op->ret;
    }
    /* A read returns the bytes read (the whole range: librbd fills holes
     * and the end of the image with zeroes); a short one is an error.  The
     * other operations return 0 (or, for writes in some releases, len). */
    if (io->op == XBD_IO_READ)
        return (uint64_t)op->ret == io->len ? (int64_t)io->len : -EIO;
    return io->op == XBD_IO_WRITE ? (int64_t)io->len : 0;
}

static void
rbd_conn_notify(void *conn, short revents)
{
    struct rbd_conn *c = conn;
    struct rbd_op *list, *fifo = NULL;
    uint64_t v;

    (void)revents;
    (void)!read(c->efd, &v, sizeof(v));     /* before taking the stack */
    list = __atomic_exchange_n(&c->done, NULL, __ATOMIC_ACQUIRE);
    while (list != NULL) {                  /* newest first: reverse */
        struct rbd_op *next = list->next;

        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo != NULL) {
        struct rbd_op *op = fifo;

        fifo = op->next;
        xbd_ioq_complete(c->q, op->io, op_result(c, op));
        op->next = c->free_ops;
        c->free_ops = op;
    }
}

const struct xbd_driver xbd_driver_rbd = {
    .name = "rbd",
    .open = rbd_open_backing,
    .info = rbd_info,
    .close = rbd_close_backing,
    .conn_open = rbd_conn_open,
    .conn_close = rbd_conn_close,
    .conn_start = rbd_conn_start,
    .conn_poll = rbd_conn_poll,
    .conn_notify = rbd_conn_notify,
};
