/* xbd-null-dm — a device model that serves no devices, for libxl's
 * backendtype=qdisk disks served by xbd-backd.
 *
 * For a PV or PVH guest with a qdisk disk, libxl 4.17 starts a per-guest
 * device model (QEMU -machine xenpv) with QEMU's arguments, waits for
 * /local/domain/<dm domid>/device-model/<domid>/state = "running", then
 * talks QMP on the socket(s) it named with -chardev socket,...,path=P:
 * qmp_capabilities and query-chardev.  Named by device_model_override=,
 * this program does exactly that and nothing else, so that the disks stay
 * with xbd-backd (kind qdisk).  QMP commands it has no honest answer for
 * (saving device state, adding devices, ...) get QEMU's CommandNotFound
 * error, so that such an operation fails instead of silently not
 * happening.  It exits on SIGTERM/SIGINT (libxl kills it on destroy) or on
 * the QMP "quit" command, removing its sockets.
 *
 * Usage (libxl's arguments; everything it does not need is ignored):
 *   xbd-null-dm -xen-domid N [-chardev socket,id=ID,path=P,server=on ...] ...
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-null-dm.h"

#define MAX_LISTEN 4
#define MAX_CLIENTS 8
#define MAX_FDS (1 + MAX_LISTEN + MAX_CLIENTS)
/* A QMP command larger than this is not one libxl sends: drop the client. */
#define CLIENT_BUF 65536

static const char greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, "
    "\"major\": 7}, \"package\": \"xbd-null-dm " PACKAGE_VERSION "\"}, "
    "\"capabilities\": []}}\r\n";

struct client {
    int fd;
    char *buf;
    size_t len;
};

static void
usage(FILE *f)
{
    fprintf(f,
"usage: xbd-null-dm -xen-domid N [-chardev socket,id=ID,path=PATH,server=on]...\n"
"       [any other QEMU argument, ignored]\n"
"A device model for libxl that serves no devices: named by\n"
"device_model_override= for PV/PVH guests whose backendtype=qdisk disks\n"
"xbd-backd serves.  It reports state=running in xenstore and answers\n"
"libxl's QMP handshake.  See xbd-null-dm(8).\n");
}

static int
listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 4) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int
write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 5000) <= 0)
                return -1;     /* a client that does not read: drop it */
            continue;
        }
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Answer every complete command in c->buf.  -1: drop the client; 1: quit. */
static int
serve(struct client *c)
{
    int quit = 0;

    for (;;) {
        char reply[1024];
        struct null_dm_cmd cmd;
        int n = null_dm_next_object(c->buf, c->len);

        if (n == 0)
            return quit;
        if (n < 0)
            return -1;
        if (null_dm_parse(c->buf, (size_t)n, &cmd) < 0 ||
            null_dm_reply(&cmd, reply, sizeof(reply)) < 0 ||
            write_all(c->fd, reply, strlen(reply)) < 0)
            return -1;
        if (strcmp(cmd.execute, "quit") == 0)
            quit = 1;
        memmove(c->buf, c->buf + n, c->len - (size_t)n);
        c->len -= (size_t)n;
    }
}

int
main(int argc, char **argv)
{
    char *paths[MAX_LISTEN];
    struct pollfd pfd[MAX_FDS];
    struct client cl[MAX_CLIENTS];
    unsigned int npaths = 0, nlisten = 0, nclients = 0;
    long domid = -1;
    char xspath[64];
    struct xs_handle *xs;
    sigset_t sigs;
    int sfd = -1, rc = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("xbd-null-dm %s\n", PACKAGE_VERSION);
            return 0;
        }
        if (i + 1 >= argc)
            continue;
        if (strcmp(argv[i], "-xen-domid") == 0) {
            char *end;
            errno = 0;
            domid = strtol(argv[i + 1], &end, 10);
            if (errno || *end || end == argv[i + 1] || domid <= 0 ||
                domid >= 0x7FF0) {
                fprintf(stderr, "xbd-null-dm: bad -xen-domid \"%s\"\n",
                        argv[i + 1]);
                rc = 2;
                goto out;
            }
            i++;
        } else if (strcmp(argv[i], "-chardev") == 0) {
            char *p = null_dm_chardev_path(argv[i + 1]);
            if (p != NULL) {
                if (npaths == MAX_LISTEN) {
                    fprintf(stderr, "xbd-null-dm: more than %d QMP sockets\n",
                            MAX_LISTEN);
                    free(p);
                    rc = 2;
                    goto out;
                }
                paths[npaths++] = p;
            }
            i++;
        }
    }
    if (domid < 0) {
        usage(stderr);
        rc = 2;
        goto out;
    }

    /* Signals through a descriptor: the loop ends cleanly on them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("xbd-null-dm: signalfd");
        rc = 1;
        goto out;
    }
    pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };

    for (unsigned int i = 0; i < npaths; i++) {
        int fd = listen_unix(paths[i]);
        if (fd < 0) {
            fprintf(stderr, "xbd-null-dm: cannot listen on %s: %s\n",
                    paths[i], strerror(errno));
            rc = 1;
            goto out;
        }
        pfd[1 + nlisten++] = (struct pollfd){ .fd = fd, .events = POLLIN };
    }

    /* Relative: the device-model directory of the domain we run in (dom0,
     * or a driver domain), as libxl reads it. */
    snprintf(xspath, sizeof(xspath), "device-model/%ld/state", domid);
    xs = xs_open(0);
    if (xs == NULL || !xs_write(xs, XBT_NULL, xspath, "running", 7)) {
        fprintf(stderr, "xbd-null-dm: cannot write %s in xenstore: %s\n",
                xspath, strerror(errno));
        if (xs != NULL)
            xs_close(xs);
        rc = 1;
        goto out;
    }
    xs_close(xs);
    fprintf(stderr, "xbd-null-dm: domain %ld: running, %u QMP socket(s), "
            "serving no devices\n", domid, nlisten);

    for (;;) {
        unsigned int nfds = 1 + nlisten + nclients;
        bool quit = false;

        if (poll(pfd, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("xbd-null-dm: poll");
            rc = 1;
            break;
        }
        if (pfd[0].revents)
            break;                          /* SIGTERM, SIGINT, SIGHUP */
        for (unsigned int i = 1; i <= nlisten; i++) {
            int fd;
            if (!(pfd[i].revents & POLLIN))
                continue;
            fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0)
                continue;
            if (nclients == MAX_CLIENTS ||
                write_all(fd, greeting, sizeof(greeting) - 1) < 0) {
                close(fd);
                continue;
            }
            cl[nclients] = (struct client){ .fd = fd };
            pfd[1 + nlisten + nclients] =
                (struct pollfd){ .fd = fd, .events = POLLIN };
            nclients++;
        }
        for (unsigned int k = 0; k < nclients; k++) {
            struct pollfd *p = &pfd[1 + nlisten + k];
            struct client *c = &cl[k];
            ssize_t n = 0;
            int r = -1;

            if (!p->revents)
                continue;
            if (c->buf == NULL)
                c->buf = malloc(CLIENT_BUF);
            if (c->buf != NULL && c->len < CLIENT_BUF)
                n = read(c->fd, c->buf + c->len, CLIENT_BUF - c->len);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n > 0) {
                c->len += (size_t)n;
                r = serve(c);
            }
            if (r == 1)
                quit = true;
            if (r != 0) {                   /* EOF, error, overflow, quit */
                close(c->fd);
                free(c->buf);
                cl[k] = cl[nclients - 1];
                *p = pfd[1 + nlisten + nclients - 1];
                nclients--;
                k--;
            }
        }
        if (quit)
            break;
    }
out:
    for (unsigned int k = 0; k < nclients; k++) {
        close(cl[k].fd);
        free(cl[k].buf);
    }
    for (unsigned int i = 0; i < nlisten; i++) {
        close(pfd[1 + i].fd);
        unlink(paths[i]);           /* only the sockets we made */
    }
    for (unsigned int i = 0; i < npaths; i++)
        free(paths[i]);
    if (sfd >= 0)
        close(sfd);
    return rc;
}
