/* xbd-backd — the program: options, signals, the control thread's poll
 * loop.  Everything else is in libxbdbackd (backd.h has the map).
 *
 * Signals are blocked before any thread exists (dataplane threads inherit
 * the mask) and read from a signalfd in the loop:
 *   SIGTERM, SIGINT  stop: every device drains and goes to Closed; exit 0
 *   SIGHUP           re-read the config file; limits apply to future
 *                    connects, log level at once
 * Under a service manager ($NOTIFY_SOCKET, systemd Type=notify) it reports
 * READY=1 once the control socket is published, RELOADING=1/READY=1 around
 * a reload and STOPPING=1 at a stop.
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "backd.h"

#define TICK_MS 1000

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Command line, then the config file (the command line wins). */
static int
load_config(struct xbd_config *c, int argc, char **argv, char *err, size_t errlen)
{
    int r;

    xbd_config_defaults(c);
    r = xbd_config_parse_args(c, argc, argv, err, errlen);
    if (r != 0)
        return r;
    if (c->config_file[0] != '\0' && xbd_config_load(c, c->config_file, err, errlen) < 0)
        return -EINVAL;
    return 0;
}

static void
reload(struct xbd_daemon *d, struct xbd_config *cur, int argc, char **argv)
{
    struct xbd_config next;
    char err[512], pm[16];

    if (load_config(&next, argc, argv, err, sizeof(err)) != 0) {
        xbd_log(LOG_ERR, "SIGHUP: keeping the running configuration: %s", err);
        return;
    }
    if (xbd_config_keep_fixed(cur, &next, err, sizeof(err)) > 0)
        xbd_log(LOG_WARNING, "SIGHUP: %s cannot change without a restart; kept", err);
    xbd_log_init("xbd-backd", next.use_syslog, next.debug);
    xbd_daemon_set_config(d, &next);
    *cur = next;
    xbd_log(LOG_INFO, "SIGHUP: configuration reloaded (max-ring-order %u, max-queues %u, "
            "max-indirect %u, persistent-max %s, debug %s); applies to new connections",
            cur->max_ring_order, cur->max_queues, cur->max_indirect,
            xbd_config_persistent_text(cur->persistent_max, pm, sizeof(pm)),
            cur->debug ? "on" : "off");
}

static int
write_pidfile(const char *path)
{
    FILE *f = fopen(path, "we");

    if (f == NULL)
        return -errno;
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

int
main(int argc, char **argv)
{
    struct xbd_config cfg;
    struct xbd_platform *platform = NULL;
    struct xbd_daemon *d = NULL;
    struct xbd_control *ctl = NULL;
    char err[512], sock[256], record[sizeof(sock) + 8], pm[16];
    sigset_t mask;
    uint64_t next_tick;
    int sfd, r, status = 1;
    bool running = true, more;

    r = load_config(&cfg, argc, argv, err, sizeof(err));
    if (r == 1)
        return 0;
    if (r < 0) {
        fprintf(stderr, "xbd-backd: %s\n", err);
        return 2;
    }
    xbd_log_init("xbd-backd", cfg.use_syslog, cfg.debug);

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        xbd_log(LOG_ERR, "signalfd: %s", strerror(errno));
        return 1;
    }

    r = xbd_platform_open(&platform, cfg.platform[0] ? cfg.platform : NULL);
    if (r < 0) {
        xbd_log(LOG_ERR, "%s", xbd_platform_error());
        goto out;
    }
    if (cfg.control_socket[0] != '\0')
        snprintf(sock, sizeof(sock), "%s", cfg.control_socket);
    else if (strcmp(xbd_platform_name(platform), "sim") == 0 && getenv("XBD_SIM_DIR"))
        snprintf(sock, sizeof(sock), "%s/xbd-backd.sock", getenv("XBD_SIM_DIR"));
    else
        snprintf(sock, sizeof(sock), "/run/xbd-backd/control.sock");

    ctl = xbd_control_open(sock, err, sizeof(err));
    if (ctl == NULL) {
        xbd_log(LOG_ERR, "%s", err);
        goto out;
    }
    /* The ownership record sits beside the socket: control.sock ->
     * control.owned; the socket's lock makes it this daemon's alone. */
    {
        size_t sl = strlen(sock);

        if (sl > 5 && strcmp(sock + sl - 5, ".sock") == 0)
            sl -= 5;
        snprintf(record, sizeof(record), "%.*s.owned", (int)sl, sock);
    }
    d = xbd_daemon_new(&cfg, platform, record, err, sizeof(err));
    if (d == NULL) {
        xbd_log(LOG_ERR, "%s", err);
        goto out;
    }
    if (cfg.pidfile[0] != '\0' && (r = write_pidfile(cfg.pidfile)) < 0) {
        xbd_log(LOG_ERR, "pidfile %s: %s", cfg.pidfile, strerror(-r));
        goto out;
    }
    /* Last: the control socket appears under its name only now, so whoever
     * waits for it finds the pidfile written and the devices claimable. */
    if (xbd_control_publish(ctl, err, sizeof(err)) < 0) {
        xbd_log(LOG_ERR, "%s", err);
        goto out;
    }
    xbd_log(LOG_INFO, "xbd-backd %s started on %s as domain %u: max-ring-order %u, "
            "max-queues %u, max-indirect %u, persistent-max %s; control socket %s",
            PACKAGE_VERSION, xbd_platform_name(platform), xbd_platform_domid(platform),
            cfg.max_ring_order, cfg.max_queues, cfg.max_indirect,
            xbd_config_persistent_text(cfg.persistent_max, pm, sizeof(pm)),
            sock);

    /* Type=notify: the service manager orders the guests' start after this. */
    if ((r = xbd_sd_notify("READY=1")) < 0)
        xbd_log(LOG_WARNING, "NOTIFY_SOCKET %s: %s; the service manager was not told "
                "the daemon is ready", getenv("NOTIFY_SOCKET"), strerror(-r));
    /* The initial watch fire is already queued: this claims what exists. */
    more = xbd_daemon_run_watches(d);
    next_tick = now_ms() + TICK_MS;
    while (running) {
        struct pollfd pfd[3 + 16];
        int n = 3, timeout;
        uint64_t now = now_ms();

        pfd[0] = (struct pollfd){ .fd = xbd_daemon_xs_fd(d), .events = POLLIN };
        pfd[1] = (struct pollfd){ .fd = xbd_daemon_wake_fd(d), .events = POLLIN };
        pfd[2] = (struct pollfd){ .fd = sfd, .events = POLLIN };
        n += xbd_control_pollfds(ctl, pfd + 3, 16);
        timeout = more || now >= next_tick ? 0 : (int)(next_tick - now);
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
            xbd_log(LOG_ERR, "poll: %s", strerror(errno));
            break;
        }
        if (pfd[2].revents) {
            struct signalfd_siginfo si;

            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                    xbd_sd_notify("RELOADING=1");
                    reload(d, &cfg, argc, argv);
                    xbd_sd_notify("READY=1");
                } else {
                    xbd_sd_notify("STOPPING=1");
                    xbd_log(LOG_INFO, "%s: closing every device and exiting",
                            strsignal((int)si.ssi_signo));
                    running = false;
                }
            }
        }
        if (!running)
            break;
        if (pfd[1].revents)
            xbd_daemon_run_failures(d);
        if (pfd[0].revents || more)
            more = xbd_daemon_run_watches(d);
        xbd_control_handle(ctl, pfd + 3, n - 3, d);
        if (now_ms() >= next_tick) {
            if (xbd_daemon_tick(d) < 0)
                break;
            next_tick = now_ms() + TICK_MS;
        }
    }
    status = running ? 1 : 0;
out:
    xbd_control_close(ctl);
    xbd_daemon_free(d);
    if (platform)
        xbd_platform_close(platform);
    if (cfg.pidfile[0] != '\0' && d != NULL)
        unlink(cfg.pidfile);
    close(sfd);
    if (status == 0)
        xbd_log(LOG_INFO, "exiting");
    return status;
}
