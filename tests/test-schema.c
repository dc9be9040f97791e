/* Self-consistency of the blkif schema (xenstore-schema/blkif.def) and
 * unit tests of its lookups and value checks. */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xbd-keys.h"
#include "xbd-nodeset.h"
#include "xbd-parse.h"
#include "xbd-schema.h"

static bool
is_number(const char *s)
{
    uint64_t v;
    return xbd_parse_u64(s, &v) == 0;
}

static void
test_consistency(void)
{
    int dup_pattern = 0, dup_name = 0, bad_alias = 0, bad_default = 0;
    int bad_range = 0, bad_enum = 0, missing_meaning = 0;

    for (size_t i = 0; i < xbd_schema_nkeys; i++) {
        const struct xbd_key *k = &xbd_schema_keys[i];

        for (size_t j = 0; j < i; j++) {
            const struct xbd_key *o = &xbd_schema_keys[j];
            if (o->side == k->side && strcmp(o->pattern, k->pattern) == 0) {
                diag("duplicate pattern %s", k->pattern);
                dup_pattern++;
            }
            if (strcmp(o->name, k->name) == 0 &&
                strcmp(o->pattern, k->pattern) != 0) {
                diag("name %s used for %s and %s", k->name, o->pattern, k->pattern);
                dup_name++;
            }
        }
        /* A pattern must match itself through lookup (first match wins,
         * so an earlier broader pattern would shadow it). */
        if (strchr(k->pattern, '%') == NULL &&
            xbd_schema_lookup(k->side, k->pattern, NULL) != k) {
            diag("%s is shadowed in lookup", k->pattern);
            dup_pattern++;
        }
        if (k->alias_of) {
            const struct xbd_key *a = xbd_schema_lookup(k->side, k->alias_of, NULL);
            if (a == NULL || a == k || a->alias_of != NULL ||
                !(k->flags & XBD_F_DEPRECATED) || k->scheme == XBD_SCHEME_NONE ||
                a->scheme == XBD_SCHEME_NONE || a->scheme == k->scheme) {
                diag("alias %s -> %s is not a deprecated alias of an existing key of the other scheme",
                     k->pattern, k->alias_of);
                bad_alias++;
            }
        }
        if ((k->type == XBD_T_UINT || k->type == XBD_T_DOMID ||
             k->type == XBD_T_STATE) && k->min > k->max) {
            diag("%s: min > max", k->pattern);
            bad_range++;
        }
        if ((k->type == XBD_T_ENUM) != (k->values != NULL)) {
            diag("%s: enum values and type disagree", k->pattern);
            bad_enum++;
        }
        if (k->dflt) {
            if (is_number(k->dflt) || k->type == XBD_T_ENUM) {
                const char *why;
                if (xbd_schema_check_value(k, k->dflt, &why) < 0) {
                    diag("%s: default %s is not %s", k->pattern, k->dflt, why);
                    bad_default++;
                }
            } else if (xbd_schema_lookup(k->side, k->dflt, NULL) == NULL) {
                diag("%s: default names unknown key %s", k->pattern, k->dflt);
                bad_default++;
            }
        }
        if (k->meaning == NULL || k->meaning[0] == '\0' || strchr(k->meaning, '\n')) {
            diag("%s: no one-line meaning", k->pattern);
            missing_meaning++;
        }
    }
    is_int(dup_pattern, 0, "no duplicate or shadowed patterns");
    is_int(dup_name, 0, "a macro name always means the same pattern");
    is_int(bad_alias, 0, "every alias points to an existing key of the other scheme");
    is_int(bad_range, 0, "min <= max for every numeric key");
    is_int(bad_enum, 0, "enum keys, and only they, list values");
    is_int(bad_default, 0, "defaults are within range or name an existing key");
    is_int(missing_meaning, 0, "every key has a one-line meaning");
}

/* xbd-keys.h agrees with blkif.def (it is generated, but a hand edit would
 * be caught here too). */
static void
test_keys_header(void)
{
    int bad = 0;
#define XBD_NODE(side, name, pattern, ...)                               \
    if (strcmp(XBDK_##name, pattern) != 0) {                             \
        diag("XBDK_%s is \"%s\", schema says \"%s\"", #name, XBDK_##name, \
             pattern);                                                   \
        bad++;                                                           \
    }
#include "blkif.def"
#undef XBD_NODE
    is_int(bad, 0, "every XBDK_ macro equals its schema pattern");

    /* The provisional names other code already uses: keep name and value. */
    static const struct { const char *got, *want; } legacy[] = {
        { XBDK_FRONTEND, "frontend" }, { XBDK_FRONTEND_ID, "frontend-id" },
        { XBDK_ONLINE, "online" }, { XBDK_STATE, "state" },
        { XBDK_REMOVABLE, "removable" }, { XBDK_BOOTABLE, "bootable" },
        { XBDK_DEV, "dev" }, { XBDK_TYPE, "type" }, { XBDK_MODE, "mode" },
        { XBDK_DEVICE_TYPE, "device-type" }, { XBDK_PARAMS, "params" },
        { XBDK_SCRIPT, "script" }, { XBDK_DIRECT_IO_SAFE, "direct-io-safe" },
        { XBDK_DISCARD_ENABLE, "discard-enable" },
        { XBDK_PHYSICAL_DEVICE, "physical-device" },
        { XBDK_PHYSICAL_DEVICE_PATH, "physical-device-path" },
        { XBDK_HOTPLUG_STATUS, "hotplug-status" },
        { XBDK_HOTPLUG_ERROR, "hotplug-error" },
        { XBDK_MAX_RING_PAGE_ORDER, "max-ring-page-order" },
        { XBDK_MAX_RING_PAGES, "max-ring-pages" },
        { XBDK_MULTI_QUEUE_MAX_QUEUES, "multi-queue-max-queues" },
        { XBDK_FEATURE_MAX_INDIRECT_SEGMENTS, "feature-max-indirect-segments" },
        { XBDK_FEATURE_PERSISTENT, "feature-persistent" },
        { XBDK_FEATURE_FLUSH_CACHE, "feature-flush-cache" },
        { XBDK_FEATURE_BARRIER, "feature-barrier" },
        { XBDK_FEATURE_DISCARD, "feature-discard" },
        { XBDK_DISCARD_GRANULARITY, "discard-granularity" },
        { XBDK_DISCARD_ALIGNMENT, "discard-alignment" },
        { XBDK_DISCARD_SECURE, "discard-secure" }, { XBDK_INFO, "info" },
        { XBDK_SECTOR_SIZE, "sector-size" },
        { XBDK_PHYSICAL_SECTOR_SIZE, "physical-sector-size" },
        { XBDK_SECTORS, "sectors" }, { XBDK_ERROR, "error" },
        { XBDK_BACKEND, "backend" }, { XBDK_BACKEND_ID, "backend-id" },
        { XBDK_VIRTUAL_DEVICE, "virtual-device" }, { XBDK_TRUSTED, "trusted" },
        { XBDK_PROTOCOL, "protocol" }, { XBDK_EVENT_CHANNEL, "event-channel" },
        { XBDK_RING_REF, "ring-ref" }, { XBDK_RING_REF_FMT, "ring-ref%u" },
        { XBDK_RING_PAGE_ORDER, "ring-page-order" },
        { XBDK_NUM_RING_PAGES, "num-ring-pages" },
        { XBDK_MULTI_QUEUE_NUM_QUEUES, "multi-queue-num-queues" },
        { XBDK_QUEUE_FMT, "queue-%u" },
        { XBDK_FEATURE_LARGE_SECTOR_SIZE, "feature-large-sector-size" },
    };
    bad = 0;
    for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++)
        if (strcmp(legacy[i].got, legacy[i].want) != 0)
            bad++;
    is_int(bad, 0, "all %zu provisional XBDK_ macros keep their values",
           sizeof legacy / sizeof legacy[0]);
}

static void
test_lookup(void)
{
    unsigned idx[2] = { 99, 99 };
    const struct xbd_key *k;

    k = xbd_schema_lookup(XBD_SIDE_FE, "queue-1/ring-ref3", idx);
    ok(k && strcmp(k->name, "QUEUE_RING_REF_N_FMT") == 0 && idx[0] == 1 &&
       idx[1] == 3, "queue-1/ring-ref3 -> queue-%%u/ring-ref%%u (1, 3)");
    k = xbd_schema_lookup(XBD_SIDE_FE, "ring-ref", NULL);
    ok(k && strcmp(k->pattern, "ring-ref") == 0, "ring-ref is its own key");
    k = xbd_schema_lookup(XBD_SIDE_FE, "ring-ref0", idx);
    ok(k && strcmp(k->pattern, "ring-ref%u") == 0 && idx[0] == 0, "ring-ref0");
    ok(xbd_schema_lookup(XBD_SIDE_FE, "ring-ref01", NULL) == NULL,
       "leading zero in an index is not a key");
    ok(xbd_schema_lookup(XBD_SIDE_FE, "ring-ref-1", NULL) == NULL, "ring-ref-1");
    ok(xbd_schema_lookup(XBD_SIDE_FE, "ring-ref99999999999", NULL) == NULL,
       "index overflow");
    ok(xbd_schema_lookup(XBD_SIDE_FE, "sectors", NULL) == NULL,
       "sectors is not a frontend key");
    k = xbd_schema_lookup(XBD_SIDE_BE, "sectors", NULL);
    ok(k && k->req_states == XBD_REQ_CONNECTED && k->max == UINT64_MAX,
       "sectors: backend, uint64, required when Connected");
    k = xbd_schema_lookup(XBD_SIDE_BE, "max-ring-pages", NULL);
    ok(k && (k->flags & XBD_F_DEPRECATED) && k->scheme == XBD_SCHEME_REDHAT &&
       strcmp(k->alias_of, "max-ring-page-order") == 0,
       "max-ring-pages: deprecated Red Hat alias of max-ring-page-order");
    k = xbd_schema_lookup(XBD_SIDE_BE, "hotplug-status", NULL);
    ok(k && k->writers == XBD_WR_HOTPLUG, "hotplug-status written by the hotplug script");
    ok(xbd_schema_lookup(XBD_SIDE_BE, "queue-0", NULL) == NULL,
       "queue-N is frontend-only");
}

static void
test_values(void)
{
    const struct xbd_key *k;
    const char *why;

    k = xbd_schema_lookup(XBD_SIDE_BE, "sector-size", NULL);
    is_int(xbd_schema_check_value(k, "4096", &why), 0, "sector-size 4096");
    is_int(xbd_schema_check_value(k, "1536", &why), -ERANGE, "sector-size 1536: not a power of two");
    is_int(xbd_schema_check_value(k, "256", &why), -ERANGE, "sector-size 256: below 512");
    is_int(xbd_schema_check_value(k, " 512", &why), -EINVAL, "leading space");
    is_int(xbd_schema_check_value(k, "-512", &why), -EINVAL, "sign");
    k = xbd_schema_lookup(XBD_SIDE_BE, "sectors", NULL);
    is_int(xbd_schema_check_value(k, "18446744073709551615", &why), 0, "sectors max uint64");
    is_int(xbd_schema_check_value(k, "18446744073709551616", &why), -EINVAL, "sectors overflow");
    k = xbd_schema_lookup(XBD_SIDE_BE, "mode", NULL);
    is_int(xbd_schema_check_value(k, "w", &why), 0, "mode w");
    is_int(xbd_schema_check_value(k, "rw", &why), -EINVAL, "mode rw");
    k = xbd_schema_lookup(XBD_SIDE_BE, "physical-device", NULL);
    is_int(xbd_schema_check_value(k, "fe:10", &why), 0, "physical-device fe:10");
    is_int(xbd_schema_check_value(k, "7", &why), -EINVAL, "physical-device without minor");
    is_int(xbd_schema_check_value(k, "0x7:0", &why), -EINVAL, "physical-device with 0x");
    k = xbd_schema_lookup(XBD_SIDE_BE, "frontend", NULL);
    is_int(xbd_schema_check_value(k, "/local/domain/1/device/vbd/51712", &why), 0, "frontend path");
    is_int(xbd_schema_check_value(k, "local/domain", &why), -EINVAL, "relative path");
    k = xbd_schema_lookup(XBD_SIDE_FE, "queue-0", NULL);
    is_int(xbd_schema_check_value(k, "", &why), 0, "queue dir empty");
    is_int(xbd_schema_check_value(k, "x", &why), -EINVAL, "queue dir with a value");
    k = xbd_schema_lookup(XBD_SIDE_FE, "state", NULL);
    is_int(xbd_schema_check_value(k, "9", &why), -ERANGE, "state 9");
}

static void
test_vdev(void)
{
    is_int(xbd_vdev_to_devid("xvda"), 51712, "xvda");
    is_int(xbd_vdev_to_devid("xvdb"), 51728, "xvdb");
    is_int(xbd_vdev_to_devid("xvda1"), 51713, "xvda1");
    is_int(xbd_vdev_to_devid("xvdp15"), (202 << 8) | (15 << 4) | 15, "xvdp15");
    is_int(xbd_vdev_to_devid("xvdq"), (1 << 28) | (16 << 8), "xvdq: extended");
    is_int(xbd_vdev_to_devid("xvdaa"), (1 << 28) | (26 << 8), "xvdaa = disk 26");
    is_int(xbd_vdev_to_devid("hda"), 768, "hda");
    is_int(xbd_vdev_to_devid("hdc"), 5632, "hdc");
    is_int(xbd_vdev_to_devid("sdb"), 2064, "sdb");
    is_int(xbd_vdev_to_devid("d0p1"), 51713, "d0p1");
    is_int(xbd_vdev_to_devid("d3"), 51760, "d3");
    is_int(xbd_vdev_to_devid("xvd"), -1, "xvd: no letters");
    is_int(xbd_vdev_to_devid("xvda01"), -1, "xvda01: leading zero");
    is_int(xbd_vdev_to_devid("hde"), -1, "hde: only 4 IDE disks");
    is_int(xbd_vdev_to_devid("vda"), -1, "vda: unknown prefix");
}

int
main(void)
{
    test_consistency();
    test_keys_header();
    test_lookup();
    test_values();
    test_vdev();
    return done_testing();
}
