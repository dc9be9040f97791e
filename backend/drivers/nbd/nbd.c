/* xbd-backd — the nbd driver: an NBD export as a backing, through libnbd.
 *
 *   params: nbd:URI      nbd:nbd://host[:port]/export
 *                        nbd:nbd+unix:///export?socket=/run/x.sock
 *           URI          nbd://host/export, nbds://..., nbd+unix://...
 *           aio:URI      what libxl writes for a qdisk with target=URI
 *
 * So a qcow2 or vhd image served by qemu-nbd or qemu-storage-daemon, or a
 * remote NBD server, can back a disk.  One connection serves the control
 * path (size, flags) and each queue opens one more, driven asynchronously
 * from the queue's thread: the engine (driver.c) waits on the socket with
 * io_uring poll requests and libnbd moves the protocol forward.
 *
 * Flush on one connection only covers writes made through others when the
 * server advertises multi-conn; without it the backing says it serves one
 * queue (info.max_queues), which the control path advertises, and a second
 * queue connection is refused with a message rather than letting a flush
 * lie.
 * Size, block sizes, flush (NBD_CMD_FLUSH) and trim (discard) come from the
 * server's handshake; there is no secure discard in NBD.
 */
#include <config.h>

#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "xbd-parse.h"

struct nbd_backing {
    struct xbd_backing b;           /* first: the function table */
    struct nbd_handle *h;           /* the control connection */
    bool read_only, multi_conn, flush, trim;
    unsigned int conns;             /* atomic: queue connections open */
    uint64_t size;
    uint32_t sector_size, physical_sector_size;
    char uri[];
};

struct nbd_conn {
    struct nbd_backing *nb;
    struct nbd_handle *h;
};

static int
nbd_err(void)
{
    int e = nbd_get_errno();

    return e > 0 ? -e : -EIO;
}

static int
connect_uri(const char *uri, struct nbd_handle **out, char *err, size_t errlen)
{
    struct nbd_handle *h = nbd_create();
    int r;

    *out = NULL;
    if (h == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "nbd: %s", nbd_get_error());
    if (nbd_connect_uri(h, uri) == -1) {
        r = nbd_err();
        xbd_backing_error(err, errlen, r, "cannot connect to %s: %s", uri, nbd_get_error());
        nbd_close(h);
        return r;
    }
    *out = h;
    return 0;
}

/* A block size the server announced, if it is one we can use. */
static uint32_t
block_size(struct nbd_handle *h, int which, uint32_t dflt)
{
    int64_t v = nbd_get_block_size(h, which);

    return v >= 512 && v <= 65536 && xbd_is_pow2((uint64_t)v) ? (uint32_t)v : dflt;
}

static int
nbd_open(const char *arg, const struct xbd_backing_opts *opts,
         struct xbd_backing **out, char *err, size_t errlen)
{
    struct nbd_backing *nb;
    char uri[4096];
    int64_t size;
    int r;

    if ((size_t)snprintf(uri, sizeof(uri), "%s", arg) >= sizeof(uri))
        return xbd_backing_error(err, errlen, -EINVAL, "nbd: URI too long");
    if (strncmp(uri, "nbd", 3) != 0 || strstr(uri, "://") == NULL)
        return xbd_backing_error(err, errlen, -EINVAL, "nbd: '%s' is not an NBD URI "
                                 "(nbd://host/export, nbd+unix:///export?socket=PATH)",
                                 arg);
    nb = calloc(1, sizeof(*nb) + strlen(uri) + 1);
    if (nb == NULL)
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    nb->b.drv = &xbd_driver_nbd;
    strcpy(nb->uri, uri);
    r = connect_uri(uri, &nb->h, err, errlen);
    if (r < 0) {
        free(nb);
        return r;
    }
    size = nbd_get_size(nb->h);
    if (size < 512) {
        r = xbd_backing_error(err, errlen, -EINVAL, "%s: export size %lld is less "
                              "than one sector", uri, (long long)size);
        goto fail;
    }
    if (nbd_is_read_only(nb->h) == 1 && !opts->read_only) {
        r = xbd_backing_error(err, errlen, -EROFS, "%s: the export is read-only "
                              "(attach it read-only, mode=r)", uri);
        goto fail;
    }
    nb->read_only = opts->read_only;
    nb->multi_conn = nbd_can_multi_conn(nb->h) == 1;
    nb->flush = !nb->read_only && nbd_can_flush(nb->h) == 1;
    nb->trim = !nb->read_only && opts->discard_enable && nbd_can_trim(nb->h) == 1;
    nb->sector_size = block_size(nb->h, LIBNBD_SIZE_MINIMUM, 512);
    if (nb->sector_size > 4096) {
        r = xbd_backing_error(err, errlen, -EINVAL, "%s: minimum block size %u is "
                              "above 4096", uri, nb->sector_size);
        goto fail;
    }
    nb->physical_sector_size = block_size(nb->h, LIBNBD_SIZE_PREFERRED, nb->sector_size);
    if (nb->physical_sector_size < nb->sector_size)
        nb->physical_sector_size = nb->sector_size;
    nb->size = (uint64_t)size & ~(uint64_t)(nb->sector_size - 1);
    *out = &nb->b;
    return 0;

fail:
    nbd_close(nb->h);
    free(nb);
    return r;
}

static int
nbd_info(struct xbd_backing *b, struct xbd_backing_info *out)
{
    struct nbd_backing *nb = (struct nbd_backing *)b;

    out->size = nb->size;
    out->sector_size = nb->sector_size;
    out->physical_sector_size = nb->physical_sector_size;
    out->read_only = nb->read_only;
    out->flush = nb->flush;
    out->discard = nb->trim;
    out->discard_granularity = nb->trim ? nb->physical_sector_size : 0;
    out->max_queues = nb->multi_conn ? 0 : 1;
    return 0;
}

static void
nbd_close_backing(struct xbd_backing *b)
{
    struct nbd_backing *nb = (struct nbd_backing *)b;

    nbd_close(nb->h);
    free(nb);
}

/* ---- Per-queue connections ------------------------------------------------- */

static int
nbd_conn_open(struct xbd_backing *b, struct xbd_ioq *q, void **conn,
              char *err, size_t errlen)
{
    struct nbd_backing *nb = (struct nbd_backing *)b;
    struct nbd_conn *c;
    int r;

    (void)q;
    if (__atomic_fetch_add(&nb->conns, 1, __ATOMIC_ACQ_REL) > 0 && !nb->multi_conn) {
        __atomic_fetch_sub(&nb->conns, 1, __ATOMIC_ACQ_REL);
        return xbd_backing_error(err, errlen, -ENOTSUP, "%s: the NBD server does not "
                                 "advertise multi-conn, so a flush would not cover "
                                 "other queues' writes: use one queue", nb->uri);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        __atomic_fetch_sub(&nb->conns, 1, __ATOMIC_ACQ_REL);
        return xbd_backing_error(err, errlen, -ENOMEM, "out of memory");
    }
    c->nb = nb;
    r = connect_uri(nb->uri, &c->h, err, errlen);
    if (r < 0) {
        __atomic_fetch_sub(&nb->conns, 1, __ATOMIC_ACQ_REL);
        free(c);
        return r;
    }
    *conn = c;
    return 0;
}

static void
nbd_conn_close(void *conn)
{
    struct nbd_conn *c = conn;

    nbd_close(c->h);
    __atomic_fetch_sub(&c->nb->conns, 1, __ATOMIC_ACQ_REL);
    free(c);
}

/* libnbd's completion callback: runs inside an aio call on the queue
 * thread, exactly once per started command. */
static int
on_complete(void *user_data, int *error)
{
    struct xbd_io *io = user_data;

    xbd_ioq_complete(io->ioq, io, *error != 0 ? -(int64_t)*error :
                     io->op == XBD_IO_READ || io->op == XBD_IO_WRITE ?
                     (int64_t)io->len : 0);
    return 1;                       /* retire the command */
}

static int
nbd_conn_start(void *conn, struct xbd_io *io)
{
    struct nbd_conn *c = conn;
    nbd_completion_callback cb = { .callback = on_complete, .user_data = io };
    int64_t r;

    switch (io->op) {
    case XBD_IO_READ:
        r = nbd_aio_pread(c->h, io->buf, io->len, io->offset, cb, 0);
        break;
    case XBD_IO_WRITE:
        r = nbd_aio_pwrite(c->h, io->buf, io->len, io->offset, cb, 0);
        break;
    case XBD_IO_FLUSH:
        r = nbd_aio_flush(c->h, cb, 0);
        break;
    case XBD_IO_DISCARD:
        r = nbd_aio_trim(c->h, io->len, io->offset, cb, 0);
        break;
    default:
        return -EOPNOTSUPP;
    }
    return r == -1 ? nbd_err() : 0;
}

static short
nbd_conn_poll(void *conn, int *fd)
{
    struct nbd_conn *c = conn;
    unsigned int dir = nbd_aio_get_direction(c->h);
    short want = 0;

    *fd = nbd_aio_get_fd(c->h);
    if (*fd < 0)
        return 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ)
        want |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
        want |= POLLOUT;
    return want;
}

static void
nbd_conn_notify(void *conn, short revents)
{
    struct nbd_conn *c = conn;

    if (revents & (POLLIN | POLLERR | POLLHUP))
        nbd_aio_notify_read(c->h);
    if (revents & POLLOUT)
        nbd_aio_notify_write(c->h);
}

const struct xbd_driver xbd_driver_nbd = {
    .name = "nbd",
    .open = nbd_open,
    .info = nbd_info,
    .close = nbd_close_backing,
    .conn_open = nbd_conn_open,
    .conn_close = nbd_conn_close,
    .conn_start = nbd_conn_start,
    .conn_poll = nbd_conn_poll,
    .conn_notify = nbd_conn_notify,
};
