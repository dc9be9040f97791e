/* xbd-backd — the null driver: no storage, a configurable completion time.
 *
 *   params: null:size=1G,latency=100us,queue-depth=32,sector-size=512
 *
 *   size         bytes, with an optional K, M, G or T suffix (powers of
 *                1024); default 1G; rounded down to the sector size
 *   latency      how long each operation takes: a number with ns, us, ms or
 *                s (default 0: complete at once); every operation of a
 *                queue waits concurrently, as Linux null_blk's timer mode
 *   queue-depth  at most this many operations of a queue under way at once;
 *                the rest wait their turn (default 0: no limit)
 *   sector-size  512 or 4096 (default 512)
 *
 * Reads return zeros, writes are dropped; flush and discard succeed.  For
 * benchmarks of the data path and for reproducing latency-bound storage.
 * A latency is an io_uring timeout, so it costs no thread.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "xbd-parse.h"

struct null_backing {
    struct xbd_backing b;           /* first: the function table */
    uint64_t size;
    uint64_t latency_ns;
    uint32_t queue_depth;
    uint32_t sector_size;
    bool read_only;
};

/* "<digits><suffix>": the number times the suffix's multiplier. */
static int
parse_scaled(const char *s, size_t len, const char *const *suffixes,
             const uint64_t *mult, size_t nsuffix, uint64_t *out)
{
    char num[32];
    size_t digits = 0, i;
    uint64_t v;

    while (digits < len && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    if (digits == 0 || digits >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, digits);
    num[digits] = '\0';
    if (xbd_parse_u64(num, &v) < 0)
        return -EINVAL;
    for (i = 0; i < nsuffix; i++) {
        size_t sl = strlen(suffixes[i]);

        if (len - digits == sl && strncmp(s + digits, suffixes[i], sl) == 0) {
            if (mult[i] != 0 && v > UINT64_MAX / mult[i])
                return -ERANGE;
            *out = v * mult[i];
            return 0;
        }
    }
    return -EINVAL;
}

static int
null_open(const char *arg, const struct xbd_backing_opts *opts,
          struct xbd_backing **out, char *err, size_t errlen)
{
    static const char *const size_sfx[] = { "", "K", "M", "G", "T" };
    static const uint64_t size_mult[] = { 1, 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40 };
    static const char *const time_sfx[] = { "ns", "us", "ms", "s" };
    static const uint64_t time_mult[] = { 1, 1000, 1000000, 1000000000 };
    static const char *const ss_sfx[] = { "" };
    static const uint64_t ss_mult[] = { 1 };
    struct null_backing *n;
    uint64_t size = 1ull << 30, latency = 0, ss = 512, depth = 0;
    const char *p = arg;

    while (*p != '\0') {
        size_t len = strcspn(p, ","), klen;
        const char *eq = memchr(p, '=', len);
        int r;

        if (eq == NULL)
            return xbd_backing_error(err, errlen, -EINVAL, "null: '%.*s' is not "
                                     "key=value (size=1G,latency=100us)", (int)len, p);
        klen = (size_t)(eq - p);
        if (klen == 4 && strncmp(p, "size", 4) == 0)
            r = parse_scaled(eq + 1, len - klen - 1, size_sfx, size_mult, 5, &size);
        else if (klen == 7 && strncmp(p, "latency", 7) == 0)
            r = parse_scaled(eq + 1, len - klen - 1, time_sfx, time_mult, 4, &latency);
        else if (klen == 11 && strncmp(p, "sector-size", 11) == 0)
            r = parse_scaled(eq + 1, len - klen - 1, ss_sfx, ss_mult, 1, &ss);
        else if (klen == 11 && strncmp(p, "queue-depth", 11) == 0)
            r = parse_scaled(eq + 1, len - klen - 1, ss_sfx, ss_mult, 1, &depth);
        else
            return xbd_backing_error(err, errlen, -EINVAL, "null: unknown key '%.*s' "
                                     "(size, latency, queue-depth, sector-size)",
                                     (int)klen, p);
        if (r < 0)
            return xbd_backing_error(err, errlen, -EINVAL, "null: bad value in '%.*s'",
                                     (int)len, p);
        p += len;
        if (*p == ',')
            p++;
    }
    if (ss != 512 && ss != 4096)
        return xbd_backing_error(err, errlen, -EINVAL, "null: sector-size must be "
                                 "512 or 4096");
    size -= size % ss;
    if (size == 0)
        return xbd_backing_error(err, errlen, -EINVAL, "null: size must be at least "
                                 "one sector");
    if (latency > 60ull * 1000000000)
        return xbd_backing_error(err, errlen, -EINVAL, "null: latency above 60s");
    if (depth > 65536)
        return xbd_backing_error(err, errlen, -EINVAL, "null: queue-depth above 65536");
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    n->b.drv = &xbd_driver_null;
    n->size = size;
    n->latency_ns = latency;
    n->queue_depth = (uint32_t)depth;
    n->sector_size = (uint32_t)ss;
    n->read_only = opts->read_only;
    *out = &n->b;
    return 0;
}

static int
null_info(struct xbd_backing *b, struct xbd_backing_info *out)
{
    struct null_backing *n = (struct null_backing *)b;

    out->size = n->size;
    out->sector_size = n->sector_size;
    out->physical_sector_size = n->sector_size;
    out->read_only = n->read_only;
    out->flush = !n->read_only;
    out->discard = !n->read_only;
    out->discard_secure = !n->read_only;
    out->discard_granularity = n->sector_size;
    return 0;
}

static void
null_close(struct xbd_backing *b)
{
    free(b);
}

static int
null_prep(struct xbd_backing *b, struct io_uring_sqe *sqe, struct xbd_io *io)
{
    struct null_backing *n = (struct null_backing *)b;

    if (io->op == XBD_IO_READ)
        memset((uint8_t *)io->buf + io->done, 0, io->len - io->done);
    if (n->latency_ns == 0) {
        io_uring_prep_nop(sqe);
        return 0;
    }
    io->ts.tv_sec = (long long)(n->latency_ns / 1000000000);
    io->ts.tv_nsec = (long long)(n->latency_ns % 1000000000);
    io_uring_prep_timeout(sqe, &io->ts, 0, 0);
    return 0;
}

/* Without latency there is nothing to wait for: done at once, without
 * a submission entry and the system call to submit it. */
static bool
null_sync(struct xbd_backing *b, struct xbd_io *io)
{
    struct null_backing *n = (struct null_backing *)b;

    if (n->latency_ns != 0)
        return false;
    if (io->op == XBD_IO_READ && io->iov != NULL) {
        for (unsigned int i = 0; i < io->iovcnt; i++)
            memset(io->iov[i].iov_base, 0, io->iov[i].iov_len);
    } else if (io->op == XBD_IO_READ) {
        memset((uint8_t *)io->buf + io->done, 0, io->len - io->done);
    }
    io->sync_result = io->op == XBD_IO_READ || io->op == XBD_IO_WRITE ?
                      (int64_t)(io->len - io->done) : 0;
    return true;
}

/* Without latency, reads and writes are all done in null_sync. */
static bool
null_sync_iov(struct xbd_backing *b, enum xbd_io_op op)
{
    (void)op;
    return ((struct null_backing *)b)->latency_ns == 0;
}

static unsigned int
null_queue_depth(struct xbd_backing *b)
{
    return ((struct null_backing *)b)->queue_depth;
}

static int64_t
null_complete(struct xbd_backing *b, struct xbd_io *io, int res)
{
    (void)b;
    if (res < 0 && res != -ETIME)   /* a timeout expiring is success */
        return res;
    return io->op == XBD_IO_READ || io->op == XBD_IO_WRITE ?
           (int64_t)(io->len - io->done) : 0;
}

const struct xbd_driver xbd_driver_null = {
    .name = "null",
    .open = null_open,
    .info = null_info,
    .close = null_close,
    .prep = null_prep,
    .sync = null_sync,
    .sync_iov = null_sync_iov,
    .complete = null_complete,
    .queue_depth = null_queue_depth,
};
