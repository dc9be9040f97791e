/* xbdctl — block-attach, block-detach, block-list: the toolstack's part of a
 * disk's life, done the way libxl 4.17 does it so that the backend daemon
 * and the frontend library meet in xbd-sim exactly what they meet under xl.
 *
 * The node set (paths, values, permissions) comes from the schema's
 * xbd_nodeset_build(), which tests compare against trees recorded on real
 * Xen; this file only writes it in one transaction and, on detach, plays
 * libxl's teardown: online=0 and state=Closing in the backend directory,
 * wait up to 10 s (LIBXL_DESTROY_TIMEOUT) for the backend to reach Closed,
 * then remove the directories and the empty parents they leave, as
 * libxl__device_destroy does.
 *
 * Not done here: hotplug scripts.  In xbd-sim nothing runs `script=`; the
 * node is still written because libxl writes it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#include "xbd-keys.h"
#include "xbd-nodeset.h"
#include "xbd-parse.h"
#include "xbd-ring.h"
#include "xbdctl.h"

/* Transactions that conflict with the daemon or a frontend are retried; a
 * store that conflicts this often is broken, not busy. */
#define TX_RETRIES 100

static struct xs_handle *
store(void)
{
    struct xs_handle *h = xs_open(0);

    if (h == NULL) {
        fprintf(stderr, "xbdctl: cannot connect to xenstore (%s): is xbd-sim "
                "running and XENSTORED_PATH set?\n", strerror(errno));
        exit(1);
    }
    return h;
}

static bool
exists(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    unsigned int len;
    char *v = xs_read(h, t, path, &len);

    free(v);
    return v != NULL;
}

static void
to_xs_perms(const struct xbd_set_node *n, struct xs_permissions *out)
{
    for (int i = 0; i < n->nperms; i++) {
        out[i].id = n->perms[i].domid;
        switch (n->perms[i].perm) {
        case 'r': out[i].perms = XS_PERM_READ; break;
        case 'w': out[i].perms = XS_PERM_WRITE; break;
        case 'b': out[i].perms = XS_PERM_READ | XS_PERM_WRITE; break;
        default:  out[i].perms = XS_PERM_NONE; break;
        }
    }
}

/* "key=value" options of block-attach. */
static int
parse_bool_opt(const char *key, const char *v)
{
    bool b;

    if (xbd_parse_bool(v, &b) < 0) {
        fprintf(stderr, "xbdctl: block-attach: %s=%s: expected 0 or 1\n", key, v);
        exit(2);
    }
    return b;
}

/* The first xvdX (X = a..z) that the frontend domain does not have yet. */
static const char *
free_vdev(struct xs_handle *h, unsigned fe, char *buf, size_t len)
{
    for (char c = 'a'; c <= 'z'; c++) {
        char path[128];

        snprintf(buf, len, "xvd%c", c);
        snprintf(path, sizeof(path), "/local/domain/%u/device/vbd/%ld", fe,
                 xbd_vdev_to_devid(buf));
        if (!exists(h, XBT_NULL, path))
            return buf;
    }
    fprintf(stderr, "xbdctl: block-attach: xvda..xvdz are all in use; give vdev=\n");
    exit(1);
}

/* /local/domain/<fdom>/device as libxl's domain build (libxl__domain_make)
 * leaves it: owned by dom0, readable by the guest.  The frontend's
 * device/vbd directory is created implicitly below it and inherits these
 * permissions, as under xl; a sim domain is born without it.  An existing
 * directory is left alone. */
static bool
domain_device_dir(struct xs_handle *h, xs_transaction_t t, unsigned fe)
{
    struct xs_permissions perms[2] = {
        { .id = 0, .perms = XS_PERM_NONE },
        { .id = fe, .perms = XS_PERM_READ },
    };
    char path[64];

    snprintf(path, sizeof(path), "/local/domain/%u/device", fe);
    if (exists(h, t, path))
        return true;
    if (xs_mkdir(h, t, path) && xs_set_permissions(h, t, path, perms, 2))
        return true;
    fprintf(stderr, "xbdctl: block-attach: creating %s: %s\n", path, strerror(errno));
    return false;
}

int
xbdctl_block_attach(int argc, char **argv)
{
    struct xbd_disk_spec spec = {
        .readwrite = true,
        .backendtype = XBD_BACKENDTYPE_QDISK,
        .trusted = -1,
        .discard_enable = -1,
        .protocol = XEN_IO_PROTO_ABI_NATIVE,
    };
    struct xbd_nodeset set = { 0 };
    const char *vdev = NULL, *backend = NULL;
    char vbuf[16];
    struct xs_handle *h;
    int tries, r;

    spec.frontend_domid = xbdctl_resolve_domain(argv[1]);
    spec.target = argv[2];
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        const char *k = argv[i], *v;

        if (eq == NULL) {
            fprintf(stderr, "xbdctl: block-attach: \"%s\": expected KEY=VALUE\n", k);
            return 2;
        }
        *eq = '\0';
        v = eq + 1;
        if (strcmp(k, "vdev") == 0)
            vdev = v;
        else if (strcmp(k, "mode") == 0 || strcmp(k, "access") == 0) {
            if (strcmp(v, "r") == 0 || strcmp(v, "ro") == 0)
                spec.readwrite = false;
            else if (strcmp(v, "w") == 0 || strcmp(v, "rw") == 0)
                spec.readwrite = true;
            else {
                fprintf(stderr, "xbdctl: block-attach: mode=%s: expected r or w\n", v);
                return 2;
            }
        } else if (strcmp(k, "backendtype") == 0) {
            if (strcmp(v, "phy") == 0)
                spec.backendtype = XBD_BACKENDTYPE_PHY;
            else if (strcmp(v, "qdisk") == 0)
                spec.backendtype = XBD_BACKENDTYPE_QDISK;
            else {
                fprintf(stderr, "xbdctl: block-attach: backendtype=%s: expected phy "
                        "or qdisk (tap is unusable in libxl 4.17)\n", v);
                return 2;
            }
        } else if (strcmp(k, "devtype") == 0) {
            if (strcmp(v, "cdrom") == 0)
                spec.cdrom = true;
            else if (strcmp(v, "disk") == 0)
                spec.cdrom = false;
            else {
                fprintf(stderr, "xbdctl: block-attach: devtype=%s: expected disk or cdrom\n", v);
                return 2;
            }
        } else if (strcmp(k, "format") == 0)
            spec.format = v;
        else if (strcmp(k, "trusted") == 0)
            spec.trusted = parse_bool_opt(k, v);
        else if (strcmp(k, "direct-io-safe") == 0)
            spec.direct_io_safe = parse_bool_opt(k, v);
        else if (strcmp(k, "discard-enable") == 0)
            spec.discard_enable = parse_bool_opt(k, v);
        else if (strcmp(k, "script") == 0)
            spec.script = v;
        else if (strcmp(k, "protocol") == 0)
            spec.protocol = strcmp(v, "none") == 0 ? NULL : v;
        else if (strcmp(k, "backend") == 0)
            backend = v;
        else {
            fprintf(stderr, "xbdctl: block-attach: unknown key \"%s\" (see xbdctl --help)\n", k);
            return 2;
        }
    }
    spec.backend_domid = backend ? xbdctl_resolve_domain(backend) : 0;

    h = store();
    spec.vdev = vdev ? vdev : free_vdev(h, spec.frontend_domid, vbuf, sizeof(vbuf));
    r = xbd_nodeset_build(&spec, &set);
    if (r < 0) {
        fprintf(stderr, "xbdctl: block-attach: %s\n",
                r == -EINVAL ? set.error : strerror(-r));
        xs_close(h);
        return 1;
    }

    for (tries = 0; tries < TX_RETRIES; tries++) {
        xs_transaction_t t = xs_transaction_start(h);
        bool ok = true;

        if (t == XBT_NULL) {
            fprintf(stderr, "xbdctl: block-attach: transaction: %s\n", strerror(errno));
            r = 1;
            goto out;
        }
        if (exists(h, t, set.fe_dir) || exists(h, t, set.be_dir)) {
            xs_transaction_end(h, t, true);
            fprintf(stderr, "xbdctl: block-attach: domain %s already has a disk at %s "
                    "(devid %u); detach it first or give another vdev=\n",
                    argv[1], spec.vdev, set.devid);
            r = 1;
            goto out;
        }
        ok = domain_device_dir(h, t, spec.frontend_domid);
        for (size_t i = 0; ok && i < set.n; i++) {
            struct xs_permissions perms[2];
            const struct xbd_set_node *n = &set.nodes[i];

            to_xs_perms(n, perms);
            ok = xs_write(h, t, n->path, n->value, strlen(n->value)) &&
                 xs_set_permissions(h, t, n->path, perms, (unsigned)n->nperms);
            if (!ok)
                fprintf(stderr, "xbdctl: block-attach: writing %s: %s\n", n->path,
                        strerror(errno));
        }
        if (!ok) {
            xs_transaction_end(h, t, true);
            r = 1;
            goto out;
        }
        if (xs_transaction_end(h, t, false)) {
            printf("%s\n", spec.vdev);
            r = 0;
            goto out;
        }
        if (errno != EAGAIN) {
            fprintf(stderr, "xbdctl: block-attach: commit: %s\n", strerror(errno));
            r = 1;
            goto out;
        }
    }
    fprintf(stderr, "xbdctl: block-attach: %d transaction conflicts in a row; giving up\n",
            TX_RETRIES);
    r = 1;
out:
    xbd_nodeset_free(&set);
    xs_close(h);
    return r;
}

/* ---- detach ---------------------------------------------------------------- */

static long
parse_devid(const char *s)
{
    uint32_t v;

    if (xbd_parse_u32_range(s, 1, 0x7fffffff, &v) == 0)
        return v;
    return xbd_vdev_to_devid(s);
}

static int
read_state(struct xs_handle *h, const char *dir)
{
    char path[256];
    unsigned int len;
    uint32_t st;
    char *v;
    int r;

    snprintf(path, sizeof(path), "%s/%s", dir, XBDK_STATE);
    v = xs_read(h, XBT_NULL, path, &len);
    if (v == NULL)
        return -1;
    r = xbd_parse_u32_range(v, 0, 255, &st) == 0 ? (int)st : -1;
    free(v);
    return r;
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until the backend directory's state is Closed or gone. */
static bool
wait_closed(struct xs_handle *h, const char *be, double timeout, int *last)
{
    char path[256];
    double end = now() + timeout;
    bool closed = false;

    snprintf(path, sizeof(path), "%s/%s", be, XBDK_STATE);
    if (!xs_watch(h, path, "detach"))
        return false;
    for (;;) {
        struct pollfd p = { .fd = xs_fileno(h), .events = POLLIN };
        double left = end - now();
        unsigned int n;
        char **ev;

        *last = read_state(h, be);
        if (*last == XenbusStateClosed || *last < 0) {
            closed = true;
            break;
        }
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            break;
        ev = xs_read_watch(h, &n);      /* drain one event; state re-read above */
        free(ev);
    }
    xs_unwatch(h, path, "detach");
    return closed;
}

/* Remove path, then each parent left with an empty value and no children,
 * as libxl__xs_path_cleanup does (so a guest's last disk takes its empty
 * device/vbd and backend/<kind>/<fdom> directories with it). */
static void
path_cleanup(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    char p[256], *slash;

    snprintf(p, sizeof(p), "%s", path);
    if (!xs_rm(h, t, p))
        return;                         /* ENOENT: already gone */
    while ((slash = strrchr(p, '/')) != NULL && slash != p) {
        unsigned int len, nents;
        char *v, **ents;
        bool empty;

        *slash = '\0';
        v = xs_read(h, t, p, &len);
        ents = v != NULL && len == 0 ? xs_directory(h, t, p, &nents) : NULL;
        empty = ents != NULL && nents == 0;
        free(v);
        free(ents);
        if (!empty || !xs_rm(h, t, p))
            break;
    }
}

static void
rm_tree(struct xs_handle *h, const char *const *paths, int n)
{
    for (int tries = 0; tries < TX_RETRIES; tries++) {
        xs_transaction_t t = xs_transaction_start(h);

        if (t == XBT_NULL)
            break;
        for (int i = 0; i < n; i++)
            path_cleanup(h, t, paths[i]);
        if (xs_transaction_end(h, t, false) || errno != EAGAIN)
            return;
    }
}

/* The backend path of a guest's disk, from libxl's dom0-only copy, never
 * from the frontend directory: the guest owns that one and may have removed
 * it or pointed its `backend` node at another guest's disk.  NULL, with a
 * message, when the domain has no such disk. */
static char *
libxl_backend(struct xs_handle *h, const char *cmd, const char *dom,
              const char *disk, uint32_t fe, long devid)
{
    char path[128];
    unsigned int len;
    char *be;

    snprintf(path, sizeof(path), "/libxl/%u/device/vbd/%ld/%s", fe, devid,
             XBDK_BACKEND);
    be = xs_read(h, XBT_NULL, path, &len);
    if (be == NULL)
        fprintf(stderr, "xbdctl: %s: domain %s has no disk %s "
                "(see xbdctl block-list %s)\n", cmd, dom, disk, dom);
    return be;
}

int
xbdctl_block_detach(int argc, char **argv)
{
    uint32_t fe = xbdctl_resolve_domain(argv[1]);
    long devid = parse_devid(argv[2]);
    double timeout = 10.0;          /* LIBXL_DESTROY_TIMEOUT */
    char fe_dir[128], lx_dir[128];
    struct xs_handle *h;
    char *be;
    int last = -1, r = 0;
    bool closed;

    if (argc == 5 && strcmp(argv[3], "--timeout") == 0) {
        uint32_t s;

        if (xbd_parse_u32_range(argv[4], 0, 3600, &s) < 0) {
            fprintf(stderr, "xbdctl: block-detach: --timeout %s: expected seconds\n", argv[4]);
            return 2;
        }
        timeout = s;
    } else if (argc != 3)
        return -1;
    if (devid < 0) {
        fprintf(stderr, "xbdctl: block-detach: \"%s\" is neither a vdev name nor a devid\n",
                argv[2]);
        return 2;
    }

    h = store();
    snprintf(fe_dir, sizeof(fe_dir), "/local/domain/%u/device/vbd/%ld", fe, devid);
    snprintf(lx_dir, sizeof(lx_dir), "/libxl/%u/device/vbd/%ld", fe, devid);
    be = libxl_backend(h, "block-detach", argv[1], argv[2], fe, devid);
    if (be == NULL) {
        xs_close(h);
        return 1;
    }

    /* What libxl__initiate_device_generic_remove writes. */
    for (int tries = 0; tries < TX_RETRIES; tries++) {
        xs_transaction_t t = xs_transaction_start(h);
        char p[300];

        if (t == XBT_NULL)
            break;
        snprintf(p, sizeof(p), "%s/%s", be, XBDK_ONLINE);
        xs_write(h, t, p, "0", 1);
        snprintf(p, sizeof(p), "%s/%s", be, XBDK_STATE);
        if (read_state(h, be) != XenbusStateClosed)
            xs_write(h, t, p, "5", 1);
        if (xs_transaction_end(h, t, false) || errno != EAGAIN)
            break;
    }

    closed = wait_closed(h, be, timeout, &last);
    if (!closed) {
        fprintf(stderr, "xbdctl: block-detach: the backend did not reach Closed within "
                "%.0f s (state %d); removing the device anyway, as libxl does.  "
                "Check the backend's log and its 'error' node.\n", timeout, last);
        r = 1;
    }
    {
        /* libxl__device_destroy's order. */
        const char *paths[] = { fe_dir, lx_dir, be };

        rm_tree(h, paths, 3);
    }
    free(be);
    xs_close(h);
    return r;
}

/* ---- list ------------------------------------------------------------------ */

static const char *
state_name(int s)
{
    static const char *const names[] = {
        "Unknown", "Initialising", "InitWait", "Initialised", "Connected",
        "Closing", "Closed", "Reconfiguring", "Reconfigured",
    };

    return s >= 0 && s <= 8 ? names[s] : "-";
}

int
xbdctl_block_list(int argc, char **argv)
{
    uint32_t fe = xbdctl_resolve_domain(argv[1]);
    struct xs_handle *h = store();
    char dir[128], fe_dir[128];
    unsigned int n;
    char **ents;

    /* The disks and their backends from libxl's dom0-only copy; only the
     * frontend's state comes from the guest's own directory. */
    snprintf(dir, sizeof(dir), "/libxl/%u/device/vbd", fe);
    snprintf(fe_dir, sizeof(fe_dir), "/local/domain/%u/device/vbd", fe);
    ents = xs_directory(h, XBT_NULL, dir, &n);
    printf("%-10s %-6s %-13s %-13s %s\n", "DEVID", "VDEV", "BE-STATE", "FE-STATE",
           "BACKEND");
    for (unsigned int i = 0; ents && i < n; i++) {
        char p[256], *be, *dev = NULL;
        unsigned int len;

        snprintf(p, sizeof(p), "%s/%s/%s", dir, ents[i], XBDK_BACKEND);
        be = xs_read(h, XBT_NULL, p, &len);
        if (be != NULL) {
            snprintf(p, sizeof(p), "%s/%s", be, XBDK_DEV);
            dev = xs_read(h, XBT_NULL, p, &len);
        }
        snprintf(p, sizeof(p), "%s/%s", fe_dir, ents[i]);
        printf("%-10s %-6s %-13s %-13s %s\n", ents[i], dev ? dev : "-",
               state_name(be ? read_state(h, be) : -1), state_name(read_state(h, p)),
               be ? be : "-");
        free(be);
        free(dev);
    }
    free(ents);
    xs_close(h);
    return 0;
}

/* ---- resize ---------------------------------------------------------------- */

/* "64M", "1G", "4096": bytes; 0 on success. */
static int
parse_size(const char *s, uint64_t *out)
{
    char digits[32];
    size_t n = strspn(s, "0123456789");
    uint64_t v, mult = 1;

    if (n == 0 || n >= sizeof(digits))
        return -1;
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (xbd_parse_u64(digits, &v) < 0)
        return -1;
    switch (s[n]) {
    case '\0': break;
    case 'k': case 'K': mult = 1ull << 10; break;
    case 'M': mult = 1ull << 20; break;
    case 'G': mult = 1ull << 30; break;
    case 'T': mult = 1ull << 40; break;
    default: return -1;
    }
    if (s[n] != '\0' && s[n + 1] != '\0')
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

/* Grow a file-backed disk: the file is extended and xbd-backd, which
 * re-reads its backings' sizes every second, rewrites `sectors` and tells
 * the frontend (state Connected again), as Linux blkback does. */
int
xbdctl_block_resize(int argc, char **argv)
{
    uint32_t fe = xbdctl_resolve_domain(argv[1]);
    long devid = parse_devid(argv[2]);
    char p[300], *be, *params, *v;
    const char *path;
    uint64_t size, sectors = 0;
    struct stat st;
    struct xs_handle *h;
    unsigned int len;
    int r = 0;

    if (argc != 4)
        return -1;
    if (devid < 0) {
        fprintf(stderr, "xbdctl: block-resize: \"%s\" is neither a vdev name nor a devid\n",
                argv[2]);
        return 2;
    }
    if (parse_size(argv[3], &size) < 0 || size == 0 || size % 512 != 0) {
        fprintf(stderr, "xbdctl: block-resize: size \"%s\": expected bytes, a multiple "
                "of 512, with an optional k, M, G or T suffix\n", argv[3]);
        return 2;
    }

    h = store();
    be = libxl_backend(h, "block-resize", argv[1], argv[2], fe, devid);
    if (be == NULL) {
        xs_close(h);
        return 1;
    }
    snprintf(p, sizeof(p), "%s/%s", be, XBDK_PARAMS);
    params = xs_read(h, XBT_NULL, p, &len);
    path = params;
    /* The raw-file prefixes libxl and xbd-backd know (xbd-backd(8)). */
    for (const char *const *pre = (const char *const[]){ "aio:", "raw:", "file:",
                                                          "phy:", NULL };
         path != NULL && *pre != NULL; pre++)
        if (strncmp(path, *pre, strlen(*pre)) == 0)
            path += strlen(*pre);
    if (path == NULL || path[0] != '/' || stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "xbdctl: block-resize: the disk's backing (params \"%s\") is not "
                "a regular file: resize it with its own tool (lvextend, rbd resize, "
                "qemu-img resize behind nbd); xbd-backd notices within a second\n",
                params ? params : "");
        r = 1;
        goto out;
    }
    if ((uint64_t)st.st_size > size) {
        fprintf(stderr, "xbdctl: block-resize: %s is %lld bytes; shrinking a disk under "
                "a guest destroys its data, so it is refused\n", path,
                (long long)st.st_size);
        r = 1;
        goto out;
    }
    if (truncate(path, (off_t)size) < 0) {
        fprintf(stderr, "xbdctl: block-resize: cannot extend %s: %s\n", path,
                strerror(errno));
        r = 1;
        goto out;
    }
    /* A connected backend publishes the new size within its poll period. */
    if (read_state(h, be) == XenbusStateConnected) {
        double end = now() + 10.0;

        snprintf(p, sizeof(p), "%s/%s", be, XBDK_SECTORS);
        do {
            v = xs_read(h, XBT_NULL, p, &len);
            if (v == NULL || xbd_parse_u64(v, &sectors) < 0)
                sectors = 0;
            free(v);
            if (sectors == size / 512)
                break;
            nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
        } while (now() < end);
        if (sectors != size / 512) {
            fprintf(stderr, "xbdctl: block-resize: %s now has %" PRIu64 " bytes, but the "
                    "backend still publishes %" PRIu64 " sectors after 10 s: is xbd-backd "
                    "serving it?\n", path, size, sectors);
            r = 1;
            goto out;
        }
    }
    printf("%s: %" PRIu64 " bytes (%" PRIu64 " sectors)\n", argv[2], size, size / 512);
out:
    free(params);
    free(be);
    xs_close(h);
    return r;
}
