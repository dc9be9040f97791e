/* libxbdfront — version and device names. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "xbd-parse.h"
#include "xbdfront.h"
#include "xbdf-internal.h"

const char *
xbdfront_get_version(void)
{
    return PACKAGE_VERSION;
}

/* ======================================================================
 * Device names (Xen's vbd-interface encoding, docs/misc/vbd-interface.txt)
 *
 *   xvd, disk < 16, part < 16:   (202 << 8) | (disk << 4) | part
 *   xvd, extended:               (1 << 28) | (disk << 8) | part,
 *                                disk < 2^20, part < 256
 *   hd[a-d]:                     major 3 (hda, hdb) or 22 (hdc, hdd),
 *                                (major << 8) | ((disk & 1) << 6) | part,
 *                                part < 64
 *   sd[a-p]:                     (8 << 8) | (disk << 4) | part, part < 16
 *   d<disk>[p<part>]:            the xvd encodings of disk and part
 * Disk letters count in bijective base 26: a..z = 0..25, aa = 26, ...
 * ====================================================================== */

/* Parse letters [a-z]+ as a disk number; returns chars used, 0 if none or
 * too large. */
static size_t
parse_letters(const char *s, uint32_t *disk)
{
    uint64_t v = 0;
    size_t i = 0;

    while (s[i] >= 'a' && s[i] <= 'z') {
        v = v * 26 + (uint64_t)(s[i] - 'a' + 1);
        if (v > (1u << 20))
            return 0;
        i++;
    }
    if (i == 0)
        return 0;
    *disk = (uint32_t)(v - 1);
    return i;
}

/* Parse an optional partition number at s (empty → 0). */
static int
parse_part(const char *s, uint32_t *part)
{
    if (*s == '\0') {
        *part = 0;
        return 0;
    }
    /* No leading zeros in a partition number: "xvda01" is not a name. */
    if (*s == '0')
        return -EINVAL;
    return xbd_parse_u32_range(s, 1, 255, part) < 0 ? -EINVAL : 0;
}

static int
encode_xvd(uint32_t disk, uint32_t part, uint32_t *out)
{
    if (disk < 16 && part < 16)
        *out = (202u << 8) | (disk << 4) | part;
    else if (disk < (1u << 20) && part < 256)
        *out = (1u << 28) | (disk << 8) | part;
    else
        return -EINVAL;
    return 0;
}

int
xbdfront_parse_device(const char *name, uint32_t *vdev_out)
{
    uint32_t disk, part, v;
    size_t n;

    if (name == NULL || *name == '\0')
        return xbdf_set_error(-EINVAL, "empty device name");
    if (isdigit((unsigned char)name[0])) {
        if (xbd_parse_u32_range(name, 1, UINT32_MAX, &v) < 0)
            return xbdf_set_error(-EINVAL, "device \"%s\": not a "
                                  "virtual-device number", name);
        *vdev_out = v;
        return 0;
    }
    if (strncmp(name, "xvd", 3) == 0) {
        n = parse_letters(name + 3, &disk);
        if (n != 0 && parse_part(name + 3 + n, &part) == 0 &&
            encode_xvd(disk, part, vdev_out) == 0)
            return 0;
    } else if (strncmp(name, "hd", 2) == 0) {
        n = parse_letters(name + 2, &disk);
        if (n != 0 && disk < 4 && parse_part(name + 2 + n, &part) == 0 &&
            part < 64) {
            *vdev_out = ((disk < 2 ? 3u : 22u) << 8) | ((disk & 1) << 6) | part;
            return 0;
        }
    } else if (strncmp(name, "sd", 2) == 0) {
        n = parse_letters(name + 2, &disk);
        if (n != 0 && disk < 16 && parse_part(name + 2 + n, &part) == 0 &&
            part < 16) {
            *vdev_out = (8u << 8) | (disk << 4) | part;
            return 0;
        }
    } else if (name[0] == 'd' && isdigit((unsigned char)name[1])) {
        const char *p = strchr(name, 'p');
        char num[16];
        size_t len = p ? (size_t)(p - name - 1) : strlen(name + 1);

        if (len < sizeof(num)) {
            memcpy(num, name + 1, len);
            num[len] = '\0';
            if ((num[0] != '0' || len == 1) &&
                xbd_parse_u32_range(num, 0, (1u << 20) - 1, &disk) == 0 &&
                (p == NULL ? (part = 0, 1)
                           : (p[1] != '\0' && parse_part(p + 1, &part) == 0)) &&
                encode_xvd(disk, part, vdev_out) == 0)
                return 0;
        }
    }
    return xbdf_set_error(-EINVAL, "device \"%s\": not a Xen disk name "
                          "(xvda, xvdb1, hda, sda, d0p1) nor a "
                          "virtual-device number", name);
}
