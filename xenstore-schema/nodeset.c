/* xbdkit — libxbdschema: the node set libxl 4.17 writes for a disk.
 *
 * Facts (PROTOCOL.md §3.1, and the recorded trees in
 * tests/data/reference-trees/): libxl__device_generic_add creates <be> with
 * permissions (n<bdom>,r<fdom>) and <fe> with (n<fdom>,r<bdom>); every node
 * written in that transaction inherits its directory's permissions.
 * device_disk_add appends, in order: backend params, script (phy), then
 * frontend, frontend-id, online, removable, bootable, state, dev, type, mode,
 * device-type, [direct-io-safe], discard-enable, specification; frontend
 * backend, backend-id, state, virtual-device, device-type, trusted, and for
 * PV guests protocol.  For qdisk libxl turns format raw into "aio:".
 * libxl__device_generic_add also keeps a dom0-private copy under
 * /libxl/<fdom>/device/vbd/<devid> (frontend, backend, the backend entries).
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-keys.h"
#include "xbd-nodeset.h"

/* ---- vdev names ------------------------------------------------------------ */

/* Bijective base-26 letters: a=0 … z=25, aa=26 …  Returns chars used, 0 if
 * none; *disk < 2^20 or -1 on overflow. */
static size_t
parse_letters(const char *s, long *disk)
{
    size_t i = 0;
    long v = 0;

    while (s[i] >= 'a' && s[i] <= 'z') {
        v = v * 26 + (s[i] - 'a' + 1);
        if (v > (1L << 20)) {
            *disk = -1;
            return i + 1;
        }
        i++;
    }
    *disk = v - 1;
    return i;
}

/* Optional decimal partition without leading zero; -1 if malformed. */
static long
parse_part(const char *s)
{
    long v = 0;

    if (*s == '\0')
        return 0;
    if (*s == '0' || strlen(s) > 4)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static long
encode_xvd(long disk, long part)
{
    if (disk < 0 || part < 0)
        return -1;
    if (disk <= 15 && part <= 15)
        return (202L << 8) | (disk << 4) | part;
    if (disk < (1L << 20) && part <= 255)
        return (1L << 28) | (disk << 8) | part;
    return -1;
}

long
xbd_vdev_to_devid(const char *vdev)
{
    long disk, part;
    size_t n;

    if (vdev == NULL)
        return -1;
    if (strncmp(vdev, "xvd", 3) == 0) {
        n = parse_letters(vdev + 3, &disk);
        if (n == 0)
            return -1;
        return encode_xvd(disk, parse_part(vdev + 3 + n));
    }
    if (strncmp(vdev, "hd", 2) == 0 || strncmp(vdev, "sd", 2) == 0) {
        n = parse_letters(vdev + 2, &disk);
        part = n ? parse_part(vdev + 2 + n) : -1;
        if (n == 0 || disk < 0 || part < 0)
            return -1;
        if (vdev[0] == 'h') {
            if (disk > 3 || part > 63)
                return -1;
            return ((disk < 2 ? 3L : 22L) << 8) | ((disk & 1) << 6) | part;
        }
        if (disk > 15 || part > 15)
            return -1;
        return (8L << 8) | (disk << 4) | part;
    }
    if (vdev[0] == 'd') {
        /* dDpP or dD: both decimal. */
        const char *p = strchr(vdev, 'p');
        char buf[16];
        size_t dl = p ? (size_t)(p - vdev - 1) : strlen(vdev + 1);
        if (dl == 0 || dl >= sizeof buf)
            return -1;
        memcpy(buf, vdev + 1, dl);
        buf[dl] = '\0';
        if ((buf[0] == '0' && dl > 1) || strspn(buf, "0123456789") != dl)
            return -1;
        disk = strtol(buf, NULL, 10);
        part = p ? (p[1] == '0' && p[2] == '\0' ? 0 : parse_part(p + 1)) : 0;
        if (p && p[1] == '\0')
            return -1;
        return encode_xvd(disk, part);
    }
    return -1;
}

/* ---- the set ----------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static int
fail(struct xbd_nodeset *set, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(set->error, sizeof set->error, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* reader == NO_READER: a private toolstack node, (n<owner>) only. */
#define NO_READER (~0u)

static int
add(struct xbd_nodeset *set, size_t *cap, const char *dir, const char *rel,
    const char *value, unsigned owner, unsigned reader)
{
    struct xbd_set_node *n;
    size_t plen = strlen(dir) + 1 + strlen(rel) + 1;

    if (set->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        struct xbd_set_node *nn = realloc(set->nodes, ncap * sizeof *nn);
        if (nn == NULL)
            return -ENOMEM;
        set->nodes = nn;
        *cap = ncap;
    }
    n = &set->nodes[set->n];
    n->path = malloc(plen);
    n->value = strdup(value);
    if (n->path == NULL || n->value == NULL) {
        free(n->path);
        free(n->value);
        return -ENOMEM;
    }
    snprintf(n->path, plen, rel[0] ? "%s/%s" : "%s%s", dir, rel);
    n->nperms = reader == NO_READER ? 1 : 2;
    n->perms[0].domid = owner;
    n->perms[0].perm = 'n';
    n->perms[1].domid = reader;
    n->perms[1].perm = 'r';
    set->n++;
    return 0;
}

void
xbd_nodeset_free(struct xbd_nodeset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->nodes[i].path);
        free(set->nodes[i].value);
    }
    free(set->nodes);
    set->nodes = NULL;
    set->n = 0;
}

int
xbd_nodeset_build(const struct xbd_disk_spec *s, struct xbd_nodeset *set)
{
    const char *fmt = s->format ? s->format : "raw";
    const bool qdisk = s->backendtype == XBD_BACKENDTYPE_QDISK;
    const unsigned b = s->backend_domid, f = s->frontend_domid;
    char params[1024], script[512], num[32], bnum[32], fnum[32];
    long devid = xbd_vdev_to_devid(s->vdev);
    size_t cap = 0;
    int r = 0;

    set->nodes = NULL;
    set->n = 0;
    set->error[0] = '\0';
    if (devid < 0)
        return fail(set, "invalid vdev \"%s\" (use xvdX, hdX, sdX or dNpN)",
                    s->vdev ? s->vdev : "");
    if (b > 0x7fef || f > 0x7fef)
        return fail(set, "domain id out of range");
    if (s->target == NULL)
        return fail(set, "no target");
    if (strchr(s->target, '\n') || strlen(s->target) > 900)
        return fail(set, "invalid target");
    if (s->backendtype != XBD_BACKENDTYPE_PHY && !qdisk)
        return fail(set, "unsupported backendtype");
    if (!qdisk && strcmp(fmt, "raw") != 0)
        return fail(set, "backendtype=phy takes format=raw only, not %s", fmt);
    set->devid = (unsigned)devid;

    snprintf(set->be_dir, sizeof set->be_dir, "/local/domain/%u/backend/%s/%u/%u",
             b, qdisk ? "qdisk" : "vbd", f, set->devid);
    snprintf(set->fe_dir, sizeof set->fe_dir, "/local/domain/%u/device/vbd/%u",
             f, set->devid);
    snprintf(set->libxl_dir, sizeof set->libxl_dir, "/libxl/%u/device/vbd/%u",
             f, set->devid);

    /* libxl__device_disk_string_of_format: raw is "aio" for QEMU. */
    if (qdisk && s->target[0] != '\0')
        snprintf(params, sizeof params, "%s:%s",
                 strcmp(fmt, "raw") == 0 ? "aio" : fmt, s->target);
    else
        snprintf(params, sizeof params, "%s", s->target);
    if (s->script == NULL)
        snprintf(script, sizeof script, "/etc/xen/scripts/block");
    else if (s->script[0] == '/')
        snprintf(script, sizeof script, "%s", s->script);
    else
        snprintf(script, sizeof script, "/etc/xen/scripts/%s", s->script);
    snprintf(bnum, sizeof bnum, "%u", b);
    snprintf(fnum, sizeof fnum, "%u", f);
    snprintf(num, sizeof num, "%u", set->devid);

    /* xl makes a CD-ROM read-only (libxlu_disk.c). */
    const bool rw = s->readwrite && !s->cdrom;
    bool discard = s->discard_enable < 0 ? rw : s->discard_enable != 0;
    bool trusted = s->trusted < 0 ? true : s->trusted != 0;

#define BE(rel, val) do { if (r == 0) r = add(set, &cap, set->be_dir, rel, val, b, f); } while (0)
#define FE(rel, val) do { if (r == 0) r = add(set, &cap, set->fe_dir, rel, val, f, b); } while (0)
    BE("", "");
    BE(XBDK_FRONTEND, set->fe_dir);
    BE(XBDK_PARAMS, params);
    if (!qdisk)
        BE(XBDK_SCRIPT, script);
    BE(XBDK_FRONTEND_ID, fnum);
    BE(XBDK_ONLINE, "1");
    BE(XBDK_REMOVABLE, s->cdrom ? "1" : "0");
    BE(XBDK_BOOTABLE, "1");
    BE(XBDK_STATE, "1");
    BE(XBDK_DEV, s->vdev);
    BE(XBDK_TYPE, qdisk ? "qdisk" : "phy");
    BE(XBDK_MODE, rw ? "w" : "r");
    BE(XBDK_DEVICE_TYPE, s->cdrom ? "cdrom" : "disk");
    if (s->direct_io_safe)
        BE(XBDK_DIRECT_IO_SAFE, "1");
    BE(XBDK_DISCARD_ENABLE, discard ? "1" : "0");
    BE(XBDK_SPECIFICATION, "xen");

    size_t nbe = set->n;        /* the backend part ends here */

    FE("", "");
    FE(XBDK_BACKEND, set->be_dir);
    FE(XBDK_BACKEND_ID, bnum);
    FE(XBDK_STATE, "1");
    FE(XBDK_VIRTUAL_DEVICE, num);
    FE(XBDK_DEVICE_TYPE, s->cdrom ? "cdrom" : "disk");
    FE(XBDK_TRUSTED, trusted ? "1" : "0");
    if (s->protocol)
        FE(XBDK_PROTOCOL, s->protocol);
    /* libxl's private copy: /libxl/<fdom>/device/vbd/<devid> holds
     * frontend, backend and the backend entries again (state stays 1), so
     * that libxl can find and remove the device later; dom0-only. */
    if (r == 0)
        r = add(set, &cap, set->libxl_dir, "", "", 0, NO_READER);
    if (r == 0)
        r = add(set, &cap, set->libxl_dir, XBDK_FRONTEND, set->fe_dir, 0, NO_READER);
    if (r == 0)
        r = add(set, &cap, set->libxl_dir, XBDK_BACKEND, set->be_dir, 0, NO_READER);
    /* set->nodes may move while we add: copy by index. */
    for (size_t i = 0; i < nbe && r == 0; i++) {
        size_t dl = strlen(set->be_dir);
        char *rel, *val;
        if (set->nodes[i].path[dl] != '/')
            continue;           /* the directory itself */
        rel = strdup(set->nodes[i].path + dl + 1);
        val = strdup(set->nodes[i].value);
        if (rel == NULL || val == NULL)
            r = -ENOMEM;
        else if (strcmp(rel, XBDK_FRONTEND) != 0)
            r = add(set, &cap, set->libxl_dir, rel, val, 0, NO_READER);
        free(rel);
        free(val);
    }
#undef BE
#undef FE
    if (r < 0)
        xbd_nodeset_free(set);
    return r;
}
