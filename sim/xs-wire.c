/* xbd-sim — the xenstore daemon's transport: xs-server.h over unix sockets.
 *
 * One listening socket per domain; the socket a client connected through is
 * its identity.  Each connection reads one message at a time into a fixed
 * buffer (header + XENSTORE_PAYLOAD_MAX), hands it to the pure core
 * (xs-core.c) and queues the reply.  Memory per connection is bounded:
 *  - when the reply queue holds `outstanding` messages or MAX_QUEUED_BYTES
 *    we stop reading requests from that connection (the kernel socket
 *    buffer then pushes back on the client) and resume once it drains;
 *  - watch events for a connection whose queue is full are dropped and
 *    counted (xenstored drops events for a domain that does not read too).
 * A header announcing a payload over XENSTORE_PAYLOAD_MAX disconnects the
 * client, as xenstored does; an unknown message type gets ENOSYS.
 *
 * Lifetimes: a listener lives from xs_server_listen to xs_server_release
 * or xs_server_free; a connection from accept to EOF/error, RELEASE of its
 * domain, xs_server_release or xs_server_free.  Closing a connection drops
 * its watches and transactions in the core (they are keyed by the
 * connection pointer).  Everything runs on the loop thread.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#include "loop.h"
#include "xs-core.h"
#include "xs-server.h"
#include "xs-wire.h"

#define HDR_SIZE sizeof(struct xsd_sockmsg)
/* Connections one unprivileged domain may hold open at once. */
#define MAX_GUEST_CONNS 64
/* Bytes of queued output at which a connection stops being read (and
 * drops watch events): with the `outstanding` count this bounds a
 * connection's memory however large its replies are. */
#define MAX_QUEUED_BYTES (256u * 1024u)

/* ======================================================================
 * Pure decoding
 * ====================================================================== */

int
xs_wire_decode(const void *buf, size_t len, struct xs_wire_msg *out)
{
    struct xsd_sockmsg h;

    if (len < HDR_SIZE)
        return 0;
    memcpy(&h, buf, HDR_SIZE);
    if (h.len > XENSTORE_PAYLOAD_MAX)
        return -E2BIG;
    if (len < HDR_SIZE + h.len)
        return 0;
    out->type = h.type;
    out->req_id = h.req_id;
    out->tx_id = h.tx_id;
    out->len = h.len;
    out->payload = (const char *)buf + HDR_SIZE;
    return (int)(HDR_SIZE + h.len);
}

int
xs_wire_args(const char *payload, size_t len, const char **argv, int max,
             const char **rest, size_t *restlen)
{
    size_t start = 0;
    int n = 0;

    for (size_t i = 0; i < len; i++) {
        if (payload[i] == '\0') {
            if (n < max)
                argv[n] = payload + start;
            n++;
            start = i + 1;
        }
    }
    if (rest)
        *rest = payload + start;
    if (restlen)
        *restlen = len - start;
    return n;
}

const char *
xs_wire_errname(int err)
{
    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        if (xsd_errors[i].errnum == err)
            return xsd_errors[i].errstring;
    return "EIO";
}

/* ======================================================================
 * Server state
 * ====================================================================== */

struct outmsg {
    struct outmsg *next;
    size_t len, off;
    unsigned char data[];
};

struct xs_conn {
    struct xs_conn *next;
    struct xs_server *srv;
    int fd;
    uint32_t domid;
    unsigned char in[HDR_SIZE + XENSTORE_PAYLOAD_MAX];
    size_t inlen;
    struct outmsg *head, *tail;
    unsigned int nout;
    size_t outbytes;
    bool reading;               /* EPOLLIN registered */
    bool writing;               /* EPOLLOUT registered */
    unsigned long dropped;      /* watch events dropped: queue full */
};

struct xs_listener {
    struct xs_listener *next;
    struct xs_server *srv;
    uint32_t domid;
    int fd;
    char *path;
};

struct xs_server {
    struct sim_loop *loop;
    struct xs_store *store;
    struct xs_server_limits lim;
    struct xs_listener *listeners;
    struct xs_conn *conns;
};

/* ======================================================================
 * Output queue
 * ====================================================================== */

static void conn_close(struct xs_conn *c);

/* Room for more output (replies to new requests, watch events)? */
static bool
conn_has_room(const struct xs_conn *c)
{
    return c->nout < c->srv->lim.outstanding &&
           c->outbytes < MAX_QUEUED_BYTES;
}

static void
conn_update_events(struct xs_conn *c)
{
    bool want_in = conn_has_room(c);
    bool want_out = c->head != NULL;
    uint32_t ev = (want_in ? EPOLLIN : 0u) | (want_out ? EPOLLOUT : 0u);

    if (want_in != c->reading || want_out != c->writing) {
        sim_loop_mod(c->srv->loop, c->fd, ev);
        c->reading = want_in;
        c->writing = want_out;
    }
}

static int
queue_msg(struct xs_conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id,
          const void *a, size_t alen, const void *b, size_t blen)
{
    struct xsd_sockmsg h;
    struct outmsg *m;

    if (alen + blen > XENSTORE_PAYLOAD_MAX)
        return -E2BIG;
    m = malloc(sizeof(*m) + HDR_SIZE + alen + blen);
    if (m == NULL)
        return -ENOMEM;
    h.type = type;
    h.req_id = req_id;
    h.tx_id = tx_id;
    h.len = (uint32_t)(alen + blen);
    memcpy(m->data, &h, HDR_SIZE);
    if (alen)
        memcpy(m->data + HDR_SIZE, a, alen);
    if (blen)
        memcpy(m->data + HDR_SIZE + alen, b, blen);
    m->len = HDR_SIZE + alen + blen;
    m->off = 0;
    m->next = NULL;
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->nout++;
    c->outbytes += m->len;
    return 0;
}

/* Write what the socket takes.  -1: the connection is dead. */
static int
conn_flush(struct xs_conn *c)
{
    while (c->head) {
        struct outmsg *m = c->head;
        ssize_t n = send(c->fd, m->data + m->off, m->len - m->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        m->off += (size_t)n;
        if (m->off < m->len)
            continue;
        c->head = m->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->nout--;
        c->outbytes -= m->len;
        free(m);
    }
    return 0;
}

/* Watch events from the core. */
static void
fire_event(void *opaque, void *owner, const char *path, const char *token)
{
    struct xs_conn *c = owner;

    (void)opaque;
    if (c == NULL)
        return;
    if (!conn_has_room(c)) {
        if (c->dropped++ == 0)
            fprintf(stderr, "xbd-sim xenstore: domain %u does not read its "
                    "connection: dropping watch events\n", c->domid);
        return;
    }
    queue_msg(c, XS_WATCH_EVENT, 0, 0, path, strlen(path) + 1, token,
              strlen(token) + 1);
}

/* ======================================================================
 * Request handling
 * ====================================================================== */

static void
reply(struct xs_conn *c, const struct xs_wire_msg *rq, const void *data,
      size_t len)
{
    int r = queue_msg(c, rq->type, rq->req_id, rq->tx_id, data, len, NULL, 0);

    if (r < 0) {
        const char *e = xs_wire_errname(-r);
        queue_msg(c, XS_ERROR, rq->req_id, rq->tx_id, e, strlen(e) + 1,
                  NULL, 0);
    }
}

static void
reply_err(struct xs_conn *c, const struct xs_wire_msg *rq, int err)
{
    const char *e = xs_wire_errname(err < 0 ? -err : err);

    queue_msg(c, XS_ERROR, rq->req_id, rq->tx_id, e, strlen(e) + 1, NULL, 0);
}

static void
reply_ok(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    reply(c, rq, "OK", 3);
}

/* Strict decimal: digits only, at most `max`. */
static int
parse_uint(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;

    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

/* A domid as xenstored takes it: 0..65535 (DOMID_* included). */
static int
parse_domid(const char *s, uint32_t *out)
{
    return parse_uint(s, 65535, out);
}

/* Exactly one NUL-terminated string (cxenstored's "onearg"). */
static const char *
onearg(const struct xs_wire_msg *rq)
{
    const char *argv[1];

    if (rq->len == 0 || rq->payload[rq->len - 1] != '\0')
        return NULL;
    if (xs_wire_args(rq->payload, rq->len, argv, 1, NULL, NULL) != 1)
        return NULL;
    return argv[0];
}

static void close_domain_conns(struct xs_server *srv, uint32_t domid);

/* Request handlers, one per message type, dispatched through wire_ops[].
 * A handler queues its own reply on success and returns 0, or returns a
 * negative errno, which the dispatcher sends as an XS_ERROR reply. */
typedef int wire_fn(struct xs_conn *c, const struct xs_wire_msg *rq);

/* The one path argument of READ, MKDIR, RM, DIRECTORY, GET_PERMS, made
 * absolute. */
static int
onepath(struct xs_conn *c, const struct xs_wire_msg *rq,
        char abs[XENSTORE_ABS_PATH_MAX + 1])
{
    const char *arg = onearg(rq);
    bool rel;

    if (arg == NULL)
        return -EINVAL;
    return xs_core_canonical(c->domid, arg, false, abs,
                             XENSTORE_ABS_PATH_MAX + 1, &rel);
}

static int
do_read(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1], *buf;
    size_t len;
    int r = onepath(c, rq, abs);

    if (r == 0)
        r = xs_core_read(c->srv->store, c->domid, c, rq->tx_id, abs, &buf,
                         &len);
    if (r == 0) {
        reply(c, rq, buf, len);
        free(buf);
    }
    return r;
}

static int
do_mkdir(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    int r = onepath(c, rq, abs);

    if (r == 0)
        r = xs_core_mkdir(c->srv->store, c->domid, c, rq->tx_id, abs);
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

static int
do_rm(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    int r = onepath(c, rq, abs);

    if (r == 0)
        r = xs_core_rm(c->srv->store, c->domid, c, rq->tx_id, abs);
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

static int
do_directory(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1], *buf;
    size_t len;
    int r = onepath(c, rq, abs);

    if (r == 0)
        r = xs_core_directory(c->srv->store, c->domid, c, rq->tx_id, abs,
                              &buf, &len, NULL);
    if (r < 0)
        return r;
    /* Too long for one reply: E2BIG makes libxenstore fall back to
     * DIRECTORY_PART. */
    if (len > XENSTORE_PAYLOAD_MAX)
        r = -E2BIG;
    else
        reply(c, rq, buf, len);
    free(buf);
    return r;
}

/* <path>|<offset>| -> <generation>|<names from offset>|*, with one more
 * empty string when the list ends inside this reply (that is how
 * libxenstore knows it has everything). */
static int
do_directory_part(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1], out[XENSTORE_PAYLOAD_MAX], *buf;
    const char *argv[2], *rest;
    size_t restlen, len, used, o;
    uint64_t gen;
    uint32_t off;
    bool rel;
    int n, r;

    n = xs_wire_args(rq->payload, rq->len, argv, 2, &rest, &restlen);
    if (n != 2 || restlen != 0 || parse_uint(argv[1], 0xFFFFFFFFu, &off) < 0)
        return -EINVAL;
    r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs), &rel);
    if (r == 0)
        r = xs_core_directory(c->srv->store, c->domid, c, rq->tx_id, abs,
                              &buf, &len, &gen);
    if (r < 0)
        return r;
    if (off > len) {
        free(buf);
        return -EINVAL;
    }
    used = (size_t)snprintf(out, sizeof(out), "%llu",
                            (unsigned long long)gen) + 1;
    /* Whole names from `off` while they fit, keeping one byte for the
     * empty string that marks the end of the list. */
    for (o = off; o < len;) {
        size_t l = strlen(buf + o) + 1;
        if (used + l + 1 > sizeof(out))
            break;
        memcpy(out + used, buf + o, l);
        used += l;
        o += l;
    }
    if (o == len)
        out[used++] = '\0';
    free(buf);
    reply(c, rq, out, used);
    return 0;
}

static int
do_get_perms(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1], out[XENSTORE_PAYLOAD_MAX];
    struct xs_core_perm *perms;
    size_t np, off = 0;
    int r = onepath(c, rq, abs);

    if (r == 0)
        r = xs_core_get_perms(c->srv->store, c->domid, c, rq->tx_id, abs,
                              &perms, &np);
    if (r < 0)
        return r;
    for (size_t i = 0; i < np && r == 0; i++) {
        char one[16];
        size_t l;
        xs_core_perm_format(&perms[i], one);
        l = strlen(one) + 1;
        if (off + l > sizeof(out)) {
            r = -E2BIG;
        } else {
            memcpy(out + off, one, l);
            off += l;
        }
    }
    free(perms);
    if (r == 0)
        reply(c, rq, out, off);
    return r;
}

/* <path>|<value|> : the value is everything after the first NUL. */
static int
do_write(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    const char *argv[1];
    size_t len;
    bool rel;
    int r;

    if (xs_wire_args(rq->payload, rq->len, argv, 1, NULL, NULL) < 1)
        return -EINVAL;
    len = strlen(argv[0]) + 1;
    r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs), &rel);
    if (r == 0)
        r = xs_core_write(c->srv->store, c->domid, c, rq->tx_id, abs,
                          rq->payload + len, rq->len - len);
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

/* <path>|<perm>|+ */
static int
do_set_perms(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    /* Each valid entry takes at least 3 bytes ("r0" and its NUL). */
    struct xs_core_perm perms[XENSTORE_PAYLOAD_MAX / 3 + 1];
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    const char *argv[1], *p;
    size_t np = 0;
    bool rel;
    int r;

    if (rq->len == 0 || rq->payload[rq->len - 1] != '\0' ||
        xs_wire_args(rq->payload, rq->len, argv, 1, NULL, NULL) < 2)
        return -EINVAL;
    r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs), &rel);
    if (r < 0)
        return r;
    for (p = argv[0] + strlen(argv[0]) + 1; p < rq->payload + rq->len;
         p += strlen(p) + 1) {
        if (xs_core_perm_parse(p, &perms[np]) < 0)
            return -EINVAL;
        np++;
    }
    r = xs_core_set_perms(c->srv->store, c->domid, c, rq->tx_id, abs, perms,
                          np);
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

/* <wpath>|<token>|? : the OK goes out before the initial event, so it is
 * queued first and taken back if the watch is refused. */
static int
do_watch(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *argv[2];
    struct outmsg *prev_tail = c->tail, *m;
    int r;

    if (xs_wire_args(rq->payload, rq->len, argv, 2, NULL, NULL) < 2)
        return -EINVAL;
    reply_ok(c, rq);
    r = xs_core_watch(c->srv->store, c->domid, c, argv[0], argv[1]);
    if (r < 0) {
        m = prev_tail ? prev_tail->next : c->head;
        if (prev_tail)
            prev_tail->next = NULL;
        else
            c->head = NULL;
        c->tail = prev_tail;
        while (m) {
            struct outmsg *nx = m->next;
            c->outbytes -= m->len;
            c->nout--;
            free(m);
            m = nx;
        }
    }
    return r;
}

static int
do_unwatch(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *argv[2];
    int r;

    if (xs_wire_args(rq->payload, rq->len, argv, 2, NULL, NULL) < 2)
        return -EINVAL;
    r = xs_core_unwatch(c->srv->store, c->domid, c, argv[0], argv[1]);
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

static int
do_transaction_start(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    uint32_t id;
    char out[16];
    int r;

    if (rq->tx_id != 0)
        return -EBUSY;
    r = xs_core_tx_start(c->srv->store, c->domid, c, &id);
    if (r == 0) {
        snprintf(out, sizeof(out), "%u", id);
        reply(c, rq, out, strlen(out) + 1);
    }
    return r;
}

/* T| commits, F| aborts. */
static int
do_transaction_end(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *arg = onearg(rq);
    int r;

    if (arg == NULL || (strcmp(arg, "T") != 0 && strcmp(arg, "F") != 0))
        return -EINVAL;
    r = xs_core_tx_end(c->srv->store, c->domid, c, rq->tx_id, arg[0] == 'T');
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

static int
do_get_domain_path(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *arg = onearg(rq);
    uint32_t domid;
    char out[32];

    if (arg == NULL || parse_domid(arg, &domid) < 0)
        return -EINVAL;
    snprintf(out, sizeof(out), "/local/domain/%u", domid);
    reply(c, rq, out, strlen(out) + 1);
    return 0;
}

static int
do_is_domain_introduced(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *arg = onearg(rq);
    uint32_t domid;

    if (arg == NULL || parse_domid(arg, &domid) < 0)
        return -EINVAL;
    reply(c, rq, xs_core_is_introduced(c->srv->store, domid) ? "T" : "F", 2);
    return 0;
}

/* <domid>|<mfn>|<evtchn>|? : in the sim there is no ring to map; the
 * domain's socket already exists (xs_server_listen), so this only marks
 * it introduced and fires @introduceDomain. */
static int
do_introduce(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    struct xs_store *st = c->srv->store;
    const char *argv[3];
    uint32_t domid;
    int r = 0;

    if (xs_wire_args(rq->payload, rq->len, argv, 3, NULL, NULL) < 3 ||
        parse_domid(argv[0], &domid) < 0 || domid == 0 || domid >= 0x7FF0)
        return -EINVAL;
    if (!xs_core_is_introduced(st, domid)) {
        r = xs_core_mark_introduced(st, domid, true);
        if (r == 0)
            xs_core_fire_special(st, "@introduceDomain");
    }
    if (r == 0)
        reply_ok(c, rq);
    return r;
}

/* Disconnect the domain (its socket stays: the toolstack's
 * xs_server_release removes that with the domain) and fire
 * @releaseDomain. */
static int
do_release(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    struct xs_store *st = c->srv->store;
    const char *arg = onearg(rq);
    uint32_t domid;

    if (arg == NULL || parse_domid(arg, &domid) < 0 || domid == 0)
        return -EINVAL;
    if (!xs_core_is_introduced(st, domid))
        return -ENOENT;
    close_domain_conns(c->srv, domid);
    xs_core_mark_introduced(st, domid, false);
    xs_core_fire_special(st, "@releaseDomain");
    reply_ok(c, rq);
    return 0;
}

/* Nothing to re-arm in the sim: accepted for an introduced domain. */
static int
do_resume(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const char *arg = onearg(rq);
    uint32_t domid;

    if (arg == NULL || parse_domid(arg, &domid) < 0 || domid == 0)
        return -EINVAL;
    if (!xs_core_is_introduced(c->srv->store, domid))
        return -ENOENT;
    reply_ok(c, rq);
    return 0;
}

static int
do_set_target(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    (void)c;
    (void)rq;
    return -ENOSYS;      /* stub domains do not exist in the sim */
}

static int
do_reset_watches(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    xs_core_drop_owner(c->srv->store, c);
    reply_ok(c, rq);
    return 0;
}

/* help|  and  print|<string>|  */
static int
do_control(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    static const char help[] = "Supported commands:\nhelp\nprint\n";
    const char *argv[2];
    int n = xs_wire_args(rq->payload, rq->len, argv, 2, NULL, NULL);

    if (n >= 1 && strcmp(argv[0], "help") == 0) {
        reply(c, rq, help, sizeof(help));
        return 0;
    }
    if (n >= 2 && strcmp(argv[0], "print") == 0) {
        fprintf(stderr, "xbd-sim xenstore: %s\n", argv[1]);
        reply_ok(c, rq);
        return 0;
    }
    return -EINVAL;
}

#define OP_PRIV  1u   /* dom0 only: EACCES for guests */
#define OP_NOTID 2u   /* the header's tx_id is ignored */

static const struct wire_op {
    wire_fn *fn;
    unsigned int flags;
} wire_ops[XS_TYPE_COUNT] = {
    [XS_CONTROL]              = { do_control,              OP_PRIV },
    [XS_DIRECTORY]            = { do_directory,            0 },
    [XS_READ]                 = { do_read,                 0 },
    [XS_GET_PERMS]            = { do_get_perms,            0 },
    [XS_WATCH]                = { do_watch,                OP_NOTID },
    [XS_UNWATCH]              = { do_unwatch,              OP_NOTID },
    [XS_TRANSACTION_START]    = { do_transaction_start,    0 },
    [XS_TRANSACTION_END]      = { do_transaction_end,      0 },
    [XS_INTRODUCE]            = { do_introduce,            OP_PRIV },
    [XS_RELEASE]              = { do_release,              OP_PRIV },
    [XS_GET_DOMAIN_PATH]      = { do_get_domain_path,      0 },
    [XS_WRITE]                = { do_write,                0 },
    [XS_MKDIR]                = { do_mkdir,                0 },
    [XS_RM]                   = { do_rm,                   0 },
    [XS_SET_PERMS]            = { do_set_perms,            0 },
    [XS_IS_DOMAIN_INTRODUCED] = { do_is_domain_introduced, OP_PRIV },
    [XS_RESUME]               = { do_resume,               OP_PRIV },
    [XS_SET_TARGET]           = { do_set_target,           OP_PRIV },
    [XS_RESET_WATCHES]        = { do_reset_watches,        0 },
    [XS_DIRECTORY_PART]       = { do_directory_part,       0 },
    /* XS_WATCH_EVENT and XS_ERROR are only sent by the daemon. */
};

/* The checks every request goes through, in xenstored's order: a known
 * type (else ENOSYS), privilege (EACCES), the transaction named in the
 * header (ENOENT), then the handler. */
static void
handle(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    const struct wire_op *op;
    int r;

    if (rq->type >= XS_TYPE_COUNT || wire_ops[rq->type].fn == NULL) {
        reply_err(c, rq, ENOSYS);
        return;
    }
    op = &wire_ops[rq->type];
    if ((op->flags & OP_PRIV) && c->domid != 0) {
        reply_err(c, rq, EACCES);
        return;
    }
    if (!(op->flags & OP_NOTID) && rq->tx_id != 0 &&
        !xs_core_tx_exists(c->srv->store, c, rq->tx_id)) {
        reply_err(c, rq, ENOENT);
        return;
    }
    r = op->fn(c, rq);
    if (r < 0)
        reply_err(c, rq, r);
}

/* ======================================================================
 * Connections
 * ====================================================================== */

/* Handle every complete message in the input buffer while the reply queue
 * has room.  -1: protocol violation, drop the client. */
static int
conn_process(struct xs_conn *c)
{
    while (conn_has_room(c)) {
        struct xs_wire_msg rq;
        int n = xs_wire_decode(c->in, c->inlen, &rq);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        handle(c, &rq);
        memmove(c->in, c->in + n, c->inlen - (size_t)n);
        c->inlen -= (size_t)n;
    }
    return 0;
}

/* A request may have queued watch events for other connections: send
 * them now.  A dead peer is noticed (and closed) by its own callback, which
 * EPOLLOUT/EPOLLERR wakes. */
static void
flush_others(struct xs_server *srv, struct xs_conn *except)
{
    for (struct xs_conn *o = srv->conns; o; o = o->next) {
        if (o == except || o->head == NULL)
            continue;
        (void)conn_flush(o);
        conn_update_events(o);
    }
}

static void
conn_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct xs_conn *c = opaque;

    (void)loop;
    if (events & EPOLLOUT) {
        if (conn_flush(c) < 0) {
            conn_close(c);
            return;
        }
        /* Room again: handle requests buffered while we were full. */
        if (conn_process(c) < 0) {
            conn_close(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (conn_has_room(c)) {
            ssize_t n = read(fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                conn_close(c);
                return;
            }
            if (n > 0)
                c->inlen += (size_t)n;
            if (conn_process(c) < 0) {
                conn_close(c);
                return;
            }
        } else if (events & (EPOLLHUP | EPOLLERR)) {
            conn_close(c);
            return;
        }
    }
    /* Send what we can; if that made room, handle requests still waiting
     * in the input buffer (no new EPOLLIN would announce them). */
    for (;;) {
        struct xs_wire_msg rq;
        if (conn_flush(c) < 0) {
            conn_close(c);
            return;
        }
        if (!conn_has_room(c) || xs_wire_decode(c->in, c->inlen, &rq) == 0)
            break;
        if (conn_process(c) < 0) {
            conn_close(c);
            return;
        }
    }
    conn_update_events(c);
    flush_others(c->srv, c);
}

static void
conn_close(struct xs_conn *c)
{
    struct xs_server *srv = c->srv;

    for (struct xs_conn **pp = &srv->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    sim_loop_del(srv->loop, c->fd);
    close(c->fd);
    xs_core_drop_owner(srv->store, c);
    while (c->head) {
        struct outmsg *m = c->head;
        c->head = m->next;
        free(m);
    }
    free(c);
}

static void
close_domain_conns(struct xs_server *srv, uint32_t domid)
{
    struct xs_conn *c = srv->conns, *next;

    for (; c; c = next) {
        next = c->next;
        if (c->domid == domid)
            conn_close(c);
    }
}

static void
listener_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct xs_listener *l = opaque;
    struct xs_server *srv = l->srv;

    (void)events;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        unsigned int have = 0;
        struct xs_conn *c;

        if (cfd < 0)
            return;   /* EAGAIN, or a transient error: wait for the next */
        for (c = srv->conns; c; c = c->next)
            if (c->domid == l->domid)
                have++;
        if (l->domid != 0 && have >= MAX_GUEST_CONNS) {
            fprintf(stderr, "xbd-sim xenstore: domain %u has %u connections "
                    "already: refusing another\n", l->domid, have);
            close(cfd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(cfd);
            continue;
        }
        c->srv = srv;
        c->fd = cfd;
        c->domid = l->domid;
        c->reading = true;
        if (sim_loop_add(loop, cfd, EPOLLIN, conn_cb, c) < 0) {
            close(cfd);
            free(c);
            continue;
        }
        c->next = srv->conns;
        srv->conns = c;
    }
}

/* ======================================================================
 * xs-server.h
 * ====================================================================== */

struct xs_server *
xs_server_new(struct sim_loop *loop, const struct xs_server_limits *limits)
{
    struct xs_server *srv = calloc(1, sizeof(*srv));
    struct xs_core_limits cl;

    if (srv == NULL)
        return NULL;
    if (limits)
        srv->lim = *limits;
    if (srv->lim.outstanding == 0)
        srv->lim.outstanding = 1024;
    cl.nodes = srv->lim.nodes;
    cl.watches = srv->lim.watches;
    cl.transactions = srv->lim.transactions;
    cl.value_size = srv->lim.value_size;
    srv->loop = loop;
    srv->store = xs_core_new(&cl, fire_event, srv);
    if (srv->store == NULL) {
        free(srv);
        return NULL;
    }
    return srv;
}

static void
listener_free(struct xs_server *srv, struct xs_listener *l)
{
    sim_loop_del(srv->loop, l->fd);
    close(l->fd);
    unlink(l->path);
    free(l->path);
    free(l);
}

void
xs_server_free(struct xs_server *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns)
        conn_close(srv->conns);
    while (srv->listeners) {
        struct xs_listener *l = srv->listeners;
        srv->listeners = l->next;
        listener_free(srv, l);
    }
    xs_core_free(srv->store);
    free(srv);
}

int
xs_server_listen(struct xs_server *srv, uint32_t domid, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct xs_listener *l;
    struct stat sb;
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    /* A stale socket from an earlier run is replaced; anything else at
     * the path is left alone. */
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 64) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->path = strdup(path)) == NULL) {
        free(l);
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    l->srv = srv;
    l->domid = domid;
    l->fd = fd;
    r = sim_loop_add(srv->loop, fd, EPOLLIN, listener_cb, l);
    if (r < 0) {
        close(fd);
        unlink(path);
        free(l->path);
        free(l);
        return r;
    }
    l->next = srv->listeners;
    srv->listeners = l;
    return 0;
}

int
xs_server_introduce(struct xs_server *srv, uint32_t domid, const char *name)
{
    int r = xs_core_introduce(srv->store, domid, name);

    flush_others(srv, NULL);
    return r;
}

int
xs_server_release(struct xs_server *srv, uint32_t domid)
{
    int r;

    if (domid == 0)
        return -EINVAL;
    /* Socket, then tree and @releaseDomain, then the connections last: a
     * guest that sees its connection close can rely on the rest being
     * done already. */
    for (struct xs_listener **pp = &srv->listeners; *pp;) {
        struct xs_listener *l = *pp;
        if (l->domid == domid) {
            *pp = l->next;
            listener_free(srv, l);
        } else {
            pp = &l->next;
        }
    }
    r = xs_core_release(srv->store, domid);
    close_domain_conns(srv, domid);
    flush_others(srv, NULL);
    return r;
}
