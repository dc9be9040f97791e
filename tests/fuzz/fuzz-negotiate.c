/* Fuzz harness: every parser of xenstore values a peer controls, on both
 * sides — the backend's probe (toolstack nodes) and connect (frontend
 * nodes) parsing in backend/negotiate.c, and the frontend's reading of the
 * backend's limits and device properties in frontend/xbdf-req.c.
 *
 * Input: a list of "key=value" lines (NUL or newline separated); the keys
 * are what the parsers ask for, and unknown ones are ignored.  A few
 * lines of a well-formed connect are always present unless the input
 * overrides them, so the fuzzer starts from deep inside the parsers.
 *
 * Checked beyond "no crash, no leak": an accepted negotiation stays within
 * what the backend advertised (ring pages a power of two within the
 * order, queues within the maximum, a port in range), and the frontend's
 * accepted limits and geometry respect its clamps.
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "negotiate.h"
#include "xbdf-req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXKV 64

struct table {
    char *key[MAXKV], *val[MAXKV];
    unsigned int n;
};

static const char *const defaults[] = {
    "params=/srv/disk.img", "mode=w", "frontend=/local/domain/1/device/vbd/51712",
    "frontend-id=1", "ring-page-order=2", "ring-ref0=8", "ring-ref1=9",
    "ring-ref2=10", "ring-ref3=11", "event-channel=5",
    "sectors=2048", "sector-size=512", "info=0",
    "max-ring-page-order=4", "multi-queue-max-queues=2",
    "feature-max-indirect-segments=256", "feature-persistent=1",
};

static char *
get(void *ctx, const char *key)
{
    struct table *t = ctx;

    /* Later lines win, so the input overrides the defaults. */
    for (unsigned int i = t->n; i-- > 0;)
        if (strcmp(t->key[i], key) == 0)
            return strdup(t->val[i]);
    return NULL;
}

static void
add(struct table *t, const char *line, size_t len)
{
    const char *eq = memchr(line, '=', len);

    if (eq == NULL || t->n == MAXKV)
        return;
    t->key[t->n] = strndup(line, (size_t)(eq - line));
    t->val[t->n] = strndup(eq + 1, len - (size_t)(eq - line) - 1);
    t->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct table t = { .n = 0 };
    char err[256];

    for (unsigned int i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        add(&t, defaults[i], strlen(defaults[i]));
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n' || data[i] == 0) {
            add(&t, (const char *)data + start, i - start);
            start = i + 1;
        }
    }

    /* Backend, probe. */
    struct xbd_probe probe;
    if (xbd_probe_parse(get, &t, 1, 51712, &probe, err, sizeof(err)) == 0)
        xbd_probe_free(&probe);
    bool online;
    char *on = get(&t, "online");
    if (on != NULL) {
        xbd_parse_online(on, &online);
        free(on);
    }

    /* Backend, connect, against a few advertised limits. */
    static struct xbd_queue_cfg cfgs[4];
    for (unsigned int order = 0; order <= 6; order += 3) {
        struct xbd_limits lim = { .max_ring_order = order, .max_queues = 4,
                                  .persistent = order != 3 };
        struct xbd_negotiated neg;
        memset(cfgs, 0, sizeof(cfgs));
        if (xbd_negotiate(get, &t, &lim, &neg, cfgs, err, sizeof(err)) == 0) {
            if (neg.queues < 1 || neg.queues > lim.max_queues ||
                neg.ring_pages < 1 || neg.ring_pages > (1u << order) ||
                (neg.ring_pages & (neg.ring_pages - 1)) != 0 ||
                (neg.persistent && !lim.persistent))
                abort();
            for (unsigned int q = 0; q < neg.queues; q++)
                if (cfgs[q].ring_pages != neg.ring_pages || cfgs[q].fe_port == 0)
                    abort();
        } else if (err[0] == 0) {
            abort();            /* every refusal says why */
        }
    }

    /* Frontend, reading the backend. */
    struct xbdf_be_limits bl;
    if (xbdf_read_limits(get, &t, &bl, err, sizeof(err)) == 0) {
        if (bl.max_ring_order > XBD_RING_ORDER_LIMIT || bl.max_queues < 1 ||
            bl.max_queues > XBDF_MAX_QUEUES ||
            bl.max_indirect_segs > XBD_MAX_INDIRECT_SEGMENTS)
            abort();
    }
    struct xbdf_geom g;
    uint32_t info;
    memset(&g, 0, sizeof(g));
    xbdf_read_props(get, &t, &g, &info, err, sizeof(err));

    for (unsigned int i = 0; i < t.n; i++) {
        free(t.key[i]);
        free(t.val[i]);
    }
    return 0;
}
