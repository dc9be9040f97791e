/* The nbd driver against nbdkit's memory plugin on a private unix socket:
 * open errors, info, and reads, writes, flushes and trims through the
 * per-queue engine (libnbd's asynchronous API driven by io_uring polls);
 * a server without multi-conn (nbdkit's multi-conn filter, mode disable)
 * serves one queue only.
 * Skips (77) when nbdkit is not installed. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend-io.h"
#include "tap.h"

static char errbuf[512];
enum server { SERVER_RW, SERVER_RO, SERVER_NO_MULTI_CONN, SERVERS };
static pid_t nbdkit_pid[SERVERS];
static char dir[] = "/tmp/xbd-nbd.XXXXXX";

static void
cleanup(void)
{
    char path[256];

    for (int i = 0; i < SERVERS; i++) {
        if (nbdkit_pid[i] > 0) {
            kill(nbdkit_pid[i], SIGTERM);
            waitpid(nbdkit_pid[i], NULL, 0);
            nbdkit_pid[i] = 0;
        }
        snprintf(path, sizeof(path), "%s/s%d", dir, i);
        unlink(path);
        snprintf(path, sizeof(path), "%s/s%d.pid", dir, i);
        unlink(path);
    }
    rmdir(dir);
}

/* Start nbdkit (memory plugin, 8M) on dir/s<n>; 0 once it accepts
 * connections: nbdkit writes its pidfile then, whereas the socket file
 * appears at bind(), before listen() (a connect in between is refused). */
static int
start_nbdkit(enum server n)
{
    char sock[256], pidfile[256];
    struct stat st;

    snprintf(sock, sizeof(sock), "%s/s%d", dir, n);
    snprintf(pidfile, sizeof(pidfile), "%s/s%d.pid", dir, n);
    unlink(pidfile);
    fflush(NULL);
    nbdkit_pid[n] = fork();
    if (nbdkit_pid[n] == 0) {
        if (n == SERVER_RO)
            execlp("nbdkit", "nbdkit", "-f", "-r", "--exit-with-parent", "-U", sock,
                   "-P", pidfile, "memory", "8M", (char *)NULL);
        else if (n == SERVER_NO_MULTI_CONN)
            execlp("nbdkit", "nbdkit", "-f", "--exit-with-parent", "-U", sock,
                   "-P", pidfile, "--filter=multi-conn", "memory", "8M",
                   "multi-conn-mode=disable", (char *)NULL);
        else
            execlp("nbdkit", "nbdkit", "-f", "--exit-with-parent", "-U", sock,
                   "-P", pidfile, "memory", "8M", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 3000; i++) {
        int status;

        if (stat(pidfile, &st) == 0)
            return 0;
        if (waitpid(nbdkit_pid[n], &status, WNOHANG) == nbdkit_pid[n]) {
            nbdkit_pid[n] = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

int
main(void)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_backing_info info;
    struct xbd_backing *b;
    struct xbd_ioq *q, *q2;
    char params[512];
    static uint8_t wbuf[1 << 20], rbuf[1 << 20];
    int rc;

    if (system("nbdkit --version >/dev/null 2>&1") != 0) {
        printf("1..0 # SKIP nbdkit not installed\n");
        return 77;
    }
    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp");
    atexit(cleanup);
    if (start_nbdkit(SERVER_RW) < 0)
        bail_out("nbdkit did not start");

    rc = xbd_backing_open("nbd:nbd+unix:///?socket=/nonexistent/sock", &opts, &b,
                          errbuf, sizeof(errbuf));
    ok(rc < 0 && strstr(errbuf, "cannot connect to nbd+unix:///?socket=/nonexistent/sock"),
       "no server: %d, %s", rc, errbuf);
    rc = xbd_backing_open("nbd:/srv/disk.img", &opts, &b, errbuf, sizeof(errbuf));
    ok(rc == -EINVAL && strstr(errbuf, "not an NBD URI"), "not a URI: %s", errbuf);

    snprintf(params, sizeof(params), "nbd:nbd+unix:///?socket=%s/s0", dir);
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "open %s (%s)", params, rc < 0 ? errbuf : "ok");
    if (rc < 0)
        return done_testing();
    {
        /* The same export as a bare URI and as libxl writes it for qdisk. */
        const char *prefix[] = { "", "aio:" };
        struct xbd_backing *b2;

        for (int i = 0; i < 2; i++) {
            char p2[512];

            snprintf(p2, sizeof(p2), "%snbd+unix:///?socket=%s/s0", prefix[i], dir);
            rc = xbd_backing_open(p2, &opts, &b2, errbuf, sizeof(errbuf));
            is_int(rc, 0, "open %s (%s)", p2, rc < 0 ? errbuf : "ok");
            if (rc == 0)
                xbd_backing_close(b2);
        }
    }
    xbd_backing_info(b, &info);
    ok(info.size == 8u << 20 && info.sector_size == 512 && info.flush && info.discard &&
       !info.read_only, "info: 8M, 512-byte sectors, flush, discard (size %llu)",
       (unsigned long long)info.size);
    is_int(info.max_queues, 0, "multi-conn: any number of queues");

    rc = xbd_ioq_open(b, 32, &q, errbuf, sizeof(errbuf));
    is_int(rc, 0, "queue connection (%s)", rc < 0 ? errbuf : "ok");
    if (rc < 0)
        return done_testing();
    for (size_t i = 0; i < sizeof(wbuf); i++)
        wbuf[i] = (uint8_t)(i * 7 + (i >> 11));
    is_int(run_one(q, XBD_IO_WRITE, 4096, sizeof(wbuf), wbuf), (int64_t)sizeof(wbuf),
           "write 1 MiB");
    is_int(run_one(q, XBD_IO_FLUSH, 0, 0, NULL), 0, "flush");
    is_int(run_one(q, XBD_IO_READ, 4096, sizeof(rbuf), rbuf), (int64_t)sizeof(rbuf),
           "read 1 MiB");
    ok(memcmp(wbuf, rbuf, sizeof(wbuf)) == 0, "read back what was written");

    {
        struct xbd_io ios[16];

        for (unsigned int i = 0; i < 16; i++)
            ios[i] = (struct xbd_io){ .op = XBD_IO_READ, .offset = 4096 + i * 65536,
                                      .len = 65536, .buf = rbuf + i * 65536 };
        memset(rbuf, 0, sizeof(rbuf));
        is_int(run_batch(q, ios, 16), 0, "16 reads in one batch");
        ok(memcmp(wbuf, rbuf, sizeof(wbuf)) == 0 && ios[15].result == 65536,
           "batched reads return the data");
    }

    is_int(run_one(q, XBD_IO_DISCARD, 4096, 65536, NULL), 0, "trim 64 KiB");
    memset(rbuf, 0xff, 65536);
    run_one(q, XBD_IO_READ, 4096, 65536, rbuf);
    ok(rbuf[0] == 0 && rbuf[65535] == 0, "trimmed range reads zeros (memory plugin)");
    is_int(run_one(q, XBD_IO_DISCARD_SECURE, 4096, 4096, NULL), -EOPNOTSUPP,
           "no secure discard over NBD");
    is_int(run_one(q, XBD_IO_READ, (8u << 20) - 4096, 8192, rbuf) < 0, 1,
           "read past the end of the export fails");
    is_int(run_one(q, XBD_IO_READ, 0, 4096, rbuf), 4096,
           "the connection works after an error");

    rc = xbd_ioq_open(b, 32, &q2, errbuf, sizeof(errbuf));
    is_int(rc, 0, "a second queue connection (server has multi-conn)");
    if (rc == 0) {
        is_int(run_one(q2, XBD_IO_READ, 4096 + 65536, 4096, rbuf), 4096, "read on it");
        ok(memcmp(rbuf, wbuf + 65536, 4096) == 0, "sees the first queue's writes");
        xbd_ioq_close(q2);
    }
    /* The server going away fails what is asked after, without a hang. */
    kill(nbdkit_pid[0], SIGKILL);
    waitpid(nbdkit_pid[0], NULL, 0);
    nbdkit_pid[0] = 0;
    {
        int64_t r = run_one(q, XBD_IO_READ, 0, 4096, rbuf);

        ok(r < 0 && r != -9999, "server killed: a read fails (%lld) instead of hanging",
           (long long)r);
        r = run_one(q, XBD_IO_WRITE, 0, 4096, wbuf);
        ok(r < 0 && r != -9999, "and so does the next write (%lld)", (long long)r);
    }
    xbd_ioq_close(q);
    xbd_backing_close(b);

    /* A read-only export refuses a writable attach, allows a read-only one. */
    if (start_nbdkit(SERVER_RO) < 0)
        bail_out("nbdkit -r did not start");
    snprintf(params, sizeof(params), "nbd:nbd+unix:///?socket=%s/s1", dir);
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    ok(rc == -EROFS && strstr(errbuf, "read-only"), "read-only export, writable attach: %s",
       errbuf);
    opts.read_only = true;
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "read-only export, read-only attach");
    if (rc == 0) {
        xbd_backing_info(b, &info);
        ok(info.read_only && !info.flush && !info.discard, "read-only: no flush, no discard");
        xbd_backing_close(b);
    }

    /* No multi-conn: one queue, and a second connection is refused. */
    opts.read_only = false;
    if (start_nbdkit(SERVER_NO_MULTI_CONN) < 0)
        bail_out("nbdkit --filter=multi-conn did not start");
    snprintf(params, sizeof(params), "nbd:nbd+unix:///?socket=%s/s%d", dir,
             SERVER_NO_MULTI_CONN);
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "no multi-conn: open (%s)", rc < 0 ? errbuf : "ok");
    if (rc < 0)
        return done_testing();
    xbd_backing_info(b, &info);
    is_int(info.max_queues, 1, "no multi-conn: the backing serves one queue");
    rc = xbd_ioq_open(b, 32, &q, errbuf, sizeof(errbuf));
    is_int(rc, 0, "no multi-conn: the first queue connects");
    if (rc == 0) {
        rc = xbd_ioq_open(b, 32, &q2, errbuf, sizeof(errbuf));
        ok(rc == -ENOTSUP && strstr(errbuf, "multi-conn"),
           "no multi-conn: a second queue is refused: %s", errbuf);
        if (rc == 0)
            xbd_ioq_close(q2);
        xbd_ioq_close(q);
    }
    xbd_backing_close(b);
    return done_testing();
}
