/* xbd-sim — the host side: domains, grants, memory, event channels.
 * See host.h for the object graph and common/sim-proto.h for the protocol
 * and the shared-memory layouts. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/grant_table.h>

#include "host.h"
#include "loop.h"
#include "sim-proto.h"
#include "xbd-platform.h"
#include "xs-server.h"

/* Refs 0..7 are the toolstack's (console, xenstore) on Xen; guests never
 * get them, so neither do shares here. */
#define NR_RESERVED_REFS 8
#define DOMID_LIMIT 0x7ff0u     /* DOMID_FIRST_RESERVED */

struct share {
    struct share *next;
    uint32_t count;
    uint32_t *refs;
    uint32_t *frames;
};

struct port {
    bool used;
    bool bound;                 /* interdomain; else unbound (allocated) */
    uint32_t remote_domid;      /* unbound: who may bind; bound: the peer */
    uint32_t peer_port;
    int rx;                     /* the eventfd this port receives on */
    int tx;                     /* the eventfd the peer receives on */
    struct conn *owner;
};

struct domain {
    struct domain *next;
    struct host *h;
    uint32_t domid;
    char name[SIMP_NAME_MAX];
    int listen_fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    int memfd;
    uint32_t mem_pages;
    uint64_t *frame_map;        /* bit set = frame in use */
    uint32_t frame_hint;

    uint32_t nr_grants;
    int gtfd;
    grant_entry_v1_t *gt;
    int actfd;
    struct simp_active_hdr *act_hdr;
    struct simp_active *act;
    uint64_t *ref_map;          /* bit set = ref allocated */
    uint32_t ref_hint;

    struct port *ports;         /* HOST_MAX_PORTS; port 0 is never used */
    struct share *deferred;     /* ended by a dead client, still pinned */
};

struct conn {
    struct conn *next;
    struct host *h;
    struct domain *d;
    int fd;
    uint32_t role;              /* 0 until HELLO */
    uint32_t token;
    int mtfd;
    struct simp_maptrack_hdr *mt_hdr;
    struct simp_maptrack_slot *mt;
    struct share *shares;
};

struct host {
    struct sim_loop *loop;
    struct xs_server *xs;
    struct host_config cfg;
    struct domain *domains;
    struct conn *conns;
    uint32_t next_domid;
    uint32_t next_token;
    int timer_fd;               /* retries deferred shares while any exist */
    bool timer_armed;
    uint8_t *buf;               /* one message */
};

#define MAPTRACK_SIZE (sizeof(struct simp_maptrack_hdr) + \
                       SIMP_MAPTRACK_SLOTS * sizeof(struct simp_maptrack_slot))

__attribute__((format(printf, 1, 2))) static void
logmsg(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "xbd-sim: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static struct domain *
find_domain(struct host *h, uint32_t domid)
{
    struct domain *d;

    for (d = h->domains; d != NULL; d = d->next)
        if (d->domid == domid)
            return d;
    return NULL;
}

/* ---- Bitmaps -------------------------------------------------------------- */

static bool bit_test(const uint64_t *m, uint32_t i) { return m[i / 64] >> (i % 64) & 1; }
static void bit_set(uint64_t *m, uint32_t i) { m[i / 64] |= 1ull << (i % 64); }
static void bit_clear(uint64_t *m, uint32_t i) { m[i / 64] &= ~(1ull << (i % 64)); }

/* Take `count` clear bits of [lo, n), lowest first from *hint; all or none. */
static bool
bits_alloc(uint64_t *m, uint32_t lo, uint32_t n, uint32_t *hint, uint32_t count,
           uint32_t *out)
{
    uint32_t got = 0, i, tries;

    for (i = *hint < lo || *hint >= n ? lo : *hint, tries = 0;
         got < count && tries < n - lo; tries++, i = i + 1 >= n ? lo : i + 1) {
        if (m[i / 64] == ~0ull && i % 64 == 0 && i + 64 <= n) {
            tries += 63;
            i += 63;
            continue;
        }
        if (!bit_test(m, i)) {
            bit_set(m, i);
            out[got++] = i;
        }
    }
    if (got < count) {
        while (got > 0)
            bit_clear(m, out[--got]);
        return false;
    }
    *hint = i;
    return true;
}

/* ---- Grant entries: the sim's side of the flag protocol ------------------- */

static bool
entry_lock(struct simp_active *a, uint32_t token)
{
    unsigned int i;

    for (i = 0; i < 200000; i++) {
        uint32_t expect = 0;

        if (__atomic_compare_exchange_n(&a->lock, &expect, token, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
        if (i > 64)
            sched_yield();
    }
    return false;
}

static void
entry_fix_flags(grant_entry_v1_t *e, const struct simp_active *a)
{
    uint16_t clear = 0;

    if (a->pin_wr == 0)
        clear |= GTF_writing;
    if (a->pin_wr == 0 && a->pin_rd == 0)
        clear |= GTF_reading;
    if (clear)
        __atomic_fetch_and(&e->flags, (uint16_t)~clear, __ATOMIC_ACQ_REL);
}

/* End foreign access to every ref of a share, as a guest's
 * gnttab_end_foreign_access_ref does: cmpxchg the flags to 0 unless the
 * entry is in use.  The active table is checked too: a guest that cleared
 * GTF_reading itself must not get a pinned page back.  All or nothing. */
static bool
share_end_access(struct domain *d, const struct share *s)
{
    uint16_t *old = calloc(s->count, sizeof(*old));
    uint32_t i;
    bool ok = true;

    if (old == NULL)
        return false;
    for (i = 0; i < s->count && ok; i++) {
        grant_entry_v1_t *e = &d->gt[s->refs[i]];
        const struct simp_active *a = &d->act[s->refs[i]];
        uint16_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

        do {
            if ((flags & (GTF_reading | GTF_writing)) ||
                __atomic_load_n(&a->pin_rd, __ATOMIC_ACQUIRE) ||
                __atomic_load_n(&a->pin_wr, __ATOMIC_ACQUIRE)) {
                ok = false;
                break;
            }
        } while (!__atomic_compare_exchange_n(&e->flags, &flags, 0, false,
                                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
        old[i] = flags;
    }
    if (!ok) {
        /* Put back what we ended; a mapper that saw 0 meanwhile got refused,
         * as it would have been a moment later. */
        while (i-- > 1)
            __atomic_store_n(&d->gt[s->refs[i - 1]].flags, old[i - 1], __ATOMIC_RELEASE);
    }
    free(old);
    return ok;
}

/* Give a share's refs and frames back.  Punching the hole returns the
 * memory and makes the frame read as zeroes when it is handed out again. */
static void
share_free(struct domain *d, struct share *s)
{
    uint32_t i;

    for (i = 0; i < s->count; i++) {
        d->gt[s->refs[i]].domid = 0;
        d->gt[s->refs[i]].frame = 0;
        bit_clear(d->ref_map, s->refs[i]);
        fallocate(d->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)s->frames[i] * XBD_PAGE_SIZE, XBD_PAGE_SIZE);
        bit_clear(d->frame_map, s->frames[i]);
    }
    free(s->refs);
    free(s->frames);
    free(s);
}

static void
arm_timer(struct host *h, bool on)
{
    struct itimerspec its = { { 0, 0 }, { 0, 0 } };

    if (on == h->timer_armed)
        return;
    if (on)
        its.it_interval.tv_nsec = its.it_value.tv_nsec = 50 * 1000 * 1000;
    timerfd_settime(h->timer_fd, 0, &its, NULL);
    h->timer_armed = on;
}

static void
retry_deferred(struct host *h)
{
    struct domain *d;
    bool any = false;

    for (d = h->domains; d != NULL; d = d->next) {
        struct share **pp = &d->deferred;

        while (*pp != NULL) {
            struct share *s = *pp;

            if (share_end_access(d, s)) {
                *pp = s->next;
                share_free(d, s);
            } else {
                pp = &s->next;
                any = true;
            }
        }
    }
    arm_timer(h, any);
}

static void
timer_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    uint64_t v;

    (void)!read(fd, &v, sizeof(v));
    retry_deferred(opaque);
}

/* ---- Maptrack recovery ------------------------------------------------------
 *
 * A privileged client died.  Its maptrack names every pin it held (see
 * sim-proto.h); drop them.  An entry it left locked is in an unknown middle
 * state, so its pin counts are recomputed from every maptrack first. */

static void
recount(struct host *h, struct domain *d, uint32_t ref)
{
    uint32_t rd = 0, wr = 0, i;
    struct conn *c;

    for (c = h->conns; c != NULL; c = c->next) {
        if (c->mt == NULL)
            continue;
        for (i = 0; i < SIMP_MAPTRACK_SLOTS; i++) {
            uint32_t st = __atomic_load_n(&c->mt[i].state, __ATOMIC_ACQUIRE);

            if (st != 0 && c->mt[i].domid == d->domid && c->mt[i].ref == ref) {
                if (st == 2)
                    wr++;
                else
                    rd++;
            }
        }
    }
    d->act[ref].pin_rd = rd;
    d->act[ref].pin_wr = wr;
}

static void
release_maptrack(struct conn *c)
{
    struct host *h = c->h;
    uint32_t i;

    if (__atomic_load_n(&c->mt_hdr->busy, __ATOMIC_ACQUIRE)) {
        struct domain *d = find_domain(h, c->mt_hdr->busy_domid);
        uint32_t ref = c->mt_hdr->busy_ref;

        if (d != NULL && ref < d->nr_grants &&
            __atomic_load_n(&d->act[ref].lock, __ATOMIC_ACQUIRE) == c->token) {
            recount(h, d, ref);
            entry_fix_flags(&d->gt[ref], &d->act[ref]);
            __atomic_store_n(&d->act[ref].lock, 0, __ATOMIC_RELEASE);
        }
    }
    for (i = 0; i < SIMP_MAPTRACK_SLOTS; i++) {
        struct simp_maptrack_slot *m = &c->mt[i];
        uint32_t st = __atomic_load_n(&m->state, __ATOMIC_ACQUIRE);
        struct domain *d;
        struct simp_active *a;

        if (st == 0)
            continue;
        d = find_domain(h, m->domid);
        if (d == NULL || m->ref >= d->nr_grants)
            continue;           /* the domain is gone, and its tables */
        a = &d->act[m->ref];
        if (!entry_lock(a, SIMP_SIM_TOKEN)) {
            logmsg("domain %u ref %u: entry stays locked; its pin is leaked",
                   d->domid, m->ref);
            continue;
        }
        if (st == 2 && a->pin_wr > 0)
            a->pin_wr--;
        else if (st != 2 && a->pin_rd > 0)
            a->pin_rd--;
        entry_fix_flags(&d->gt[m->ref], a);
        __atomic_store_n(&m->state, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&a->lock, 0, __ATOMIC_RELEASE);
    }
    retry_deferred(h);
}

/* ---- Event channels --------------------------------------------------------- */

static int
port_alloc(struct domain *d)
{
    uint32_t p;

    for (p = 1; p < HOST_MAX_PORTS; p++)
        if (!d->ports[p].used)
            return (int)p;
    return -ENOSPC;
}

/* Close a port; its peer (if bound) becomes unbound, allocated for us, as
 * on Xen.  The peer keeps its eventfds: notifying us now reaches nobody. */
static void
port_close(struct domain *d, uint32_t port)
{
    struct port *p = &d->ports[port];

    if (!p->used)
        return;
    if (p->bound) {
        struct domain *pd = find_domain(d->h, p->remote_domid);

        if (pd != NULL && pd->ports[p->peer_port].used &&
            pd->ports[p->peer_port].bound &&
            pd->ports[p->peer_port].remote_domid == d->domid &&
            pd->ports[p->peer_port].peer_port == port) {
            pd->ports[p->peer_port].bound = false;
            pd->ports[p->peer_port].remote_domid = d->domid;
        }
    }
    close(p->rx);
    close(p->tx);
    memset(p, 0, sizeof(*p));
}

/* ---- Domains ---------------------------------------------------------------- */

static void conn_close(struct conn *c);
static void accept_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque);

static void
domain_free(struct domain *d)
{
    struct share *s;
    uint32_t p;

    if (d->ports != NULL)
        for (p = 1; p < HOST_MAX_PORTS; p++)
            port_close(d, p);
    while ((s = d->deferred) != NULL) {
        d->deferred = s->next;
        free(s->refs);
        free(s->frames);
        free(s);
    }
    if (d->listen_fd >= 0) {
        sim_loop_del(d->h->loop, d->listen_fd);
        close(d->listen_fd);
        unlink(d->path);
    }
    if (d->gt != NULL && d->gt != MAP_FAILED)
        munmap(d->gt, (size_t)d->nr_grants * sizeof(grant_entry_v1_t));
    if (d->act_hdr != NULL && d->act_hdr != MAP_FAILED)
        munmap(d->act_hdr, sizeof(*d->act_hdr) + (size_t)d->nr_grants * sizeof(*d->act));
    if (d->gtfd >= 0)
        close(d->gtfd);
    if (d->actfd >= 0)
        close(d->actfd);
    if (d->memfd >= 0)
        close(d->memfd);
    free(d->frame_map);
    free(d->ref_map);
    free(d->ports);
    free(d);
}

static int
make_memfd(const char *what, uint32_t domid, size_t size)
{
    char name[64];
    int fd;

    snprintf(name, sizeof(name), "xbd-sim d%u %s", domid, what);
    fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int r = -errno;

        close(fd);
        return r;
    }
    return fd;
}

static int
domain_new(struct host *h, uint32_t domid, const char *name, struct domain **out,
           char *err, size_t errlen)
{
    struct domain *d = calloc(1, sizeof(*d));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t actsz;
    int r;

    if (d == NULL)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    d->h = h;
    d->domid = domid;
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->listen_fd = d->memfd = d->gtfd = d->actfd = -1;
    d->mem_pages = h->cfg.mem_pages;
    d->nr_grants = h->cfg.nr_grants;
    d->frame_map = calloc((d->mem_pages + 63) / 64, sizeof(uint64_t));
    d->ref_map = calloc((d->nr_grants + 63) / 64, sizeof(uint64_t));
    d->ports = calloc(HOST_MAX_PORTS, sizeof(struct port));
    if (d->frame_map == NULL || d->ref_map == NULL || d->ports == NULL) {
        domain_free(d);
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    }
    actsz = sizeof(*d->act_hdr) + (size_t)d->nr_grants * sizeof(*d->act);
    d->memfd = make_memfd("memory", domid, (size_t)d->mem_pages * XBD_PAGE_SIZE);
    d->gtfd = make_memfd("grant-table", domid, (size_t)d->nr_grants * sizeof(grant_entry_v1_t));
    d->actfd = make_memfd("active-grants", domid, actsz);
    if (d->memfd < 0 || d->gtfd < 0 || d->actfd < 0) {
        r = d->memfd < 0 ? d->memfd : d->gtfd < 0 ? d->gtfd : d->actfd;
        domain_free(d);
        return snprintf(err, errlen, "memfd_create: %s", strerror(-r)), r;
    }
    d->gt = mmap(NULL, (size_t)d->nr_grants * sizeof(grant_entry_v1_t),
                 PROT_READ | PROT_WRITE, MAP_SHARED, d->gtfd, 0);
    d->act_hdr = mmap(NULL, actsz, PROT_READ | PROT_WRITE, MAP_SHARED, d->actfd, 0);
    if (d->gt == MAP_FAILED || d->act_hdr == MAP_FAILED) {
        domain_free(d);
        return snprintf(err, errlen, "cannot map grant tables"), -ENOMEM;
    }
    d->act = (struct simp_active *)(void *)(d->act_hdr + 1);
    d->act_hdr->magic = SIMP_ACTIVE_MAGIC;
    d->act_hdr->nr_grants = d->nr_grants;
    for (r = 0; r < NR_RESERVED_REFS; r++)
        bit_set(d->ref_map, (uint32_t)r);

    if ((size_t)snprintf(d->path, sizeof(d->path), "%s/d%u.host", h->cfg.dir, domid) >=
        sizeof(d->path)) {
        domain_free(d);
        return snprintf(err, errlen, "run directory path too long for a unix socket"),
               -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, d->path, sizeof(d->path));
    unlink(d->path);
    d->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->listen_fd < 0 || bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(d->listen_fd, 64) < 0 ||
        sim_loop_add(h->loop, d->listen_fd, EPOLLIN, accept_cb, d) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", d->path, strerror(errno));
        if (d->listen_fd >= 0)
            close(d->listen_fd);
        d->listen_fd = -1;
        domain_free(d);
        return r;
    }
    if (h->xs != NULL) {
        char xpath[sizeof(d->path)];

        snprintf(xpath, sizeof(xpath), "%s/d%u.xs", h->cfg.dir, domid);
        r = xs_server_listen(h->xs, domid, xpath);
        if (r >= 0)     /* for dom0: name and domid, as on a Xen host */
            r = xs_server_introduce(h->xs, domid, name);
        if (r < 0) {
            snprintf(err, errlen, "xenstore for domain %u: %s", domid, strerror(-r));
            if (domid != 0)
                xs_server_release(h->xs, domid);
            domain_free(d);
            return r;
        }
    }
    {
        struct domain **pp = &h->domains;   /* kept in domid order */

        while (*pp != NULL)
            pp = &(*pp)->next;
        *pp = d;
    }
    *out = d;
    if (h->cfg.verbose)
        logmsg("domain %u (%s) created", domid, name);
    return 0;
}

static bool
valid_name(const char *name)
{
    size_t i, n = strlen(name);

    if (n == 0 || n >= SIMP_NAME_MAX)
        return false;
    for (i = 0; i < n; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

int
host_domain_create(struct host *h, const char *name, uint32_t *domid_out,
                   char *err, size_t errlen)
{
    struct domain *d;
    int r;

    if (!valid_name(name))
        return snprintf(err, errlen, "bad domain name \"%.64s\": use 1-63 of "
                        "[A-Za-z0-9._-]", name), -EINVAL;
    for (d = h->domains; d != NULL; d = d->next)
        if (strcmp(d->name, name) == 0)
            return snprintf(err, errlen, "domain \"%s\" exists (domid %u)", name,
                            d->domid), -EEXIST;
    if (h->next_domid >= DOMID_LIMIT)
        return snprintf(err, errlen, "out of domain ids"), -ENOSPC;
    r = domain_new(h, h->next_domid, name, &d, err, errlen);
    if (r < 0)
        return r;
    h->next_domid++;
    *domid_out = d->domid;
    return 0;
}

int
host_domain_destroy(struct host *h, uint32_t domid, char *err, size_t errlen)
{
    struct domain *d = find_domain(h, domid), **pp;
    struct conn *c, *next;

    if (domid == 0)
        return snprintf(err, errlen, "domain 0 cannot be destroyed"), -EPERM;
    if (d == NULL)
        return snprintf(err, errlen, "no domain %u", domid), -ESRCH;
    /* Privileged clients that cached our tables see this and refuse new
     * maps and copies (GNTST_bad_domain); their existing mappings keep the
     * pages alive until they unmap, as a dying domain's do on Xen. */
    __atomic_store_n(&d->act_hdr->dead, 1, __ATOMIC_RELEASE);
    for (c = h->conns; c != NULL; c = next) {
        next = c->next;
        if (c->d == d)
            conn_close(c);
    }
    for (pp = &h->domains; *pp != d; pp = &(*pp)->next)
        ;
    *pp = d->next;
    if (h->xs != NULL)
        xs_server_release(h->xs, domid);
    if (h->cfg.verbose)
        logmsg("domain %u (%s) destroyed", domid, d->name);
    domain_free(d);
    return 0;
}

/* ---- Connections: the requests ---------------------------------------------- */

struct reply {
    struct simp_rep hdr;
    uint8_t *payload;           /* into the host's buffer, after the header */
    int fds[3];
    int nfds;
    int close_fds;              /* close fds after sending (created for this reply) */
};

__attribute__((format(printf, 3, 4))) static void
rep_err(struct reply *r, int err, const char *fmt, ...)
{
    va_list ap;

    r->hdr.err = err;
    va_start(ap, fmt);
    vsnprintf(r->hdr.msg, sizeof(r->hdr.msg), fmt, ap);
    va_end(ap);
}

static void
rep_u32(struct reply *r, uint32_t v)
{
    memcpy(r->payload + r->hdr.len, &v, sizeof(v));
    r->hdr.len += sizeof(v);
}

static bool
privileged(const struct conn *c)
{
    return c->d->domid == 0;
}

static void
op_hello(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct simp_hello_rep hr = { SIMP_VERSION, c->d->domid, privileged(c), 0,
                                 c->d->nr_grants, c->d->mem_pages };
    uint32_t role;

    if (c->role != 0 || len != sizeof(role))
        return rep_err(r, -EPROTO, "HELLO must come once, first");
    memcpy(&role, p, sizeof(role));
    switch (role) {
    case SIMP_ROLE_CONTROL:
    case SIMP_ROLE_EVTCHN:
        break;
    case SIMP_ROLE_GNTTAB: {
        int fd;

        if (!privileged(c))
            return rep_err(r, -EPERM, "domain %u may not map other domains' grants "
                           "in the sim: only dom0 is privileged", c->d->domid);
        fd = make_memfd("maptrack", c->d->domid, MAPTRACK_SIZE);
        if (fd < 0)
            return rep_err(r, fd, "memfd_create: %s", strerror(-fd));
        c->mt_hdr = mmap(NULL, MAPTRACK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (c->mt_hdr == MAP_FAILED) {
            c->mt_hdr = NULL;
            close(fd);
            return rep_err(r, -ENOMEM, "cannot map a maptrack");
        }
        c->mt_hdr->magic = SIMP_MAPTRACK_MAGIC;
        c->mt_hdr->nslots = SIMP_MAPTRACK_SLOTS;
        c->mt = (struct simp_maptrack_slot *)(void *)(c->mt_hdr + 1);
        c->mtfd = fd;
        r->fds[r->nfds++] = fd;
        break;
    }
    case SIMP_ROLE_GNTSHR:
        r->fds[r->nfds++] = c->d->memfd;
        r->fds[r->nfds++] = c->d->gtfd;
        break;
    default:
        return rep_err(r, -EINVAL, "unknown role %u", role);
    }
    c->role = role;
    if (++c->h->next_token == SIMP_SIM_TOKEN)
        c->h->next_token = 1;
    c->token = c->h->next_token;
    hr.token = c->token;
    memcpy(r->payload, &hr, sizeof(hr));
    r->hdr.len = sizeof(hr);
}

static void
op_get_domain(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct simp_domain_rep dr = { 0 };
    struct domain *d;
    uint32_t domid;

    if (c->role != SIMP_ROLE_GNTTAB || len != sizeof(domid))
        return rep_err(r, -EPROTO, "GET_DOMAIN needs a gnttab connection");
    memcpy(&domid, p, sizeof(domid));
    d = find_domain(c->h, domid);
    if (d == NULL)
        return rep_err(r, -ESRCH, "no domain %u", domid);
    dr.domid = domid;
    dr.nr_grants = d->nr_grants;
    dr.mem_pages = d->mem_pages;
    memcpy(r->payload, &dr, sizeof(dr));
    r->hdr.len = sizeof(dr);
    r->fds[0] = d->memfd;
    r->fds[1] = d->gtfd;
    r->fds[2] = d->actfd;
    r->nfds = 3;
}

static void
op_share(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct domain *d = c->d;
    struct simp_share_req req;
    struct share *s;
    uint32_t i;

    if (c->role != SIMP_ROLE_GNTSHR || len != sizeof(req))
        return rep_err(r, -EPROTO, "SHARE needs a gntshr connection");
    memcpy(&req, p, sizeof(req));
    if (req.count == 0 || req.count > SIMP_SHARE_MAX)
        return rep_err(r, -EINVAL, "share of %u pages: 1..%u at a time", req.count,
                       SIMP_SHARE_MAX);
    if (req.domid >= DOMID_LIMIT)
        return rep_err(r, -EINVAL, "share to domain %u: not a domain id", req.domid);
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->refs = calloc(req.count, 4)) == NULL ||
        (s->frames = calloc(req.count, 4)) == NULL) {
        if (s != NULL)
            free(s->refs);
        free(s);
        return rep_err(r, -ENOMEM, "out of memory");
    }
    s->count = req.count;
    if (!bits_alloc(d->ref_map, NR_RESERVED_REFS, d->nr_grants, &d->ref_hint,
                    req.count, s->refs)) {
        free(s->refs), free(s->frames), free(s);
        return rep_err(r, -ENOSPC, "domain %u is out of grant references (%u): "
                       "raise xbd-sim --grant-entries", d->domid, d->nr_grants);
    }
    /* Frames first-fit from 0: memory stays compact, and freed (zeroed)
     * frames are reused first, scattered as in a real guest. */
    d->frame_hint = 0;
    if (!bits_alloc(d->frame_map, 0, d->mem_pages, &d->frame_hint, req.count, s->frames)) {
        for (i = 0; i < req.count; i++)
            bit_clear(d->ref_map, s->refs[i]);
        free(s->refs), free(s->frames), free(s);
        return rep_err(r, -ENOSPC, "domain %u is out of guest memory (%u pages): "
                       "raise xbd-sim --memory", d->domid, d->mem_pages);
    }
    for (i = 0; i < req.count; i++) {
        grant_entry_v1_t *e = &d->gt[s->refs[i]];

        e->domid = (domid_t)req.domid;
        e->frame = s->frames[i];
        /* wmb(): domid and frame must be visible before the entry is valid. */
        __atomic_store_n(&e->flags, (uint16_t)(GTF_permit_access |
                                               (req.writable ? 0 : GTF_readonly)),
                         __ATOMIC_RELEASE);
    }
    s->next = c->shares;
    c->shares = s;
    for (i = 0; i < req.count; i++)
        rep_u32(r, s->refs[i]);
    for (i = 0; i < req.count; i++)
        rep_u32(r, s->frames[i]);
}

static void
op_unshare(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct share **pp, *s;
    uint32_t count;

    if (c->role != SIMP_ROLE_GNTSHR || len < 4)
        return rep_err(r, -EPROTO, "UNSHARE needs a gntshr connection");
    memcpy(&count, p, 4);
    if (count == 0 || count > SIMP_SHARE_MAX || len != 4 + count * 4)
        return rep_err(r, -EINVAL, "unshare: bad count");
    for (pp = &c->shares; (s = *pp) != NULL; pp = &s->next)
        if (s->count == count && memcmp(s->refs, p + 4, count * 4) == 0)
            break;
    if (s == NULL)
        return rep_err(r, -EINVAL, "unshare: these refs were not shared together "
                       "by this handle");
    if (!share_end_access(c->d, s))
        return rep_err(r, -EBUSY, "grant still in use by the peer (mapped or being "
                       "copied): nothing released; retry later");
    *pp = s->next;
    share_free(c->d, s);
}

static void
op_evtchn_alloc(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct domain *d = c->d;
    uint32_t remote;
    int port, a, b;

    if (c->role != SIMP_ROLE_EVTCHN || len != 4)
        return rep_err(r, -EPROTO, "EVTCHN_ALLOC needs an evtchn connection");
    memcpy(&remote, p, 4);
    if (remote >= DOMID_LIMIT)
        return rep_err(r, -EINVAL, "alloc unbound for domain %u: not a domain id", remote);
    port = port_alloc(d);
    if (port < 0)
        return rep_err(r, -ENOSPC, "domain %u is out of event channel ports (%u)",
                       d->domid, HOST_MAX_PORTS);
    a = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a < 0 || b < 0) {
        if (a >= 0)
            close(a);
        if (b >= 0)
            close(b);
        return rep_err(r, -EMFILE, "eventfd: %s", strerror(errno));
    }
    d->ports[port] = (struct port){ .used = true, .remote_domid = remote,
                                    .rx = a, .tx = b, .owner = c };
    rep_u32(r, (uint32_t)port);
    r->fds[0] = a;
    r->fds[1] = b;
    r->nfds = 2;
}

static void
op_evtchn_bind(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct domain *d = c->d, *rd;
    uint32_t req[2];
    struct port *rp;
    uint64_t one = 1;
    int port, rx, tx;

    if (c->role != SIMP_ROLE_EVTCHN || len != 8)
        return rep_err(r, -EPROTO, "EVTCHN_BIND needs an evtchn connection");
    memcpy(req, p, 8);
    rd = find_domain(c->h, req[0]);
    if (rd == NULL)
        return rep_err(r, -EINVAL, "bind: no domain %u", req[0]);
    if (req[1] == 0 || req[1] >= HOST_MAX_PORTS || !rd->ports[req[1]].used ||
        rd->ports[req[1]].bound || rd->ports[req[1]].remote_domid != d->domid)
        return rep_err(r, -EINVAL, "bind: domain %u port %u is not an unbound port "
                       "allocated for domain %u", req[0], req[1], d->domid);
    if (rd == d && req[1] == 0)
        return rep_err(r, -EINVAL, "bind: bad port");
    rp = &rd->ports[req[1]];
    port = port_alloc(d);
    if (port < 0)
        return rep_err(r, -ENOSPC, "domain %u is out of event channel ports", d->domid);
    rx = fcntl(rp->tx, F_DUPFD_CLOEXEC, 0);
    tx = fcntl(rp->rx, F_DUPFD_CLOEXEC, 0);
    if (rx < 0 || tx < 0) {
        if (rx >= 0)
            close(rx);
        if (tx >= 0)
            close(tx);
        return rep_err(r, -EMFILE, "dup: %s", strerror(errno));
    }
    d->ports[port] = (struct port){ .used = true, .bound = true, .remote_domid = rd->domid,
                                    .peer_port = req[1], .rx = rx, .tx = tx, .owner = c };
    rp->bound = true;
    rp->peer_port = (uint32_t)port;
    /* Xen marks the new local port pending: notifications sent to the
     * unbound port may have been lost. */
    (void)!write(rx, &one, sizeof(one));
    rep_u32(r, (uint32_t)port);
    r->fds[0] = rx;
    r->fds[1] = tx;
    r->nfds = 2;
}

static void
op_evtchn_unbind(struct conn *c, const uint8_t *p, uint32_t len, struct reply *r)
{
    uint32_t port;

    if (c->role != SIMP_ROLE_EVTCHN || len != 4)
        return rep_err(r, -EPROTO, "EVTCHN_UNBIND needs an evtchn connection");
    memcpy(&port, p, 4);
    if (port == 0 || port >= HOST_MAX_PORTS || !c->d->ports[port].used ||
        c->d->ports[port].owner != c)
        return rep_err(r, -EINVAL, "unbind: port %u is not bound by this handle", port);
    port_close(c->d, port);
}

static void
op_domain(struct conn *c, uint32_t op, const uint8_t *p, uint32_t len, struct reply *r)
{
    struct host *h = c->h;
    char err[160] = "";
    int rc;

    if (!privileged(c))
        return rep_err(r, -EPERM, "only dom0 may manage domains");
    if (op == SIMP_DOMAIN_CREATE) {
        char name[SIMP_NAME_MAX];
        uint32_t domid;

        if (len == 0 || len >= sizeof(name))
            return rep_err(r, -EINVAL, "bad domain name length");
        memcpy(name, p, len);
        name[len] = '\0';
        rc = host_domain_create(h, name, &domid, err, sizeof(err));
        if (rc < 0)
            return rep_err(r, rc, "%s", err);
        rep_u32(r, domid);
    } else if (op == SIMP_DOMAIN_DESTROY) {
        uint32_t domid;

        if (len != 4)
            return rep_err(r, -EPROTO, "bad request");
        memcpy(&domid, p, 4);
        rc = host_domain_destroy(h, domid, err, sizeof(err));
        if (rc < 0)
            return rep_err(r, rc, "%s", err);
    } else {
        struct domain *d;
        size_t off = 0, room = SIMP_MSG_MAX - sizeof(r->hdr);

        for (d = h->domains; d != NULL && off < room; d = d->next)
            off += (size_t)snprintf((char *)r->payload + off, room - off, "%u %s\n",
                                    d->domid, d->name);
        r->hdr.len = off < room ? (uint32_t)off : (uint32_t)room;
    }
}

/* ---- Connections: transport -------------------------------------------------- */

static void
conn_close(struct conn *c)
{
    struct host *h = c->h;
    struct conn **pp;
    struct share *s;
    uint32_t p;
    bool deferred = false;

    sim_loop_del(h->loop, c->fd);
    close(c->fd);
    for (pp = &h->conns; *pp != c; pp = &(*pp)->next)
        ;
    *pp = c->next;
    /* Event channels this handle bound. */
    for (p = 1; p < HOST_MAX_PORTS; p++)
        if (c->d->ports[p].used && c->d->ports[p].owner == c)
            port_close(c->d, p);
    /* Shares it made: end them, deferred while pinned (as gntalloc). */
    while ((s = c->shares) != NULL) {
        c->shares = s->next;
        if (share_end_access(c->d, s)) {
            share_free(c->d, s);
        } else {
            s->next = c->d->deferred;
            c->d->deferred = s;
            deferred = true;
        }
    }
    /* Pins it held (it was unlinked from h->conns above, but recount must
     * still see its slots: relink it for the duration). */
    if (c->mt != NULL) {
        c->next = h->conns;
        h->conns = c;
        release_maptrack(c);
        h->conns = c->next;
        munmap(c->mt_hdr, MAPTRACK_SIZE);
        close(c->mtfd);
    }
    if (deferred)
        arm_timer(h, true);
    free(c);
}

static void
conn_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct conn *c = opaque;
    struct host *h = c->h;
    struct simp_req req;
    struct reply r;
    union { struct cmsghdr c; char b[CMSG_SPACE(3 * sizeof(int))]; } cm;
    struct msghdr msg = { 0 };
    struct iovec iov[2];
    ssize_t n;

    n = recv(fd, h->buf, SIMP_MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    memset(&r, 0, sizeof(r));
    r.payload = h->buf + SIMP_MSG_MAX;      /* second half of the buffer */
    if ((size_t)n < sizeof(req) || n > SIMP_MSG_MAX) {
        rep_err(&r, -EPROTO, "malformed request");
    } else {
        memcpy(&req, h->buf, sizeof(req));
        if (req.len != (size_t)n - sizeof(req)) {
            rep_err(&r, -EPROTO, "malformed request");
        } else if (c->role == 0 && req.op != SIMP_HELLO) {
            rep_err(&r, -EPROTO, "say HELLO first");
        } else {
            const uint8_t *p = h->buf + sizeof(req);

            switch (req.op) {
            case SIMP_HELLO: op_hello(c, p, req.len, &r); break;
            case SIMP_GET_DOMAIN: op_get_domain(c, p, req.len, &r); break;
            case SIMP_SHARE: op_share(c, p, req.len, &r); break;
            case SIMP_UNSHARE: op_unshare(c, p, req.len, &r); break;
            case SIMP_EVTCHN_ALLOC: op_evtchn_alloc(c, p, req.len, &r); break;
            case SIMP_EVTCHN_BIND: op_evtchn_bind(c, p, req.len, &r); break;
            case SIMP_EVTCHN_UNBIND: op_evtchn_unbind(c, p, req.len, &r); break;
            case SIMP_DOMAIN_CREATE:
            case SIMP_DOMAIN_DESTROY:
            case SIMP_DOMAIN_LIST: op_domain(c, req.op, p, req.len, &r); break;
            default: rep_err(&r, -EINVAL, "unknown request %u", req.op); break;
            }
        }
    }
    if (r.hdr.err < 0) {
        r.hdr.len = 0;
        r.nfds = 0;
    }
    /* The request may have destroyed this connection's own domain (a dom0
     * connection cannot be, so c is still alive: domain 0 is not destroyable). */
    iov[0].iov_base = &r.hdr;
    iov[0].iov_len = sizeof(r.hdr);
    iov[1].iov_base = r.payload;
    iov[1].iov_len = r.hdr.len;
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    if (r.nfds > 0) {
        struct cmsghdr *cmh;

        memset(&cm, 0, sizeof(cm));
        msg.msg_control = cm.b;
        msg.msg_controllen = CMSG_SPACE((size_t)r.nfds * sizeof(int));
        cmh = CMSG_FIRSTHDR(&msg);
        cmh->cmsg_level = SOL_SOCKET;
        cmh->cmsg_type = SCM_RIGHTS;
        cmh->cmsg_len = CMSG_LEN((size_t)r.nfds * sizeof(int));
        memcpy(CMSG_DATA(cmh), r.fds, (size_t)r.nfds * sizeof(int));
    }
    /* Every fd sent stays owned here (port table, domain, connection):
     * SCM_RIGHTS gives the client its own reference. */
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        conn_close(c);
}

static void
accept_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct domain *d = opaque;
    struct conn *c;
    int s = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (s < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL || sim_loop_add(loop, s, EPOLLIN, conn_cb, c) < 0) {
        free(c);
        close(s);
        return;
    }
    c->h = d->h;
    c->d = d;
    c->fd = s;
    c->mtfd = -1;
    c->next = d->h->conns;
    d->h->conns = c;
}

/* ---- The host ----------------------------------------------------------------- */

/* What the status report counts for one domain (see host.h). */
static void
domain_report(const struct domain *d, FILE *f)
{
    const struct host *h = d->h;
    const struct conn *c;
    const struct share *s;
    unsigned long granted = 0, mapped = 0, ports = 0, bound = 0, deferred = 0;
    unsigned long clients = 0;
    uint32_t r, p;

    for (r = NR_RESERVED_REFS; r < d->nr_grants; r++) {
        if (bit_test(d->ref_map, r))
            granted++;
        if (__atomic_load_n(&d->act[r].pin_rd, __ATOMIC_RELAXED) != 0 ||
            __atomic_load_n(&d->act[r].pin_wr, __ATOMIC_RELAXED) != 0)
            mapped++;
    }
    for (p = 1; p < HOST_MAX_PORTS; p++) {
        if (!d->ports[p].used)
            continue;
        ports++;
        if (d->ports[p].bound)
            bound++;
    }
    for (s = d->deferred; s != NULL; s = s->next)
        deferred += s->count;
    for (c = h->conns; c != NULL; c = c->next)
        if (c->d == d)
            clients++;
    fprintf(f, "domain %u name %s granted %lu mapped %lu ports %lu bound %lu "
            "deferred %lu clients %lu\n", d->domid, d->name, granted, mapped,
            ports, bound, deferred, clients);
}

int
host_report(struct host *h, FILE *f)
{
    const struct domain *d;

    for (d = h->domains; d != NULL; d = d->next)
        domain_report(d, f);
    return ferror(f) ? -EIO : 0;
}

struct host *
host_new(struct sim_loop *loop, struct xs_server *xs, const struct host_config *cfg)
{
    struct host *h = calloc(1, sizeof(*h));
    struct domain *d0;
    char err[256];

    if (h == NULL)
        return NULL;
    h->loop = loop;
    h->xs = xs;
    h->cfg = *cfg;
    if (h->cfg.mem_pages == 0)
        h->cfg.mem_pages = HOST_DEFAULT_MEM_PAGES;
    if (h->cfg.nr_grants == 0)
        h->cfg.nr_grants = HOST_DEFAULT_GRANTS;
    h->buf = malloc(2 * SIMP_MSG_MAX);
    h->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (h->buf == NULL || h->timer_fd < 0 ||
        sim_loop_add(loop, h->timer_fd, EPOLLIN, timer_cb, h) < 0) {
        logmsg("cannot set up the host: %s", strerror(errno));
        goto fail;
    }
    if (domain_new(h, 0, "Domain-0", &d0, err, sizeof(err)) < 0) {
        logmsg("%s", err);
        goto fail;
    }
    h->next_domid = 1;
    return h;
fail:
    if (h->timer_fd >= 0) {
        sim_loop_del(loop, h->timer_fd);
        close(h->timer_fd);
    }
    free(h->buf);
    free(h);
    return NULL;
}

void
host_free(struct host *h)
{
    while (h->conns != NULL)
        conn_close(h->conns);
    while (h->domains != NULL) {
        struct domain *d = h->domains;

        h->domains = d->next;
        domain_free(d);
    }
    sim_loop_del(h->loop, h->timer_fd);
    close(h->timer_fd);
    free(h->buf);
    free(h);
}
