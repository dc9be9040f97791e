/* xbd-backd — the control socket: a unix stream socket where xbdctl asks
 * one-line questions and gets one JSON document back.
 *
 *   "status\n"   every device: kind, domid, devid, state, backing,
 *                negotiated ring pages, queues, indirect, persistent,
 *                protocol, last error
 *   "stats\n"    the same plus per-queue counters and their totals
 *   anything else: {"error":"..."}
 *
 * The reply ends with a newline and the daemon closes the connection.
 * Clients are served from the control thread's poll loop without blocking:
 * sockets are non-blocking, a client has a few seconds to send its line,
 * and at most MAX_CLIENTS are served at once (more wait in the backlog).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "backd.h"

#define MAX_CLIENTS 8
#define LINE_MAX_BYTES 128
#define CLIENT_TIMEOUT_S 5

struct client {
    int fd;                         /* -1: free slot */
    char in[LINE_MAX_BYTES];
    size_t inlen;
    char *out;                      /* the reply, once computed */
    size_t outlen, outoff;
    time_t since;
};

struct xbd_control {
    int fd;
    bool published;                     /* path links to the socket */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* bound here first */
    struct client c[MAX_CLIENTS];
};

void
xbd_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int
mkdir_parent(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

struct xbd_control *
xbd_control_open(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct xbd_control *c;
    char tmp[sizeof(sa.sun_path)];
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        snprintf(err, errlen, "control socket path %s: too long (with the .PID suffix it "
                 "has while the daemon starts, it must fit in %zu bytes)", path,
                 sizeof(sa.sun_path) - 1);
        return NULL;
    }
    strcpy(sa.sun_path, path);
    r = mkdir_parent(path);
    if (r < 0) {
        snprintf(err, errlen, "control socket %s: cannot create its directory: %s",
                 path, strerror(-r));
        return NULL;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    /* Another daemon answering there?  Then it is not ours to remove. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        snprintf(err, errlen, "another xbd-backd answers on %s", path);
        close(fd);
        return NULL;
    }
    close(fd);
    unlink(path);                       /* a stale socket of a dead daemon */
    /* Bound and listening under a private name; xbd_control_publish gives
     * it the real one once the daemon is ready, so that a client (or a
     * script waiting for the socket) never finds a half-started daemon. */
    strcpy(sa.sun_path, tmp);
    unlink(tmp);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(tmp, 0660) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "control socket %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        unlink(tmp);
        return NULL;
    }
    c->fd = fd;
    strcpy(c->path, path);
    strcpy(c->tmp, tmp);
    for (int i = 0; i < MAX_CLIENTS; i++)
        c->c[i].fd = -1;
    return c;
}

int
xbd_control_publish(struct xbd_control *c, char *err, size_t errlen)
{
    /* link, not rename: it fails if another daemon published meanwhile. */
    if (link(c->tmp, c->path) < 0) {
        int e = errno;

        snprintf(err, errlen, e == EEXIST ? "another xbd-backd took %s while this one started"
                 : "control socket %s: %s", c->path, strerror(e));
        return -e;
    }
    unlink(c->tmp);
    c->published = true;
    return 0;
}

int
xbd_sd_notify(const char *state)
{
    const char *env = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len;
    int fd, e = 0;

    if (env == NULL || env[0] == '\0')
        return 0;                       /* not started by a service manager */
    len = strlen(env);
    if ((env[0] != '/' && env[0] != '@') || len >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, env, len);
    if (env[0] == '@')
        sa.sun_path[0] = '\0';          /* the abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        e = -errno;
    close(fd);
    return e;
}

static void
drop(struct client *cl)
{
    close(cl->fd);
    free(cl->out);
    memset(cl, 0, sizeof(*cl));
    cl->fd = -1;
}

void
xbd_control_close(struct xbd_control *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (c->c[i].fd >= 0)
            drop(&c->c[i]);
    close(c->fd);
    if (c->published)
        unlink(c->path);
    else
        unlink(c->tmp);
    free(c);
}

int
xbd_control_pollfds(struct xbd_control *c, struct pollfd *pfd, int max)
{
    int n = 0, free_slot = 0;

    for (int i = 0; i < MAX_CLIENTS && n < max; i++) {
        struct client *cl = &c->c[i];

        if (cl->fd < 0) {
            free_slot = 1;
            continue;
        }
        pfd[n].fd = cl->fd;
        pfd[n].events = cl->out ? POLLOUT : POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    /* Accept only when a slot is free; the rest wait in the backlog. */
    if (free_slot && n < max) {
        pfd[n].fd = c->fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    return n;
}

static char *
answer(const char *line, struct xbd_daemon *d)
{
    char *r = NULL;

    if (strcmp(line, "status") == 0)
        r = xbd_daemon_status_json(d, false);
    else if (strcmp(line, "stats") == 0)
        r = xbd_daemon_status_json(d, true);
    else
        r = strdup("{\"error\":\"unknown command: expected status or stats\"}\n");
    return r;
}

static void
client_read(struct client *cl, struct xbd_daemon *d)
{
    ssize_t n = read(cl->fd, cl->in + cl->inlen, sizeof(cl->in) - 1 - cl->inlen);
    char *nl;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop(cl);
        return;
    }
    cl->inlen += (size_t)n;
    cl->in[cl->inlen] = '\0';
    nl = strchr(cl->in, '\n');
    if (nl == NULL) {
        if (cl->inlen == sizeof(cl->in) - 1)
            drop(cl);                   /* no command is this long */
        return;
    }
    *nl = '\0';
    if (nl > cl->in && nl[-1] == '\r')
        nl[-1] = '\0';
    cl->out = answer(cl->in, d);
    if (cl->out == NULL) {
        drop(cl);
        return;
    }
    cl->outlen = strlen(cl->out);
    cl->outoff = 0;
}

static void
client_write(struct client *cl)
{
    ssize_t n = send(cl->fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
                     MSG_NOSIGNAL);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        drop(cl);
        return;
    }
    cl->outoff += (size_t)n;
    if (cl->outoff == cl->outlen)
        drop(cl);
}

void
xbd_control_handle(struct xbd_control *c, const struct pollfd *pfd, int n,
                   struct xbd_daemon *d)
{
    time_t now = time(NULL);

    for (int i = 0; i < n; i++) {
        if (pfd[i].revents == 0)
            continue;
        if (pfd[i].fd == c->fd) {
            int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

            if (fd < 0)
                continue;
            for (int k = 0; k < MAX_CLIENTS; k++)
                if (c->c[k].fd < 0) {
                    c->c[k].fd = fd;
                    c->c[k].since = now;
                    fd = -1;
                    break;
                }
            if (fd >= 0)
                close(fd);
            continue;
        }
        for (int k = 0; k < MAX_CLIENTS; k++) {
            struct client *cl = &c->c[k];

            if (cl->fd != pfd[i].fd)
                continue;
            if (cl->out)
                client_write(cl);
            else
                client_read(cl, d);
            break;
        }
    }
    /* A client that sits on its connection loses it. */
    for (int k = 0; k < MAX_CLIENTS; k++)
        if (c->c[k].fd >= 0 && now - c->c[k].since > CLIENT_TIMEOUT_S)
            drop(&c->c[k]);
}
