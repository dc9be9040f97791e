/* Event channels on xbd-sim: ping-pong between processes of different
 * domains, pending/mask/unmask semantics, bad binds, and a domain destroyed
 * while bound.  Runs itself under a private captive xbd-sim. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-proto.h"
#include "sim-test.h"

#define ROUNDS 2000

/* Wait (up to 10 s) for the handle's fd, then take the pending port. */
static int
wait_port(struct xbd_evtchn *e)
{
    struct pollfd pfd = { .fd = xbd_evtchn_fd(e), .events = POLLIN };

    if (poll(&pfd, 1, 10000) != 1)
        return -ETIMEDOUT;
    return xbd_evtchn_pending(e);
}

static int
readable(struct xbd_evtchn *e)
{
    struct pollfd pfd = { .fd = xbd_evtchn_fd(e), .events = POLLIN };

    return poll(&pfd, 1, 0) == 1;
}

/* A child running as `domid`: bind to (0, port), then answer every event
 * with one back, until `rounds` are done; exit status says how it went. */
static pid_t
ponger(uint32_t domid, uint32_t port, int rounds, int ready_fd)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        struct xbd_platform *p;
        struct xbd_evtchn *e;
        char id[16];
        int lp, i;

        snprintf(id, sizeof(id), "%u", domid);
        setenv("XBD_SIM_DOMID", id, 1);
        if (xbd_platform_open(&p, NULL) < 0 || xbd_evtchn_open(p, &e) < 0)
            _exit(2);
        lp = xbd_evtchn_bind_interdomain(e, 0, port);
        if (lp < 0)
            _exit(3);
        /* Xen marks a freshly bound port pending: take that one first. */
        if (wait_port(e) != lp || xbd_evtchn_unmask(e, (uint32_t)lp) < 0)
            _exit(4);
        (void)!write(ready_fd, "r", 1);
        for (i = 0; rounds < 0 || i < rounds; i++) {
            int got = wait_port(e);

            if (got != lp)
                _exit(rounds < 0 ? 0 : 5);
            if (xbd_evtchn_unmask(e, (uint32_t)lp) < 0 ||
                xbd_evtchn_notify(e, (uint32_t)lp) < 0)
                _exit(6);
        }
        xbd_evtchn_close(e);
        xbd_platform_close(p);
        _exit(0);
    }
    return pid;
}

int
main(int argc, char **argv)
{
    static const char *const sim_args[] = { "--domain", "guest1", "--domain", "guest2", NULL };
    struct xbd_platform *p;
    struct xbd_evtchn *e, *e2;
    int port, p1, p2, i, st, bad, pfd[2];
    pid_t pid;
    char ch;

    sim_test_enter(argc, argv, sim_args);
    if (xbd_platform_open(&p, NULL) < 0)
        bail_out("%s", xbd_platform_error());
    is_int(xbd_evtchn_open(p, &e), 0, "evtchn open");

    /* ---- Ping-pong with a process of domain 1 ---- */
    port = xbd_evtchn_bind_unbound(e, 1);
    ok(port > 0, "alloc unbound port for domain 1: %d", port);
    if (pipe(pfd) < 0)
        bail_out("pipe");
    pid = ponger(1, (uint32_t)port, ROUNDS, pfd[1]);
    ok(read(pfd[0], &ch, 1) == 1, "domain 1 bound the port");
    bad = 0;
    for (i = 0; i < ROUNDS; i++) {
        if (xbd_evtchn_notify(e, (uint32_t)port) < 0 || wait_port(e) != port ||
            xbd_evtchn_unmask(e, (uint32_t)port) < 0) {
            bad++;
            break;
        }
    }
    is_int(bad, 0, "%d round trips", ROUNDS);
    waitpid(pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ponger finished (status %d)", st);
    is_int(xbd_evtchn_notify(e, (uint32_t)port), 0, "notify after the peer exited succeeds");
    is_int(xbd_evtchn_unbind(e, (uint32_t)port), 0, "unbind");
    is_int(xbd_evtchn_notify(e, (uint32_t)port), -EINVAL, "notify an unbound port: -EINVAL");

    /* ---- Pending / mask / unmask, on a loopback channel in dom0 ---- */
    is_int(xbd_evtchn_open(p, &e2), 0, "second handle");
    p1 = xbd_evtchn_bind_unbound(e, 0);
    p2 = xbd_evtchn_bind_interdomain(e2, 0, (uint32_t)p1);
    ok(p1 > 0 && p2 > 0 && p1 != p2, "loopback channel %d <-> %d", p1, p2);
    ok(!readable(e), "nothing pending on the allocating side");
    is_int(xbd_evtchn_pending(e), -EAGAIN, "pending: -EAGAIN when none");
    ok(readable(e2), "the binding side starts pending (as Xen sets it)");
    is_int(xbd_evtchn_pending(e2), p2, "pending returns the bound port");
    is_int(xbd_evtchn_unmask(e2, (uint32_t)p2), 0, "unmask");
    ok(!readable(e2), "nothing pending after unmask");
    is_int(xbd_evtchn_notify(e2, (uint32_t)p2), 0, "notify");
    ok(readable(e), "peer fd readable");
    is_int(xbd_evtchn_pending(e), p1, "pending returns the port");
    ok(!readable(e), "masked after delivery");
    xbd_evtchn_notify(e2, (uint32_t)p2);
    xbd_evtchn_notify(e2, (uint32_t)p2);
    ok(!readable(e), "events while masked do not wake");
    is_int(xbd_evtchn_pending(e), -EAGAIN, "and are not returned");
    is_int(xbd_evtchn_unmask(e, (uint32_t)p1), 0, "unmask");
    ok(readable(e), "an event that came while masked is pending at once");
    is_int(xbd_evtchn_pending(e), p1, "and returned once");
    is_int(xbd_evtchn_unmask(e, (uint32_t)p1), 0, "unmask");
    ok(!readable(e), "the events coalesced into one");
    is_int(xbd_evtchn_bind_interdomain(e2, 0, (uint32_t)p1), -EINVAL,
           "binding an already bound port: -EINVAL");
    is_int(xbd_evtchn_unbind(e2, (uint32_t)p2), 0, "unbind one side");
    is_int(xbd_evtchn_notify(e, (uint32_t)p1), 0, "notify toward a closed peer succeeds");
    p2 = xbd_evtchn_bind_interdomain(e2, 0, (uint32_t)p1);
    ok(p2 > 0, "the surviving port is unbound again and can be rebound (as on Xen)");
    xbd_evtchn_pending(e2);
    xbd_evtchn_unmask(e2, (uint32_t)p2);
    xbd_evtchn_notify(e, (uint32_t)p1);
    is_int(wait_port(e2), p2, "and works");
    xbd_evtchn_close(e2);

    /* ---- Bad binds ---- */
    port = xbd_evtchn_bind_unbound(e, 2);
    is_int(xbd_evtchn_bind_interdomain(e, 0, (uint32_t)port), -EINVAL,
           "bind a port allocated for another domain: -EINVAL");
    is_int(xbd_evtchn_bind_interdomain(e, 0, 1000), -EINVAL, "bind a free port: -EINVAL");
    is_int(xbd_evtchn_bind_interdomain(e, 0, 1u << 20), -EINVAL, "bind a huge port: -EINVAL");
    is_int(xbd_evtchn_bind_interdomain(e, 555, 1), -EINVAL, "bind in a missing domain: -EINVAL");
    xbd_evtchn_unbind(e, (uint32_t)port);

    /* ---- Destroy a domain while bound ---- */
    {
        struct simp_hello_rep h;
        uint32_t domid = 0, len;
        int fds[2], s = xbd_sim_connect(SIMP_ROLE_CONTROL, &h, fds);

        ok(s >= 0 && xbd_sim_call(s, SIMP_DOMAIN_CREATE, "victim", 6, &domid,
                                  sizeof(domid), &len, NULL, 0) == 0,
           "create domain victim");
        if (domid == 0)
            bail_out("%s", xbd_platform_error());
        port = xbd_evtchn_bind_unbound(e, domid);
        pid = ponger(domid, (uint32_t)port, -1, pfd[1]);
        ok(read(pfd[0], &ch, 1) == 1, "victim bound the port");
        xbd_evtchn_notify(e, (uint32_t)port);
        is_int(wait_port(e), port, "one round trip with the victim");
        xbd_evtchn_unmask(e, (uint32_t)port);
        is_int(xbd_sim_call(s, SIMP_DOMAIN_DESTROY, &domid, 4, NULL, 0, NULL, NULL, 0), 0,
               "destroy the victim while bound");
        is_int(xbd_evtchn_notify(e, (uint32_t)port), 0, "notify the dead peer: succeeds");
        /* The victim's process still holds its eventfds (the sim does not
         * kill processes; see xbd-platform.h), so it may still answer:
         * whatever comes, this side must neither hang nor fail. */
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
        ok(WIFSIGNALED(st) || WIFEXITED(st), "victim process ended without hanging");
        while (xbd_evtchn_pending(e) == port)
            xbd_evtchn_unmask(e, (uint32_t)port);
        is_int(xbd_evtchn_unbind(e, (uint32_t)port), 0, "unbind the orphaned port");
        port = xbd_evtchn_bind_unbound(e, 1);
        ok(port > 0, "the handle still works after the peer domain died");
        close(s);
    }
    xbd_evtchn_close(e);
    xbd_platform_close(p);
    return done_testing();
}
