/* xs-testd — the sim's xenstore daemon alone, for the wire tests.
 *
 *   xs-testd DIR [DOMID...]
 *
 * Listens for dom0 on DIR/dom0.sock and for each DOMID on DIR/dom<ID>.sock,
 * introduces every DOMID (name "guest<ID>"), then creates DIR/ready and
 * serves until SIGTERM or SIGINT, when it removes its sockets and exits 0.
 * SIGUSR1 destroys the last DOMID given (xs_server_release: its
 * connections and socket go, its tree goes, @releaseDomain fires).
 * Optional limits for quota tests come from the environment:
 * XS_TESTD_NODES, XS_TESTD_WATCHES, XS_TESTD_TRANSACTIONS,
 * XS_TESTD_OUTSTANDING.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop.h"
#include "xs-server.h"

static struct xs_server *srv;
static uint32_t last_guest;

static void
on_signal(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct signalfd_siginfo si;

    (void)events;
    (void)opaque;
    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR1) {
        if (last_guest != 0) {
            int r = xs_server_release(srv, last_guest);
            if (r < 0)
                fprintf(stderr, "xs-testd: release %u: %s\n", last_guest,
                        strerror(-r));
            last_guest = 0;
        }
        return;
    }
    sim_loop_quit(loop, 0);
}

static unsigned int
env_uint(const char *name)
{
    const char *v = getenv(name);

    return v ? (unsigned int)strtoul(v, NULL, 10) : 0;
}

int
main(int argc, char **argv)
{
    struct xs_server_limits lim = {
        .nodes = env_uint("XS_TESTD_NODES"),
        .watches = env_uint("XS_TESTD_WATCHES"),
        .transactions = env_uint("XS_TESTD_TRANSACTIONS"),
        .outstanding = env_uint("XS_TESTD_OUTSTANDING"),
    };
    struct sim_loop *loop;
    char path[4096];
    sigset_t set;
    int sfd, r, fd;

    if (argc < 2) {
        fprintf(stderr, "usage: xs-testd DIR [DOMID...]\n");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    loop = sim_loop_new();
    if (sfd < 0 || loop == NULL) {
        perror("xs-testd: setup");
        return 1;
    }
    sim_loop_add(loop, sfd, EPOLLIN, on_signal, NULL);
    srv = xs_server_new(loop, &lim);
    if (srv == NULL) {
        fprintf(stderr, "xs-testd: cannot create the server\n");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/dom0.sock", argv[1]);
    r = xs_server_listen(srv, 0, path);
    if (r < 0) {
        fprintf(stderr, "xs-testd: listen %s: %s\n", path, strerror(-r));
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char *end;
        unsigned long id = strtoul(argv[i], &end, 10);
        char name[32];
        if (*end != '\0' || id == 0 || id >= 0x7FF0) {
            fprintf(stderr, "xs-testd: bad domid '%s'\n", argv[i]);
            return 2;
        }
        snprintf(path, sizeof(path), "%s/dom%lu.sock", argv[1], id);
        r = xs_server_listen(srv, (uint32_t)id, path);
        snprintf(name, sizeof(name), "guest%lu", id);
        if (r == 0)
            r = xs_server_introduce(srv, (uint32_t)id, name);
        last_guest = (uint32_t)id;
        if (r < 0) {
            fprintf(stderr, "xs-testd: domain %lu: %s\n", id, strerror(-r));
            return 1;
        }
    }
    snprintf(path, sizeof(path), "%s/ready", argv[1]);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("xs-testd: ready marker");
        return 1;
    }
    close(fd);
    r = sim_loop_run(loop);
    xs_server_free(srv);
    sim_loop_del(loop, sfd);
    close(sfd);
    sim_loop_free(loop);
    return r;
}
