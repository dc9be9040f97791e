/* xbdfront — use a Xen virtual block device of this domain through
 * libxbdfront: inspect it, read and write it, verify and benchmark it.
 *
 * One command per entry of the table at the bottom (name, usage, help,
 * handler); `xbdfront --help` and xbdfront(1)'s synopsis list the same
 * commands.  verify and bench drive every queue at once, one thread per
 * queue with several requests in flight on each (the library's threading
 * model: a queue belongs to one thread).
 *
 * Exit status: 0 success, 1 failure (a message says what and what to do),
 * 2 usage error. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "xbdfront.h"

#define MIB (1024u * 1024u)

/* ======================================================================
 * Options and helpers
 * ====================================================================== */

struct opts {
    unsigned int ring_pages, queues, indirect, pool_pages;
    bool set_indirect, no_persistent, json, zero_copy, quiet;
    unsigned int timeout_s;
    /* verify */
    uint64_t seed, size;
    bool seed_set;
    const char *phase;
    /* bench */
    const char *rw;
    uint64_t bs;
    unsigned int iodepth, seconds;
    unsigned int poll_us;
    bool poll_set;
};

static struct opts o = {
    .queues = 0, .timeout_s = 30, .phase = "both", .rw = "randread",
    .bs = 4096, .iodepth = 0, .seconds = 5,
};

/* The connected handle, closed on the way out of die() so that the
 * frontend never stays Connected behind a dead process; and the workers
 * of an engine that gave up, kept reachable until then (their slots are
 * still in the library's hands). */
static struct xbdfront *the_handle;
static struct worker *abandoned_workers;

__attribute__((format(printf, 1, 2), noreturn)) static void
die(const char *fmt, ...)
{
    va_list ap;

    fputs("xbdfront: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    xbdfront_close(the_handle);
    exit(1);
}

/* A byte count: decimal with an optional binary suffix (k, M, G, T; "b" or
 * "iB" after it is accepted too). */
static int
parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned int shift = 0;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift != 0 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0 ||
                       strcmp(end, "b") == 0))
        end += strlen(end);
    if (*end != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static uint64_t
size_arg(const char *what, const char *s)
{
    uint64_t v;

    if (parse_size(s, &v) < 0)
        die("%s \"%s\": not a byte count (a number, optionally with k, M, "
            "G or T)", what, s);
    return v;
}

static unsigned int
uint_arg(const char *what, const char *s, unsigned int min, unsigned int max)
{
    uint64_t v;

    if (parse_size(s, &v) < 0 || v < min || v > max)
        die("%s \"%s\": expected a number from %u to %u", what, s, min, max);
    return (unsigned int)v;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: the pattern generator and the random source, seeded. */
static inline uint64_t
mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static inline uint64_t
rnd(uint64_t *state)
{
    *state += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(*state);
}

static void *
xmalloc_aligned(size_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, 4096, len ? len : 1) != 0)
        die("out of memory (%zu bytes)", len);
    return p;
}

/* Open and connect DEV with the common options. */
static struct xbdfront *
open_dev(const char *dev)
{
    struct xbdfront *h;
    int r;

    if (xbdfront_create(&h) < 0)
        die("%s", xbdfront_get_error());
    r = xbdfront_set_connect_timeout_ms(h, o.timeout_s * 1000u);
    if (r >= 0)
        r = xbdfront_set_sync_timeout_ms(h, o.timeout_s * 1000u);
    if (r >= 0 && o.ring_pages != 0)
        r = xbdfront_set_ring_pages(h, o.ring_pages);
    if (r >= 0 && o.queues != 0)
        r = xbdfront_set_queues(h, o.queues);
    if (r >= 0 && o.set_indirect)
        r = xbdfront_set_indirect_segments(h, o.indirect);
    if (r >= 0 && o.no_persistent)
        r = xbdfront_set_persistent(h, 0);
    if (r >= 0 && o.poll_set)
        r = xbdfront_set_poll_us(h, o.poll_us);
    if (r >= 0 && o.pool_pages != 0)
        r = xbdfront_set_pool_pages(h, o.pool_pages);
    if (r >= 0 && o.quiet)
        r = xbdfront_set_log_callback(h, NULL, NULL);
    /* verify and bench keep --iodepth requests in flight per queue: the
     * library must accept that many, even beyond its default of four
     * rings' worth (the excess waits for ring space inside it). */
    if (r >= 0 && o.iodepth != 0)
        r = xbdfront_set_max_pending(h, o.iodepth);
    if (r < 0)
        die("%s", xbdfront_get_error());
    r = xbdfront_connect(h, dev);
    if (r < 0) {
        const char *hint = "";

        if (r == -ENOENT &&
            strstr(xbdfront_get_error(), "no such virtual block") != NULL)
            hint = " (is the disk attached to this domain? `xbdctl "
                   "block-list DOMAIN` in dom0 lists them)";
        else if (r == -ETIMEDOUT)
            hint = " (is the backend daemon running? try a longer --timeout)";
        die("cannot connect to %s: %s%s", dev, xbdfront_get_error(), hint);
    }
    return h;
}

/* Check [offset, offset+len) against the device before asking. */
static void
check_range(struct xbdfront *h, const char *dev, uint64_t offset,
            uint64_t len)
{
    uint64_t size = (uint64_t)xbdfront_get_size(h);
    uint64_t ss = (uint64_t)xbdfront_get_sector_size(h);

    if (offset % ss != 0 || len % ss != 0)
        die("offset %" PRIu64 " and length %" PRIu64 " must be multiples of "
            "%s's sector size, %" PRIu64 " bytes", offset, len, dev, ss);
    if (offset > size || len > size - offset)
        die("%" PRIu64 " bytes at offset %" PRIu64 " do not fit in %s (%"
            PRIu64 " bytes)", len, offset, dev, size);
}

/* ======================================================================
 * info
 * ====================================================================== */

static const struct {
    uint64_t bit;
    const char *name;
} feature_names[] = {
    { XBDFRONT_FEATURE_FLUSH, "flush" },
    { XBDFRONT_FEATURE_BARRIER, "barrier" },
    { XBDFRONT_FEATURE_DISCARD, "discard" },
    { XBDFRONT_FEATURE_SECURE_DISCARD, "secure-discard" },
    { XBDFRONT_FEATURE_READONLY, "readonly" },
    { XBDFRONT_FEATURE_CDROM, "cdrom" },
    { XBDFRONT_FEATURE_REMOVABLE, "removable" },
    { XBDFRONT_FEATURE_UNTRUSTED, "untrusted" },
};

static int
cmd_info(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    uint64_t f = (uint64_t)xbdfront_get_features(h);
    bool first = true;

    (void)argc;
    (void)argv;
    if (o.json) {
        printf("{\"device\": \"%s\", \"vdev\": %" PRId64 ", \"size\": %"
               PRId64 ", \"sector_size\": %d, \"ring_pages\": %d, "
               "\"queues\": %d, \"indirect_segments\": %d, "
               "\"persistent\": %s, \"features\": [", dev,
               xbdfront_get_vdev(h), xbdfront_get_size(h),
               xbdfront_get_sector_size(h), xbdfront_get_ring_pages(h),
               xbdfront_get_queues(h), xbdfront_get_indirect_segments(h),
               xbdfront_get_persistent(h) ? "true" : "false");
        for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
            if (f & feature_names[i].bit) {
                printf("%s\"%s\"", first ? "" : ", ", feature_names[i].name);
                first = false;
            }
        printf("], \"pool_pages\": %d}\n", xbdfront_get_pool_pages(h));
        return 0;
    }
    printf("device:            %s (virtual-device %" PRId64 ")\n", dev,
           xbdfront_get_vdev(h));
    printf("size:              %" PRId64 " bytes\n", xbdfront_get_size(h));
    printf("sector size:       %d\n", xbdfront_get_sector_size(h));
    printf("ring pages:        %d\n", xbdfront_get_ring_pages(h));
    printf("queues:            %d\n", xbdfront_get_queues(h));
    printf("indirect segments: %d\n", xbdfront_get_indirect_segments(h));
    printf("pool pages:        %d per queue\n", xbdfront_get_pool_pages(h));
    printf("persistent grants: %s\n", xbdfront_get_persistent(h) ? "yes" : "no");
    printf("features:         ");
    for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
        if (f & feature_names[i].bit) {
            printf(" %s", feature_names[i].name);
            first = false;
        }
    printf("%s\n", first ? " none" : "");
    return 0;
}

/* ======================================================================
 * read, write, flush, discard
 * ====================================================================== */

/* Why the last synchronous call failed.  They are the library's, on
 * queue 0, bounded by --timeout (xbdfront_set_sync_timeout_ms(), set in
 * open_dev()): a backend that stops answering, or goes away and never
 * comes back, makes them fail with -ETIMEDOUT instead of hanging. */
static const char *
io_error(void)
{
    static char why[600];

    snprintf(why, sizeof(why), "%s%s", xbdfront_get_error(),
             xbdfront_get_errno() == ETIMEDOUT
             ? " (is the backend alive? raise --timeout to wait longer)" : "");
    return why;
}

static int
cmd_read(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    uint64_t offset, len, done = 0;
    size_t chunk = MIB;
    char *buf;

    if (argc != 2)
        die("read needs OFFSET and LEN (see xbdfront --help)");
    offset = size_arg("OFFSET", argv[0]);
    len = size_arg("LEN", argv[1]);
    check_range(h, dev, offset, len);
    buf = xmalloc_aligned(chunk);
    while (done < len) {
        size_t n = len - done < chunk ? (size_t)(len - done) : chunk;

        if (xbdfront_pread(h, 0, buf, n, offset + done, 0) < 0)
            die("read of %zu bytes at %" PRIu64 " failed: %s", n,
                offset + done, io_error());
        if (fwrite(buf, 1, n, stdout) != n)
            die("cannot write to standard output: %s", strerror(errno));
        done += n;
    }
    free(buf);
    if (fflush(stdout) != 0)
        die("cannot write to standard output: %s", strerror(errno));
    return 0;
}

/* Fill buf from stdin as far as possible; returns bytes read. */
static size_t
read_stdin(char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        size_t n = fread(buf + got, 1, len - got, stdin);

        if (n == 0) {
            if (ferror(stdin))
                die("cannot read standard input: %s", strerror(errno));
            break;
        }
        got += n;
    }
    return got;
}

static int
cmd_write(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    uint64_t offset, pos, size = (uint64_t)xbdfront_get_size(h);
    size_t ss = (size_t)xbdfront_get_sector_size(h), chunk = MIB;
    char *buf;

    if (argc != 1)
        die("write needs OFFSET, and the data on standard input");
    offset = size_arg("OFFSET", argv[0]);
    check_range(h, dev, offset, 0);
    buf = xmalloc_aligned(chunk);
    pos = offset;
    for (;;) {
        size_t n = read_stdin(buf, chunk), whole = n - n % ss;

        if (n == 0)
            break;
        if (pos + n > size || pos + n < pos)
            die("the input does not fit: %s has %" PRIu64 " bytes, the data "
                "reaches past byte %" PRIu64, dev, size, pos + n);
        if (whole > 0 && xbdfront_pwrite(h, 0, buf, whole, pos, 0) < 0)
            die("write of %zu bytes at %" PRIu64 " failed: %s", whole, pos,
                io_error());
        if (whole < n) {
            /* A partial last sector: read it, overlay, write it back. */
            char *sec = xmalloc_aligned(ss);

            if (xbdfront_pread(h, 0, sec, ss, pos + whole, 0) < 0)
                die("read of the last sector at %" PRIu64 " failed: %s",
                    pos + whole, io_error());
            memcpy(sec, buf + whole, n - whole);
            if (xbdfront_pwrite(h, 0, sec, ss, pos + whole, 0) < 0)
                die("write of the last sector at %" PRIu64 " failed: %s",
                    pos + whole, io_error());
            free(sec);
            pos += n;
            break;
        }
        pos += n;
    }
    free(buf);
    if (xbdfront_flush(h, 0, 0) < 0)
        die("flush failed: %s", io_error());
    return 0;
}

static int
cmd_flush(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    (void)argv;
    if (argc != 0)
        die("flush takes no arguments besides DEV");
    if (xbdfront_flush(h, 0, 0) < 0)
        die("flush of %s failed: %s", dev, io_error());
    return 0;
}

static int
cmd_discard(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    uint64_t offset, len;

    if (argc != 2)
        die("discard needs OFFSET and LEN");
    offset = size_arg("OFFSET", argv[0]);
    len = size_arg("LEN", argv[1]);
    check_range(h, dev, offset, len);
    if (!(xbdfront_get_features(h) & XBDFRONT_FEATURE_DISCARD))
        die("%s's backend does not offer discard (feature-discard)", dev);
    if (xbdfront_discard(h, 0, len, offset, 0) < 0)
        die("discard of %" PRIu64 " bytes at %" PRIu64 " failed: %s", len,
            offset, io_error());
    return 0;
}

/* ======================================================================
 * The engine for verify and bench: one thread per queue, iodepth slots
 * each, a job source shared by all threads.
 * ====================================================================== */

struct engine;

/* A slot: one request in flight at a time. */
struct slot {
    struct worker *w;
    char *buf;
    uint64_t offset, len;
    bool busy, write;
    uint64_t start_ns;
};

/* Latency histogram: 64 power-of-two ranges of 16 linear buckets, in ns. */
#define HSUB 16
struct hist {
    uint64_t b[64 * HSUB];
};

static void
hist_add(struct hist *hi, uint64_t ns)
{
    unsigned int e = ns < HSUB ? 0 : (unsigned int)(63 - __builtin_clzll(ns)) - 3;
    uint64_t base = e == 0 ? 0 : (uint64_t)HSUB << (e - 1);
    uint64_t width = e == 0 ? 1 : (uint64_t)1 << (e - 1);

    hi->b[e * HSUB + (ns - base) / width < 64 * HSUB
              ? e * HSUB + (ns - base) / width : 64 * HSUB - 1]++;
}

/* The upper bound (ns) of the bucket holding quantile q. */
static uint64_t
hist_quantile(const struct hist *hi, double q)
{
    uint64_t total = 0, seen = 0;

    for (size_t i = 0; i < 64 * HSUB; i++)
        total += hi->b[i];
    if (total == 0)
        return 0;
    for (size_t i = 0; i < 64 * HSUB; i++) {
        seen += hi->b[i];
        if ((double)seen >= q * (double)total) {
            unsigned int e = (unsigned int)(i / HSUB);
            uint64_t base = e == 0 ? 0 : (uint64_t)HSUB << (e - 1);
            uint64_t width = e == 0 ? 1 : (uint64_t)1 << (e - 1);

            return base + (i % HSUB + 1) * width;
        }
    }
    return 0;
}

struct worker {
    struct engine *e;
    unsigned int queue;
    struct slot *slots;
    unsigned int nslots, busy;
    unsigned int *idle;         /* indexes of the free slots, a stack of */
    unsigned int nidle;         /* nidle: refilling costs O(completions),
                                 * not O(iodepth) */
    uint64_t rnd;
    uint64_t seq_pos;           /* bench, sequential */
    uint64_t ios, bytes;
    uint64_t mismatches;
    struct hist hist;
    int err;                    /* first error */
    char errmsg[300];
    pthread_t tid;
};

/* A job: [offset, offset+len) to write or read. */
struct job {
    uint64_t offset, len;
};

struct engine {
    struct xbdfront *h;
    const char *dev;
    uint64_t size, sector;
    /* verify */
    struct job *jobs;
    size_t njobs;
    atomic_size_t next;
    bool write;
    uint64_t seed;
    atomic_uint_fast64_t mism_reported;
    /* bench */
    bool bench, rand, mixed, bwrite;
    uint64_t bs;
    double until;
    atomic_bool stop;
    atomic_uint_fast64_t done_bytes;
    uint64_t total_bytes;       /* verify; 0 for bench */
    double start;
};

/* The pattern: every 8-byte word is a function of the seed and its byte
 * offset on the device, so any range can be checked on its own. */
static void
pattern_fill(uint64_t seed, uint64_t offset, char *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t v = mix64(seed ^ ((offset + i) >> 3));

        memcpy(buf + i, &v, 8);
    }
}

static void
report_mismatch(struct worker *w, uint64_t offset, const char *buf,
                uint64_t len)
{
    struct engine *e = w->e;
    char want[512];

    for (uint64_t s = 0; s < len; s += e->sector) {
        uint64_t n = e->sector < sizeof(want) ? e->sector : sizeof(want);

        for (uint64_t p = 0; p < e->sector; p += n) {
            pattern_fill(e->seed, offset + s + p, want, n);
            if (memcmp(want, buf + s + p, n) != 0) {
                uint64_t k = 0;

                while (want[k] == buf[s + p + k])
                    k++;
                w->mismatches++;
                if (atomic_fetch_add(&e->mism_reported, 1) < 10)
                    fprintf(stderr, "xbdfront: verify: mismatch in the "
                            "sector at byte %" PRIu64 ": first wrong byte "
                            "at %" PRIu64 " (0x%02x, expected 0x%02x)\n",
                            offset + s, offset + s + p + k,
                            (unsigned char)buf[s + p + k],
                            (unsigned char)want[k]);
                break;
            }
        }
    }
}

static void
slot_done(void *ud, int err)
{
    struct slot *s = ud;
    struct worker *w = s->w;
    struct engine *e = w->e;

    s->busy = false;
    w->busy--;
    w->idle[w->nidle++] = (unsigned int)(s - w->slots);
    if (err < 0) {
        if (w->err == 0) {
            w->err = err;
            /* -ENODEV: the library has just said why, on this thread. */
            snprintf(w->errmsg, sizeof(w->errmsg), "%s of %" PRIu64 " bytes "
                     "at %" PRIu64 " failed: %s", s->write ? "write" : "read",
                     s->len, s->offset,
                     err == -ENODEV && xbdfront_get_error()[0] != '\0'
                     ? xbdfront_get_error() : strerror(-err));
        }
        return;
    }
    hist_add(&w->hist, now_ns() - s->start_ns);
    w->ios++;
    w->bytes += s->len;
    atomic_fetch_add(&e->done_bytes, s->len);
    if (!e->bench && !s->write) {
        char want[4096];
        uint64_t p;

        for (p = 0; p < s->len; p += sizeof(want)) {
            uint64_t n = s->len - p < sizeof(want) ? s->len - p : sizeof(want);

            pattern_fill(e->seed, s->offset + p, want, n);
            if (memcmp(want, s->buf + p, n) != 0)
                break;
        }
        if (p < s->len)
            report_mismatch(w, s->offset, s->buf, s->len);
    }
}

/* The next request for a free slot; false when there is no more work. */
static bool
next_job(struct worker *w, struct slot *s)
{
    struct engine *e = w->e;

    if (!e->bench) {
        size_t i = atomic_fetch_add(&e->next, 1);

        if (i >= e->njobs)
            return false;
        s->offset = e->jobs[i].offset;
        s->len = e->jobs[i].len;
        s->write = e->write;
        if (s->write)
            pattern_fill(e->seed, s->offset, s->buf, s->len);
        return true;
    }
    if (atomic_load(&e->stop))
        return false;
    if (e->rand) {
        uint64_t blocks = e->size / e->bs;

        s->offset = (rnd(&w->rnd) % blocks) * e->bs;
    } else {
        if (w->seq_pos + e->bs > e->size)
            w->seq_pos = 0;
        s->offset = w->seq_pos;
        w->seq_pos += e->bs;
    }
    s->len = e->bs;
    s->write = e->mixed ? (rnd(&w->rnd) & 1) != 0 : e->bwrite;
    return true;
}

/* bench: SIGINT or SIGTERM ends the run early, like --seconds running
 * out (the handler only sets this; the workers look at it between
 * submissions and after each poll, at most a second apart). */
static volatile sig_atomic_t bench_interrupted;

static void
bench_on_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

/* Installed before connecting, so that a signal at any point of a bench's
 * life stops it gracefully; SA_RESTART for the library's reads. */
static void
bench_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = bench_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Progress on stderr: a terminal and no --quiet.  Decided once, in
 * main(): isatty() is a syscall, too dear for every loop of a worker. */
static bool show_progress;

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct engine *e = w->e;
    double last_progress = 0;
    bool more = true;
    uint64_t last_done_ns = now_ns();

    for (;;) {
        int n;

        while (more && w->err == 0 && w->nidle > 0) {
            struct slot *s = &w->slots[w->idle[w->nidle - 1]];
            int r;

            if (!next_job(w, s)) {
                more = false;
                break;
            }
            w->nidle--;
            s->busy = true;
            w->busy++;
            s->start_ns = now_ns();
            r = s->write
                ? xbdfront_aio_pwrite(e->h, w->queue, s->buf, s->len,
                                      s->offset, 0, slot_done, s)
                : xbdfront_aio_pread(e->h, w->queue, s->buf, s->len,
                                     s->offset, 0, slot_done, s);
            if (r < 0) {
                s->busy = false;
                w->busy--;
                w->idle[w->nidle++] = (unsigned int)(s - w->slots);
                w->err = r;
                snprintf(w->errmsg, sizeof(w->errmsg), "cannot submit on "
                         "queue %u: %s", w->queue, xbdfront_get_error());
            }
        }
        if (w->busy == 0 && (!more || w->err != 0))
            break;
        if (e->bench && !atomic_load(&e->stop) &&
            (bench_interrupted || now_s() >= e->until))
            atomic_store(&e->stop, true);
        n = xbdfront_poll(e->h, w->queue, 1000, 0);
        if (n < 0) {
            if (w->err == 0) {
                w->err = n;
                snprintf(w->errmsg, sizeof(w->errmsg), "queue %u: %s",
                         w->queue, xbdfront_get_error());
            }
            break;
        }
        /* Time without a completion, by the clock: spurious wake-ups (a
         * backend's event storm) return from the poll early and often. */
        if (n != 0 || w->busy == 0)
            last_done_ns = now_ns();
        if (now_ns() - last_done_ns >= (uint64_t)o.timeout_s * 1000000000u) {
            w->err = -ETIMEDOUT;
            snprintf(w->errmsg, sizeof(w->errmsg), "queue %u: no completion "
                     "for %u s with %u requests in flight (is the backend "
                     "alive? raise --timeout to wait longer)", w->queue,
                     o.timeout_s, w->busy);
            break;
        }
        /* Progress on a terminal, from queue 0's thread, once a second:
         * rate, elapsed, remaining. */
        if (w->queue == 0 && show_progress &&
            now_s() - last_progress >= 1) {
            double t = now_s(), el = t - e->start;
            uint64_t done = atomic_load(&e->done_bytes);
            double rate = el > 0 ? (double)done / el : 0;
            double left = e->bench ? e->until - t
                          : rate > 0 ? (double)(e->total_bytes - done) / rate
                                     : 0;

            last_progress = t;
            fprintf(stderr, "\r%.1f MB/s, %.0f s elapsed, %.0f s left   ",
                    rate / 1e6, el, left > 0 ? left : 0);
        }
    }
    return NULL;
}

/* A slot's buffer: granted memory with --zero-copy, plain memory else. */
static char *
slot_buffer(struct xbdfront *h, uint64_t len)
{
    void *p;

    if (!o.zero_copy)
        return xmalloc_aligned(len);
    if (xbdfront_buffer_alloc(h, len, &p) < 0)
        die("--zero-copy: %s", xbdfront_get_error());
    return p;
}

/* Run the engine on every queue; returns the workers (caller frees). */
static struct worker *
engine_run(struct engine *e, unsigned int depth, uint64_t slot_len,
           unsigned int *nworkers)
{
    unsigned int nq = (unsigned int)xbdfront_get_queues(e->h);
    struct worker *ws = calloc(nq, sizeof(*ws));

    if (ws == NULL)
        die("out of memory");
    for (unsigned int q = 0; q < nq; q++) {
        struct worker *w = &ws[q];

        w->e = e;
        w->queue = q;
        w->nslots = depth;
        w->rnd = e->seed * 131 + q;
        w->seq_pos = e->size / nq * q / (e->bs ? e->bs : 1) * (e->bs ? e->bs : 1);
        w->slots = calloc(depth, sizeof(*w->slots));
        w->idle = calloc(depth, sizeof(*w->idle));
        if (w->slots == NULL || w->idle == NULL)
            die("out of memory");
        for (unsigned int i = 0; i < depth; i++) {
            w->slots[i].w = w;
            w->slots[i].buf = slot_buffer(e->h, slot_len);
            w->idle[w->nidle++] = depth - 1 - i;
        }
    }
    e->start = now_s();
    for (unsigned int q = 0; q < nq; q++)
        if (pthread_create(&ws[q].tid, NULL, worker_main, &ws[q]) != 0)
            die("cannot start a thread: %s", strerror(errno));
    for (unsigned int q = 0; q < nq; q++)
        pthread_join(ws[q].tid, NULL);
    if (show_progress)
        fprintf(stderr, "\r%60s\r", "");
    *nworkers = nq;
    return ws;
}

static void
engine_free(struct worker *ws, unsigned int n)
{
    /* A worker that gave up with requests in flight leaves their slots to
     * the library: their callbacks run (with -ECANCELED) when the handle
     * is closed, so that memory must outlive it - leak it, we exit. */
    for (unsigned int q = 0; q < n; q++)
        if (ws[q].busy > 0) {
            abandoned_workers = ws;
            return;
        }
    for (unsigned int q = 0; q < n; q++) {
        for (unsigned int i = 0; i < ws[q].nslots; i++)
            if (o.zero_copy)
                xbdfront_buffer_free(ws[q].e->h, ws[q].slots[i].buf);
            else
                free(ws[q].slots[i].buf);
        free(ws[q].slots);
        free(ws[q].idle);
    }
    free(ws);
}

/* The first error any worker saw, reported; returns true if there was. */
static bool
engine_failed(struct worker *ws, unsigned int n, const char *what)
{
    for (unsigned int q = 0; q < n; q++)
        if (ws[q].err != 0) {
            fprintf(stderr, "xbdfront: %s: %s\n", what, ws[q].errmsg);
            return true;
        }
    return false;
}

/* ======================================================================
 * verify
 * ====================================================================== */

/* Split [0, size) into jobs of random lengths (whole sectors, from one
 * sector to 1 MiB, which crosses the direct and indirect limits). */
static struct job *
make_jobs(uint64_t size, uint64_t sector, uint64_t *rs, size_t *njobs)
{
    size_t cap = 1024, n = 0;
    struct job *j = malloc(cap * sizeof(*j));

    for (uint64_t off = 0; j != NULL && off < size; n++) {
        uint64_t r = rnd(rs), len;

        switch (r % 10) {
        case 0: case 1: case 2: case 3:
            len = (1 + (r >> 8) % 8) * sector;              /* small */
            break;
        case 4: case 5: case 6: case 7:
            len = (1 + (r >> 8) % (128 * 1024 / sector)) * sector;
            break;
        default:
            len = (1 + (r >> 8) % (MIB / sector)) * sector; /* large */
            break;
        }
        if (len > size - off)
            len = size - off;
        if (n == cap) {
            struct job *nj = realloc(j, (cap *= 2) * sizeof(*j));

            if (nj == NULL)
                free(j);
            j = nj;
            if (j == NULL)
                break;
        }
        j[n].offset = off;
        j[n].len = len;
        off += len;
    }
    if (j == NULL)
        die("out of memory");
    *njobs = n;
    return j;
}

static int
verify_phase(struct engine *e, bool write, unsigned int depth)
{
    uint64_t rs = e->seed ^ (write ? UINT64_C(0x5772697465) : UINT64_C(0x52656164));
    struct worker *ws;
    unsigned int n;
    uint64_t mism = 0;
    bool failed;

    e->jobs = make_jobs(e->size, e->sector, &rs, &e->njobs);
    /* Writes go in random order; reads, chunked differently, go in
     * order: random and sequential access both get covered. */
    if (write)
        for (size_t i = e->njobs; i > 1; i--) {
            size_t k = (size_t)(rnd(&rs) % i);
            struct job t = e->jobs[i - 1];

            e->jobs[i - 1] = e->jobs[k];
            e->jobs[k] = t;
        }
    atomic_store(&e->next, 0);
    atomic_store(&e->done_bytes, 0);
    e->total_bytes = e->size;
    e->write = write;
    ws = engine_run(e, depth, MIB, &n);
    failed = engine_failed(ws, n, write ? "verify (write phase)"
                                        : "verify (check phase)");
    for (unsigned int q = 0; q < n; q++)
        mism += ws[q].mismatches;
    engine_free(ws, n);
    free(e->jobs);
    e->jobs = NULL;
    if (failed)
        return -1;
    if (mism > 0) {
        fprintf(stderr, "xbdfront: verify: %" PRIu64 " sectors of %s do not "
                "hold the pattern of seed %" PRIu64 "\n", mism, e->dev,
                e->seed);
        return -1;
    }
    if (write && xbdfront_flush(e->h, 0, 0) < 0) {
        fprintf(stderr, "xbdfront: verify: flush failed: %s\n", io_error());
        return -1;
    }
    return 0;
}

static int
cmd_verify(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    struct engine e;
    bool w = strcmp(o.phase, "write") == 0 || strcmp(o.phase, "both") == 0;
    bool c = strcmp(o.phase, "check") == 0 || strcmp(o.phase, "both") == 0;
    unsigned int depth = o.iodepth ? o.iodepth : 8;
    double t0 = now_s();

    (void)argv;
    if (argc != 0)
        die("verify takes no arguments besides DEV (options: --seed, --size, "
            "--phase)");
    if (!w && !c)
        die("--phase \"%s\": expected write, check or both", o.phase);
    memset(&e, 0, sizeof(e));
    e.h = h;
    e.dev = dev;
    e.sector = (uint64_t)xbdfront_get_sector_size(h);
    e.size = (uint64_t)xbdfront_get_size(h);
    e.seed = o.seed_set ? o.seed : 1;
    if (o.size != 0) {
        if (o.size > e.size)
            die("--size %" PRIu64 " is larger than %s (%" PRIu64 " bytes)",
                o.size, dev, e.size);
        e.size = o.size - o.size % e.sector;
    }
    if (e.size == 0)
        die("nothing to verify: --size is smaller than one sector");
    if (w && (xbdfront_get_features(h) & XBDFRONT_FEATURE_READONLY))
        die("%s is read-only: use --phase check", dev);
    if (w && verify_phase(&e, true, depth) < 0)
        return 1;
    if (c && verify_phase(&e, false, depth) < 0)
        return 1;
    printf("verify: %s: %" PRIu64 " bytes, seed %" PRIu64 ", phase %s, %d "
           "queues: ok (%.2f s)\n", dev, e.size, e.seed, o.phase,
           xbdfront_get_queues(h), now_s() - t0);
    return 0;
}

/* ======================================================================
 * bench
 * ====================================================================== */

static int
cmd_bench(struct xbdfront *h, const char *dev, int argc, char **argv)
{
    struct engine e;
    struct worker *ws;
    struct hist all;
    struct rusage ru0, ru1;
    unsigned int n, depth = o.iodepth ? o.iodepth : 32;
    uint64_t ios = 0, bytes = 0, sent = 0, received = 0;
    double t0, el, cpu;

    (void)argv;
    if (argc != 0)
        die("bench takes no arguments besides DEV (options: --rw, --bs, "
            "--iodepth, --seconds)");
    memset(&e, 0, sizeof(e));
    e.h = h;
    e.dev = dev;
    e.bench = true;
    e.sector = (uint64_t)xbdfront_get_sector_size(h);
    e.size = (uint64_t)xbdfront_get_size(h);
    e.bs = o.bs;
    e.seed = o.seed_set ? o.seed : 1;
    if (strcmp(o.rw, "read") == 0) {
    } else if (strcmp(o.rw, "write") == 0) {
        e.bwrite = true;
    } else if (strcmp(o.rw, "randread") == 0) {
        e.rand = true;
    } else if (strcmp(o.rw, "randwrite") == 0) {
        e.rand = e.bwrite = true;
    } else if (strcmp(o.rw, "randrw") == 0) {
        e.rand = e.mixed = true;
    } else {
        die("--rw \"%s\": expected read, write, randread, randwrite or "
            "randrw", o.rw);
    }
    if (e.bs == 0 || e.bs % e.sector != 0 || e.bs > 16 * MIB)
        die("--bs %" PRIu64 ": must be a multiple of the sector size (%"
            PRIu64 ") up to 16M", e.bs, e.sector);
    if (e.bs > e.size)
        die("--bs %" PRIu64 " is larger than %s", e.bs, dev);
    if ((e.bwrite || e.mixed) &&
        (xbdfront_get_features(h) & XBDFRONT_FEATURE_READONLY))
        die("%s is read-only: use --rw read or randread", dev);
    e.total_bytes = 0;
    getrusage(RUSAGE_SELF, &ru0);
    t0 = now_s();
    e.until = t0 + o.seconds;
    ws = engine_run(&e, depth, e.bs, &n);
    el = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    if (engine_failed(ws, n, "bench")) {
        engine_free(ws, n);
        return 1;
    }
    if (bench_interrupted && !o.quiet)
        fprintf(stderr, "xbdfront: bench: stopped by a signal after %.2f s "
                "(--seconds %u): the results so far\n", el, o.seconds);
    memset(&all, 0, sizeof(all));
    for (unsigned int q = 0; q < n; q++) {
        struct xbdfront_stats st;

        ios += ws[q].ios;
        bytes += ws[q].bytes;
        for (size_t i = 0; i < 64 * HSUB; i++)
            all.b[i] += ws[q].hist.b[i];
        if (xbdfront_get_stats(h, q, &st, sizeof(st)) == 0) {
            sent += st.notify_sent;
            received += st.notify_received;
        }
    }
    engine_free(ws, n);
    cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
                   ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
          (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
                   ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    /* Notifications: sent is this side's kicks to the backend (requests),
     * received the backend's to us (responses). */
    if (o.json)
        printf("{\"device\": \"%s\", \"rw\": \"%s\", \"bs\": %" PRIu64 ", "
               "\"iodepth\": %u, \"queues\": %u, \"seconds\": %.3f, "
               "\"ios\": %" PRIu64 ", \"iops\": %.0f, \"mb_per_s\": %.2f, "
               "\"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, "
               "\"lat_p999_us\": %.1f, \"cpu_us_per_io\": %.2f, "
               "\"notifications_per_io\": %.3f, \"notify_sent\": %" PRIu64
               ", \"notify_received\": %" PRIu64 "}\n", dev, o.rw, e.bs,
               depth, n, el, ios, ios / el, bytes / el / 1e6,
               hist_quantile(&all, 0.5) / 1e3, hist_quantile(&all, 0.99) / 1e3,
               hist_quantile(&all, 0.999) / 1e3,
               ios ? cpu * 1e6 / (double)ios : 0.0,
               ios ? (double)(sent + received) / (double)ios : 0.0, sent,
               received);
    else
        printf("%s: %s bs=%" PRIu64 " iodepth=%u queues=%u: %" PRIu64 " I/Os "
               "in %.2f s\n  IOPS %.0f, %.2f MB/s\n  latency p50 %.1f us, p99 "
               "%.1f us, p99.9 %.1f us\n  CPU %.2f us/IO, %.3f notifications"
               "/IO (%.3f sent, %.3f received)\n", dev, o.rw, e.bs, depth, n,
               ios, el, ios / el, bytes / el / 1e6,
               hist_quantile(&all, 0.5) / 1e3,
               hist_quantile(&all, 0.99) / 1e3,
               hist_quantile(&all, 0.999) / 1e3,
               ios ? cpu * 1e6 / (double)ios : 0.0,
               ios ? (double)(sent + received) / (double)ios : 0.0,
               ios ? (double)sent / (double)ios : 0.0,
               ios ? (double)received / (double)ios : 0.0);
    return 0;
}

/* ======================================================================
 * pattern: what verify writes, without a device
 * ====================================================================== */

/* Print the verify pattern of --seed for bytes [0, --size) so that a test
 * can compare an image with what `verify --phase write` must have left. */
static int
cmd_pattern(void)
{
    char buf[65536];
    uint64_t seed = o.seed_set ? o.seed : 1;

    if (o.size == 0 || o.size % 8 != 0)
        die("pattern needs --size BYTES, a multiple of 8");
    for (uint64_t off = 0; off < o.size; off += sizeof(buf)) {
        uint64_t n = o.size - off < sizeof(buf) ? o.size - off : sizeof(buf);

        pattern_fill(seed, off, buf, n);
        if (fwrite(buf, 1, n, stdout) != n)
            die("cannot write to standard output: %s", strerror(errno));
    }
    if (fflush(stdout) != 0)
        die("cannot write to standard output: %s", strerror(errno));
    return 0;
}

/* ======================================================================
 * Commands and main
 * ====================================================================== */

static const struct command {
    const char *name;
    const char *usage;
    const char *help;
    int (*fn)(struct xbdfront *h, const char *dev, int argc, char **argv);
} commands[] = {
    { "info", "DEV [--json]",
      "what was negotiated: ring pages, queues, indirect segments, "
      "persistent grants, size, sector size, features", cmd_info },
    { "read", "DEV OFFSET LEN",
      "copy LEN bytes at OFFSET to standard output", cmd_read },
    { "write", "DEV OFFSET",
      "copy standard input to the device at OFFSET, then flush", cmd_write },
    { "flush", "DEV", "make completed writes durable", cmd_flush },
    { "discard", "DEV OFFSET LEN", "discard a range", cmd_discard },
    { "verify", "DEV [--seed N] [--size BYTES] [--phase write|check|both]",
      "write a seeded pattern over the device with many requests in flight "
      "on every queue, read it back and compare", cmd_verify },
    { "pattern", "--size BYTES [--seed N]",
      "print the pattern verify writes with that seed (no device needed)",
      NULL },
    { "bench", "DEV [--rw MODE] [--bs SIZE] [--iodepth N] [--seconds S] "
      "[--json]",
      "measure IOPS, MB/s and latency (MODE: read, write, randread, "
      "randwrite, randrw; write modes overwrite data; SIGINT or SIGTERM "
      "stops it early with the results so far)", cmd_bench },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *f)
{
    fprintf(f, "Usage: xbdfront COMMAND DEV [ARGS] [OPTIONS]\n\n"
            "Use a Xen virtual block device of this domain through "
            "libxbdfront.\nDEV is a name (xvda, xvdb1, hda, sda) or a "
            "virtual-device number.\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %s %s\n      %s\n", commands[i].name,
                commands[i].usage, commands[i].help);
    fprintf(f, "\nOptions for every command:\n"
            "  --ring-pages N    ring pages per queue (power of two; default:"
            " the most both sides allow, up to 64)\n"
            "  --queues N        queues (default 1; verify and bench use one "
            "thread per queue)\n"
            "  --indirect N      indirect segments per request (0: none; "
            "default 256)\n"
            "  --no-persistent   do not use persistent grants\n"
            "  --pool-pages N    granted bounce pages per queue (16..16384; "
            "default: one per\n                    ring slot plus one full "
            "indirect request)\n"
            "  --quiet           no library messages (reconnects) and no "
            "progress\n"
            "  --poll-us US      busy-poll the ring up to US microseconds "
            "before sleeping\n                    on the event channel "
            "(default 0: never)\n"
            "  --timeout S       seconds to wait for the backend to connect "
            "or answer (default 30)\n"
            "  --iodepth N       requests in flight per queue (verify: 8, "
            "bench: 32)\n"
            "  --seed N, --size BYTES, --phase P    verify (and pattern)\n"
            "  --rw MODE, --bs SIZE, --seconds S    bench\n"
            "  --zero-copy       verify and bench: I/O buffers granted to the "
            "backend, no bouncing\n"
            "  --json            info and bench: print JSON\n"
            "  --help, --version\n"
            "\nSizes take k, M, G suffixes (powers of 1024).  See "
            "xbdfront(1).\n");
}

int
main(int argc, char **argv)
{
    enum { O_RING = 256, O_QUEUES, O_INDIRECT, O_NOPERS, O_TIMEOUT, O_SEED,
           O_SIZE, O_PHASE, O_RW, O_BS, O_DEPTH, O_SECONDS, O_JSON,
           O_POLL, O_VERSION, O_ZC, O_POOL, O_QUIET };
    static const struct option lopts[] = {
        { "ring-pages", required_argument, NULL, O_RING },
        { "queues", required_argument, NULL, O_QUEUES },
        { "indirect", required_argument, NULL, O_INDIRECT },
        { "no-persistent", no_argument, NULL, O_NOPERS },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "seed", required_argument, NULL, O_SEED },
        { "size", required_argument, NULL, O_SIZE },
        { "phase", required_argument, NULL, O_PHASE },
        { "rw", required_argument, NULL, O_RW },
        { "bs", required_argument, NULL, O_BS },
        { "iodepth", required_argument, NULL, O_DEPTH },
        { "seconds", required_argument, NULL, O_SECONDS },
        { "json", no_argument, NULL, O_JSON },
        { "zero-copy", no_argument, NULL, O_ZC },
        { "poll-us", required_argument, NULL, O_POLL },
        { "pool-pages", required_argument, NULL, O_POOL },
        { "quiet", no_argument, NULL, O_QUIET },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    const struct command *cmd = NULL;
    struct xbdfront *h;
    int c, rc;

    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case O_VERSION:
            printf("xbdfront %s (libxbdfront %s)\n", PACKAGE_VERSION,
                   xbdfront_get_version());
            return 0;
        case O_RING: o.ring_pages = uint_arg("--ring-pages", optarg, 1, 1u << 20); break;
        case O_QUEUES: o.queues = uint_arg("--queues", optarg, 1, 1024); break;
        case O_INDIRECT:
            o.indirect = uint_arg("--indirect", optarg, 0, 1u << 20);
            o.set_indirect = true;
            break;
        case O_NOPERS: o.no_persistent = true; break;
        case O_TIMEOUT: o.timeout_s = uint_arg("--timeout", optarg, 1, 86400); break;
        case O_SEED:
            if (parse_size(optarg, &o.seed) < 0)
                die("--seed \"%s\": expected a number", optarg);
            o.seed_set = true;
            break;
        case O_SIZE: o.size = size_arg("--size", optarg); break;
        case O_PHASE: o.phase = optarg; break;
        case O_RW: o.rw = optarg; break;
        case O_BS: o.bs = size_arg("--bs", optarg); break;
        case O_DEPTH: o.iodepth = uint_arg("--iodepth", optarg, 1, 65536); break;
        case O_SECONDS: o.seconds = uint_arg("--seconds", optarg, 1, 86400); break;
        case O_JSON: o.json = true; break;
        case O_ZC: o.zero_copy = true; break;
        case O_POOL:
            o.pool_pages = uint_arg("--pool-pages", optarg, 16, 16384);
            break;
        case O_QUIET: o.quiet = true; break;
        case O_POLL:
            o.poll_us = uint_arg("--poll-us", optarg, 0, 1000000);
            o.poll_set = true;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    /* GNU getopt permutes: options may come before or after COMMAND DEV. */
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "xbdfront: unknown command \"%s\" (see xbdfront "
                "--help)\n", argv[optind]);
        return 2;
    }
    if (cmd->fn == NULL)
        return cmd_pattern();
    if (optind + 1 >= argc) {
        fprintf(stderr, "Usage: xbdfront %s %s\n", cmd->name, cmd->usage);
        return 2;
    }
    show_progress = !o.quiet && isatty(2);
    if (cmd->fn == cmd_bench)
        bench_catch_signals();
    h = open_dev(argv[optind + 1]);
    the_handle = h;
    rc = cmd->fn(h, argv[optind + 1], argc - optind - 2, argv + optind + 2);
    the_handle = NULL;
    xbdfront_close(h);
    return rc;
}
