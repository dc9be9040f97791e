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
#include <unistd.h>

#include "driver.h"
#include "tap.h"

static char errbuf[512];
static unsigned int completions;

static void
on_done(struct xbd_io *io, void *ctx)
{
    (void)io;
    (void)ctx;
    completions++;
}

/* Run `n` operations as one batch and wait for all of them. */
static int
run_batch(struct xbd_ioq *q, struct xbd_io *ios, unsigned int n)
{
    unsigned int got = 0;

    for (unsigned int i = 0; i < n; i++)
        if (xbd_ioq_add(q, &ios[i]) < 0)
            return -1;
    if (xbd_ioq_submit(q) < 0)
        return -1;
    completions = 0;
    while (got < n) {
        struct pollfd pfd = { .fd = xbd_ioq_fd(q), .events = POLLIN };

        if (poll(&pfd, 1, 10000) != 1)
            return -1;
        got += xbd_ioq_reap(q, 64, on_done, NULL);
    }
    return completions == n && xbd_ioq_in_flight(q) == 0 ? 0 : -1;
}

static int64_t
run_one(struct xbd_ioq *q, enum xbd_io_op op, uint64_t off, uint64_t len, void *buf)
{
    struct xbd_io io = { .op = op, .offset = off, .len = len, .buf = buf };

    if (run_batch(q, &io, 1) < 0)
        return -9999;
    return io.result;
}

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

    rc = xbd_backing_open("null:size=1K,latency=0ns", &opts, &b, errbuf, sizeof(errbuf));
    is_int(rc, 0, "null: zero latency");
    if (rc == 0) {
        xbd_ioq_open(b, 1, &q, errbuf, sizeof(errbuf));
        is_int(run_one(q, XBD_IO_READ, 0, 512, buf), 512, "null: zero-latency read");
        xbd_ioq_close(q);
        xbd_backing_close(b);
    }
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
    rmdir(dir);
    return done_testing();
}
