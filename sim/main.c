/* xbd-sim — an embedded stand-in for a Xen host: a xenstore daemon, grant
 * tables, guest memory and event channels for processes that declare which
 * domain they are.  See xbd-sim(8); --help and the man page say the same. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "loop.h"
#include "xbd-parse.h"
#include "xbd-platform.h"
#include "xs-server.h"

static const char usage[] =
"Usage: xbd-sim --run-dir DIR [OPTION]...\n"
"Stand in for a Xen host: xenstore, domains, grant tables, event channels.\n"
"\n"
"  -d, --run-dir DIR        sockets go here (short path: unix sockets < 108 bytes)\n"
"  -r, --run CMD            run CMD (/bin/sh -c) as dom0, exit with its status\n"
"  -D, --domain NAME        create domain NAME at start (repeatable; domids 1, 2, ...)\n"
"  -m, --memory SIZE        guest memory per domain, bytes or with K/M/G (default 1G)\n"
"  -g, --grant-entries N    grant table entries per domain (default 32768)\n"
"  -v, --verbose            log domain and connection events to stderr\n"
"  -h, --help               show this help\n"
"\n"
"In DIR: d<domid>.xs (xenstore socket), d<domid>.host (host socket) per domain,\n"
"and `ready` once every socket listens.  A process runs as domain N with\n"
"  XBD_SIM_DIR=DIR XBD_SIM_DOMID=N XENSTORED_PATH=DIR/dN.xs\n"
"(xbdctl run-as sets them; --run sets them for dom0).\n";

static int
parse_size(const char *s, uint64_t *out)
{
    char buf[32];
    size_t n = strlen(s);
    uint64_t v, mul = 1;

    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n + 1);
    switch (buf[n - 1]) {
    case 'K': case 'k': mul = 1ull << 10; buf[--n] = '\0'; break;
    case 'M': case 'm': mul = 1ull << 20; buf[--n] = '\0'; break;
    case 'G': case 'g': mul = 1ull << 30; buf[--n] = '\0'; break;
    default: break;
    }
    if (xbd_parse_u64(buf, &v) < 0 || v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

struct sim {
    struct sim_loop *loop;
    int sfd;
    pid_t child;
    int status;
    struct host *h;
    const char *dir;
};

/* SIGUSR1: write the status report to DIR/status, whole or not at all (a
 * temporary file renamed into place), so a reader that removed the old one
 * and waits for the name to reappear reads a complete report. */
static void
write_status(const struct sim *s)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    FILE *f;
    int rc;

    snprintf(tmp, sizeof(tmp), "%s/status.tmp", s->dir);
    snprintf(path, sizeof(path), "%s/status", s->dir);
    f = fopen(tmp, "we");
    if (f == NULL) {
        fprintf(stderr, "xbd-sim: %s: %s\n", tmp, strerror(errno));
        return;
    }
    rc = host_report(s->h, f);
    if (fclose(f) != 0 || rc < 0 || rename(tmp, path) < 0) {
        fprintf(stderr, "xbd-sim: cannot write %s\n", path);
        unlink(tmp);
    }
}

static void
signal_cb(struct sim_loop *loop, int fd, uint32_t events, void *opaque)
{
    struct sim *s = opaque;
    struct signalfd_siginfo si;

    while (read(fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            int st;
            pid_t p;

            while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
                if (p == s->child) {
                    s->child = 0;
                    sim_loop_quit(loop, WIFEXITED(st) ? WEXITSTATUS(st)
                                                      : 128 + WTERMSIG(st));
                }
            }
        } else if (si.ssi_signo == SIGUSR1) {
            if (s->h != NULL)
                write_status(s);
        } else if (s->child > 0) {
            kill(s->child, (int)si.ssi_signo);  /* captive: the command decides */
        } else {
            sim_loop_quit(loop, 0);
        }
    }
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "run-dir", required_argument, NULL, 'd' },
        { "run", required_argument, NULL, 'r' },
        { "domain", required_argument, NULL, 'D' },
        { "memory", required_argument, NULL, 'm' },
        { "grant-entries", required_argument, NULL, 'g' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct host_config cfg = { 0 };
    const char *run = NULL, **doms = NULL;
    size_t ndoms = 0, i;
    struct xs_server *xs = NULL;
    struct host *h;
    struct sim s = { 0 };
    char path[256], err[256];
    sigset_t mask;
    uint64_t v;
    int c, rc;
    FILE *f;

    while ((c = getopt_long(argc, argv, "d:r:D:m:g:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': cfg.dir = optarg; break;
        case 'r': run = optarg; break;
        case 'D':
            doms = realloc(doms, (ndoms + 1) * sizeof(*doms));
            if (doms == NULL)
                return 1;
            doms[ndoms++] = optarg;
            break;
        case 'm':
            if (parse_size(optarg, &v) < 0 || v < XBD_PAGE_SIZE ||
                v / XBD_PAGE_SIZE > (1u << 28) || v % XBD_PAGE_SIZE) {
                fprintf(stderr, "xbd-sim: --memory %s: give a multiple of 4K "
                        "between 4K and 1T\n", optarg);
                return 2;
            }
            cfg.mem_pages = (uint32_t)(v / XBD_PAGE_SIZE);
            break;
        case 'g':
            if (xbd_parse_u32_range(optarg, 16, 1u << 20, &cfg.nr_grants) < 0) {
                fprintf(stderr, "xbd-sim: --grant-entries %s: give 16..1048576\n", optarg);
                return 2;
            }
            break;
        case 'v': cfg.verbose = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (cfg.dir == NULL || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (mkdir(cfg.dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "xbd-sim: mkdir %s: %s\n", cfg.dir, strerror(errno));
        return 1;
    }

    /* Every port, domain and client costs descriptors: take what we may. */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    /* Signals arrive through the loop; the command gets them unblocked. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    s.loop = sim_loop_new();
    s.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.loop == NULL || s.sfd < 0 ||
        sim_loop_add(s.loop, s.sfd, EPOLLIN, signal_cb, &s) < 0) {
        fprintf(stderr, "xbd-sim: cannot set up the event loop: %s\n", strerror(errno));
        return 1;
    }
    xs = xs_server_new(s.loop, NULL);
    if (xs == NULL) {
        fprintf(stderr, "xbd-sim: cannot start the xenstore server\n");
        return 1;
    }
    h = host_new(s.loop, xs, &cfg);
    if (h == NULL)
        return 1;
    s.h = h;
    s.dir = cfg.dir;
    for (i = 0; i < ndoms; i++) {
        uint32_t domid;

        if (host_domain_create(h, doms[i], &domid, err, sizeof(err)) < 0) {
            fprintf(stderr, "xbd-sim: --domain %s: %s\n", doms[i], err);
            host_free(h);
            return 1;
        }
    }
    free(doms);

    snprintf(path, sizeof(path), "%s/ready", cfg.dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    if (run != NULL) {
        char xsp[256];

        snprintf(xsp, sizeof(xsp), "%s/d0.xs", cfg.dir);
        fflush(NULL);
        s.child = fork();
        if (s.child < 0) {
            fprintf(stderr, "xbd-sim: fork: %s\n", strerror(errno));
            return 1;
        }
        if (s.child == 0) {
            sigprocmask(SIG_UNBLOCK, &mask, NULL);
            signal(SIGPIPE, SIG_DFL);
            setenv("XBD_SIM_DIR", cfg.dir, 1);
            setenv("XBD_SIM_DOMID", "0", 1);
            setenv("XENSTORED_PATH", xsp, 1);
            execl("/bin/sh", "sh", "-c", run, (char *)NULL);
            _exit(127);
        }
    }
    rc = sim_loop_run(s.loop);

    unlink(path);
    host_free(h);
    if (xs != NULL)
        xs_server_free(xs);
    sim_loop_del(s.loop, s.sfd);
    close(s.sfd);
    sim_loop_free(s.loop);
    return rc;
}
