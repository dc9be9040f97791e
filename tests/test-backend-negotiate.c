/* Unit tests for backend/negotiate.c: the probe nodes, every frontend
 * transport layout and each way a hostile frontend can get them wrong, and
 * the device state machine's table. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "negotiate.h"
#include "xbd-ring.h"
#include "tap.h"

/* ---- a table of nodes standing in for a directory ------------------------- */

#define MAXN 600
struct table {
    int n;
    char key[MAXN][48];
    char val[MAXN][160];
};

static struct table T;

static void
reset(void)
{
    T.n = 0;
}

static void
set(const char *key, const char *val)
{
    for (int i = 0; i < T.n; i++)
        if (strcmp(T.key[i], key) == 0) {
            snprintf(T.val[i], sizeof(T.val[i]), "%s", val);
            return;
        }
    if (T.n == MAXN)
        bail_out("table full");
    snprintf(T.key[T.n], sizeof(T.key[0]), "%s", key);
    snprintf(T.val[T.n], sizeof(T.val[0]), "%s", val);
    T.n++;
}

static void
unset(const char *key)
{
    for (int i = 0; i < T.n; i++)
        if (strcmp(T.key[i], key) == 0) {
            T.n--;
            memmove(T.key[i], T.key[T.n], sizeof(T.key[0]));
            memmove(T.val[i], T.val[T.n], sizeof(T.val[0]));
            return;
        }
}

static char *
get(void *ctx, const char *key)
{
    (void)ctx;
    for (int i = 0; i < T.n; i++)
        if (strcmp(T.key[i], key) == 0)
            return strdup(T.val[i]);
    return NULL;
}

static char err[256];

/* ---- probe ----------------------------------------------------------------- */

static void
libxl_backend(void)
{
    reset();
    set("frontend", "/local/domain/5/device/vbd/51712");
    set("frontend-id", "5");
    set("online", "1");
    set("state", "1");
    set("type", "qdisk");
    set("mode", "w");
    set("device-type", "disk");
    set("params", "aio:/srv/a.img");
    set("discard-enable", "1");
}

static int
probe(struct xbd_probe *p)
{
    return xbd_probe_parse(get, NULL, 5, 51712, p, err, sizeof(err));
}

static void
probe_bad(const char *key, const char *val, const char *want, const char *what)
{
    struct xbd_probe p;
    int r;

    libxl_backend();
    if (val)
        set(key, val);
    else
        unset(key);
    r = probe(&p);
    ok(r == -EINVAL && strstr(err, want) != NULL, "probe: %s (%s)", what, err);
    if (r == 0)
        xbd_probe_free(&p);
}

static void
test_probe(void)
{
    struct xbd_probe p;

    libxl_backend();
    is_int(probe(&p), 0, "probe: libxl's qdisk node set");
    ok(strcmp(p.params, "aio:/srv/a.img") == 0 && strcmp(p.type, "qdisk") == 0 &&
       p.frontend_id == 5 && !p.read_only && p.devtype == XBD_DEVTYPE_DISK &&
       p.online && p.discard_enable && !p.direct_io_safe,
       "probe: every field as written");
    xbd_probe_free(&p);

    unset("discard-enable");
    unset("online");
    unset("device-type");
    set("direct-io-safe", "1");
    set("mode", "r");
    is_int(probe(&p), 0, "probe: optional nodes absent");
    ok(p.online && p.discard_enable && p.direct_io_safe && p.read_only,
       "probe: defaults online=1 discard-enable=1; mode r is read-only");
    xbd_probe_free(&p);

    libxl_backend();
    set("device-type", "cdrom");
    set("mode", "w");
    probe(&p);
    ok(p.devtype == XBD_DEVTYPE_CDROM && p.read_only, "probe: a cdrom is read-only");
    xbd_probe_free(&p);

    probe_bad("params", NULL, "params is missing", "no params");
    probe_bad("params", "", "params is missing or empty", "empty params");
    probe_bad("mode", NULL, "mode is missing", "no mode");
    probe_bad("mode", "x", "mode is \"x\"", "mode x");
    probe_bad("device-type", "floppy", "expected disk or cdrom", "device-type floppy");
    probe_bad("online", "2", "online is \"2\"", "online 2");
    probe_bad("discard-enable", "yes", "discard-enable is \"yes\"", "discard-enable yes");
    probe_bad("direct-io-safe", "1 ", "direct-io-safe", "trailing space");
    probe_bad("frontend", "/local/domain/6/device/vbd/51712", "expected /local/domain/5/",
              "frontend of another domain");
    probe_bad("frontend", NULL, "frontend is missing", "no frontend");
    probe_bad("frontend-id", "6", "frontend-id is 6", "frontend-id mismatch");
    probe_bad("frontend-id", "5x", "not a decimal", "frontend-id junk");
    probe_bad("mode", "w\x01\x7f", "mode is \"w??\"", "control bytes are not echoed");
}

/* ---- connect --------------------------------------------------------------- */

static const struct xbd_limits LIM = { .max_ring_order = 6, .max_queues = 4,
                                       .persistent = true };
static struct xbd_queue_cfg cfgs[XBD_MAX_QUEUES];
static struct xbd_negotiated neg;

static int
nego(void)
{
    memset(cfgs, 0, sizeof(cfgs));
    err[0] = '\0';
    return xbd_negotiate(get, NULL, &LIM, &neg, cfgs, err, sizeof(err));
}

static void
one_page(void)
{
    reset();
    set("ring-ref", "8");
    set("event-channel", "3");
}

static void
nego_bad(const char *want, const char *what)
{
    int r = nego();

    ok(r == -EINVAL && strstr(err, want) != NULL, "connect: %s (%s)", what, err);
}

static void
test_connect_layouts(void)
{
    char k[32], v[16];

    one_page();
    is_int(nego(), 0, "connect: one page, one queue, nothing else");
    ok(neg.ring_pages == 1 && neg.queues == 1 && neg.abi == XBD_ABI_NATIVE &&
       !neg.persistent && strcmp(neg.protocol, "native") == 0,
       "connect: defaults: 1 page, 1 queue, native, not persistent");
    ok(cfgs[0].ring_refs[0] == 8 && cfgs[0].fe_port == 3 && cfgs[0].ring_pages == 1 &&
       cfgs[0].index == 0, "connect: ring-ref and event-channel land in cfg 0");

    one_page();
    unset("ring-ref");
    set("ring-ref0", "9");
    set("ring-page-order", "0");
    is_int(nego(), 0, "connect: ring-ref0 with order 0 (QEMU's reading)");
    is_int(cfgs[0].ring_refs[0], 9, "connect: ring-ref0 is the ring");
    set("ring-ref", "9");
    is_int(nego(), 0, "connect: ring-ref and ring-ref0 agreeing");

    /* Citrix scheme, 4 pages; a stale ring-ref from an earlier connection. */
    reset();
    set("ring-page-order", "2");
    set("ring-ref", "77");
    for (unsigned i = 0; i < 4; i++) {
        snprintf(k, sizeof(k), "ring-ref%u", i);
        snprintf(v, sizeof(v), "%u", 100 + i);
        set(k, v);
    }
    set("event-channel", "12");
    is_int(nego(), 0, "connect: ring-page-order 2");
    ok(neg.ring_pages == 4 && cfgs[0].ring_refs[0] == 100 && cfgs[0].ring_refs[3] == 103,
       "connect: four refs in order, the stale ring-ref ignored");

    /* Red Hat scheme, and both schemes agreeing. */
    unset("ring-page-order");
    set("num-ring-pages", "4");
    is_int(nego(), 0, "connect: num-ring-pages 4");
    is_int(neg.ring_pages, 4, "connect: num-ring-pages gives 4 pages");
    set("ring-page-order", "2");
    is_int(nego(), 0, "connect: both schemes agreeing");

    /* The largest ring we offer: 64 pages. */
    reset();
    set("ring-page-order", "6");
    for (unsigned i = 0; i < 64; i++) {
        snprintf(k, sizeof(k), "ring-ref%u", i);
        snprintf(v, sizeof(v), "%u", 1000 + i);
        set(k, v);
    }
    set("event-channel", "1");
    is_int(nego(), 0, "connect: 64 pages");
    is_int(cfgs[0].ring_refs[63], 1063, "connect: the 64th ref");

    /* Multi-queue with multi-page, blkif.h's example, plus persistent and
     * the 32-bit protocol. */
    reset();
    set("multi-queue-num-queues", "2");
    set("ring-page-order", "1");
    set("queue-0/ring-ref0", "20");
    set("queue-0/ring-ref1", "21");
    set("queue-0/event-channel", "5");
    set("queue-1/ring-ref0", "30");
    set("queue-1/ring-ref1", "31");
    set("queue-1/event-channel", "6");
    set("queue-2/ring-ref0", "40");     /* stale, from a 3-queue connection */
    set("protocol", "x86_32-abi");
    set("feature-persistent", "1");
    is_int(nego(), 0, "connect: 2 queues x 2 pages");
    ok(neg.queues == 2 && neg.ring_pages == 2 && neg.abi == XBD_ABI_X86_32 &&
       neg.persistent && strcmp(neg.protocol, "x86_32-abi") == 0,
       "connect: 2 queues, 2 pages, x86_32-abi, persistent");
    ok(cfgs[0].ring_refs[1] == 21 && cfgs[0].fe_port == 5 && cfgs[1].index == 1 &&
       cfgs[1].ring_refs[0] == 30 && cfgs[1].fe_port == 6 &&
       cfgs[1].abi == XBD_ABI_X86_32 && cfgs[1].persistent && cfgs[1].ring_pages == 2,
       "connect: each queue's refs and port in its own cfg");
    {
        struct xbd_limits nop = LIM;

        nop.persistent = false;
        xbd_negotiate(get, NULL, &nop, &neg, cfgs, err, sizeof(err));
        ok(!neg.persistent && !cfgs[0].persistent,
           "connect: persistent only when we offered it too");
    }

    /* multi-queue-num-queues=1: nodes at the top level. */
    one_page();
    set("multi-queue-num-queues", "1");
    set("protocol", "x86_64-abi");
    is_int(nego(), 0, "connect: one queue announced explicitly");
    ok(neg.queues == 1 && cfgs[0].ring_refs[0] == 8, "connect: read from the top level");
    ok(neg.abi == XBD_ABI_NATIVE || neg.abi == XBD_ABI_X86_64, "connect: x86_64-abi accepted");
}

static void
test_connect_hostile(void)
{
    char big[200];

    one_page();
    set("ring-page-order", "7");
    nego_bad("ring-page-order is 7, above the max-ring-page-order 6", "order above offer");
    set("ring-page-order", "4294967296");
    nego_bad("out of range", "order overflowing uint32");
    set("ring-page-order", "-1");
    nego_bad("not a decimal", "negative order");
    set("ring-page-order", "1x");
    nego_bad("ring-page-order is \"1x\"", "order with junk");
    set("ring-page-order", "");
    nego_bad("not a decimal", "empty order");

    one_page();
    set("num-ring-pages", "3");
    nego_bad("num-ring-pages is 3, not a power of two", "3 pages");
    set("num-ring-pages", "0");
    nego_bad("not a power of two", "0 pages");
    set("num-ring-pages", "128");
    nego_bad("above the max-ring-pages 64", "128 pages");
    set("num-ring-pages", "2");
    set("ring-page-order", "2");
    nego_bad("contradict", "order 2 with 2 pages");

    one_page();
    set("ring-page-order", "1");
    set("ring-ref0", "1");
    nego_bad("ring-ref1 is missing", "2-page ring with one ref");
    set("ring-ref1", "99999999999");
    nego_bad("ring-ref1 is \"99999999999\", out of range", "ref overflow");

    one_page();
    unset("ring-ref");
    nego_bad("ring-ref is missing", "no ring ref at all");
    set("ring-ref0", "9");
    set("ring-ref", "8");
    nego_bad("contradict", "ring-ref and ring-ref0 differ");

    one_page();
    unset("event-channel");
    nego_bad("event-channel is missing", "no event channel");
    set("event-channel", "0");
    nego_bad("event-channel is \"0\", out of range", "port 0");
    set("event-channel", "131072");
    nego_bad("out of range", "port beyond the FIFO ABI");
    set("event-channel", " 3");
    nego_bad("not a decimal", "leading space");

    one_page();
    set("multi-queue-num-queues", "0");
    nego_bad("multi-queue-num-queues is \"0\", out of range: expected 1..4", "0 queues");
    set("multi-queue-num-queues", "5");
    nego_bad("expected 1..4", "more queues than offered");
    set("multi-queue-num-queues", "2");
    set("queue-0/ring-ref", "1");
    set("queue-0/event-channel", "4");
    nego_bad("queue-1/ring-ref is missing", "a queue directory missing");
    set("queue-1/ring-ref", "2");
    nego_bad("queue-1/event-channel is missing", "a queue's event channel missing");

    one_page();
    set("protocol", "arm-abi");
    nego_bad("protocol is \"arm-abi\"", "a foreign ABI");
    set("protocol", "x86_64-abi ");
    nego_bad("protocol is", "protocol with trailing space");
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    set("protocol", big);
    nego();
    ok(strlen(err) < 120 && strstr(err, "...") != NULL,
       "connect: a huge value is cut short in the message");

    one_page();
    set("feature-persistent", "2");
    nego_bad("feature-persistent is \"2\"", "persistent 2");
}

/* ---- state machine ----------------------------------------------------------- */

static enum xbd_action
act(int ours, bool connected, int fe, bool online, bool grace)
{
    struct xbd_facts f = { ours, connected, fe, online, grace, false };

    return xbd_next_action(&f);
}

static enum xbd_action
act_failed(int ours, int fe, bool online)
{
    struct xbd_facts f = { ours, false, fe, online, false, true };

    return xbd_next_action(&f);
}

static void
test_state_machine(void)
{
    enum { UNK = 0, INI = 1, IW = 2, INID = 3, CON = 4, CLG = 5, CLD = 6, GONE = -1 };

    is_int(act(IW, false, INI, true, false), XBD_ACT_NONE, "InitWait, fe Initialising: wait");
    is_int(act(IW, false, INID, true, false), XBD_ACT_CONNECT, "InitWait, fe Initialised: connect");
    is_int(act(IW, false, CON, true, false), XBD_ACT_CONNECT,
           "InitWait, fe Connected (Initialised skipped): connect");
    is_int(act(CON, true, CON, true, false), XBD_ACT_RESIZE_CHECK,
           "Connected, fe Connected: only resize checks");
    is_int(act(CON, true, INID, true, false), XBD_ACT_RESIZE_CHECK,
           "Connected, fe Initialised: already connected, no second connect");
    is_int(act(CON, true, CLG, true, false), XBD_ACT_CLOSING, "fe Closing: mirror it");
    is_int(act(CLG, true, CLG, true, false), XBD_ACT_NONE, "both Closing: wait");
    is_int(act(CLG, true, CLD, true, false), XBD_ACT_CLOSE, "fe Closed: close");
    is_int(act(CON, true, CLD, true, false), XBD_ACT_CLOSE,
           "Connected, fe Closed (Closing skipped): close");
    is_int(act(CON, true, UNK, true, false), XBD_ACT_CLOSE, "fe Unknown counts as Closed");
    is_int(act(CON, true, GONE, true, false), XBD_ACT_CLOSE, "fe directory gone: close");
    is_int(act(CLD, false, CLD, true, false), XBD_ACT_NONE, "both Closed, online: wait");
    is_int(act(CLD, false, INI, true, false), XBD_ACT_REINIT, "Closed, fe Initialising: reconnect");
    is_int(act(CON, true, INI, true, false), XBD_ACT_REINIT,
           "Connected, fe back at Initialising (close skipped): reconnect");
    is_int(act(CLD, false, INID, true, false), XBD_ACT_REINIT,
           "Closed, fe already Initialised: InitWait first");
    is_int(act(CLG, false, INID, true, false), XBD_ACT_NONE,
           "failed (Closing), fe still Initialised: no connect loop");
    is_int(act(CLG, false, INI, true, false), XBD_ACT_REINIT,
           "failed (Closing), fe restarted: reconnect");
    is_int(act(CLD, false, CLD, false, false), XBD_ACT_RELEASE, "online=0, Closed: release");
    is_int(act(IW, false, INI, false, false), XBD_ACT_RELEASE,
           "online=0 before any connect: release at once");
    is_int(act(CLG, true, CON, false, false), XBD_ACT_NONE,
           "online=0, frontend still connected: give it time");
    is_int(act(CLG, true, CON, false, true), XBD_ACT_RELEASE,
           "online=0, grace over: release anyway");
    is_int(act(CLG, true, CLD, false, false), XBD_ACT_RELEASE,
           "online=0, fe Closed: release");
    is_int(act(CON, true, 7, true, false), XBD_ACT_NONE, "fe Reconfiguring: ignored");
    is_int(act_failed(CLG, INI, true), XBD_ACT_NONE,
           "failed while fe Initialising: no retry until it moves");
    is_int(act_failed(CLG, INID, true), XBD_ACT_NONE, "failed, fe Initialised: wait");
    is_int(act_failed(CLG, CLD, true), XBD_ACT_CLOSE, "failed, fe Closed: close");
    is_int(act_failed(CLG, GONE, true), XBD_ACT_CLOSE, "failed, fe gone: close");
    is_int(act_failed(CLG, INI, false), XBD_ACT_RELEASE, "failed, online=0: release");

    is_int(xbd_parse_state("4"), 4, "state 4");
    is_int(xbd_parse_state("9"), -1, "state 9 is not a state");
    is_int(xbd_parse_state("255"), -1, "state 255 is not a state");
    is_int(xbd_parse_state("4\n"), -1, "state with junk");
    is_int(xbd_parse_state(NULL), -1, "state absent");
    ok(strcmp(xbd_state_name(2), "InitWait") == 0 && strcmp(xbd_state_name(-1), "gone") == 0,
       "state names");
}

/* --persistent-max auto: ring entries x the largest request, bounded. */
static void
test_pgrant_auto(void)
{
    is_int(xbd_pgrant_auto(32, 0), XBD_PGRANT_AUTO_MIN,
           "1 page, no indirect: 352 grants, raised to the minimum");
    is_int(xbd_pgrant_auto(128, 0), 128 * 11, "4 pages, no indirect: 11 per entry");
    is_int(xbd_pgrant_auto(32, 256), 32 * 257,
           "1 page, indirect 256: 256 segments and an indirect page per entry");
    is_int(xbd_pgrant_auto(32, 2048), XBD_PGRANT_AUTO_MAX,
           "1 page, indirect 2048: 32 x 2052, capped");
    is_int(xbd_pgrant_auto(8192, 256), XBD_PGRANT_AUTO_MAX, "256 pages: capped");
    is_int(xbd_pgrant_auto(UINT32_MAX, 4096), XBD_PGRANT_AUTO_MAX,
           "no overflow on absurd inputs");
}

int
main(void)
{
    test_pgrant_auto();
    test_probe();
    test_connect_layouts();
    test_connect_hostile();
    test_state_machine();
    return done_testing();
}
