/* xbdkit — helpers for C tests of the platform layer on xbd-sim.
 *
 *   sim_test_enter(argc, argv, "--domain guest1 ...")  run this program
 *       under a private captive xbd-sim (re-executing itself) unless it
 *       already runs under one; returns in the inner process only.
 *   struct agent a = agent_start(domid)  a child process running as domain
 *       `domid`, answering requests (share, unshare, fill, check, ...) over
 *       a socketpair, so one test can drive several domains.
 */
#ifndef XBD_SIM_TEST_H
#define XBD_SIM_TEST_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "xbd-platform.h"

__attribute__((unused)) static void
sim_test_enter(int argc, char **argv, const char *const *sim_args)
{
    char dir[] = "/tmp/xbd-ct.XXXXXX", self[4096];
    const char *args[32];
    int n = 0, st;
    pid_t pid;

    (void)argc;
    if (getenv("XBD_SIM_DIR") != NULL)
        return;
    if (realpath(argv[0], self) == NULL || mkdtemp(dir) == NULL)
        bail_out("cannot set up: %s", strerror(errno));
    args[n++] = "xbd-sim";
    args[n++] = "--run-dir";
    args[n++] = dir;
    while (*sim_args != NULL && n < 28)
        args[n++] = *sim_args++;
    args[n++] = "--run";
    args[n++] = self;
    args[n] = NULL;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        execvp("xbd-sim", (char **)args);
        printf("Bail out! cannot run xbd-sim: %s\n", strerror(errno));
        _exit(1);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        bail_out("fork/wait: %s", strerror(errno));
    rmdir(dir);
    exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* ---- Agents ---------------------------------------------------------------- */

enum { AG_SHARE = 1, AG_UNSHARE, AG_FILL, AG_CHECK, AG_GNTTAB_OPEN, AG_EXIT };

struct ag_req { int op; uint32_t a, b, c; };
struct ag_rep { int rc; uint32_t v; uint32_t refs[256]; };

struct agent { pid_t pid; int fd; };

static void
agent_main(int fd, uint32_t domid)
{
    struct xbd_platform *p;
    struct xbd_gntshr *s;
    struct { uint8_t *addr; uint32_t count; } sh[1024];
    char id[16];
    struct ag_req q;
    struct ag_rep r;

    snprintf(id, sizeof(id), "%u", domid);
    setenv("XBD_SIM_DOMID", id, 1);
    if (xbd_platform_open(&p, NULL) < 0 || xbd_gntshr_open(p, &s) < 0) {
        fprintf(stderr, "agent: %s\n", xbd_platform_error());
        _exit(1);
    }
    while (read(fd, &q, sizeof(q)) == sizeof(q)) {
        memset(&r, 0, sizeof(r));
        switch (q.op) {
        case AG_SHARE: {        /* a=count b=writable c=grantee -> v=index */
            void *addr;
            uint32_t i;

            r.rc = -EINVAL;
            for (i = 0; i < 1024 && sh[i].addr != NULL && i < 1024; i++)
                ;
            if (i < 1024 && q.a <= 256) {
                r.rc = xbd_gntshr_share(s, q.c, q.a, (int)q.b, r.refs, &addr);
                if (r.rc == 0) {
                    sh[i].addr = addr;
                    sh[i].count = q.a;
                    r.v = i;
                }
            }
            break;
        }
        case AG_UNSHARE:        /* a=index */
            r.rc = xbd_gntshr_unshare(s, sh[q.a].addr, sh[q.a].count);
            if (r.rc == 0)
                sh[q.a].addr = NULL;
            break;
        case AG_FILL:           /* a=index b=page c=byte */
            memset(sh[q.a].addr + (size_t)q.b * 4096, (int)q.c, 4096);
            break;
        case AG_CHECK: {        /* a=index b=page c=byte -> v=bytes equal */
            uint32_t k;

            for (k = 0; k < 4096; k++)
                r.v += sh[q.a].addr[(size_t)q.b * 4096 + k] == (uint8_t)q.c;
            break;
        }
        case AG_GNTTAB_OPEN: {
            struct xbd_gnttab *g;

            r.rc = xbd_gnttab_open(p, &g);
            if (r.rc == 0)
                xbd_gnttab_close(g);
            break;
        }
        case AG_EXIT:
            xbd_gntshr_close(s);
            xbd_platform_close(p);
            _exit(0);
        }
        if (write(fd, &r, sizeof(r)) != sizeof(r))
            _exit(1);
    }
    _exit(0);
}

__attribute__((unused)) static struct agent
agent_start(uint32_t domid)
{
    struct agent a;
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        bail_out("socketpair: %s", strerror(errno));
    fflush(NULL);
    a.pid = fork();
    if (a.pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (a.pid == 0) {
        close(sv[0]);
        agent_main(sv[1], domid);
    }
    close(sv[1]);
    a.fd = sv[0];
    return a;
}

__attribute__((unused)) static struct ag_rep
agent_call(struct agent *a, int op, uint32_t x, uint32_t y, uint32_t z)
{
    struct ag_req q = { op, x, y, z };
    struct ag_rep r;

    if (write(a->fd, &q, sizeof(q)) != sizeof(q) || read(a->fd, &r, sizeof(r)) != sizeof(r))
        bail_out("agent %d died", (int)a->pid);
    return r;
}

__attribute__((unused)) static void
agent_stop(struct agent *a)
{
    struct ag_req q = { AG_EXIT, 0, 0, 0 };
    int st;

    if (write(a->fd, &q, sizeof(q)) != sizeof(q))
        kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
    close(a->fd);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exited cleanly");
}

#endif /* XBD_SIM_TEST_H */
