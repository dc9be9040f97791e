/* Wire tests: the real libxenstore against the sim's xenstore daemon.
 *
 * Starts ./xs-testd (dom0 plus guests 5 and 7) in a private directory and
 * talks to it through XENSTORED_PATH, then speaks raw xs_wire.h to check
 * what libxenstore never sends (bad headers, unknown types, a client that
 * never reads).
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>
#include <xen/io/xs_wire.h>

#include "tap.h"

static char dir[64];
static pid_t daemon_pid;

static void
stop_daemon(void)
{
    char cmd[128];

    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (dir[0])
        (void)!system(cmd);
}

static void
start_daemon(void)
{
    char ready[128];
    struct stat sb;
    const char *bd = getenv("builddir");
    char prog[4096];

    snprintf(dir, sizeof(dir), "/tmp/xbd-xswire.XXXXXX");
    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp: %s", strerror(errno));
    snprintf(prog, sizeof(prog), "%s/xs-testd", bd ? bd : ".");
    daemon_pid = fork();
    if (daemon_pid == 0) {
        execl(prog, "xs-testd", dir, "5", "7", (char *)NULL);
        _exit(127);
    }
    atexit(stop_daemon);
    snprintf(ready, sizeof(ready), "%s/ready", dir);
    for (int i = 0; i < 200; i++) {      /* 10 s */
        if (stat(ready, &sb) == 0)
            return;
        if (waitpid(daemon_pid, NULL, WNOHANG) == daemon_pid) {
            daemon_pid = 0;
            bail_out("xs-testd exited early");
        }
        usleep(50000);
    }
    bail_out("xs-testd not ready after 10 s");
}

static struct xs_handle *
open_as(unsigned int domid)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/dom%u.sock", dir, domid);
    setenv("XENSTORED_PATH", path, 1);
    return xs_open(0);
}

/* Wait (5 s at most) for a watch event and check it. */
static int
expect_event(struct xs_handle *h, const char *path, const char *token)
{
    struct pollfd pfd = { .fd = xs_fileno(h), .events = POLLIN };
    unsigned int n;
    char **v;
    int good;

    if (poll(&pfd, 1, 5000) != 1)
        return 0;
    v = xs_read_watch(h, &n);
    if (v == NULL)
        return 0;
    good = n >= 2 && strcmp(v[XS_WATCH_PATH], path) == 0 &&
           strcmp(v[XS_WATCH_TOKEN], token) == 0;
    if (!good)
        diag("event %s %s, want %s %s", v[0], n >= 2 ? v[1] : "?", path,
             token);
    free(v);
    return good;
}

static int
rd_is(struct xs_handle *h, xs_transaction_t t, const char *path,
      const char *want)
{
    unsigned int len;
    char *v = xs_read(h, t, path, &len);
    int good = v != NULL && strlen(want) == len && memcmp(v, want, len) == 0;

    free(v);
    return good;
}

/* ---- raw protocol helpers ------------------------------------------------ */

static int
raw_connect(unsigned int domid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/dom%u.sock", dir, domid);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        bail_out("raw connect: %s", strerror(errno));
    return fd;
}

static int
raw_send(int fd, uint32_t type, uint32_t req_id, uint32_t len,
         const void *payload, size_t plen)
{
    struct xsd_sockmsg h = { .type = type, .req_id = req_id, .len = len };

    if (write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h))
        return -1;
    if (plen && write(fd, payload, plen) != (ssize_t)plen)
        return -1;
    return 0;
}

/* Read one reply (5 s timeout).  Returns payload length or -1 (closed). */
static int
raw_recv(int fd, struct xsd_sockmsg *h, char *buf, size_t bufsz)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    size_t got = 0;

    while (got < sizeof(*h)) {
        ssize_t n;
        if (poll(&pfd, 1, 5000) != 1)
            return -1;
        n = read(fd, (char *)h + got, sizeof(*h) - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    if (h->len > bufsz)
        return -1;
    got = 0;
    while (got < h->len) {
        ssize_t n;
        if (poll(&pfd, 1, 5000) != 1)
            return -1;
        n = read(fd, buf + got, h->len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return (int)h->len;
}

/* ---- tests --------------------------------------------------------------- */

static void
test_basic(struct xs_handle *h)
{
    unsigned int n;
    char **d;

    ok(xs_write(h, XBT_NULL, "/t/a/b", "hello", 5), "write");
    ok(rd_is(h, XBT_NULL, "/t/a/b", "hello"), "read back");
    ok(xs_mkdir(h, XBT_NULL, "/t/m"), "mkdir");
    ok(rd_is(h, XBT_NULL, "/t/m", ""), "mkdir'd node is empty");
    d = xs_directory(h, XBT_NULL, "/t", &n);
    ok(d != NULL && n == 2 && strcmp(d[0], "a") == 0 &&
       strcmp(d[1], "m") == 0, "directory");
    free(d);
    ok(xs_rm(h, XBT_NULL, "/t/a"), "rm");
    errno = 0;
    ok(xs_read(h, XBT_NULL, "/t/a/b", &n) == NULL && errno == ENOENT,
       "removed node: ENOENT");
    ok(xs_rm(h, XBT_NULL, "/t/gone"), "rm of missing node with parent: ok");
    errno = 0;
    ok(!xs_write(h, XBT_NULL, "/bad//path", "x", 1) && errno == EINVAL,
       "bad path: EINVAL");
}

static void
test_perms(struct xs_handle *h)
{
    struct xs_permissions set[2] = {
        { .id = 0, .perms = XS_PERM_NONE },
        { .id = 5, .perms = XS_PERM_READ },
    };
    struct xs_permissions *got;
    unsigned int n;

    xs_write(h, XBT_NULL, "/p", "v", 1);
    ok(xs_set_permissions(h, XBT_NULL, "/p", set, 2), "set_permissions");
    got = xs_get_permissions(h, XBT_NULL, "/p", &n);
    ok(got != NULL && n == 2 && got[0].id == 0 &&
       got[0].perms == XS_PERM_NONE && got[1].id == 5 &&
       got[1].perms == XS_PERM_READ, "get_permissions returns them");
    free(got);
}

static void
test_guest(struct xs_handle *h0)
{
    struct xs_handle *g = open_as(5);
    unsigned int n;
    char *v;

    ok(g != NULL, "guest 5 connects on its socket");
    if (g == NULL)
        return;
    ok(rd_is(g, XBT_NULL, "/local/domain/5/name", "guest5"),
       "guest reads its own name");
    ok(xs_write(g, XBT_NULL, "data/x", "1", 1), "guest writes relative path");
    ok(rd_is(h0, XBT_NULL, "/local/domain/5/data/x", "1"),
       "relative path resolved under /local/domain/5");
    errno = 0;
    v = xs_read(g, XBT_NULL, "/local/domain/7/name", &n);
    ok(v == NULL && errno == EACCES, "guest refused another guest's node");
    free(v);
    errno = 0;
    ok(!xs_write(g, XBT_NULL, "/local/domain/7/name", "x", 1) &&
       errno == EACCES, "guest cannot write another guest's node");
    xs_write(h0, XBT_NULL, "/local/domain/0/backend/secret", "s", 1);
    errno = 0;
    v = xs_read(g, XBT_NULL, "/local/domain/0/backend/secret", &n);
    ok(v == NULL && errno == EACCES, "guest refused backend private node");
    free(v);
    ok(rd_is(g, XBT_NULL, "/p", "v"), "guest reads a node shared r5");
    errno = 0;
    ok(!xs_write(g, XBT_NULL, "/p", "x", 1) && errno == EACCES,
       "read-only share refuses writes");
    xs_close(g);
}

static void
test_watch(struct xs_handle *h)
{
    struct xs_handle *g;

    ok(xs_watch(h, "/wt", "tok"), "watch");
    ok(expect_event(h, "/wt", "tok"), "initial fire via xs_read_watch");
    xs_write(h, XBT_NULL, "/wt/a", "1", 1);
    ok(expect_event(h, "/wt/a", "tok"), "event for a write below");
    xs_rm(h, XBT_NULL, "/wt");
    ok(expect_event(h, "/wt", "tok"), "event for rm");
    ok(xs_unwatch(h, "/wt", "tok"), "unwatch");

    /* Relative watch from a guest. */
    g = open_as(7);
    ok(g && xs_watch(g, "device", "rel"), "guest relative watch");
    ok(g && expect_event(g, "device", "rel"), "relative initial fire");
    xs_write(h, XBT_NULL, "/local/domain/7/device/vbd", "", 0);
    ok(g && expect_event(g, "device/vbd", "rel"), "relative event path");
    if (g)
        xs_close(g);

    /* @releaseDomain on RELEASE. */
    ok(xs_watch(h, "@releaseDomain", "rel"), "watch @releaseDomain");
    ok(expect_event(h, "@releaseDomain", "rel"), "its initial fire");
    ok(xs_is_domain_introduced(h, 7), "7 introduced");
    ok(xs_release_domain(h, 7), "release 7");
    ok(expect_event(h, "@releaseDomain", "rel"), "@releaseDomain fired");
    ok(!xs_is_domain_introduced(h, 7), "7 no longer introduced");
    ok(!xs_is_domain_introduced(h, 6), "6 never introduced");
    ok(xs_unwatch(h, "@releaseDomain", "rel"), "unwatch @releaseDomain");

    /* INTRODUCE over the wire (as a toolstack does) fires @introduceDomain. */
    ok(xs_watch(h, "@introduceDomain", "intro"), "watch @introduceDomain");
    ok(expect_event(h, "@introduceDomain", "intro"), "its initial fire");
    ok(xs_introduce_domain(h, 9, 0, 0), "introduce 9 over the wire");
    ok(expect_event(h, "@introduceDomain", "intro"), "@introduceDomain fired");
    ok(xs_is_domain_introduced(h, 9), "9 now introduced");
    ok(xs_unwatch(h, "@introduceDomain", "intro"), "unwatch");
    g = open_as(5);
    errno = 0;
    ok(g && !xs_introduce_domain(g, 11, 0, 0) && errno == EACCES,
       "a guest may not INTRODUCE");
    errno = 0;
    ok(g && !xs_release_domain(g, 9) && errno == EACCES,
       "a guest may not RELEASE");
    if (g)
        xs_close(g);
}

static void
test_transactions(struct xs_handle *h1)
{
    struct xs_handle *h2 = open_as(0);
    xs_transaction_t t;
    unsigned int n;
    char *v;

    ok(h2 != NULL, "second dom0 handle");
    xs_write(h1, XBT_NULL, "/c", "0", 1);
    t = xs_transaction_start(h1);
    ok(t != XBT_NULL, "transaction start");
    ok(xs_write(h1, t, "/c", "1", 1), "write in transaction");
    ok(rd_is(h2, XBT_NULL, "/c", "0"), "not visible outside before commit");
    ok(xs_transaction_end(h1, t, false), "commit");
    ok(rd_is(h2, XBT_NULL, "/c", "1"), "visible after commit");

    t = xs_transaction_start(h1);
    v = xs_read(h1, t, "/c", &n);
    free(v);
    xs_write(h1, t, "/c2", "x", 1);
    xs_write(h2, XBT_NULL, "/c", "other", 5);
    errno = 0;
    ok(!xs_transaction_end(h1, t, false) && errno == EAGAIN,
       "conflicting commit: EAGAIN");
    errno = 0;
    v = xs_read(h2, XBT_NULL, "/c2", &n);
    ok(v == NULL && errno == ENOENT, "nothing of it applied");
    free(v);

    t = xs_transaction_start(h1);
    xs_write(h1, t, "/c3", "x", 1);
    ok(xs_transaction_end(h1, t, true), "abort");
    ok(!rd_is(h2, XBT_NULL, "/c3", "x"), "aborted write not applied");
    if (h2)
        xs_close(h2);
}

/* What libxbdfront does on connect and on reconnect, as guest 5 in the
 * device directory the toolstack made for it: one transaction that
 * creates queue-N/ (missing at first), then one that removes queue-0/ and
 * writes it anew.  Each must commit at the first attempt: nothing else
 * touches these nodes. */
static int
fe_tx(struct xs_handle *g, bool rm_first)
{
    static const char fe[] = "/local/domain/5/device/vbd/51712";
    static const char *const keys[] = {
        "multi-queue-num-queues", "queue-0/ring-ref", "queue-0/event-channel",
        "queue-1/ring-ref", "queue-1/event-channel", "state",
    };
    char path[128];
    xs_transaction_t t = xs_transaction_start(g);
    bool good = t != XBT_NULL;

    if (good && rm_first) {
        snprintf(path, sizeof(path), "%s/queue-0", fe);
        good = xs_rm(g, t, path);
    }
    for (size_t i = 0; good && i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", fe, keys[i]);
        good = xs_write(g, t, path, "3", 1);
    }
    if (t == XBT_NULL)
        return -1;
    if (!good) {
        xs_transaction_end(g, t, true);
        return -1;
    }
    errno = 0;
    return xs_transaction_end(g, t, false) ? 0 : -errno;
}

static void
test_tx_frontend_layout(struct xs_handle *h0)
{
    struct xs_handle *g = open_as(5);
    struct xs_permissions fe_perms[2] = {
        { .id = 5, .perms = XS_PERM_NONE }, { .id = 0, .perms = XS_PERM_READ },
    };
    static const char fe[] = "/local/domain/5/device/vbd/51712";

    ok(g != NULL, "guest 5 connects");
    if (g == NULL)
        return;
    xs_mkdir(h0, XBT_NULL, fe);
    xs_set_permissions(h0, XBT_NULL, fe, fe_perms, 2);
    xs_write(h0, XBT_NULL, "/local/domain/5/device/vbd/51712/state", "1", 1);
    is_int(fe_tx(g, false), 0,
           "guest tx creating the missing queue-N/ parents commits");
    ok(rd_is(h0, XBT_NULL, "/local/domain/5/device/vbd/51712/queue-1/"
             "event-channel", "3"), "its nodes are there");
    is_int(fe_tx(g, true), 0,
           "guest tx removing and rewriting queue-0/ commits");
    ok(rd_is(h0, XBT_NULL, "/local/domain/5/device/vbd/51712/queue-0/"
             "ring-ref", "3"), "queue-0/ring-ref rewritten");
    xs_rm(h0, XBT_NULL, "/local/domain/5/device");
    xs_close(g);
}

static void
test_domain_calls(struct xs_handle *h)
{
    char *p = xs_get_domain_path(h, 5);

    ok(p && strcmp(p, "/local/domain/5") == 0, "get_domain_path");
    free(p);
    ok(xs_is_domain_introduced(h, 5), "is_domain_introduced 5");
    ok(xs_is_domain_introduced(h, 0), "dom0 introduced");
}

static void
test_big_directory(struct xs_handle *h)
{
    char path[128];
    unsigned int n;
    char **d;
    int good = 1;

    /* 300 names of ~40 bytes: ~12 KiB, three DIRECTORY_PART chunks. */
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof(path),
                 "/big/child-with-a-rather-long-name-%05d", i);
        if (!xs_write(h, XBT_NULL, path, "", 0))
            good = 0;
    }
    ok(good, "created 300 children");
    d = xs_directory(h, XBT_NULL, "/big", &n);
    ok(d != NULL && n == 300, "xs_directory over the payload limit: %u", n);
    for (unsigned int i = 0; d && i < n; i++) {
        snprintf(path, sizeof(path), "child-with-a-rather-long-name-%05u", i);
        if (strcmp(d[i], path) != 0)
            good = 0;
    }
    ok(d && good, "all names, in order (DIRECTORY_PART fallback)");
    free(d);
    ok(xs_rm(h, XBT_NULL, "/big"), "rm big");
}

static void
test_raw(struct xs_handle *h)
{
    struct xsd_sockmsg rh;
    char buf[XENSTORE_PAYLOAD_MAX + 1];
    int fd, n, good;

    fd = raw_connect(0);
    raw_send(fd, 999, 42, 0, NULL, 0);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_ERROR && rh.req_id == 42 &&
       strcmp(buf, "ENOSYS") == 0, "unknown type: XS_ERROR ENOSYS");
    raw_send(fd, XS_READ, 43, 8, "/nohere", 8);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_ERROR && rh.req_id == 43 &&
       strcmp(buf, "ENOENT") == 0, "error reply carries the errno name");
    raw_send(fd, XS_READ, 44, 7, "/local", 7);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n == 0 && rh.type == XS_READ && rh.req_id == 44,
       "reply echoes type and req_id");
    raw_send(fd, XS_READ, 45, 7, "/lo\0al", 7);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_ERROR && strcmp(buf, "EINVAL") == 0,
       "two strings where one is due: EINVAL");
    raw_send(fd, XS_READ, 46, XENSTORE_PAYLOAD_MAX + 1, NULL, 0);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n < 0, "payload length over the limit: disconnected");
    close(fd);

    /* A client that floods requests and never reads its replies. */
    fd = raw_connect(0);
    {
        struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
        int sent = 0;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        for (int i = 0; i < 200000; i++) {
            if (raw_send(fd, XS_READ, (uint32_t)i, 7, "/local", 7) < 0)
                break;
            sent++;
        }
        diag("flooder sent %d requests before the daemon pushed back", sent);
        ok(sent < 200000, "the daemon stops reading from a client that "
           "does not read its replies");
    }
    good = rd_is(h, XBT_NULL, "/c", "other");
    ok(good, "daemon still serves others during the flood");
    close(fd);
    ok(rd_is(h, XBT_NULL, "/c", "other"), "and after the flooder left");

    /* A watcher that never reads while events pile up: the daemon drops
     * events beyond the per-connection queue limit instead of growing. */
    fd = raw_connect(0);
    raw_send(fd, XS_WATCH, 60, 6, "/\0tok", 6);
    good = 1;
    for (int i = 0; i < 3000 && good; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/flood/n%d", i % 50);
        good = xs_write(h, XBT_NULL, p, "x", 1);
    }
    ok(good, "3000 writes fire events at a watcher that never reads");
    close(fd);
    ok(xs_rm(h, XBT_NULL, "/flood"), "daemon fine after the event flood");

    /* Garbage on the socket: errors or a disconnect, never a crash. */
    fd = raw_connect(0);
    {
        unsigned int seed = 12345;
        unsigned char junk[8192];
        for (size_t i = 0; i < sizeof(junk); i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (unsigned char)(seed >> 16);
        }
        (void)!send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
    }
    close(fd);
    ok(rd_is(h, XBT_NULL, "/c", "other"), "daemon fine after garbage");

    /* Pipelining past the reply queue limit: the daemon pauses reading,
     * then resumes as the client drains; every request gets its reply, in
     * order. */
    {
        /* Large replies, so the queue limits are reached quickly. */
        static char val[4000];
        memset(val, 'v', sizeof(val));
        xs_write(h, XBT_NULL, "/bigval", val, sizeof(val));
    }
    fd = raw_connect(0);
    {
        enum { NREQ = 5000 };
        static unsigned char out[NREQ * 24];
        size_t outlen = 0, outoff = 0, inlen = 0;
        static unsigned char in[64 * 1024];
        int replies = 0, inorder = 1;
        for (int i = 0; i < NREQ; i++) {
            struct xsd_sockmsg q = { .type = XS_READ, .req_id = (uint32_t)i,
                                     .len = 8 };
            memcpy(out + outlen, &q, sizeof(q));
            memcpy(out + outlen + sizeof(q), "/bigval", 8);
            outlen += sizeof(q) + 8;
        }
        /* Send all the socket takes before reading anything. */
        for (;;) {
            ssize_t w = send(fd, out + outoff, outlen - outoff,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w <= 0)
                break;
            outoff += (size_t)w;
        }
        usleep(100000);   /* let the daemon fill its queue (not a check) */
        while (replies < NREQ) {
            struct pollfd pfd = { .fd = fd, .events = POLLIN |
                                  (outoff < outlen ? POLLOUT : 0) };
            if (poll(&pfd, 1, 5000) != 1)
                break;
            if (pfd.revents & POLLOUT) {
                ssize_t w = send(fd, out + outoff, outlen - outoff,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0)
                    outoff += (size_t)w;
            }
            if (pfd.revents & POLLIN) {
                ssize_t r = recv(fd, in + inlen, sizeof(in) - inlen,
                                 MSG_DONTWAIT);
                if (r <= 0)
                    break;
                inlen += (size_t)r;
                while (inlen >= sizeof(rh)) {
                    memcpy(&rh, in, sizeof(rh));
                    if (inlen < sizeof(rh) + rh.len)
                        break;
                    if (rh.type != XS_READ || rh.req_id != (uint32_t)replies ||
                        rh.len != 4000)
                        inorder = 0;
                    replies++;
                    memmove(in, in + sizeof(rh) + rh.len,
                            inlen - sizeof(rh) - rh.len);
                    inlen -= sizeof(rh) + rh.len;
                }
            }
        }
        is_int(replies, NREQ, "5000 pipelined 4 KB reads: all answered");
        ok(inorder, "replies complete and in request order");
    }
    close(fd);
    xs_rm(h, XBT_NULL, "/bigval");

    /* Header checks in xenstored's order. */
    fd = raw_connect(0);
    {
        struct xsd_sockmsg th = { .type = XS_READ, .req_id = 80,
                                  .tx_id = 9999, .len = 7 };
        (void)!write(fd, &th, sizeof(th));
        (void)!write(fd, "/local", 7);
        n = raw_recv(fd, &rh, buf, sizeof(buf));
        ok(n > 0 && rh.type == XS_ERROR && rh.tx_id == 9999 &&
           strcmp(buf, "ENOENT") == 0, "unknown transaction id: ENOENT");
    }
    close(fd);
    fd = raw_connect(5);
    raw_send(fd, XS_IS_DOMAIN_INTRODUCED, 81, 2, "5", 2);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_ERROR && strcmp(buf, "EACCES") == 0,
       "IS_DOMAIN_INTRODUCED is privileged: EACCES for a guest");
    raw_send(fd, XS_CONTROL, 82, 5, "help", 5);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_ERROR && strcmp(buf, "EACCES") == 0,
       "CONTROL is privileged");
    raw_send(fd, XS_GET_DOMAIN_PATH, 83, 2, "5", 2);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 0 && rh.type == XS_GET_DOMAIN_PATH &&
       strcmp(buf, "/local/domain/5") == 0, "GET_DOMAIN_PATH for a guest");
    close(fd);

    /* RESET_WATCHES drops the connection's watches. */
    fd = raw_connect(0);
    raw_send(fd, XS_WATCH, 70, 8, "/rw\0tok", 8);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n == 3 && rh.type == XS_WATCH && rh.req_id == 70,
       "raw WATCH: OK comes first");
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n == 8 && rh.type == XS_WATCH_EVENT && rh.req_id == 0 &&
       memcmp(buf, "/rw\0tok\0", 8) == 0,
       "then the initial WATCH_EVENT: path NUL token NUL");
    raw_send(fd, XS_RESET_WATCHES, 71, 1, "", 1);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n == 3 && rh.type == XS_RESET_WATCHES, "RESET_WATCHES: OK");
    xs_write(h, XBT_NULL, "/rw", "x", 1);
    raw_send(fd, XS_READ, 72, 4, "/rw", 4);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n == 1 && rh.type == XS_READ && rh.req_id == 72,
       "no event after RESET_WATCHES: the next message is the READ reply");
    close(fd);
    xs_rm(h, XBT_NULL, "/rw");

    /* A client that leaves in the middle of a transaction. */
    fd = raw_connect(0);
    raw_send(fd, XS_TRANSACTION_START, 50, 1, "", 1);
    n = raw_recv(fd, &rh, buf, sizeof(buf));
    ok(n > 1 && rh.type == XS_TRANSACTION_START, "raw transaction start");
    if (n > 1) {
        struct xsd_sockmsg wh = { .type = XS_WRITE, .req_id = 51,
                                  .tx_id = (uint32_t)strtoul(buf, NULL, 10),
                                  .len = 11 };
        (void)!write(fd, &wh, sizeof(wh));
        (void)!write(fd, "/txleft\0abc", 11);
        n = raw_recv(fd, &rh, buf, sizeof(buf));
        ok(n == 3 && rh.type == XS_WRITE && rh.tx_id == wh.tx_id,
           "write in the transaction: OK, tx_id echoed");
    }
    close(fd);
    {
        unsigned int len;
        char *v;
        errno = 0;
        v = xs_read(h, XBT_NULL, "/txleft", &len);
        ok(v == NULL && errno == ENOENT,
           "a disconnected client's transaction is discarded");
        free(v);
    }
}

int
main(void)
{
    struct xs_handle *h;

    signal(SIGPIPE, SIG_IGN);
    alarm(120);       /* a hang is a failure, not a stuck `make check` */
    start_daemon();
    h = open_as(0);
    if (h == NULL)
        bail_out("xs_open on dom0's socket: %s", strerror(errno));
    test_basic(h);
    test_perms(h);
    test_guest(h);
    test_watch(h);
    test_transactions(h);
    test_tx_frontend_layout(h);
    test_domain_calls(h);
    test_big_directory(h);
    test_raw(h);
    {
        /* xs_server_release (xs-testd does it on SIGUSR1 for domain 7):
         * the domain's connections close, its socket and tree go. */
        struct xsd_sockmsg rh;
        char buf[64], path[128];
        struct stat sb;
        unsigned int len;
        char *v;
        int fd = raw_connect(7);
        raw_send(fd, XS_GET_DOMAIN_PATH, 90, 2, "7", 2);
        ok(raw_recv(fd, &rh, buf, sizeof(buf)) > 0,
           "guest 7 connected before its destruction");
        kill(daemon_pid, SIGUSR1);
        ok(raw_recv(fd, &rh, buf, sizeof(buf)) < 0,
           "xs_server_release closes the domain's connection");
        close(fd);
        snprintf(path, sizeof(path), "%s/dom7.sock", dir);
        ok(stat(path, &sb) < 0 && errno == ENOENT,
           "and removes its socket");
        errno = 0;
        v = xs_read(h, XBT_NULL, "/local/domain/7/name", &len);
        ok(v == NULL && errno == ENOENT, "and its tree");
        free(v);
    }
    xs_close(h);
    {
        int status = -1;
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, &status, 0);
        daemon_pid = 0;
        /* Under ASan, LeakSanitizer makes a leaking daemon exit non-zero. */
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "xs-testd exits cleanly on SIGTERM (status %d)", status);
    }
    return done_testing();
}
