/* xbd-crashload — a write workload for test-crash-consistency.sh, and the
 * dom0 check of what it left on the image.
 *
 *   xbd-crashload run DEV --seed S --log FILE [--blocks B] [--writes W]
 *                 [--iodepth D] [--flush-every K] [--ring-pages N]
 *     Run as a guest, through libxbdfront.  Writes W versioned 4 KiB blocks
 *     at seeded random places among the first B blocks of DEV, D requests in
 *     flight (never two to the same block at once, so each block's order is
 *     the order of its acknowledgements), and a flush each time K more
 *     writes have been acknowledged.  Each block carries a header (magic,
 *     its sector, its generation, the seed), a payload derived from all
 *     three and a checksum of the rest.  The log (FILE, appended with one
 *     write(2) per line, fdatasync'ed at each completed flush and at the
 *     end) has a line per event:
 *       W BLOCK GEN   a write was acknowledged without error
 *       F N           a flush completed; it was submitted after the first N
 *                     W lines, so those writes are durable
 *       D W F         the workload finished: W writes, F flushes
 *     Any error returned by the library (a failed submit, a completion with
 *     err != 0, a poll error) ends the run with exit status 1: the test
 *     requires none, whatever happens to the backend meanwhile.
 *
 *   xbd-crashload check IMAGE --seed S --log FILE [--blocks B]
 *     Run in dom0 with everything stopped.  Every block must be zero (never
 *     written) or a whole, well-formed block of this seed for its own sector
 *     (else it is torn); every block acknowledged before the last completed
 *     flush must hold that generation or a later acknowledged one; and,
 *     since the log must end with D (every write acknowledged), every block
 *     must hold exactly its last acknowledged generation.  Prints the seed
 *     and the first bad block; exits 1 on any.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xbdfront.h"

#define BLK 4096u
#define MAGIC UINT64_C(0x4853415243444258)      /* "XBDCRASH" little-endian */
#define WORDS (BLK / 8)

static uint64_t
mix64(uint64_t z)
{
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t
fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    while (n-- > 0)
        h = (h ^ *b++) * UINT64_C(0x100000001b3);
    return h;
}

/* Block layout, in 64-bit words: magic, sector, gen, seed, payload...,
 * checksum of everything before it. */
static void
fill_block(uint64_t *w, uint64_t seed, uint64_t block, uint64_t gen)
{
    uint64_t k = mix64(seed ^ mix64(block ^ mix64(gen)));
    unsigned int i;

    w[0] = MAGIC;
    w[1] = block * (BLK / 512);
    w[2] = gen;
    w[3] = seed;
    for (i = 4; i < WORDS - 1; i++)
        w[i] = mix64(k + i);
    w[WORDS - 1] = fnv1a(w, BLK - 8);
}

/* ---- run ------------------------------------------------------------------ */

struct slot {
    uint64_t *buf;
    uint64_t block, gen;
    bool busy;
};

struct load {
    struct xbdfront *h;
    int logfd;
    uint64_t acked, flushes;
    unsigned int inflight;
    bool flush_busy;
    int err;                    /* first error, negative errno */
    uint8_t *block_busy;
};

struct flush_req {
    struct load *l;
    uint64_t covers;
};

static void
log_line(struct load *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
log_line(struct load *l, const char *fmt, ...)
{
    char line[96];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(l->logfd, line, (size_t)n) != n && l->err == 0)
        l->err = -EIO;
}

static struct load *cur_load;

static void
on_write(void *ud, int err)
{
    struct slot *s = ud;
    struct load *l = cur_load;

    s->busy = false;
    l->block_busy[s->block] = 0;
    l->inflight--;
    if (err != 0) {
        if (l->err == 0)
            l->err = err;
        fprintf(stderr, "xbd-crashload: write of block %" PRIu64 " gen %" PRIu64
                " failed: %s\n", s->block, s->gen, strerror(-err));
        return;
    }
    log_line(l, "W %" PRIu64 " %" PRIu64 "\n", s->block, s->gen);
    l->acked++;
}

static void
on_flush(void *ud, int err)
{
    struct flush_req *f = ud;
    struct load *l = f->l;

    l->flush_busy = false;
    if (err != 0) {
        if (l->err == 0)
            l->err = err;
        fprintf(stderr, "xbd-crashload: flush failed: %s\n", strerror(-err));
        return;
    }
    log_line(l, "F %" PRIu64 "\n", f->covers);
    if (fdatasync(l->logfd) < 0 && l->err == 0)
        l->err = -errno;
    l->flushes++;
}

struct opts {
    uint64_t seed, blocks, writes;
    unsigned int iodepth, flush_every, ring_pages;
    const char *log;
};

static int
run(const char *dev, const struct opts *o)
{
    struct load l = { .err = 0 };
    struct flush_req fr = { .l = &l };
    struct slot *slots;
    uint64_t rng = o->seed, issued = 0, next_flush = o->flush_every;
    unsigned int i, idle = 0;
    int r;

    l.logfd = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (l.logfd < 0) {
        fprintf(stderr, "xbd-crashload: %s: %s\n", o->log, strerror(errno));
        return 1;
    }
    slots = calloc(o->iodepth, sizeof(*slots));
    l.block_busy = calloc(o->blocks, 1);
    if (slots == NULL || l.block_busy == NULL)
        return 1;
    for (i = 0; i < o->iodepth; i++)
        if (posix_memalign((void **)&slots[i].buf, BLK, BLK) != 0)
            return 1;
    cur_load = &l;
    if (xbdfront_create(&l.h) < 0 ||
        (o->ring_pages != 0 && xbdfront_set_ring_pages(l.h, o->ring_pages) < 0) ||
        xbdfront_connect(l.h, dev) < 0) {
        fprintf(stderr, "xbd-crashload: %s: %s\n", dev, xbdfront_get_error());
        return 1;
    }
    if ((uint64_t)xbdfront_get_size(l.h) < o->blocks * BLK) {
        fprintf(stderr, "xbd-crashload: %s is smaller than %" PRIu64 " blocks\n",
                dev, o->blocks);
        return 1;
    }
    fprintf(stderr, "xbd-crashload: seed %" PRIu64 ": %" PRIu64 " writes over %"
            PRIu64 " blocks, iodepth %u, flush every %u, ring pages %d\n",
            o->seed, o->writes, o->blocks, o->iodepth, o->flush_every,
            xbdfront_get_ring_pages(l.h));

    while (l.err == 0 && (issued < o->writes || l.inflight > 0 || l.flush_busy)) {
        for (i = 0; i < o->iodepth && issued < o->writes && l.err == 0; i++) {
            struct slot *s = &slots[i];
            uint64_t b;

            if (s->busy)
                continue;
            do {
                rng = mix64(rng);
                b = rng % o->blocks;
            } while (l.block_busy[b]);
            s->block = b;
            s->gen = ++issued;
            fill_block(s->buf, o->seed, b, s->gen);
            r = xbdfront_aio_pwrite(l.h, 0, s->buf, BLK, b * BLK, 0, on_write, s);
            if (r < 0) {
                fprintf(stderr, "xbd-crashload: submit: %s\n", xbdfront_get_error());
                l.err = r;
                break;
            }
            s->busy = true;
            l.block_busy[b] = 1;
            l.inflight++;
        }
        if (!l.flush_busy && l.acked >= next_flush && l.err == 0) {
            fr.covers = l.acked;
            r = xbdfront_aio_flush(l.h, 0, 0, on_flush, &fr);
            if (r < 0) {
                fprintf(stderr, "xbd-crashload: flush submit: %s\n",
                        xbdfront_get_error());
                l.err = r;
                break;
            }
            l.flush_busy = true;
            next_flush = l.acked + o->flush_every;
        }
        r = xbdfront_poll(l.h, 0, 1000, 0);
        if (r < 0) {
            fprintf(stderr, "xbd-crashload: poll: %s\n", xbdfront_get_error());
            l.err = r;
        } else if (r == 0 && ++idle >= 120) {
            fprintf(stderr, "xbd-crashload: no completion for 120 s\n");
            l.err = -ETIMEDOUT;
        } else if (r > 0) {
            idle = 0;
        }
    }
    if (l.err == 0) {
        log_line(&l, "D %" PRIu64 " %" PRIu64 "\n", l.acked, l.flushes);
        if (fdatasync(l.logfd) < 0)
            l.err = -errno;
    }
    fprintf(stderr, "xbd-crashload: %" PRIu64 " writes acknowledged, %" PRIu64
            " flushes%s%s\n", l.acked, l.flushes, l.err ? ": " : "",
            l.err ? strerror(-l.err) : "");
    xbdfront_close(l.h);
    close(l.logfd);
    for (i = 0; i < o->iodepth; i++)
        free(slots[i].buf);
    free(slots);
    free(l.block_busy);
    return l.err == 0 ? 0 : 1;
}

/* ---- check ---------------------------------------------------------------- */

/* For every block: the newest generation acknowledged before the last
 * completed flush (durable), the newest acknowledged at all (last), and
 * whether a generation was acknowledged for it (a bitmap would do; the log
 * is read twice instead: gens are unique, so "acknowledged for this block"
 * is checked against the list). */
struct ack { uint64_t block, gen; };

static int
check(const char *image, const struct opts *o)
{
    FILE *f = fopen(o->log, "re");
    struct ack *acks = NULL;
    size_t nacks = 0, cap = 0, durable_n = 0, i;
    uint64_t *durable, *last, *buf, *want, b, dw = 0, df = 0;
    bool done = false;
    char line[128];
    int fd, bad = 0;

    if (f == NULL) {
        fprintf(stderr, "xbd-crashload: %s: %s\n", o->log, strerror(errno));
        return 1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        struct ack a;
        uint64_t n;

        if (sscanf(line, "W %" SCNu64 " %" SCNu64, &a.block, &a.gen) == 2) {
            if (a.block >= o->blocks) {
                fprintf(stderr, "xbd-crashload: log: block %" PRIu64 " out of range\n", a.block);
                return 1;
            }
            if (nacks == cap) {
                cap = cap ? 2 * cap : 4096;
                acks = realloc(acks, cap * sizeof(*acks));
                if (acks == NULL)
                    return 1;
            }
            acks[nacks++] = a;
        } else if (sscanf(line, "F %" SCNu64, &n) == 1 && n <= nacks) {
            durable_n = (size_t)n;
        } else if (sscanf(line, "D %" SCNu64 " %" SCNu64, &dw, &df) == 2) {
            done = true;
        } else {
            fprintf(stderr, "xbd-crashload: log: bad line: %s", line);
            return 1;
        }
    }
    fclose(f);
    if (!done || dw != nacks) {
        printf("seed %" PRIu64 ": the workload did not finish (%zu writes acknowledged)\n",
               o->seed, nacks);
        return 1;
    }
    durable = calloc(o->blocks, sizeof(*durable));
    last = calloc(o->blocks, sizeof(*last));
    if (durable == NULL || last == NULL ||
        posix_memalign((void **)&buf, BLK, BLK) != 0 ||
        posix_memalign((void **)&want, BLK, BLK) != 0)
        return 1;
    for (i = 0; i < nacks; i++) {
        if (i < durable_n && acks[i].gen > durable[acks[i].block])
            durable[acks[i].block] = acks[i].gen;
        if (acks[i].gen > last[acks[i].block])
            last[acks[i].block] = acks[i].gen;
    }
    fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "xbd-crashload: %s: %s\n", image, strerror(errno));
        return 1;
    }
    for (b = 0; b < o->blocks && !bad; b++) {
        uint64_t gen = 0;
        bool zero = true;
        unsigned int k;

        if (pread(fd, buf, BLK, (off_t)(b * BLK)) != (ssize_t)BLK) {
            fprintf(stderr, "xbd-crashload: %s: short read at block %" PRIu64 "\n",
                    image, b);
            return 1;
        }
        for (k = 0; k < WORDS && zero; k++)
            zero = buf[k] == 0;
        if (!zero) {
            gen = buf[2];
            fill_block(want, o->seed, b, gen);
            if (memcmp(buf, want, BLK) != 0) {
                printf("seed %" PRIu64 ": block %" PRIu64 " (sector %" PRIu64 ") is torn "
                       "or foreign: magic %#" PRIx64 " sector %" PRIu64 " gen %" PRIu64
                       " seed %" PRIu64 " checksum %s\n", o->seed, b, b * (BLK / 512),
                       buf[0], buf[1], buf[2], buf[3],
                       buf[WORDS - 1] == fnv1a(buf, BLK - 8) ? "good" : "bad");
                bad = 1;
                break;
            }
        }
        if (gen < durable[b]) {
            printf("seed %" PRIu64 ": block %" PRIu64 " (sector %" PRIu64 ") holds gen %"
                   PRIu64 " but gen %" PRIu64 " was acknowledged before the last "
                   "completed flush\n", o->seed, b, b * (BLK / 512), gen, durable[b]);
            bad = 1;
        } else if (gen != last[b]) {
            printf("seed %" PRIu64 ": block %" PRIu64 " (sector %" PRIu64 ") holds gen %"
                   PRIu64 ", not its last acknowledged gen %" PRIu64 "\n",
                   o->seed, b, b * (BLK / 512), gen, last[b]);
            bad = 1;
        }
    }
    close(fd);
    if (!bad) {
        size_t written = 0;

        for (b = 0; b < o->blocks; b++)
            written += last[b] != 0;
        printf("seed %" PRIu64 ": %zu writes acknowledged, %zu before the last of %"
               PRIu64 " flushes; %zu blocks written, all hold their last generation, "
               "none torn\n", o->seed, nacks, durable_n, df, written);
    }
    free(acks);
    free(durable);
    free(last);
    free(buf);
    free(want);
    return bad;
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno != 0 || *s == '\0' || *end != '\0' || *s == '-' ? -1 : 0;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: xbd-crashload run DEV --seed S --log FILE [--blocks B] [--writes W]\n"
            "                     [--iodepth D] [--flush-every K] [--ring-pages N]\n"
            "       xbd-crashload check IMAGE --seed S --log FILE [--blocks B]\n");
}

int
main(int argc, char **argv)
{
    struct opts o = { .blocks = 1024, .writes = 4000, .iodepth = 16,
                      .flush_every = 32 };
    bool have_seed = false;
    int i;

    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    for (i = 3; i + 1 < argc; i += 2) {
        const char *opt = argv[i], *arg = argv[i + 1];
        uint64_t v = 0;

        if (strcmp(opt, "--log") == 0) {
            o.log = arg;
            continue;
        }
        if (parse_u64(arg, &v) < 0) {
            usage(stderr);
            return 2;
        }
        if (strcmp(opt, "--seed") == 0)
            o.seed = v, have_seed = true;
        else if (strcmp(opt, "--blocks") == 0 && v > 0 && v < (UINT64_C(1) << 32))
            o.blocks = v;
        else if (strcmp(opt, "--writes") == 0 && v > 0)
            o.writes = v;
        else if (strcmp(opt, "--iodepth") == 0 && v > 0 && v <= 1024)
            o.iodepth = (unsigned int)v;
        else if (strcmp(opt, "--flush-every") == 0 && v > 0 && v <= UINT32_MAX)
            o.flush_every = (unsigned int)v;
        else if (strcmp(opt, "--ring-pages") == 0 && v <= 64)
            o.ring_pages = (unsigned int)v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (i != argc) {
        usage(stderr);
        return 2;
    }
    /* Half the blocks at most in flight: picking a free one stays quick. */
    if (!have_seed || o.log == NULL || o.iodepth > o.blocks / 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "run") == 0)
        return run(argv[2], &o);
    if (strcmp(argv[1], "check") == 0)
        return check(argv[2], &o);
    usage(stderr);
    return 2;
}
