/* xbd-backd — the file driver: raw images and block devices.
 *
 *   params: /path, raw:/path (aliases aio:, file:, phy:)
 *
 * Regular files: size from fstat (rounded down to 512 bytes), discard by
 * punching holes (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) when the
 * file system supports it.  Block devices: size, logical and physical
 * sector size and rotational from their ioctls, discard when the device's
 * queue says it discards: through io_uring's block discard command
 * (IORING_OP_URING_CMD, Linux 6.12 and later), and on kernels without it
 * through BLKDISCARD, synchronously on the queue thread (the first refusal
 * switches the backing over).  Both: reads and writes through io_uring,
 * flush as IORING_OP_FSYNC with IORING_FSYNC_DATASYNC (fdatasync).
 *
 * Files on tmpfs or ramfs are read and written synchronously on the queue
 * thread (file_sync): io_uring would pass each operation to a worker thread.
 *
 * O_DIRECT when opts->direct_io; a file system that refuses it is opened
 * buffered instead, with a log line.  Buffers the data path passes are
 * page aligned and lengths are multiples of the sector size, as O_DIRECT
 * needs.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "driver.h"
#include "xbd-parse.h"

/* The block layer's io_uring discard command (<linux/blkdev.h> of Linux
 * 6.12, which our build headers may predate): sqe->addr is the start,
 * sqe->addr3 the length, both in bytes. */
#ifndef BLOCK_URING_CMD_DISCARD
#define BLOCK_URING_CMD_DISCARD _IO(0x12, 0)
#endif

struct file_backing {
    struct xbd_backing b;           /* first: the function table */
    int fd;
    bool blockdev;
    bool memfs;                     /* tmpfs or ramfs: reads and writes inline */
    bool read_only;
    bool discard;                   /* opts allow it and the backing can */
    bool uring_discard;             /* atomic: the kernel takes discard commands */
    uint32_t discard_granularity;
    char path[];
};

/* A number from /sys/dev/block/M:m/queue/<name>, or 0. */
static uint64_t
sysfs_queue_u64(dev_t rdev, const char *name)
{
    char path[128], buf[32];
    uint64_t v = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s",
             major(rdev), minor(rdev), name);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) != NULL) {
        buf[strcspn(buf, "\n")] = '\0';
        if (xbd_parse_u64(buf, &v) < 0)
            v = 0;
    }
    fclose(f);
    return v;
}

static int
open_fd(const char *path, const struct xbd_backing_opts *opts,
        char *err, size_t errlen)
{
    int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    int fd;

    if (opts->direct_io) {
        fd = open(path, flags | O_DIRECT);
        if (fd >= 0)
            return fd;
        if (errno != EINVAL)
            return xbd_backing_error(err, errlen, -errno, "cannot open %s: %s",
                                     path, strerror(errno));
        xbd_log(LOG_WARNING, "%s: O_DIRECT refused by the file system, "
                "using buffered I/O", path);
    }
    fd = open(path, flags);
    if (fd < 0) {
        int e = errno;

        if (!opts->read_only && (e == EROFS || e == EACCES))
            return xbd_backing_error(err, errlen, -e, "cannot open %s for writing: %s "
                                     "(attach it read-only, mode=r)", path, strerror(e));
        return xbd_backing_error(err, errlen, -e, "cannot open %s: %s", path, strerror(e));
    }
    return fd;
}

/* A file system whose files live in memory: tmpfs (/dev/shm) or ramfs. */
static bool
is_memfs(int fd)
{
    struct statfs sfs;

    return fstatfs(fd, &sfs) == 0 &&
           ((unsigned long)sfs.f_type == TMPFS_MAGIC || (unsigned long)sfs.f_type == RAMFS_MAGIC);
}

static int
file_open(const char *arg, const struct xbd_backing_opts *opts,
          struct xbd_backing **out, char *err, size_t errlen)
{
    struct file_backing *f;
    struct stat st;
    size_t len = strlen(arg);
    int fd;

    if (arg[0] != '/')
        return xbd_backing_error(err, errlen, -EINVAL,
                                 "'%s' is not an absolute path", arg);
    fd = open_fd(arg, opts, err, errlen);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd);
        return xbd_backing_error(err, errlen, -EINVAL, "%s is neither a regular "
                                 "file nor a block device", arg);
    }
    f = calloc(1, sizeof(*f) + len + 1);
    if (f == NULL) {
        close(fd);
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    }
    f->b.drv = &xbd_driver_file;
    f->fd = fd;
    f->blockdev = S_ISBLK(st.st_mode);
    f->memfs = !f->blockdev && is_memfs(fd);
    f->read_only = opts->read_only;
    memcpy(f->path, arg, len + 1);
    if (opts->discard_enable && !opts->read_only) {
        if (f->blockdev) {
            f->discard_granularity = (uint32_t)sysfs_queue_u64(st.st_rdev,
                                                               "discard_granularity");
            f->discard = sysfs_queue_u64(st.st_rdev, "discard_max_bytes") > 0 &&
                         f->discard_granularity > 0;
            f->uring_discard = true;    /* until the kernel says otherwise */
        } else {
            /* Probe hole punching past the end: harmless with KEEP_SIZE. */
            uint64_t end = (uint64_t)st.st_size + XBD_PAGE_SIZE;

            f->discard = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   (off_t)end, XBD_PAGE_SIZE) == 0;
            f->discard_granularity = XBD_PAGE_SIZE;
        }
    }
    *out = &f->b;
    return 0;
}

static int
file_info(struct xbd_backing *b, struct xbd_backing_info *out)
{
    struct file_backing *f = (struct file_backing *)b;
    struct stat st;

    if (f->blockdev) {
        uint64_t size;
        int lss = 512;
        unsigned int pss = 0;
        unsigned short rot = 0;

        if (ioctl(f->fd, BLKGETSIZE64, &size) < 0)
            return -errno;
        if (ioctl(f->fd, BLKSSZGET, &lss) < 0 || lss < 512)
            lss = 512;
        if (ioctl(f->fd, BLKPBSZGET, &pss) < 0 || pss < (unsigned int)lss)
            pss = (unsigned int)lss;
        if (ioctl(f->fd, BLKROTATIONAL, &rot) < 0)
            rot = 0;
        out->size = size & ~(uint64_t)511;
        out->sector_size = (uint32_t)lss;
        out->physical_sector_size = pss;
        out->rotational = rot != 0;
    } else {
        if (fstat(f->fd, &st) < 0)
            return -errno;
        out->size = (uint64_t)st.st_size & ~(uint64_t)511;
        out->sector_size = 512;
        out->physical_sector_size =
            st.st_blksize >= 512 && st.st_blksize <= 65536 &&
            xbd_is_pow2((uint64_t)st.st_blksize) ? (uint32_t)st.st_blksize : 512;
    }
    out->read_only = f->read_only;
    out->flush = !f->read_only;
    out->discard = f->discard;
    out->discard_granularity = f->discard ? f->discard_granularity : 0;
    return 0;
}

static void
file_close(struct xbd_backing *b)
{
    struct file_backing *f = (struct file_backing *)b;

    /* Writes the guest never flushed are still acknowledged writes: make
     * them durable before letting the backing go (device close, SIGTERM).
     * Every queue has stopped, so nothing is in flight. */
    if (!f->read_only && fdatasync(f->fd) < 0)
        xbd_log(LOG_WARNING, "%s: fdatasync at close: %s", f->path, strerror(errno));
    close(f->fd);
    free(f);
}

static int
file_prep(struct xbd_backing *b, struct io_uring_sqe *sqe, struct xbd_io *io)
{
    struct file_backing *f = (struct file_backing *)b;
    uint64_t range[2] = { io->offset, io->len };

    switch (io->op) {
    case XBD_IO_READ:
        io_uring_prep_read(sqe, f->fd, (uint8_t *)io->buf + io->done,
                           (unsigned int)(io->len - io->done), io->offset + io->done);
        return 0;
    case XBD_IO_WRITE:
        io_uring_prep_write(sqe, f->fd, (uint8_t *)io->buf + io->done,
                            (unsigned int)(io->len - io->done), io->offset + io->done);
        return 0;
    case XBD_IO_FLUSH:
        io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
        return 0;
    case XBD_IO_DISCARD:
    case XBD_IO_DISCARD_SECURE:
        if (!f->discard || io->op == XBD_IO_DISCARD_SECURE)
            return -EOPNOTSUPP;
        if (!f->blockdev) {
            io_uring_prep_fallocate(sqe, f->fd,
                                    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    io->offset, io->len);
            return 0;
        }
        if (__atomic_load_n(&f->uring_discard, __ATOMIC_RELAXED)) {
            io_uring_prep_rw(IORING_OP_URING_CMD, sqe, f->fd, NULL, 0, 0);
            sqe->cmd_op = BLOCK_URING_CMD_DISCARD;
            sqe->addr = io->offset;
            sqe->addr3 = io->len;
            return 0;
        }
        io_uring_prep_nop(sqe);
        io->sync_done = true;
        io->sync_result = ioctl(f->fd, BLKDISCARD, range) < 0 ? -errno : 0;
        return 0;
    }
    return -EINVAL;
}

#ifndef IOV_MAX
#define IOV_MAX 1024                /* Linux's UIO_MAXIOV */
#endif

/* Move past `n` bytes transferred at the front of an iovec array. */
static void
iov_advance(struct iovec **iov, unsigned int *cnt, size_t n)
{
    while (n > 0 && *cnt > 0) {
        if (n < (*iov)->iov_len) {
            (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            return;
        }
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
}

/* Reads and writes of a memory-backed file, on the queue thread.  Such a
 * file cannot be read or written without possibly blocking in the sense
 * io_uring asks (no IOCB_NOWAIT on tmpfs), so io_uring hands every one to
 * an io-wq worker thread: a wake-up and two context switches around a
 * page copy, per request.  The copy here waits for no device.  With
 * io->iov (the guest's pages) the kernel copies straight between them and
 * the page cache, and is done with them when the call returns. */
static bool
file_sync(struct xbd_backing *b, struct xbd_io *io)
{
    struct file_backing *f = (struct file_backing *)b;
    struct iovec one, *iov = io->iov;
    unsigned int cnt = io->iovcnt;
    uint64_t done = io->done;

    if (!f->memfs || (io->op != XBD_IO_READ && io->op != XBD_IO_WRITE))
        return false;
    if (iov == NULL) {                  /* our buffer: a one-element iovec */
        one = (struct iovec){ .iov_base = io->buf, .iov_len = (size_t)io->len };
        iov = &one;
        cnt = 1;
    }
    iov_advance(&iov, &cnt, (size_t)done);
    while (done < io->len) {
        off_t off = (off_t)(io->offset + done);
        int n = cnt < IOV_MAX ? (int)cnt : IOV_MAX;
        ssize_t r;

        if (n == 0) {                   /* the iovec is shorter than len */
            io->sync_result = -EINVAL;
            return true;
        }
        if (n == 1)                     /* no iovec for the kernel to import */
            r = io->op == XBD_IO_READ ? pread(f->fd, iov->iov_base, iov->iov_len, off) :
                                        pwrite(f->fd, iov->iov_base, iov->iov_len, off);
        else
            r = io->op == XBD_IO_READ ? preadv(f->fd, iov, n, off) :
                                        pwritev(f->fd, iov, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            io->sync_result = r < 0 ? -errno : -EIO;   /* 0: end of file */
            return true;
        }
        done += (uint64_t)r;
        iov_advance(&iov, &cnt, (size_t)r);
    }
    io->sync_result = (int64_t)(io->len - io->done);
    return true;
}

/* A memory-backed file's reads and writes are all done in file_sync. */
static bool
file_sync_iov(struct xbd_backing *b, enum xbd_io_op op)
{
    return ((struct file_backing *)b)->memfs && (op == XBD_IO_READ || op == XBD_IO_WRITE);
}

static int64_t
file_complete(struct xbd_backing *b, struct xbd_io *io, int res)
{
    struct file_backing *f = (struct file_backing *)b;
    uint64_t range[2] = { io->offset, io->len };

    /* A kernel without block discard commands refuses the opcode or the
     * command: do this one with the ioctl, and switch over if that works. */
    if (f->blockdev && io->op == XBD_IO_DISCARD && (res == -EOPNOTSUPP || res == -EINVAL)) {
        if (ioctl(f->fd, BLKDISCARD, range) < 0)
            return -errno;
        if (__atomic_exchange_n(&f->uring_discard, false, __ATOMIC_RELAXED))
            xbd_log(LOG_INFO, "%s: no io_uring discard in this kernel: using BLKDISCARD",
                    f->path);
        return 0;
    }
    return res;
}

const struct xbd_driver xbd_driver_file = {
    .name = "file",
    .open = file_open,
    .info = file_info,
    .close = file_close,
    .prep = file_prep,
    .sync = file_sync,
    .sync_iov = file_sync_iov,
    .complete = file_complete,
};
