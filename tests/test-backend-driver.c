/* Unit tests for backend/driver.c and the file and null drivers: params
 * parsing and open errors (with their messages), info, and reads, writes,
 * flushes and discards through the per-queue io_uring engine on a
 * temporary file. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend-io.h"
#include "tap.h"

static char errbuf[512];

static void
expect_open_fail(const char *params, int want, const char *text)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_backing *b = (struct xbd_backing *)1;
    int rc;

    errbuf[0] = '\0';
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    ok(rc == want && b == NULL && strstr(errbuf, text) != NULL,
       "open '%s' fails with %d: %s", params, rc, errbuf);
}

static void
test_open_errors(const char *dir)
{
    char path[512];

    expect_open_fail("", -EINVAL, "empty");
    expect_open_fail("disk.img", -EINVAL, "neither an absolute path");
    expect_open_fail("tape:/dev/st0", -EINVAL, "unknown backing type 'tape'");
    expect_open_fail("qcow2:/srv/a.qcow2", -ENOTSUP, "qemu-nbd");
    expect_open_fail("vhd:/srv/a.vhd", -ENOTSUP, "nbd:URI");
    expect_open_fail("/srv/nonexistent.img", -ENOENT,
                     "cannot open /srv/nonexistent.img: No such file or directory");
    expect_open_fail("raw:/srv/nonexistent.img", -ENOENT, "No such file");
    expect_open_fail("raw:relative.img", -EINVAL, "not an absolute path");
    expect_open_fail("aio:raw:/srv/a.img", -EINVAL, "inside another format prefix");
    expect_open_fail("aio:tape:/dev/st0", -EINVAL, "unknown backing type 'tape'");
    expect_open_fail("aio:qcow2:/srv/a.qcow2", -ENOTSUP, "qemu-nbd");
    snprintf(path, sizeof(path), "raw:%s", dir);
    expect_open_fail(path, -EISDIR, "Is a directory");
    expect_open_fail("/dev/null", -EINVAL, "neither a regular file nor a block device");
    expect_open_fail("null:size", -EINVAL, "not key=value");
    expect_open_fail("null:colour=blue", -EINVAL, "unknown key 'colour'");
    expect_open_fail("null:size=12Q", -EINVAL, "bad value");
    expect_open_fail("null:size=-1", -EINVAL, "bad value");
    expect_open_fail("null:size=99999999999T", -EINVAL, "bad value");
    expect_open_fail("null:latency=5", -EINVAL, "bad value");
    expect_open_fail("null:latency=61s", -EINVAL, "above 60s");
    expect_open_fail("null:size=100", -EINVAL, "at least one sector");
    expect_open_fail("null:sector-size=1000", -EINVAL, "512 or 4096");
#ifndef HAVE_LIBNBD
    expect_open_fail("nbd:nbd://server/disk", -ENOTSUP, "nbd backing not built in");
#endif
}

static void
fill(uint8_t *buf, size_t len, unsigned int seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

static void
test_file(const char *dir, bool direct)
{
    struct xbd_backing_opts opts = { .direct_io = direct, .discard_enable = true };
    struct xbd_backing_info info;
    struct xbd_backing *b;
    struct xbd_ioq *q;
    char path[512], params[600];
    uint8_t *wbuf, *rbuf;
    const char *mode = direct ? "O_DIRECT" : "buffered";
    int fd, rc;

    snprintf(path, sizeof(path), "%s/disk-%d.img", dir, direct);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 1024 * 1024 + 300) < 0)
        bail_out("cannot create %s", path);
    close(fd);
    snprintf(params, sizeof(params), "raw:%s", path);
    rc = xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "%s: open %s (%s)", mode, params, rc < 0 ? errbuf : "ok");
    if (rc < 0)
        return;
    is_int(xbd_backing_info(b, &info), 0, "%s: info", mode);
    is_int(info.size, 1024 * 1024, "%s: size rounded down to 512 bytes", mode);
    ok(info.sector_size == 512 && info.physical_sector_size >= 512 && info.flush &&
       !info.read_only, "%s: 512-byte sectors, flush, writable", mode);

    is_int(xbd_ioq_open(b, 16, &q, errbuf, sizeof(errbuf)), 0, "%s: engine open", mode);
    if (posix_memalign((void **)&wbuf, 4096, 65536) || posix_memalign((void **)&rbuf, 4096, 65536))
        bail_out("out of memory");

    fill(wbuf, 65536, 1);
    is_int(run_one(q, XBD_IO_WRITE, 8192, 65536, wbuf), 65536, "%s: write 64 KiB", mode);
    is_int(run_one(q, XBD_IO_FLUSH, 0, 0, NULL), 0, "%s: flush", mode);
    memset(rbuf, 0, 65536);
    is_int(run_one(q, XBD_IO_READ, 8192, 65536, rbuf), 65536, "%s: read 64 KiB", mode);
    ok(memcmp(wbuf, rbuf, 65536) == 0, "%s: read back what was written", mode);

    /* A batch of 8 writes of 4 KiB, then 8 reads, each one submit. */
    {
        struct xbd_io ios[8];

        fill(wbuf, 65536, 2);
        for (unsigned int i = 0; i < 8; i++)
            ios[i] = (struct xbd_io){ .op = XBD_IO_WRITE, .offset = 100 * 4096 + i * 8192,
                                      .len = 4096, .buf = wbuf + i * 4096 };
        is_int(run_batch(q, ios, 8), 0, "%s: batch of 8 writes", mode);
        for (unsigned int i = 0; i < 8; i++)
            ios[i] = (struct xbd_io){ .op = XBD_IO_READ, .offset = 100 * 4096 + i * 8192,
                                      .len = 4096, .buf = rbuf + i * 4096 };
        memset(rbuf, 0, 65536);
        is_int(run_batch(q, ios, 8), 0, "%s: batch of 8 reads", mode);
        ok(memcmp(wbuf, rbuf, 32768) == 0 && ios[7].result == 4096,
           "%s: batch read back", mode);
    }

    if (info.discard) {
        is_int(run_one(q, XBD_IO_DISCARD, 8192, 16384, NULL), 0, "%s: discard 16 KiB", mode);
        memset(rbuf, 0xff, 65536);
        is_int(run_one(q, XBD_IO_READ, 8192, 65536, rbuf), 65536, "%s: read after discard", mode);
        fill(wbuf, 65536, 1);
        ok(rbuf[0] == 0 && rbuf[16383] == 0 && memcmp(rbuf + 16384, wbuf + 16384, 49152) == 0,
           "%s: discarded range reads zeros, the rest is intact", mode);
        is_int(run_one(q, XBD_IO_DISCARD_SECURE, 8192, 4096, NULL), -EOPNOTSUPP,
               "%s: secure discard not supported on files", mode);
    } else {
        diag("file system does not punch holes: discard not tested");
    }

    /* The end of the file: a read that crosses it fails, never hangs. */
    is_int(run_one(q, XBD_IO_READ, 1024 * 1024 - 4096, 8192, rbuf), -EIO,
           "%s: read crossing the end of file: -EIO", mode);

    /* Live resize is seen by the next info. */
    fd = open(path, O_RDWR);
    if (fd < 0 || ftruncate(fd, 2 * 1024 * 1024) < 0)
        bail_out("cannot grow %s", path);
    close(fd);
    xbd_backing_info(b, &info);
    is_int(info.size, 2 * 1024 * 1024, "%s: info sees the file grow", mode);

    xbd_ioq_close(q);
    xbd_backing_close(b);

    /* Read-only: opened O_RDONLY, writes fail, no flush or discard. */
    opts.read_only = true;
    rc = xbd_backing_open(path, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "%s: open read-only", mode);
    if (rc == 0) {
        xbd_backing_info(b, &info);
        ok(info.read_only && !info.flush && !info.discard,
           "%s: read-only: no flush, no discard", mode);
        xbd_ioq_open(b, 4, &q, errbuf, sizeof(errbuf));
        is_int(run_one(q, XBD_IO_WRITE, 0, 4096, wbuf), -EBADF, "%s: write fails", mode);
        is_int(run_one(q, XBD_IO_READ, 8192, 4096, rbuf), 4096, "%s: read works", mode);
        xbd_ioq_close(q);
        xbd_backing_close(b);
    }
    unlink(path);
    free(wbuf);
    free(rbuf);
}

static void
test_null(void)
{
    struct xbd_backing_opts opts = { .discard_enable = true };
    struct xbd_backing_info info;
    struct xbd_backing *b;
    struct xbd_ioq *q;
    uint8_t buf[8192];
    int rc;

    rc = xbd_backing_open("null:", &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "null: defaults");
    xbd_backing_info(b, &info);
    is_int(info.size, 1ull << 30, "null: default size 1G");
    xbd_backing_close(b);

    rc = xbd_backing_open("null:size=3M,latency=1ms,sector-size=4096", &opts, &b,
                          errbuf, sizeof(errbuf));
    is_int(rc, 0, "null: size, latency and sector size (%s)", rc < 0 ? errbuf : "ok");
    if (rc < 0)
        return;
    xbd_backing_info(b, &info);
    ok(info.size == 3u << 20 && info.sector_size == 4096 && info.flush && info.discard &&
       info.discard_secure, "null: info as configured");
    is_int(xbd_ioq_open(b, 8, &q, errbuf, sizeof(errbuf)), 0, "null: engine");
    memset(buf, 0xff, sizeof(buf));
    is_int(run_one(q, XBD_IO_READ, 0, sizeof(buf), buf), (int64_t)sizeof(buf),
           "null: read after a 1 ms latency");
    ok(buf[0] == 0 && buf[8191] == 0, "null: reads return zeros");
    is_int(run_one(q, XBD_IO_WRITE, 0, sizeof(buf), buf), (int64_t)sizeof(buf), "null: write");
    is_int(run_one(q, XBD_IO_FLUSH, 0, 0, NULL), 0, "null: flush");
    is_int(run_one(q, XBD_IO_DISCARD_SECURE, 0, 4096, NULL), 0, "null: secure discard");
    {
        struct xbd_io ios[32];

        for (unsigned int i = 0; i < 32; i++)
            ios[i] = (struct xbd_io){ .op = XBD_IO_WRITE, .len = 512, .buf = buf };
        is_int(run_batch(q, ios, 32), 0, "null: 32 concurrent operations in a depth-8 ring");
    }
    xbd_ioq_close(q);
    xbd_backing_close(b);

    /* Concurrency: at most queue-depth operations at the driver. */
    rc = xbd_backing_open("null:size=1M,latency=20ms,queue-depth=2", &opts, &b, errbuf,
                          sizeof(errbuf));
    is_int(rc, 0, "null: queue-depth=2 (%s)", rc < 0 ? errbuf : "ok");
    if (rc == 0) {
        struct xbd_io ios[6];
        unsigned int got = 0;

        xbd_ioq_open(b, 16, &q, errbuf, sizeof(errbuf));
        for (unsigned int i = 0; i < 6; i++) {
            ios[i] = (struct xbd_io){ .op = XBD_IO_READ, .offset = 4096 * i, .len = 4096,
                                      .buf = buf };
            xbd_ioq_add(q, &ios[i]);
        }
        xbd_ioq_submit(q);
        is_int(xbd_ioq_waiting(q), 4, "null: 2 of 6 at the driver, 4 waiting");
        io_completions = 0;
        while (got < 6) {
            struct pollfd pfd = { .fd = xbd_ioq_fd(q), .events = POLLIN };

            if (!xbd_ioq_ready(q) && poll(&pfd, 1, 10000) != 1)
                break;
            got += xbd_ioq_reap(q, 64, io_count_done, NULL);
        }
        ok(got == 6 && xbd_ioq_waiting(q) == 0 && xbd_ioq_in_flight(q) == 0 &&
           ios[5].result == 4096, "null: all 6 completed through the limit");
        xbd_ioq_close(q);
        xbd_backing_close(b);
    }
    expect_open_fail("null:queue-depth=70000", -EINVAL, "above 65536");

    /* What libxl writes for a qdisk: a format prefix over the target. */
    rc = xbd_backing_open("aio:null:size=2M", &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "aio:null:... opens the null driver (%s)", rc < 0 ? errbuf : "ok");
    if (rc == 0) {
        xbd_backing_info(b, &info);
        is_int(info.size, 2u << 20, "aio:null: size from the inner params");
        xbd_backing_close(b);
    }

    rc = xbd_backing_open("null:size=1K,latency=0ns", &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "null: zero latency");
    if (rc == 0) {
        xbd_ioq_open(b, 1, &q, errbuf, sizeof(errbuf));
        is_int(run_one(q, XBD_IO_READ, 0, 512, buf), 512, "null: zero-latency read");
        xbd_ioq_close(q);
        xbd_backing_close(b);
    }
}

/* The engine's fd and xbd_ioq_ready: the queue thread reaps without a
 * system call and sleeps on the fd, so the fd must be readable exactly
 * while completions wait, with nothing to clear. */
static void
test_ready(void)
{
    struct xbd_backing_opts opts = { 0 };
    struct xbd_backing *b;
    struct xbd_ioq *q;
    struct xbd_io ios[3];
    struct pollfd pfd;
    uint8_t buf[512];
    unsigned int got;

    if (xbd_backing_open("null:size=1M,latency=1us", &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
        xbd_ioq_open(b, 4, &q, errbuf, sizeof(errbuf)) < 0)
        bail_out("null engine: %s", errbuf);
    pfd = (struct pollfd){ .fd = xbd_ioq_fd(q), .events = POLLIN };
    ok(!xbd_ioq_ready(q) && poll(&pfd, 1, 0) == 0,
       "engine: nothing submitted, nothing ready, fd not readable");
    for (unsigned int i = 0; i < 3; i++) {
        ios[i] = (struct xbd_io){ .op = XBD_IO_READ, .offset = 512 * i, .len = 512,
                                  .buf = buf };
        xbd_ioq_add(q, &ios[i]);
    }
    xbd_ioq_submit(q);
    ok(poll(&pfd, 1, 10000) == 1 && xbd_ioq_ready(q),
       "engine: completions ready, fd readable");
    io_completions = 0;
    got = xbd_ioq_reap(q, 1, io_count_done, NULL);
    /* Level-triggered: what is left keeps the fd readable. */
    ok(got == 1 && io_completions == 1 && poll(&pfd, 1, 0) == 1,
       "engine: one of several reaped, the fd stays readable for the rest");
    while (got < 3 && poll(&pfd, 1, 10000) == 1)
        got += xbd_ioq_reap(q, 64, io_count_done, NULL);
    ok(got == 3 && !xbd_ioq_ready(q) && poll(&pfd, 1, 0) == 0 && xbd_ioq_in_flight(q) == 0,
       "engine: all reaped: nothing ready, fd no longer readable (no read needed)");
    xbd_ioq_close(q);
    xbd_backing_close(b);

    /* Without latency the null driver completes at once (drv->sync): no
     * submission entry, ready before any submit, the fd stays quiet. */
    if (xbd_backing_open("null:size=1M", &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
        xbd_ioq_open(b, 4, &q, errbuf, sizeof(errbuf)) < 0)
        bail_out("null engine: %s", errbuf);
    pfd = (struct pollfd){ .fd = xbd_ioq_fd(q), .events = POLLIN };
    memset(buf, 0xaa, sizeof(buf));
    ios[0] = (struct xbd_io){ .op = XBD_IO_READ, .offset = 0, .len = 512, .buf = buf };
    ok(xbd_ioq_add(q, &ios[0]) == 0 && xbd_ioq_ready(q) && xbd_ioq_in_flight(q) == 1 &&
       poll(&pfd, 1, 0) == 0, "engine: synchronous completion ready at once, fd quiet");
    io_completions = 0;
    ok(xbd_ioq_submit(q) == 0 && xbd_ioq_reap(q, 64, io_count_done, NULL) == 1 &&
       io_completions == 1 && ios[0].result == 512 && buf[0] == 0 && buf[511] == 0 &&
       !xbd_ioq_ready(q) && xbd_ioq_in_flight(q) == 0,
       "engine: nothing to submit; reaped once with the full length, zeros read");
    xbd_ioq_close(q);
    xbd_backing_close(b);
}

/* Operations on memory named by an iovec (the guest's pages in the data
 * path): only drivers that do them synchronously take them — a file in
 * tmpfs, the null driver without latency — and the engine fails one that
 * would reach the ring rather than pass it memory the daemon does not own. */
static void
test_iov(const char *dir)
{
    struct xbd_backing_opts opts = { .direct_io = true, .discard_enable = true };
    char path[] = "/dev/shm/xbd-drv.XXXXXX", params[600];
    static uint8_t wbuf[3 * 4096], rbuf[3 * 4096];
    struct xbd_backing *b;
    struct xbd_ioq *q;
    struct iovec iov[4];
    struct xbd_io io;
    int fd = mkstemp(path);

    if (fd < 0 || ftruncate(fd, 1024 * 1024) < 0) {
        diag("no file in /dev/shm: tmpfs iovec operations not tested");
    } else if (xbd_backing_open(path, &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
               xbd_ioq_open(b, 8, &q, errbuf, sizeof(errbuf)) < 0) {
        ok(0, "tmpfs: open %s: %s", path, errbuf);
    } else if (!xbd_ioq_sync_iov(q, XBD_IO_READ)) {
        diag("/dev/shm is not tmpfs here: iovec operations not tested");
        xbd_ioq_close(q);
        xbd_backing_close(b);
    } else {
        ok(xbd_ioq_sync_iov(q, XBD_IO_WRITE) && !xbd_ioq_sync_iov(q, XBD_IO_FLUSH) &&
           !xbd_ioq_sync_iov(q, XBD_IO_DISCARD), "tmpfs: reads and writes take an iovec");
        /* 7 sectors from the end of one page, a whole page, one sector. */
        fill(wbuf, sizeof(wbuf), 5);
        iov[0] = (struct iovec){ wbuf + 512, 7 * 512 };
        iov[1] = (struct iovec){ wbuf + 4096, 4096 };
        iov[2] = (struct iovec){ wbuf + 8192, 512 };
        io = (struct xbd_io){ .op = XBD_IO_WRITE, .offset = 65536, .len = 16 * 512,
                              .iov = iov, .iovcnt = 3 };
        ok(run_batch(q, &io, 1) == 0 && io.result == 16 * 512, "tmpfs: write from 3 iovecs");
        memset(rbuf, 0, sizeof(rbuf));
        is_int(run_one(q, XBD_IO_READ, 65536, 16 * 512, rbuf), 16 * 512, "tmpfs: read it back");
        ok(memcmp(rbuf, wbuf + 512, 7 * 512) == 0 && memcmp(rbuf + 7 * 512, wbuf + 4096, 4096) == 0 &&
           memcmp(rbuf + 15 * 512, wbuf + 8192, 512) == 0, "tmpfs: the iovecs' data, in order");
        memset(rbuf, 0xee, sizeof(rbuf));
        iov[0] = (struct iovec){ rbuf + 1024, 512 };
        iov[1] = (struct iovec){ rbuf + 4096, 15 * 512 };
        io = (struct xbd_io){ .op = XBD_IO_READ, .offset = 65536, .len = 16 * 512,
                              .iov = iov, .iovcnt = 2 };
        ok(run_batch(q, &io, 1) == 0 && io.result == 16 * 512, "tmpfs: read into 2 iovecs");
        ok(memcmp(rbuf + 1024, wbuf + 512, 512) == 0 &&
           memcmp(rbuf + 4096, wbuf + 1024, 6 * 512) == 0 &&
           memcmp(rbuf + 4096 + 6 * 512, wbuf + 4096, 4096) == 0 &&
           memcmp(rbuf + 4096 + 14 * 512, wbuf + 8192, 512) == 0 &&
           rbuf[1023] == 0xee && rbuf[1536] == 0xee && rbuf[4095] == 0xee &&
           rbuf[4096 + 15 * 512] == 0xee, "tmpfs: each iovec filled, nothing around them");
        iov[0] = (struct iovec){ rbuf, 4096 };
        io = (struct xbd_io){ .op = XBD_IO_READ, .offset = 1024 * 1024 - 2048, .len = 4096,
                              .iov = iov, .iovcnt = 1 };
        ok(run_batch(q, &io, 1) == 0 && io.result == -EIO, "tmpfs: iovec read past the end: -EIO");
        xbd_ioq_close(q);
        xbd_backing_close(b);
    }
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }

    /* A file on disk goes through the ring: no iovec, and one given anyway
     * fails without reaching the kernel. */
    snprintf(params, sizeof(params), "%s/iov.img", dir);
    fd = open(params, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 65536) < 0)
        bail_out("cannot create %s", params);
    close(fd);
    if (xbd_backing_open(params, &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
        xbd_ioq_open(b, 8, &q, errbuf, sizeof(errbuf)) < 0)
        bail_out("%s: %s", params, errbuf);
    if (xbd_ioq_sync_iov(q, XBD_IO_READ)) {
        diag("%s is in memory: the ring's refusal of iovecs is not tested", dir);
    } else {
        memset(rbuf, 0xee, sizeof(rbuf));
        iov[0] = (struct iovec){ rbuf, 4096 };
        io = (struct xbd_io){ .op = XBD_IO_READ, .offset = 0, .len = 4096, .iov = iov,
                              .iovcnt = 1 };
        ok(run_batch(q, &io, 1) == 0 && io.result == -EIO && rbuf[0] == 0xee,
           "file on disk: an iovec read fails with -EIO, memory untouched");
    }
    xbd_ioq_close(q);
    xbd_backing_close(b);
    unlink(params);

    /* The null driver: zeros into every iovec without latency; with
     * latency it goes through the ring, so no iovec. */
    if (xbd_backing_open("null:size=1M", &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
        xbd_ioq_open(b, 4, &q, errbuf, sizeof(errbuf)) < 0)
        bail_out("null engine: %s", errbuf);
    memset(rbuf, 0xee, sizeof(rbuf));
    iov[0] = (struct iovec){ rbuf + 512, 512 };
    iov[1] = (struct iovec){ rbuf + 4096, 4096 };
    io = (struct xbd_io){ .op = XBD_IO_READ, .offset = 0, .len = 4608, .iov = iov, .iovcnt = 2 };
    ok(xbd_ioq_sync_iov(q, XBD_IO_READ) && run_batch(q, &io, 1) == 0 && io.result == 4608 &&
       rbuf[512] == 0 && rbuf[1023] == 0 && rbuf[4096] == 0 && rbuf[8191] == 0 &&
       rbuf[511] == 0xee && rbuf[1024] == 0xee && rbuf[8192] == 0xee,
       "null: zeros into each iovec, nothing around them");
    xbd_ioq_close(q);
    xbd_backing_close(b);
    if (xbd_backing_open("null:size=1M,latency=1us", &opts, &b, errbuf, sizeof(errbuf)) < 0 ||
        xbd_ioq_open(b, 4, &q, errbuf, sizeof(errbuf)) < 0)
        bail_out("null engine: %s", errbuf);
    ok(!xbd_ioq_sync_iov(q, XBD_IO_READ), "null with latency: no iovec");
    xbd_ioq_close(q);
    xbd_backing_close(b);
}

/* ---- Block devices: a loop device over a temporary file, when we may ---- */

static char loopdev[64];

static void
loop_detach(void)
{
    char cmd[128];

    if (loopdev[0] == '\0')
        return;
    snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot detach %s\n", loopdev);
    loopdev[0] = '\0';
}

/* Attach `file` with logical sector size `ss`; 0 on success. */
static int
loop_attach(const char *file, unsigned int ss)
{
    char cmd[600];
    FILE *p;

    if (geteuid() != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "losetup -f --show -b %u %s 2>/dev/null", ss, file);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (fgets(loopdev, sizeof(loopdev), p) == NULL)
        loopdev[0] = '\0';
    loopdev[strcspn(loopdev, "\n")] = '\0';
    if (pclose(p) != 0 || strncmp(loopdev, "/dev/loop", 9) != 0) {
        loopdev[0] = '\0';
        return -1;
    }
    return 0;
}

static void
test_blockdev(const char *dir, unsigned int ss)
{
    struct xbd_backing_opts opts = { .direct_io = true, .discard_enable = true };
    struct xbd_backing_info info;
    struct xbd_backing *b;
    struct xbd_ioq *q;
    char path[512];
    uint8_t *wbuf, *rbuf;
    int fd, rc;

    snprintf(path, sizeof(path), "%s/loop.img", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4 << 20) < 0)
        bail_out("cannot create %s", path);
    close(fd);
    if (loop_attach(path, ss) < 0) {
        diag("no loop device (not root, or none free): block devices not tested");
        unlink(path);
        return;
    }
    rc = xbd_backing_open(loopdev, &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "blockdev %u: open %s O_DIRECT (%s)", ss, loopdev, rc < 0 ? errbuf : "ok");
    if (rc == 0) {
        xbd_backing_info(b, &info);
        ok(info.size == 4 << 20 && info.sector_size == ss && info.physical_sector_size >= ss &&
           info.flush && !info.read_only, "blockdev %u: size %llu, sectors %u/%u from the "
           "ioctls", ss, (unsigned long long)info.size, info.sector_size,
           info.physical_sector_size);
        xbd_ioq_open(b, 8, &q, errbuf, sizeof(errbuf));
        if (posix_memalign((void **)&wbuf, 4096, 65536) ||
            posix_memalign((void **)&rbuf, 4096, 65536))
            bail_out("out of memory");
        fill(wbuf, 65536, 9);
        is_int(run_one(q, XBD_IO_WRITE, 65536, 65536, wbuf), 65536, "blockdev %u: write", ss);
        is_int(run_one(q, XBD_IO_FLUSH, 0, 0, NULL), 0, "blockdev %u: flush", ss);
        is_int(run_one(q, XBD_IO_READ, 65536, 65536, rbuf), 65536, "blockdev %u: read", ss);
        ok(memcmp(wbuf, rbuf, 65536) == 0, "blockdev %u: read back", ss);
        if (info.discard) {
            is_int(run_one(q, XBD_IO_DISCARD, 65536, 16384, NULL), 0,
                   "blockdev %u: discard (granularity %u)", ss, info.discard_granularity);
            run_one(q, XBD_IO_READ, 65536, 65536, rbuf);
            ok(rbuf[0] == 0 && rbuf[16383] == 0 && memcmp(rbuf + 16384, wbuf + 16384, 49152) == 0,
               "blockdev %u: discarded range reads zeros, the rest is intact", ss);
        } else {
            diag("loop device does not discard: BLKDISCARD not tested");
        }
        xbd_ioq_close(q);
        xbd_backing_close(b);
        free(wbuf);
        free(rbuf);
    }
    loop_detach();
    unlink(path);
}

int
main(void)
{
    char dir[] = "/tmp/xbd-drv.XXXXXX";

    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp");
    test_open_errors(dir);
    test_file(dir, false);
    test_file(dir, true);
    test_null();
    test_ready();
    test_iov(dir);
    atexit(loop_detach);
    test_blockdev(dir, 512);
    test_blockdev(dir, 4096);
    rmdir(dir);
    return done_testing();
}
