/* xbd-sim — the xenstore daemon's transport: xs-server.h over unix sockets.
 *
 * One listening socket per domain; the socket a client connected through is
 * its identity.  Each connection reads one message at a time into a fixed
 * buffer (header + XENSTORE_PAYLOAD_MAX), hands it to the pure core
 * (xs-core.c) and queues the reply.  Memory per connection is bounded:
 *  - when the reply queue holds `outstanding` messages we stop reading
 *    requests from that connection (the kernel socket buffer then pushes
 *    back on the client) and resume once it drains;
 *  - watch events for a connection whose queue is full are dropped and
 *    counted (xenstored drops events for a domain that does not read too).
 * A header announcing a payload over XENSTORE_PAYLOAD_MAX disconnects the
 * client, as xenstored does; an unknown message type gets ENOSYS.
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

static void
handle(struct xs_conn *c, const struct xs_wire_msg *rq)
{
    struct xs_store *st = c->srv->store;
    char abs[XENSTORE_ABS_PATH_MAX + 1];
    const char *argv[8], *arg, *rest;
    size_t restlen, len;
    char *buf;
    bool rel;
    uint32_t domid;
    int n, r = 0;

    /* The checks every request goes through first, in xenstored's order:
     * known type, privilege, then the transaction named in the header
     * (WATCH and UNWATCH ignore it). */
    switch (rq->type) {
    case XS_CONTROL: case XS_DIRECTORY: case XS_READ: case XS_GET_PERMS:
    case XS_WATCH: case XS_UNWATCH: case XS_TRANSACTION_START:
    case XS_TRANSACTION_END: case XS_INTRODUCE: case XS_RELEASE:
    case XS_GET_DOMAIN_PATH: case XS_WRITE: case XS_MKDIR: case XS_RM:
    case XS_SET_PERMS: case XS_IS_DOMAIN_INTRODUCED: case XS_RESUME:
    case XS_SET_TARGET: case XS_RESET_WATCHES: case XS_DIRECTORY_PART:
        break;
    default:
        /* Unknown, or one only the daemon sends (WATCH_EVENT, ERROR). */
        reply_err(c, rq, ENOSYS);
        return;
    }
    switch (rq->type) {
    case XS_CONTROL: case XS_INTRODUCE: case XS_RELEASE:
    case XS_IS_DOMAIN_INTRODUCED: case XS_RESUME: case XS_SET_TARGET:
        if (c->domid != 0) {
            reply_err(c, rq, EACCES);
            return;
        }
        break;
    default:
        break;
    }
    if (rq->type != XS_WATCH && rq->type != XS_UNWATCH && rq->tx_id != 0 &&
        !xs_core_tx_exists(st, c, rq->tx_id)) {
        reply_err(c, rq, ENOENT);
        return;
    }

    switch (rq->type) {
    case XS_READ:
    case XS_MKDIR:
    case XS_RM:
    case XS_DIRECTORY:
    case XS_GET_PERMS:
        arg = onearg(rq);
        if (arg == NULL)
            goto einval;
        r = xs_core_canonical(c->domid, arg, false, abs, sizeof(abs), &rel);
        if (r < 0)
            break;
        if (rq->type == XS_READ) {
            r = xs_core_read(st, c->domid, c, rq->tx_id, abs, &buf, &len);
            if (r == 0) {
                reply(c, rq, buf, len);
                free(buf);
            }
        } else if (rq->type == XS_MKDIR) {
            r = xs_core_mkdir(st, c->domid, c, rq->tx_id, abs);
            if (r == 0)
                reply_ok(c, rq);
        } else if (rq->type == XS_RM) {
            r = xs_core_rm(st, c->domid, c, rq->tx_id, abs);
            if (r == 0)
                reply_ok(c, rq);
        } else if (rq->type == XS_DIRECTORY) {
            r = xs_core_directory(st, c->domid, c, rq->tx_id, abs, &buf, &len,
                                  NULL);
            if (r == 0) {
                /* Too long for one reply: E2BIG makes libxenstore fall
                 * back to DIRECTORY_PART. */
                if (len > XENSTORE_PAYLOAD_MAX)
                    r = -E2BIG;
                else
                    reply(c, rq, buf, len);
                free(buf);
            }
        } else {
            struct xs_core_perm *perms;
            size_t np;
            r = xs_core_get_perms(st, c->domid, c, rq->tx_id, abs, &perms,
                                  &np);
            if (r == 0) {
                char out[XENSTORE_PAYLOAD_MAX];
                size_t off = 0;
                for (size_t i = 0; i < np && r == 0; i++) {
                    char one[16];
                    xs_core_perm_format(&perms[i], one);
                    if (off + strlen(one) + 1 > sizeof(out))
                        r = -E2BIG;
                    else {
                        memcpy(out + off, one, strlen(one) + 1);
                        off += strlen(one) + 1;
                    }
                }
                free(perms);
                if (r == 0)
                    reply(c, rq, out, off);
            }
        }
        break;

    case XS_WRITE:
        n = xs_wire_args(rq->payload, rq->len, argv, 1, NULL, NULL);
        if (n < 1)
            goto einval;
        len = strlen(argv[0]) + 1;
        r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs),
                              &rel);
        if (r == 0)
            r = xs_core_write(st, c->domid, c, rq->tx_id, abs,
                              rq->payload + len, rq->len - len);
        if (r == 0)
            reply_ok(c, rq);
        break;

    case XS_DIRECTORY_PART: {
        uint32_t off;
        uint64_t gen;
        char out[XENSTORE_PAYLOAD_MAX];
        size_t used, o;

        n = xs_wire_args(rq->payload, rq->len, argv, 2, &rest, &restlen);
        if (n != 2 || restlen != 0 || parse_uint(argv[1], 0xFFFFFFFFu, &off) < 0)
            goto einval;
        r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs),
                              &rel);
        if (r == 0)
            r = xs_core_directory(st, c->domid, c, rq->tx_id, abs, &buf,
                                  &len, &gen);
        if (r < 0)
            break;
        if (off > len) {
            free(buf);
            goto einval;
        }
        used = (size_t)snprintf(out, sizeof(out), "%llu",
                                (unsigned long long)gen) + 1;
        /* Whole names from `off` while they fit, keeping one byte for the
         * empty string that marks the end of the list. */
        o = off;
        while (o < len) {
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
        break;
    }

    case XS_SET_PERMS: {
        struct xs_core_perm perms[XENSTORE_PAYLOAD_MAX / 2];
        const char *p;
        size_t np = 0;

        if (rq->len == 0 || rq->payload[rq->len - 1] != '\0')
            goto einval;
        n = xs_wire_args(rq->payload, rq->len, argv, 1, NULL, NULL);
        if (n < 2)
            goto einval;
        r = xs_core_canonical(c->domid, argv[0], false, abs, sizeof(abs),
                              &rel);
        if (r < 0)
            break;
        for (p = argv[0] + strlen(argv[0]) + 1;
             p < rq->payload + rq->len; p += strlen(p) + 1) {
            if (xs_core_perm_parse(p, &perms[np]) < 0)
                goto einval;
            np++;
        }
        r = xs_core_set_perms(st, c->domid, c, rq->tx_id, abs, perms, np);
        if (r == 0)
            reply_ok(c, rq);
        break;
    }

    case XS_WATCH:
    case XS_UNWATCH:
        n = xs_wire_args(rq->payload, rq->len, argv, 2, NULL, NULL);
        if (n < 2)
            goto einval;
        if (rq->type == XS_WATCH) {
            /* The OK goes out before the initial event: queue it first
             * and take it back if the watch is refused. */
            struct outmsg *prev_tail = c->tail;
            reply_ok(c, rq);
            r = xs_core_watch(st, c->domid, c, argv[0], argv[1]);
            if (r < 0) {
                struct outmsg *m = prev_tail ? prev_tail->next : c->head;
                if (prev_tail)
                    prev_tail->next = NULL;
                else
                    c->head = NULL;
                c->tail = prev_tail;
                while (m) {
                    struct outmsg *nx = m->next;
                    c->outbytes -= m->len;
                    free(m);
                    c->nout--;
                    m = nx;
                }
            }
        } else {
            r = xs_core_unwatch(st, c->domid, c, argv[0], argv[1]);
            if (r == 0)
                reply_ok(c, rq);
        }
        break;

    case XS_TRANSACTION_START: {
        uint32_t id;
        char out[16];

        if (rq->tx_id != 0) {
            r = -EBUSY;
            break;
        }
        r = xs_core_tx_start(st, c->domid, c, &id);
        if (r == 0) {
            snprintf(out, sizeof(out), "%u", id);
            reply(c, rq, out, strlen(out) + 1);
        }
        break;
    }

    case XS_TRANSACTION_END:
        arg = onearg(rq);
        if (arg == NULL || (strcmp(arg, "T") != 0 && strcmp(arg, "F") != 0))
            goto einval;
        r = xs_core_tx_end(st, c->domid, c, rq->tx_id, arg[0] == 'T');
        if (r == 0)
            reply_ok(c, rq);
        break;

    case XS_GET_DOMAIN_PATH: {
        char out[32];

        arg = onearg(rq);
        if (arg == NULL || parse_domid(arg, &domid) < 0)
            goto einval;
        snprintf(out, sizeof(out), "/local/domain/%u", domid);
        reply(c, rq, out, strlen(out) + 1);
        break;
    }

    case XS_IS_DOMAIN_INTRODUCED:
        arg = onearg(rq);
        if (arg == NULL || parse_domid(arg, &domid) < 0)
            goto einval;
        reply(c, rq, xs_core_is_introduced(st, domid) ? "T" : "F", 2);
        break;

    case XS_INTRODUCE:
        if (c->domid != 0) {
            r = -EACCES;
            break;
        }
        n = xs_wire_args(rq->payload, rq->len, argv, 3, NULL, NULL);
        if (n < 3 || parse_domid(argv[0], &domid) < 0 || domid == 0 ||
            domid >= 0x7FF0)
            goto einval;
        if (!xs_core_is_introduced(st, domid)) {
            r = xs_core_mark_introduced(st, domid, true);
            if (r == 0)
                xs_core_fire_special(st, "@introduceDomain");
        }
        if (r == 0)
            reply_ok(c, rq);
        break;

    case XS_RELEASE:
    case XS_RESUME:
        if (c->domid != 0) {
            r = -EACCES;
            break;
        }
        arg = onearg(rq);
        if (arg == NULL || parse_domid(arg, &domid) < 0 || domid == 0)
            goto einval;
        if (!xs_core_is_introduced(st, domid)) {
            r = -ENOENT;
            break;
        }
        if (rq->type == XS_RELEASE) {
            /* Disconnect the domain (its socket stays: the toolstack's
             * xs_server_release removes that with the domain). */
            close_domain_conns(c->srv, domid);
            xs_core_mark_introduced(st, domid, false);
            xs_core_fire_special(st, "@releaseDomain");
        }
        reply_ok(c, rq);
        break;

    case XS_RESET_WATCHES:
        xs_core_drop_owner(st, c);
        reply_ok(c, rq);
        break;

    case XS_CONTROL:
        if (c->domid != 0) {
            r = -EACCES;
            break;
        }
        n = xs_wire_args(rq->payload, rq->len, argv, 2, NULL, NULL);
        if (n < 1)
            goto einval;
        if (strcmp(argv[0], "help") == 0) {
            static const char help[] = "Supported commands:\nhelp\nprint\n";
            reply(c, rq, help, sizeof(help));
        } else if (strcmp(argv[0], "print") == 0 && n >= 2) {
            fprintf(stderr, "xbd-sim xenstore: %s\n", argv[1]);
            reply_ok(c, rq);
        } else {
            goto einval;
        }
        break;

    case XS_SET_TARGET:
        r = c->domid != 0 ? -EACCES : -ENOSYS;
        break;

    default:
        /* Unknown type, or one only the daemon sends (WATCH_EVENT, ERROR). */
        r = -ENOSYS;
        break;
    }
    if (r < 0)
        reply_err(c, rq, r);
    return;
einval:
    reply_err(c, rq, EINVAL);
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
    close_domain_conns(srv, domid);
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
    flush_others(srv, NULL);
    return r;
}
