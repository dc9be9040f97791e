/* xbdkit — the platform layer on xbd-sim.
 *
 * Control goes over the domain's host socket (sim-proto.h); the hot paths do
 * not: grant map and copy run here, in the calling process, on the grant and
 * active tables and the guest memory the sim shares with privileged
 * processes, making the checks and the atomic flag updates Xen makes; event
 * notification is a write(2) to the peer's eventfd.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/grant_table.h>

#include "platform-impl.h"
#include "sim-proto.h"
#include "xbd-parse.h"

/* ---- Transport ------------------------------------------------------------ */

static int
sim_path(char *buf, size_t size, uint32_t *domid_out)
{
    const char *dir = getenv("XBD_SIM_DIR");
    const char *dom = getenv("XBD_SIM_DOMID");
    uint32_t domid = 0;

    if (dir == NULL || dir[0] == '\0')
        return xbd_platform_fail(ENOENT, "XBD_SIM_DIR is not set: start `xbd-sim` "
                                 "or run under `xbdctl run-as`");
    if (dom != NULL && dom[0] != '\0' &&
        xbd_parse_u32_range(dom, 0, 0x7fef, &domid) < 0)
        return xbd_platform_fail(EINVAL, "XBD_SIM_DOMID=\"%s\" is not a domain id", dom);
    if ((size_t)snprintf(buf, size, "%s/d%u.host", dir, domid) >= size)
        return xbd_platform_fail(ENAMETOOLONG, "XBD_SIM_DIR \"%s\" is too long for "
                                 "a unix socket path: use a short directory", dir);
    *domid_out = domid;
    return 0;
}

int
xbd_sim_call(int sock, uint32_t op, const void *req, uint32_t req_len,
             void *rep_buf, uint32_t rep_max, uint32_t *rep_len, int *fds, int nfds)
{
    char *buf = malloc(SIMP_MSG_MAX);
    struct simp_req *h = (struct simp_req *)(void *)buf;
    struct simp_rep rep;
    union { struct cmsghdr c; char b[CMSG_SPACE(4 * sizeof(int))]; } cm;
    struct iovec iov;
    struct msghdr msg;
    struct cmsghdr *c;
    ssize_t n;
    int i, got = 0, r;

    for (i = 0; i < nfds; i++)
        fds[i] = -1;
    if (rep_len != NULL)
        *rep_len = 0;
    if (buf == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    if (req_len > SIMP_MSG_MAX - sizeof(*h)) {
        free(buf);
        return xbd_platform_fail(E2BIG, "sim request too large");
    }
    h->op = op;
    h->len = req_len;
    if (req_len)
        memcpy(buf + sizeof(*h), req, req_len);
    do
        n = send(sock, buf, sizeof(*h) + req_len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        r = errno;
        free(buf);
        return xbd_platform_fail(r, "xbd-sim connection: send: %s (did the sim exit?)",
                                 strerror(r));
    }
    iov.iov_base = buf;
    iov.iov_len = SIMP_MSG_MAX;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cm.b;
    msg.msg_controllen = sizeof(cm.b);
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        r = n < 0 ? errno : ECONNRESET;
        free(buf);
        return xbd_platform_fail(r, "xbd-sim connection: receive: %s (did the sim exit?)",
                                 strerror(r));
    }
    for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k, nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

            for (k = 0; k < nf; k++) {
                int fd;

                memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
                if (got < nfds)
                    fds[got++] = fd;
                else
                    close(fd);
            }
        }
    }
    if ((size_t)n < sizeof(rep) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        free(buf);
        for (i = 0; i < got; i++)
            close(fds[i]), fds[i] = -1;
        return xbd_platform_fail(EPROTO, "xbd-sim sent a malformed reply");
    }
    memcpy(&rep, buf, sizeof(rep));
    rep.msg[sizeof(rep.msg) - 1] = '\0';
    if (rep.len != (size_t)n - sizeof(rep) || rep.len > rep_max) {
        free(buf);
        for (i = 0; i < got; i++)
            close(fds[i]), fds[i] = -1;
        return xbd_platform_fail(EPROTO, "xbd-sim sent a reply of unexpected length");
    }
    if (rep.len && rep_buf != NULL)
        memcpy(rep_buf, buf + sizeof(rep), rep.len);
    if (rep_len != NULL)
        *rep_len = rep.len;
    free(buf);
    if (rep.err < 0) {
        for (i = 0; i < got; i++)
            close(fds[i]), fds[i] = -1;
        return xbd_platform_fail(-rep.err, "%s", rep.msg[0] ? rep.msg : strerror(-rep.err));
    }
    return 0;
}

int
xbd_sim_connect(uint32_t role, struct simp_hello_rep *hello, int fds[2])
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint32_t domid = 0, len;
    int s, r;

    fds[0] = fds[1] = -1;
    r = sim_path(sa.sun_path, sizeof(sa.sun_path), &domid);
    if (r < 0)
        return r;
    s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return xbd_platform_fail(errno, "socket: %s", strerror(errno));
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = errno;
        close(s);
        return xbd_platform_fail(r, "cannot reach xbd-sim at %s: %s (is xbd-sim "
                                 "running, and does domain %u exist?)",
                                 sa.sun_path, strerror(r), domid);
    }
    r = xbd_sim_call(s, SIMP_HELLO, &role, sizeof(role), hello, sizeof(*hello),
                     &len, fds, 2);
    if (r == 0 && (len != sizeof(*hello) || hello->version != SIMP_VERSION))
        r = xbd_platform_fail(EPROTO, "xbd-sim speaks another protocol version: "
                              "use the xbd-sim of this build");
    if (r < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        close(s);
        return r;
    }
    return s;
}

/* ---- Platform ------------------------------------------------------------- */

struct sim_platform {
    int sock;                   /* a control connection: proves the sim is there */
    bool privileged;
};

static int
sim_open(struct xbd_platform *p)
{
    struct sim_platform *sp = calloc(1, sizeof(*sp));
    struct simp_hello_rep h;
    int fds[2];

    if (sp == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    sp->sock = xbd_sim_connect(SIMP_ROLE_CONTROL, &h, fds);
    if (sp->sock < 0) {
        int r = sp->sock;

        free(sp);
        return r;
    }
    p->domid = h.domid;
    sp->privileged = h.privileged != 0;
    p->priv = sp;
    return 0;
}

static void
sim_close(struct xbd_platform *p)
{
    struct sim_platform *sp = p->priv;

    close(sp->sock);
    free(sp);
}

/* ---- Grant tables: what a privileged process knows of a domain ------------ */

struct sim_dom {
    uint32_t domid;
    uint32_t nr_grants;
    uint32_t mem_pages;
    int memfd;
    grant_entry_v1_t *gt;
    struct simp_active_hdr *act_hdr;
    struct simp_active *act;
    size_t act_size;
    uint8_t *mem;               /* the whole memory, for copies */
};

struct sim_mapping {
    void *addr;
    uint32_t count;
    uint32_t *slots;            /* maptrack slot per page */
};

struct sim_gnttab {
    int sock;
    uint32_t domid;             /* ours: the grantee domid grants must name */
    uint32_t token;
    struct simp_maptrack_hdr *mt_hdr;
    struct simp_maptrack_slot *mt;
    uint32_t *mt_free;          /* stack of free slot numbers */
    uint32_t mt_nfree;
    struct sim_dom *doms;
    size_t ndoms;
    struct sim_mapping *maps;
    size_t nmaps, maps_cap;
};

static size_t
act_size(uint32_t nr_grants)
{
    return sizeof(struct simp_active_hdr) + (size_t)nr_grants * sizeof(struct simp_active);
}

static void
dom_unmap(struct sim_dom *d)
{
    if (d->gt != NULL)
        munmap(d->gt, (size_t)d->nr_grants * sizeof(grant_entry_v1_t));
    if (d->act_hdr != NULL)
        munmap(d->act_hdr, d->act_size);
    if (d->mem != NULL)
        munmap(d->mem, (size_t)d->mem_pages * XBD_PAGE_SIZE);
    if (d->memfd >= 0)
        close(d->memfd);
}

/* The domain's tables, asking the sim the first time.  Domain ids are never
 * reused by the sim, so the cache stays right; a dead domain is recognised
 * by act_hdr->dead.  NULL and a message when there is no such domain. */
static struct sim_dom *
get_dom(struct sim_gnttab *g, uint32_t domid)
{
    struct simp_domain_rep rep;
    struct sim_dom d = { .domid = domid, .memfd = -1 }, *nd;
    uint32_t len;
    int fds[3], r;
    size_t i;

    for (i = 0; i < g->ndoms; i++)
        if (g->doms[i].domid == domid)
            return &g->doms[i];
    r = xbd_sim_call(g->sock, SIMP_GET_DOMAIN, &domid, sizeof(domid),
                     &rep, sizeof(rep), &len, fds, 3);
    if (r < 0)
        return NULL;
    if (len != sizeof(rep) || fds[0] < 0 || fds[1] < 0 || fds[2] < 0 ||
        rep.nr_grants == 0 || rep.mem_pages == 0) {
        for (i = 0; i < 3; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        xbd_platform_fail(EPROTO, "xbd-sim sent a malformed domain reply");
        return NULL;
    }
    d.nr_grants = rep.nr_grants;
    d.mem_pages = rep.mem_pages;
    d.memfd = fds[0];
    d.act_size = act_size(d.nr_grants);
    d.gt = mmap(NULL, (size_t)d.nr_grants * sizeof(grant_entry_v1_t),
                PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
    d.act_hdr = mmap(NULL, d.act_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0);
    d.mem = mmap(NULL, (size_t)d.mem_pages * XBD_PAGE_SIZE, PROT_READ | PROT_WRITE,
                 MAP_SHARED, d.memfd, 0);
    close(fds[1]);
    close(fds[2]);
    if (d.gt == MAP_FAILED)
        d.gt = NULL;
    if (d.act_hdr == MAP_FAILED)
        d.act_hdr = NULL;
    if (d.mem == MAP_FAILED)
        d.mem = NULL;
    if (d.gt == NULL || d.act_hdr == NULL || d.mem == NULL ||
        d.act_hdr->magic != SIMP_ACTIVE_MAGIC) {
        dom_unmap(&d);
        xbd_platform_fail(ENOMEM, "cannot map domain %u's grant table or memory", domid);
        return NULL;
    }
    d.act = (struct simp_active *)(void *)(d.act_hdr + 1);
    nd = realloc(g->doms, (g->ndoms + 1) * sizeof(*nd));
    if (nd == NULL) {
        dom_unmap(&d);
        xbd_platform_fail(ENOMEM, "out of memory");
        return NULL;
    }
    g->doms = nd;
    g->doms[g->ndoms] = d;
    return &g->doms[g->ndoms++];
}

/* ---- Grant tables: pinning, as Xen's grant table code does it ------------
 *
 * The first 32 bits of a v1 entry are flags (low 16) and domid (high 16);
 * they are read and updated together with one cmpxchg, so the guest cannot
 * change the grantee between our check and our update.  The pin counts and
 * the GTF_reading/GTF_writing bits change only under the entry's lock
 * (sim-proto.h), and the maptrack slot is written under it too.
 */

static uint32_t *
entry_word(grant_entry_v1_t *e)
{
    return (uint32_t *)(void *)e;
}

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Take an entry's lock.  Holders keep it for a few dozen instructions; a
 * holder that died keeps it until the sim repairs the entry, so give up
 * after a while rather than hang. */
static bool
entry_lock(struct simp_active *a, uint32_t token)
{
    uint64_t deadline = 0;
    unsigned int i;

    for (i = 0;; i++) {
        uint32_t expect = 0;

        if (__atomic_compare_exchange_n(&a->lock, &expect, token, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
        if (i < 64)
            continue;
        if (deadline == 0)
            deadline = now_ms() + 2000;
        else if (now_ms() > deadline)
            return false;
        sched_yield();
    }
}

static void
entry_unlock(struct simp_active *a)
{
    /* Release: the pin counts and flags we wrote are visible before the
     * next holder sees the lock free. */
    __atomic_store_n(&a->lock, 0, __ATOMIC_RELEASE);
}

/* With the lock held: make GTF_reading/GTF_writing match the pin counts
 * (clear GTF_writing when no writer is left, GTF_reading when nobody). */
static void
entry_fix_flags(grant_entry_v1_t *e, const struct simp_active *a)
{
    uint16_t clear = 0, old;

    if (a->pin_wr == 0)
        clear |= GTF_writing;
    if (a->pin_wr == 0 && a->pin_rd == 0)
        clear |= GTF_reading;
    if (clear)
        old = __atomic_fetch_and(&e->flags, (uint16_t)~clear, __ATOMIC_ACQ_REL);
    (void)old;
}

static uint32_t
mt_alloc(struct sim_gnttab *g)
{
    return g->mt_nfree ? g->mt_free[--g->mt_nfree] : UINT32_MAX;
}

static void
mt_release(struct sim_gnttab *g, uint32_t slot)
{
    g->mt_free[g->mt_nfree++] = slot;
}

/* Pin `ref` of `d` for reading or writing on behalf of this process.
 * Returns GNTST_okay with *frame and *slot set, or a GNTST_* error with
 * nothing changed. */
static int
pin(struct sim_gnttab *g, struct sim_dom *d, uint32_t ref, bool write,
    uint32_t *frame, uint32_t *slot)
{
    struct simp_active *a;
    grant_entry_v1_t *e;
    uint32_t word, nword, f, s;
    int st = GNTST_okay, tries;

    if (__atomic_load_n(&d->act_hdr->dead, __ATOMIC_ACQUIRE))
        return GNTST_bad_domain;
    if (ref >= d->nr_grants)
        return GNTST_bad_gntref;
    s = mt_alloc(g);
    if (s == UINT32_MAX)
        return GNTST_no_space;
    a = &d->act[ref];
    e = &d->gt[ref];
    g->mt_hdr->busy_domid = d->domid;
    g->mt_hdr->busy_ref = ref;
    __atomic_store_n(&g->mt_hdr->busy, 1, __ATOMIC_RELEASE);
    if (!entry_lock(a, g->token)) {
        st = GNTST_general_error;
        goto out;
    }
    /* Xen's _set_status_v1: check type, grantee and read-only on one
     * snapshot of flags+domid, and set the in-use bits with cmpxchg; retry
     * a few times if the guest keeps changing the entry. */
    word = __atomic_load_n(entry_word(e), __ATOMIC_ACQUIRE);
    for (tries = 0;; tries++) {
        uint16_t flags = (uint16_t)(word & 0xffff), gdom = (uint16_t)(word >> 16);

        if ((flags & GTF_type_mask) != GTF_permit_access || gdom != g->domid ||
            (write && (flags & GTF_readonly))) {
            st = GNTST_general_error;
            break;
        }
        nword = word | GTF_reading | (write ? GTF_writing : 0);
        if (nword == word ||
            __atomic_compare_exchange_n(entry_word(e), &word, nword, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            break;
        if (tries == 4) {
            st = GNTST_general_error;   /* "shared grant entry is unstable" */
            break;
        }
    }
    if (st == GNTST_okay) {
        /* The frame is read once, after the entry is marked in use. */
        f = __atomic_load_n(&e->frame, __ATOMIC_ACQUIRE);
        if (f >= d->mem_pages) {
            st = GNTST_general_error;
            entry_fix_flags(e, a);
        } else {
            g->mt[s].domid = d->domid;
            g->mt[s].ref = ref;
            __atomic_store_n(&g->mt[s].state, write ? 2u : 1u, __ATOMIC_RELEASE);
            if (write)
                a->pin_wr++;
            else
                a->pin_rd++;
            *frame = f;
            *slot = s;
        }
    }
    entry_unlock(a);
out:
    __atomic_store_n(&g->mt_hdr->busy, 0, __ATOMIC_RELEASE);
    if (st != GNTST_okay)
        mt_release(g, s);
    return st;
}

/* Drop the pin recorded in maptrack slot `s`. */
static void
unpin(struct sim_gnttab *g, uint32_t s)
{
    struct simp_maptrack_slot *m = &g->mt[s];
    struct sim_dom *d = NULL;
    struct simp_active *a;
    size_t i;

    for (i = 0; i < g->ndoms; i++)
        if (g->doms[i].domid == m->domid)
            d = &g->doms[i];
    if (d == NULL || m->ref >= d->nr_grants)
        abort();                /* our own bookkeeping is broken */
    a = &d->act[m->ref];
    g->mt_hdr->busy_domid = m->domid;
    g->mt_hdr->busy_ref = m->ref;
    __atomic_store_n(&g->mt_hdr->busy, 1, __ATOMIC_RELEASE);
    if (!entry_lock(a, g->token)) {
        /* A dead holder: the sim repairs the entry from the maptracks, and
         * counts this slot as still held until our connection closes.
         * Leaking one pin is the safe side (the guest cannot free the page). */
        __atomic_store_n(&g->mt_hdr->busy, 0, __ATOMIC_RELEASE);
        return;
    }
    if (m->state == 2)
        a->pin_wr--;
    else
        a->pin_rd--;
    entry_fix_flags(&d->gt[m->ref], a);
    __atomic_store_n(&m->state, 0, __ATOMIC_RELEASE);
    entry_unlock(a);
    __atomic_store_n(&g->mt_hdr->busy, 0, __ATOMIC_RELEASE);
    mt_release(g, s);
}

/* ---- gnttab ops ----------------------------------------------------------- */

static int
sim_gnttab_open(struct xbd_gnttab *h)
{
    struct sim_gnttab *g = calloc(1, sizeof(*g));
    struct simp_hello_rep hello;
    size_t mtsize;
    int fds[2];
    uint32_t i;

    if (g == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    g->sock = xbd_sim_connect(SIMP_ROLE_GNTTAB, &hello, fds);
    if (g->sock < 0) {
        int r = g->sock;

        free(g);
        return r;
    }
    g->domid = hello.domid;
    g->token = hello.token;
    mtsize = sizeof(struct simp_maptrack_hdr) +
             SIMP_MAPTRACK_SLOTS * sizeof(struct simp_maptrack_slot);
    g->mt_hdr = fds[0] < 0 ? MAP_FAILED :
        mmap(NULL, mtsize, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    g->mt_free = malloc(SIMP_MAPTRACK_SLOTS * sizeof(uint32_t));
    if (g->mt_hdr == MAP_FAILED || g->mt_free == NULL) {
        if (g->mt_hdr != MAP_FAILED)
            munmap(g->mt_hdr, mtsize);
        free(g->mt_free);
        close(g->sock);
        free(g);
        return xbd_platform_fail(ENOMEM, "cannot map the maptrack");
    }
    g->mt = (struct simp_maptrack_slot *)(void *)(g->mt_hdr + 1);
    for (i = 0; i < SIMP_MAPTRACK_SLOTS; i++)
        g->mt_free[i] = SIMP_MAPTRACK_SLOTS - 1 - i;
    g->mt_nfree = SIMP_MAPTRACK_SLOTS;
    h->priv = g;
    return 0;
}

static int sim_gnttab_unmap(struct xbd_gnttab *h, void *addr, uint32_t count);

static void
sim_gnttab_close(struct xbd_gnttab *h)
{
    struct sim_gnttab *g = h->priv;
    size_t i;

    while (g->nmaps > 0)
        sim_gnttab_unmap(h, g->maps[g->nmaps - 1].addr, g->maps[g->nmaps - 1].count);
    for (i = 0; i < g->ndoms; i++)
        dom_unmap(&g->doms[i]);
    munmap(g->mt_hdr, sizeof(struct simp_maptrack_hdr) +
           SIMP_MAPTRACK_SLOTS * sizeof(struct simp_maptrack_slot));
    close(g->sock);
    free(g->mt_free);
    free(g->doms);
    free(g->maps);
    free(g);
}

static int
gntst_to_errno(int st)
{
    switch (st) {
    case GNTST_bad_domain: return ESRCH;
    case GNTST_bad_gntref: return EINVAL;
    case GNTST_no_space: return ENOSPC;
    default: return EPERM;
    }
}

static const char *
gntst_str(int st)
{
    static const char *const s[] = GNTTABOP_error_msgs;

    if (st > 0 || -st >= (int)(sizeof(s) / sizeof(s[0])))
        return "unknown grant status";
    return s[-st];
}

static int
sim_gnttab_map(struct xbd_gnttab *h, uint32_t domid, uint32_t count,
               const uint32_t *refs, int writable, void **addr_out)
{
    struct sim_gnttab *g = h->priv;
    struct sim_dom *d;
    struct sim_mapping *m;
    uint32_t *frames, *slots, i, j;
    uint8_t *base;
    int st = GNTST_okay, prot = PROT_READ | (writable ? PROT_WRITE : 0);

    if (count > 65536)
        return xbd_platform_fail(EINVAL, "grant map: %u references is too many", count);
    d = get_dom(g, domid);
    if (d == NULL)
        return -ESRCH;
    frames = calloc(count, sizeof(*frames));
    slots = calloc(count, sizeof(*slots));
    if (frames == NULL || slots == NULL) {
        free(frames);
        free(slots);
        return xbd_platform_fail(ENOMEM, "out of memory");
    }
    for (i = 0; i < count; i++) {
        st = pin(g, d, refs[i], writable != 0, &frames[i], &slots[i]);
        if (st != GNTST_okay)
            break;
    }
    if (st != GNTST_okay) {
        uint32_t bad = i;

        while (i-- > 0)
            unpin(g, slots[i]);
        free(frames);
        free(slots);
        return xbd_platform_fail(gntst_to_errno(st), "grant map of domain %u ref %u "
                                 "(%s): %s", domid, refs[bad],
                                 writable ? "writable" : "read-only", gntst_str(st));
    }
    /* Reserve the range, then place each run of consecutive frames in it. */
    base = mmap(NULL, (size_t)count * XBD_PAGE_SIZE, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    for (i = 0; base != MAP_FAILED && i < count; i = j) {
        for (j = i + 1; j < count && frames[j] == frames[j - 1] + 1; j++)
            ;
        if (mmap(base + (size_t)i * XBD_PAGE_SIZE, (size_t)(j - i) * XBD_PAGE_SIZE,
                 prot, MAP_SHARED | MAP_FIXED, d->memfd,
                 (off_t)frames[i] * XBD_PAGE_SIZE) == MAP_FAILED) {
            munmap(base, (size_t)count * XBD_PAGE_SIZE);
            base = MAP_FAILED;
        }
    }
    free(frames);
    if (g->nmaps == g->maps_cap && base != MAP_FAILED) {
        size_t cap = g->maps_cap ? g->maps_cap * 2 : 16;
        struct sim_mapping *nm = realloc(g->maps, cap * sizeof(*nm));

        if (nm == NULL) {
            munmap(base, (size_t)count * XBD_PAGE_SIZE);
            base = MAP_FAILED;
        } else {
            g->maps = nm;
            g->maps_cap = cap;
        }
    }
    if (base == MAP_FAILED) {
        for (i = 0; i < count; i++)
            unpin(g, slots[i]);
        free(slots);
        return xbd_platform_fail(ENOMEM, "grant map: cannot map %u pages", count);
    }
    m = &g->maps[g->nmaps++];
    m->addr = base;
    m->count = count;
    m->slots = slots;
    *addr_out = base;
    return 0;
}

static int
sim_gnttab_unmap(struct xbd_gnttab *h, void *addr, uint32_t count)
{
    struct sim_gnttab *g = h->priv;
    struct sim_mapping m;
    size_t i;
    uint32_t k;

    for (i = 0; i < g->nmaps; i++)
        if (g->maps[i].addr == addr && g->maps[i].count == count)
            break;
    if (i == g->nmaps)
        return xbd_platform_fail(EINVAL, "grant unmap: %p (%u pages) is not a "
                                 "grant mapping of this handle", addr, count);
    m = g->maps[i];
    g->maps[i] = g->maps[--g->nmaps];
    /* Unmap before unpinning: once the pin goes the guest may reuse the page. */
    munmap(m.addr, (size_t)m.count * XBD_PAGE_SIZE);
    for (k = 0; k < m.count; k++)
        unpin(g, m.slots[k]);
    free(m.slots);
    return 0;
}

/* Resolve one foreign side of a copy segment to a pointer, pinned. */
static int
copy_side(struct sim_gnttab *g, uint32_t ref, uint16_t off, uint16_t domid,
          uint16_t len, bool write, uint8_t **ptr, uint32_t *slot)
{
    struct sim_dom *d;
    uint32_t frame;
    int st;

    if ((uint32_t)off + len > XBD_PAGE_SIZE)
        return GNTST_bad_copy_arg;
    d = get_dom(g, domid);
    if (d == NULL)
        return GNTST_bad_domain;
    st = pin(g, d, ref, write, &frame, slot);
    if (st != GNTST_okay)
        return st;
    *ptr = d->mem + (size_t)frame * XBD_PAGE_SIZE + off;
    return GNTST_okay;
}

static int
sim_gnttab_copy(struct xbd_gnttab *h, uint32_t count, struct xbd_gnt_copy_seg *segs)
{
    struct sim_gnttab *g = h->priv;
    uint32_t i;

    for (i = 0; i < count; i++) {
        struct xbd_gnt_copy_seg *s = &segs[i];
        uint32_t sslot = UINT32_MAX, dslot = UINT32_MAX;
        uint8_t *src = NULL, *dst = NULL;
        int st = GNTST_okay;

        if (s->flags & ~(XBD_GNTCOPY_SOURCE_GREF | XBD_GNTCOPY_DEST_GREF)) {
            s->status = GNTST_bad_copy_arg;
            continue;
        }
        if (s->flags & XBD_GNTCOPY_SOURCE_GREF)
            st = copy_side(g, s->source.foreign.ref, s->source.foreign.offset,
                           s->source.foreign.domid, s->len, false, &src, &sslot);
        else
            src = s->source.virt;
        if (st == GNTST_okay) {
            if (s->flags & XBD_GNTCOPY_DEST_GREF)
                st = copy_side(g, s->dest.foreign.ref, s->dest.foreign.offset,
                               s->dest.foreign.domid, s->len, true, &dst, &dslot);
            else
                dst = s->dest.virt;
        }
        if (st == GNTST_okay && s->len)
            memmove(dst, src, s->len);
        if (dslot != UINT32_MAX)
            unpin(g, dslot);
        if (sslot != UINT32_MAX)
            unpin(g, sslot);
        s->status = (int16_t)st;
    }
    return 0;
}

/* ---- gntshr --------------------------------------------------------------- */

struct sim_share {
    void *addr;
    uint32_t count;
    uint32_t *refs;
};

struct sim_gntshr {
    int sock;
    int memfd;                  /* our own memory */
    struct sim_share *shares;
    size_t nshares, cap;
};

static int
sim_gntshr_open(struct xbd_gntshr *h)
{
    struct sim_gntshr *s = calloc(1, sizeof(*s));
    struct simp_hello_rep hello;
    int fds[2];

    if (s == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    s->sock = xbd_sim_connect(SIMP_ROLE_GNTSHR, &hello, fds);
    if (s->sock < 0) {
        int r = s->sock;

        free(s);
        return r;
    }
    /* The grant table (fds[1]) is ours to write as on Xen, but the sim
     * writes and ends our grants for us, as gntalloc does; we don't need it. */
    if (fds[1] >= 0)
        close(fds[1]);
    if (fds[0] < 0) {
        close(s->sock);
        free(s);
        return xbd_platform_fail(EPROTO, "xbd-sim did not send our memory");
    }
    s->memfd = fds[0];
    h->priv = s;
    return 0;
}

static int sim_gntshr_unshare(struct xbd_gntshr *h, void *addr, uint32_t count);

static void
sim_gntshr_close(struct xbd_gntshr *h)
{
    struct sim_gntshr *s = h->priv;
    size_t i;

    /* Closing the connection makes the sim end access to what is left,
     * deferred while the peer still uses it (as gntalloc does). */
    for (i = 0; i < s->nshares; i++) {
        munmap(s->shares[i].addr, (size_t)s->shares[i].count * XBD_PAGE_SIZE);
        free(s->shares[i].refs);
    }
    close(s->sock);
    close(s->memfd);
    free(s->shares);
    free(s);
}

static int
sim_gntshr_share(struct xbd_gntshr *h, uint32_t domid, uint32_t count,
                 int writable, uint32_t *refs_out, void **addr_out)
{
    struct sim_gntshr *s = h->priv;
    struct simp_share_req req = { domid, count, writable != 0 };
    uint32_t *rep, len, i, j, *frames;
    uint8_t *base;
    int fds[1], r;

    if (count > SIMP_SHARE_MAX)
        return xbd_platform_fail(EINVAL, "grant share: %u pages at once is more "
                                 "than %u", count, SIMP_SHARE_MAX);
    rep = malloc((size_t)count * 2 * sizeof(uint32_t));
    if (rep == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    r = xbd_sim_call(s->sock, SIMP_SHARE, &req, sizeof(req), rep,
                     count * 2 * sizeof(uint32_t), &len, fds, 0);
    if (r < 0) {
        free(rep);
        return r;
    }
    if (len != count * 2 * sizeof(uint32_t)) {
        free(rep);
        return xbd_platform_fail(EPROTO, "xbd-sim sent a malformed share reply");
    }
    frames = rep + count;
    if (s->nshares == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct sim_share *ns = realloc(s->shares, cap * sizeof(*ns));

        if (ns == NULL)
            goto undo;
        s->shares = ns;
        s->cap = cap;
    }
    base = mmap(NULL, (size_t)count * XBD_PAGE_SIZE, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        goto undo;
    for (i = 0; i < count; i = j) {
        for (j = i + 1; j < count && frames[j] == frames[j - 1] + 1; j++)
            ;
        if (mmap(base + (size_t)i * XBD_PAGE_SIZE, (size_t)(j - i) * XBD_PAGE_SIZE,
                 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->memfd,
                 (off_t)frames[i] * XBD_PAGE_SIZE) == MAP_FAILED) {
            munmap(base, (size_t)count * XBD_PAGE_SIZE);
            goto undo;
        }
    }
    s->shares[s->nshares].addr = base;
    s->shares[s->nshares].count = count;
    s->shares[s->nshares].refs = malloc(count * sizeof(uint32_t));
    if (s->shares[s->nshares].refs == NULL) {
        munmap(base, (size_t)count * XBD_PAGE_SIZE);
        goto undo;
    }
    memcpy(s->shares[s->nshares].refs, rep, count * sizeof(uint32_t));
    s->nshares++;
    memcpy(refs_out, rep, count * sizeof(uint32_t));
    free(rep);
    *addr_out = base;
    return 0;

undo:
    {
        /* Give the fresh grants back (nobody can have mapped them yet). */
        uint32_t *msg = malloc((count + 1) * sizeof(uint32_t));

        if (msg != NULL) {
            msg[0] = count;
            memcpy(msg + 1, rep, count * sizeof(uint32_t));
            xbd_sim_call(s->sock, SIMP_UNSHARE, msg, (count + 1) * sizeof(uint32_t),
                         NULL, 0, NULL, fds, 0);
            free(msg);
        }
    }
    free(rep);
    return xbd_platform_fail(ENOMEM, "grant share: out of memory mapping %u pages", count);
}

static int
sim_gntshr_unshare(struct xbd_gntshr *h, void *addr, uint32_t count)
{
    struct sim_gntshr *s = h->priv;
    struct sim_share *sh = NULL;
    uint32_t *msg;
    size_t i;
    int r, fds[1];

    for (i = 0; i < s->nshares; i++)
        if (s->shares[i].addr == addr && s->shares[i].count == count)
            sh = &s->shares[i];
    if (sh == NULL)
        return xbd_platform_fail(EINVAL, "grant unshare: %p (%u pages) was not "
                                 "shared by this handle", addr, count);
    msg = malloc((count + 1) * sizeof(uint32_t));
    if (msg == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    msg[0] = count;
    memcpy(msg + 1, sh->refs, count * sizeof(uint32_t));
    r = xbd_sim_call(s->sock, SIMP_UNSHARE, msg, (count + 1) * sizeof(uint32_t),
                     NULL, 0, NULL, fds, 0);
    free(msg);
    if (r < 0)
        return r;
    munmap(sh->addr, (size_t)count * XBD_PAGE_SIZE);
    free(sh->refs);
    *sh = s->shares[--s->nshares];
    return 0;
}

/* ---- Event channels --------------------------------------------------------
 *
 * The handle's fd is an epoll fd over the receive eventfds of its ports,
 * each registered EPOLLONESHOT: delivery disarms it (= masked), unmask
 * re-arms it, and an event that came while masked is still counted in the
 * eventfd, so the epoll fd is readable again at once.
 */

struct sim_port {
    int rx, tx;                 /* -1 when the port is not ours */
};

struct sim_evtchn {
    int sock;
    int epfd;
    struct sim_port *ports;
    uint32_t nports;
};

static int
sim_evtchn_open(struct xbd_evtchn *h)
{
    struct sim_evtchn *e = calloc(1, sizeof(*e));
    struct simp_hello_rep hello;
    int fds[2];

    if (e == NULL)
        return xbd_platform_fail(ENOMEM, "out of memory");
    e->sock = xbd_sim_connect(SIMP_ROLE_EVTCHN, &hello, fds);
    if (e->sock < 0) {
        int r = e->sock;

        free(e);
        return r;
    }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) {
        int r = errno;

        close(e->sock);
        free(e);
        return xbd_platform_fail(r, "epoll_create1: %s", strerror(r));
    }
    h->priv = e;
    return 0;
}

static void
sim_evtchn_close(struct xbd_evtchn *h)
{
    struct sim_evtchn *e = h->priv;
    uint32_t i;

    for (i = 0; i < e->nports; i++) {
        if (e->ports[i].rx >= 0) {
            close(e->ports[i].rx);
            close(e->ports[i].tx);
        }
    }
    close(e->epfd);
    close(e->sock);     /* the sim closes our ports */
    free(e->ports);
    free(e);
}

static int sim_evtchn_fd(struct xbd_evtchn *h) { return ((struct sim_evtchn *)h->priv)->epfd; }

static int
add_port(struct sim_evtchn *e, uint32_t port, int fds[2])
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u32 = port };

    if (port >= e->nports) {
        uint32_t n = port + 1 > 2 * e->nports ? port + 1 : 2 * e->nports, i;
        struct sim_port *np = realloc(e->ports, n * sizeof(*np));

        if (np == NULL)
            goto fail;
        for (i = e->nports; i < n; i++)
            np[i].rx = np[i].tx = -1;
        e->ports = np;
        e->nports = n;
    }
    if (e->ports[port].rx >= 0 || epoll_ctl(e->epfd, EPOLL_CTL_ADD, fds[0], &ev) < 0)
        goto fail;
    e->ports[port].rx = fds[0];
    e->ports[port].tx = fds[1];
    return (int)port;
fail:
    close(fds[0]);
    close(fds[1]);
    xbd_sim_call(e->sock, SIMP_EVTCHN_UNBIND, &port, sizeof(port), NULL, 0, NULL, NULL, 0);
    return xbd_platform_fail(ENOMEM, "event channel: cannot track port %u", port);
}

static int
bind_common(struct xbd_evtchn *h, uint32_t op, const uint32_t *req, uint32_t req_len)
{
    struct sim_evtchn *e = h->priv;
    uint32_t port, len;
    int fds[2], r;

    r = xbd_sim_call(e->sock, op, req, req_len, &port, sizeof(port), &len, fds, 2);
    if (r < 0)
        return r;
    if (len != sizeof(port) || fds[0] < 0 || fds[1] < 0 || port > INT32_MAX) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return xbd_platform_fail(EPROTO, "xbd-sim sent a malformed bind reply");
    }
    return add_port(e, port, fds);
}

static int
sim_evtchn_bind_unbound(struct xbd_evtchn *h, uint32_t remote_domid)
{
    return bind_common(h, SIMP_EVTCHN_ALLOC, &remote_domid, sizeof(remote_domid));
}

static int
sim_evtchn_bind_interdomain(struct xbd_evtchn *h, uint32_t remote_domid,
                            uint32_t remote_port)
{
    uint32_t req[2] = { remote_domid, remote_port };

    return bind_common(h, SIMP_EVTCHN_BIND, req, sizeof(req));
}

static struct sim_port *
our_port(struct sim_evtchn *e, uint32_t port)
{
    if (port >= e->nports || e->ports[port].rx < 0) {
        xbd_platform_fail(EINVAL, "event channel port %u is not bound here", port);
        return NULL;
    }
    return &e->ports[port];
}

static int
sim_evtchn_notify(struct xbd_evtchn *h, uint32_t port)
{
    struct sim_port *p = our_port(h->priv, port);
    uint64_t one = 1;

    if (p == NULL)
        return -EINVAL;
    /* Nonblocking in effect: an eventfd only blocks at a count of 2^64-2.
     * If the peer is gone nobody reads it, which is Xen's "succeeds and
     * does nothing". */
    if (write(p->tx, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return xbd_platform_fail(errno, "event channel notify: %s", strerror(errno));
    return 0;
}

static int
sim_evtchn_pending(struct xbd_evtchn *h)
{
    struct sim_evtchn *e = h->priv;
    struct epoll_event ev;
    uint64_t v;
    int n;

    do
        n = epoll_wait(e->epfd, &ev, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return xbd_platform_fail(errno, "event channel pending: %s", strerror(errno));
    if (n == 0)
        return -EAGAIN;
    /* Now masked (one-shot); clear the count. */
    if (ev.data.u32 < e->nports && e->ports[ev.data.u32].rx >= 0)
        (void)!read(e->ports[ev.data.u32].rx, &v, sizeof(v));
    return (int)ev.data.u32;
}

static int
sim_evtchn_unmask(struct xbd_evtchn *h, uint32_t port)
{
    struct sim_evtchn *e = h->priv;
    struct sim_port *p = our_port(e, port);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u32 = port };

    if (p == NULL)
        return -EINVAL;
    if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, p->rx, &ev) < 0)
        return xbd_platform_fail(errno, "event channel unmask: %s", strerror(errno));
    return 0;
}

static int
sim_evtchn_unbind(struct xbd_evtchn *h, uint32_t port)
{
    struct sim_evtchn *e = h->priv;
    struct sim_port *p = our_port(e, port);

    if (p == NULL)
        return -EINVAL;
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, p->rx, NULL);
    close(p->rx);
    close(p->tx);
    p->rx = p->tx = -1;
    return xbd_sim_call(e->sock, SIMP_EVTCHN_UNBIND, &port, sizeof(port),
                        NULL, 0, NULL, NULL, 0);
}

const struct xbd_platform_ops xbd_platform_sim_ops = {
    .name = "sim",
    .open = sim_open,
    .close = sim_close,
    .gnttab_open = sim_gnttab_open,
    .gnttab_close = sim_gnttab_close,
    .gnttab_map = sim_gnttab_map,
    .gnttab_unmap = sim_gnttab_unmap,
    .gnttab_copy = sim_gnttab_copy,
    .gntshr_open = sim_gntshr_open,
    .gntshr_close = sim_gntshr_close,
    .gntshr_share = sim_gntshr_share,
    .gntshr_unshare = sim_gntshr_unshare,
    .evtchn_open = sim_evtchn_open,
    .evtchn_close = sim_evtchn_close,
    .evtchn_fd = sim_evtchn_fd,
    .evtchn_bind_unbound = sim_evtchn_bind_unbound,
    .evtchn_bind_interdomain = sim_evtchn_bind_interdomain,
    .evtchn_notify = sim_evtchn_notify,
    .evtchn_pending = sim_evtchn_pending,
    .evtchn_unmask = sim_evtchn_unmask,
    .evtchn_unbind = sim_evtchn_unbind,
};
