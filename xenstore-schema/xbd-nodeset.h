/* xbdkit — the node set libxl 4.17 writes to attach a disk.
 *
 * xbd_nodeset_build() is pure: given the parameters of an xl disk line and
 * the domains, it returns the exact (path, value, permissions) list that
 * libxl 4.17's device_disk_add + libxl__device_generic_add write in their
 * one transaction, in that order: the backend directory and its nodes, the
 * frontend directory and its nodes, then libxl's private copy under
 * /libxl/<fdom>/device/vbd/<devid> (permissions (n0): dom0 only).  `xbdctl block-attach` writes it in
 * one xenstore transaction.  Checked against recorded real-Xen trees by
 * tests/test-nodeset.c.
 *
 * Not included: the parent directories (/local/domain/B/backend/KIND/F and
 * /local/domain/F/device/vbd), which xenstored creates implicitly with the
 * permissions of their parent; and everything the backend, the frontend or
 * the hotplug script writes later.
 *
 * Error convention: 0 or a negative errno (-EINVAL with a reason in
 * set->error, -ENOMEM).
 */
#ifndef XBD_NODESET_H
#define XBD_NODESET_H

#include <stdbool.h>

#include "xbd-schema.h"

#ifdef __cplusplus
extern "C" {
#endif

enum xbd_backendtype {
    XBD_BACKENDTYPE_PHY,        /* backend/vbd, type=phy, params=path, script */
    XBD_BACKENDTYPE_QDISK,      /* backend/qdisk, type=qdisk, params=fmt:path */
};

struct xbd_disk_spec {
    unsigned backend_domid;
    unsigned frontend_domid;
    const char *vdev;           /* "xvda", "hdc", "sdb1", "d0p1"; the devid is
                                   derived from it as libxl does */
    const char *target;         /* the path (params); "" for an empty CD-ROM */
    const char *format;         /* "raw" (default when NULL), "qcow2", "vhd"…;
                                   phy accepts raw only */
    bool readwrite;             /* access=rw (mode w) or ro (mode r) */
    enum xbd_backendtype backendtype;
    bool cdrom;                 /* devtype=cdrom */
    int trusted;                /* 1, 0, or -1 for libxl's default (1) */
    bool direct_io_safe;
    int discard_enable;         /* 1, 0, or -1 for libxl's default (readwrite) */
    const char *script;         /* phy only; NULL: /etc/xen/scripts/block;
                                   a relative name is put under
                                   /etc/xen/scripts/ as libxl does */
    const char *protocol;       /* PV guests: the native ABI libxl writes,
                                   e.g. "x86_64-abi"; NULL for HVM (not written) */
};

struct xbd_set_node {
    char *path;
    char *value;
    int nperms;
    struct xbd_perm perms[2];
};

struct xbd_nodeset {
    struct xbd_set_node *nodes;
    size_t n;
    unsigned devid;
    char be_dir[128];
    char fe_dir[128];
    char libxl_dir[128];        /* /libxl/<fdom>/device/vbd/<devid> */
    char error[160];            /* why -EINVAL */
};

/* vdev name to device number (xen-vbd-interface(7)), as libxl's
 * libxl__device_disk_dev_number; -1 when the name is invalid. */
long xbd_vdev_to_devid(const char *vdev);

/* Fill set (which the caller zeroes first) from spec. */
int xbd_nodeset_build(const struct xbd_disk_spec *spec, struct xbd_nodeset *set);
void xbd_nodeset_free(struct xbd_nodeset *set);

#ifdef __cplusplus
}
#endif

#endif /* XBD_NODESET_H */
