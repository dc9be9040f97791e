/* Fuzz harness: the sim's xenstore core (sim/xs-core.c) driven by an
 * arbitrary sequence of operations from three domains.
 *
 * The input is a little program.  Each step is one byte of opcode, one
 * byte choosing the caller (domain 0, 1 or 2, and one of two connections
 * each), then the step's arguments; a path argument is one selector byte
 * (below 0x80: one of the blkif paths in `paths`, so that steps meet on
 * the same nodes; otherwise a NUL-terminated string taken from the input)
 * and a value a NUL-terminated string.  Every call's result is ignored:
 * what is checked is that no input crashes, leaks (ASan), trips UBSan,
 * or leaves nodes behind once every connection and transaction is gone.
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/io/xs_wire.h>

#include "xs-core.h"

static const char *const paths[] = {
    "/local/domain/0/backend/vbd/1/51712/state",
    "/local/domain/0/backend/vbd/1/51712",
    "/local/domain/1/device/vbd/51712/state",
    "/local/domain/1/device/vbd/51712/ring-ref",
    "/local/domain/1/device/vbd/51712/queue-0/ring-ref",
    "/local/domain/1/device/vbd/51712/queue-0",
    "/local/domain/1/device/vbd/51712",
    "/local/domain/1/device",
    "/local/domain/1",
    "/local/domain/2/data",
    "/local/domain",
    "device/vbd/51712/event-channel",
    "data/x",
    "@releaseDomain",
    "@introduceDomain",
    "/",
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

struct input {
    const uint8_t *p;
    size_t left;
};

static bool
take_byte(struct input *in, uint8_t *out)
{
    if (in->left == 0)
        return false;
    *out = *in->p++;
    in->left--;
    return true;
}

/* A NUL-terminated string from the input (at most `max` bytes), copied. */
static bool
take_string(struct input *in, char *out, size_t max)
{
    size_t n = 0;

    while (in->left > 0 && in->p[0] != 0 && n + 1 < max) {
        out[n++] = (char)*in->p++;
        in->left--;
    }
    if (in->left > 0 && in->p[0] == 0) {
        in->p++;
        in->left--;
    }
    out[n] = 0;
    return true;
}

static bool
take_path(struct input *in, char *out, size_t max)
{
    uint8_t sel;

    if (!take_byte(in, &sel))
        return false;
    if (sel < 0x80) {
        snprintf(out, max, "%s", paths[sel % NPATHS]);
        return true;
    }
    return take_string(in, out, max);
}

static void
fire(void *opaque, void *owner, const char *path, const char *token)
{
    (void)opaque;
    (void)owner;
    /* Touch every byte: a dangling pointer shows up under ASan. */
    volatile size_t n = strlen(path) + strlen(token);
    (void)n;
}

struct conn {
    uint32_t domid;
    uint32_t tx[4];              /* open transaction ids, 0 = none */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xs_core_limits lim = { .nodes = 200, .watches = 16,
                                  .transactions = 4, .value_size = 512 };
    struct xs_store *st = xs_core_new(&lim, fire, NULL);
    struct conn conns[6];
    struct input in = { data, size };
    char raw[XENSTORE_ABS_PATH_MAX + 64], path[XENSTORE_ABS_PATH_MAX + 1];
    char val[600];
    uint8_t op, who, b;
    size_t steps = 0;

    if (st == NULL)
        return 0;
    memset(conns, 0, sizeof(conns));
    for (unsigned int i = 0; i < 6; i++)
        conns[i].domid = i / 2;
    xs_core_introduce(st, 1, "guest1");
    xs_core_introduce(st, 2, "guest2");

    while (steps++ < 256 && take_byte(&in, &op) && take_byte(&in, &who)) {
        struct conn *c = &conns[who % 6];
        uint32_t tx = c->tx[(who >> 3) & 3];     /* 0 or an open one */
        bool rel = false;
        char *v = NULL, *buf = NULL;
        size_t len = 0;
        struct xs_core_perm *perms = NULL;

        if (!take_path(&in, raw, sizeof(raw)))
            break;
        bool special = (op & 0x0f) == 7 || (op & 0x0f) == 8;
        if (xs_core_canonical(c->domid, raw, special, path, sizeof(path),
                              &rel) < 0)
            continue;

        switch (op & 0x0f) {
        case 0:
            take_string(&in, val, sizeof(val));
            xs_core_write(st, c->domid, c, tx, path, val, strlen(val));
            break;
        case 1:
            xs_core_mkdir(st, c->domid, c, tx, path);
            break;
        case 2:
            xs_core_rm(st, c->domid, c, tx, path);
            break;
        case 3:
            if (xs_core_read(st, c->domid, c, tx, path, &v, &len) == 0)
                free(v);
            break;
        case 4:
            if (xs_core_directory(st, c->domid, c, tx, path, &buf, &len,
                                  NULL) == 0)
                free(buf);
            break;
        case 5: {
            size_t n;
            if (xs_core_get_perms(st, c->domid, c, tx, path, &perms, &n) == 0)
                free(perms);
            break;
        }
        case 6: {
            struct xs_core_perm set[4];
            size_t n = 0;
            if (!take_byte(&in, &b))
                break;
            for (unsigned int i = 0; i < (b & 3u) + 1u; i++) {
                take_string(&in, val, 16);
                if (xs_core_perm_parse(val, &set[n]) == 0)
                    n++;
            }
            if (n > 0)
                xs_core_set_perms(st, c->domid, c, tx, path, set, n);
            break;
        }
        case 7:
            take_string(&in, val, 32);
            xs_core_watch(st, c->domid, c, raw, val);
            break;
        case 8:
            take_string(&in, val, 32);
            xs_core_unwatch(st, c->domid, c, raw, val);
            break;
        case 9: {
            uint32_t id;
            unsigned int slot = (who >> 3) & 3;
            if (c->tx[slot] == 0 &&
                xs_core_tx_start(st, c->domid, c, &id) == 0)
                c->tx[slot] = id;
            break;
        }
        case 10: {
            unsigned int slot = (who >> 3) & 3;
            if (c->tx[slot] != 0) {
                xs_core_tx_end(st, c->domid, c, c->tx[slot], (op & 0x10) != 0);
                c->tx[slot] = 0;
            }
            break;
        }
        case 11:
            xs_core_drop_owner(st, c);
            memset(c->tx, 0, sizeof(c->tx));
            break;
        case 12:
            /* A domain dies and comes back: its connections go first. */
            if (c->domid != 0) {
                for (unsigned int i = 0; i < 6; i++) {
                    if (conns[i].domid == c->domid) {
                        xs_core_drop_owner(st, &conns[i]);
                        memset(conns[i].tx, 0, sizeof(conns[i].tx));
                    }
                }
                xs_core_release(st, c->domid);
                xs_core_introduce(st, c->domid, NULL);
            }
            break;
        case 13:
            xs_core_fire_special(st, "@releaseDomain");
            break;
        default:
            xs_core_nodes_owned(st, c->domid);
            break;
        }
    }

    /* With every connection gone, no transaction snapshot may remain: the
     * nodes left are the live tree's. */
    for (unsigned int i = 0; i < 6; i++)
        xs_core_drop_owner(st, &conns[i]);
    size_t before = xs_core_live_nodes(st);
    xs_core_release(st, 1);
    xs_core_release(st, 2);
    if (xs_core_live_nodes(st) > before)
        abort();                /* releasing a domain created nodes */
    xs_core_free(st);
    return 0;
}
