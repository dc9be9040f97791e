/* Unit tests for the sim's pure xenstore core (sim/xs-core.h). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xs-core.h"

/* ---- event capture ------------------------------------------------------- */

#define MAXEV 64
static struct ev {
    void *owner;
    char path[256];
    char token[64];
} evs[MAXEV];
static int nev;

static void
capture(void *opaque, void *owner, const char *path, const char *token)
{
    (void)opaque;
    if (nev < MAXEV) {
        evs[nev].owner = owner;
        snprintf(evs[nev].path, sizeof(evs[nev].path), "%s", path);
        snprintf(evs[nev].token, sizeof(evs[nev].token), "%s", token);
    }
    nev++;
}

static int
has_event(void *owner, const char *path, const char *token)
{
    for (int i = 0; i < nev && i < MAXEV; i++)
        if (evs[i].owner == owner && strcmp(evs[i].path, path) == 0 &&
            strcmp(evs[i].token, token) == 0)
            return 1;
    return 0;
}

/* Owners are just distinct addresses. */
static char o0, o1, o2, o3;

static int
wr(struct xs_store *st, uint32_t dom, const char *path, const char *v)
{
    return xs_core_write(st, dom, NULL, 0, path, v, strlen(v));
}

static int
rd(struct xs_store *st, uint32_t dom, uint32_t tx, void *owner,
   const char *path, char *out, size_t outsz)
{
    char *v;
    size_t len;
    int r = xs_core_read(st, dom, owner, tx, path, &v, &len);

    if (r == 0) {
        snprintf(out, outsz, "%s", v);
        free(v);
    }
    return r;
}

static uint32_t
owner_of(struct xs_store *st, const char *path)
{
    struct xs_core_perm *p;
    size_t n;
    uint32_t d;

    if (xs_core_get_perms(st, 0, NULL, 0, path, &p, &n) < 0)
        return 0xFFFFFFFF;
    d = p[0].domid;
    free(p);
    return d;
}

/* ---- tests --------------------------------------------------------------- */

static void
test_paths(void)
{
    char out[4096];
    bool rel;
    char big[3100];

    is_int(xs_core_canonical(3, "device/vbd", false, out, sizeof(out), &rel),
           0, "relative path accepted");
    ok(strcmp(out, "/local/domain/3/device/vbd") == 0 && rel,
       "relative path resolves under /local/domain/<caller>");
    is_int(xs_core_canonical(0, "/a//b", false, out, sizeof(out), &rel),
           -EINVAL, "double slash refused");
    is_int(xs_core_canonical(0, "/a/", false, out, sizeof(out), &rel),
           -EINVAL, "trailing slash refused");
    is_int(xs_core_canonical(0, "", false, out, sizeof(out), &rel),
           -EINVAL, "empty path refused");
    is_int(xs_core_canonical(0, "/a b", false, out, sizeof(out), &rel),
           -EINVAL, "space refused");
    is_int(xs_core_canonical(0, "@releaseDomain", false, out, sizeof(out),
                             &rel), -EINVAL, "@path refused outside watches");
    is_int(xs_core_canonical(0, "@releaseDomain", true, out, sizeof(out),
                             &rel), 0, "@path accepted for watches");
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    big[3073] = '\0';
    is_int(xs_core_canonical(0, big, false, out, sizeof(out), &rel), -EINVAL,
           "absolute path over XENSTORE_ABS_PATH_MAX refused");
    big[3072] = '\0';
    is_int(xs_core_canonical(0, big, false, out, sizeof(out), &rel), 0,
           "absolute path of exactly XENSTORE_ABS_PATH_MAX accepted");
    memset(big, 'a', 2049);
    big[2049] = '\0';
    is_int(xs_core_canonical(1, big, false, out, sizeof(out), &rel), -EINVAL,
           "relative path over XENSTORE_REL_PATH_MAX refused");
}

static void
test_basic(struct xs_store *st)
{
    char buf[64], *dir;
    size_t len;

    is_int(wr(st, 0, "/a/b/c", "v1"), 0, "dom0 write creates parents");
    is_int(rd(st, 0, 0, NULL, "/a/b/c", buf, sizeof(buf)), 0, "read back");
    ok(strcmp(buf, "v1") == 0, "value is v1");
    is_int(rd(st, 0, 0, NULL, "/a/b", buf, sizeof(buf)), 0, "parent exists");
    ok(buf[0] == '\0', "parent value is empty");
    is_int(xs_core_mkdir(st, 0, NULL, 0, "/a/b/c"), 0, "mkdir on existing");
    rd(st, 0, 0, NULL, "/a/b/c", buf, sizeof(buf));
    ok(strcmp(buf, "v1") == 0, "mkdir leaves the value alone");
    wr(st, 0, "/a/b/d", "");
    is_int(xs_core_directory(st, 0, NULL, 0, "/a/b", &dir, &len, NULL), 0,
           "directory");
    ok(len == 4 && memcmp(dir, "c\0d\0", 4) == 0,
       "directory lists children in creation order");
    free(dir);
    is_int(xs_core_rm(st, 0, NULL, 0, "/a/b/nonexistent"), 0,
           "rm of a missing node with existing parent is fine");
    is_int(xs_core_rm(st, 0, NULL, 0, "/a/x/y"), -ENOENT,
           "rm with missing parent is ENOENT");
    is_int(xs_core_rm(st, 0, NULL, 0, "/"), -EINVAL, "rm / refused");
    is_int(xs_core_rm(st, 0, NULL, 0, "/a"), 0, "rm subtree");
    is_int(rd(st, 0, 0, NULL, "/a/b/c", buf, sizeof(buf)), -ENOENT,
           "subtree gone");
}

static void
test_perms(struct xs_store *st)
{
    char buf[64];
    struct xs_core_perm p[2];

    is_int(xs_core_introduce(st, 1, "one"), 0, "introduce 1");
    is_int(xs_core_introduce(st, 2, "two"), 0, "introduce 2");
    ok(xs_core_is_introduced(st, 1), "1 is introduced");
    is_int(owner_of(st, "/local/domain/1"), 1, "domain dir owned by domain");
    is_int(owner_of(st, "/local/domain/1/name"), 1,
           "its name node inherits the owner");

    is_int(rd(st, 1, 0, NULL, "/local/domain/1/name", buf, sizeof(buf)), 0,
           "guest reads its own node");
    is_int(rd(st, 1, 0, NULL, "/local/domain/2/name", buf, sizeof(buf)),
           -EACCES, "guest cannot read another guest's node");
    is_int(rd(st, 1, 0, NULL, "/local/domain/2/nothere", buf, sizeof(buf)),
           -EACCES, "missing node under an unreadable one: EACCES, not ENOENT");
    is_int(wr(st, 1, "/local/domain/2/x", "evil"), -EACCES,
           "guest cannot write into another guest's tree");
    is_int(wr(st, 0, "/local/domain/0/backend/vbd/1/51712/params", "/img"), 0,
           "backend writes its private node");
    is_int(rd(st, 1, 0, NULL, "/local/domain/0/backend/vbd/1/51712/params",
              buf, sizeof(buf)), -EACCES,
           "guest cannot read the backend's private nodes");
    is_int(wr(st, 1, "/local/domain/0/backend/vbd/1/51712/params", "x"),
           -EACCES, "guest cannot write the backend's private nodes");
    is_int(wr(st, 1, "/evil", "x"), -EACCES, "guest cannot write to /");

    /* Inheritance of a dom0-created tree with an extra entry. */
    p[0].domid = 0; p[0].perms = XS_CORE_PERM_NONE;
    p[1].domid = 1; p[1].perms = XS_CORE_PERM_READ;
    wr(st, 0, "/t", "");
    is_int(xs_core_set_perms(st, 0, NULL, 0, "/t", p, 2), 0,
           "dom0 sets perms n0 r1");
    wr(st, 0, "/t/c", "child");
    is_int(rd(st, 1, 0, NULL, "/t/c", buf, sizeof(buf)), 0,
           "child inherits r1: guest 1 reads");
    is_int(rd(st, 2, 0, NULL, "/t/c", buf, sizeof(buf)), -EACCES,
           "guest 2 still refused");
    is_int(wr(st, 1, "/t/c", "x"), -EACCES, "r1 does not allow writing");

    /* A shared writable dir: what the guest creates is the guest's. */
    p[1].perms = XS_CORE_PERM_READ | XS_CORE_PERM_WRITE;
    wr(st, 0, "/shared", "");
    xs_core_set_perms(st, 0, NULL, 0, "/shared", p, 2);
    is_int(wr(st, 1, "/shared/g/h", "mine"), 0, "guest writes in b1 dir");
    is_int(owner_of(st, "/shared/g"), 1, "created parent owned by creator");
    is_int(owner_of(st, "/shared/g/h"), 1, "created node owned by creator");
    is_int(rd(st, 2, 0, NULL, "/shared/g/h", buf, sizeof(buf)), -EACCES,
           "other guest cannot read it");

    /* SET_PERMS rules. */
    p[0].domid = 1; p[0].perms = XS_CORE_PERM_READ;
    is_int(xs_core_set_perms(st, 2, NULL, 0, "/shared/g/h", p, 1), -EACCES,
           "non-owner guest cannot set perms");
    is_int(xs_core_set_perms(st, 1, NULL, 0, "/shared", p, 1), -EACCES,
           "guest with b perms but not owner cannot set perms");
    is_int(xs_core_set_perms(st, 1, NULL, 0, "/shared/g/h", p, 1), 0,
           "owner sets perms");
    is_int(rd(st, 2, 0, NULL, "/shared/g/h", buf, sizeof(buf)), 0,
           "now readable by others");
    p[0].domid = 2;
    is_int(xs_core_set_perms(st, 1, NULL, 0, "/shared/g/h", p, 1), -EPERM,
           "unprivileged owner cannot give the node away");
    is_int(xs_core_set_perms(st, 0, NULL, 0, "/shared/g/h", p, 1), 0,
           "dom0 may change the owner");
    is_int(owner_of(st, "/shared/g/h"), 2, "owner changed");
    is_int(xs_core_rm(st, 0, NULL, 0, "/shared"), 0, "cleanup /shared");
    is_int(xs_core_rm(st, 0, NULL, 0, "/t"), 0, "cleanup /t");
}

static void
test_watches(struct xs_store *st)
{
    nev = 0;
    is_int(xs_core_watch(st, 0, &o0, "/w", "tok0"), 0, "watch /w");
    is_int(nev, 1, "initial fire");
    ok(has_event(&o0, "/w", "tok0"), "initial fire names the watch path");
    is_int(xs_core_watch(st, 0, &o0, "/w", "tok0"), -EEXIST,
           "duplicate watch refused");
    nev = 0;
    wr(st, 0, "/w/a", "1");
    wr(st, 0, "/w/b", "2");
    wr(st, 0, "/other", "3");
    is_int(nev, 2, "two events for two writes below /w, none elsewhere");
    ok(nev >= 2 && strcmp(evs[0].path, "/w/a") == 0 &&
       strcmp(evs[1].path, "/w/b") == 0, "events in modification order");

    /* Removal fires watchers above and inside the subtree. */
    is_int(xs_core_watch(st, 0, &o1, "/w/a", "inside"), 0, "watch inside");
    nev = 0;
    xs_core_rm(st, 0, NULL, 0, "/w");
    ok(has_event(&o0, "/w", "tok0"), "rm fires the watch on the removed node");
    ok(has_event(&o1, "/w/a", "inside"),
       "rm fires a watch inside the subtree with its own path");

    /* Relative watch: relative event paths. */
    nev = 0;
    is_int(xs_core_watch(st, 1, &o2, "device", "rel"), 0, "relative watch");
    ok(has_event(&o2, "device", "rel"), "initial fire is relative");
    nev = 0;
    wr(st, 0, "/local/domain/1/device/vbd/51712/state", "1");
    ok(has_event(&o2, "device/vbd/51712/state", "rel"),
       "event path relative for a relative watch");

    /* Permissions filter events. */
    is_int(xs_core_watch(st, 2, &o3, "/local/domain/1", "spy"), 0,
           "guest 2 watches guest 1's dir (allowed, like xenstored)");
    nev = 0;
    wr(st, 0, "/local/domain/1/device/vbd/51712/state", "2");
    ok(!has_event(&o3, "/local/domain/1/device/vbd/51712/state", "spy"),
       "no event for a node the watcher cannot read");
    ok(has_event(&o2, "device/vbd/51712/state", "rel"),
       "the owner's watch fired");

    /* Special watches. */
    is_int(xs_core_watch(st, 0, &o0, "@introduceDomain", "intro"), 0,
           "dom0 watches @introduceDomain");
    is_int(xs_core_watch(st, 2, &o3, "@introduceDomain", "gintro"), 0,
           "guest watches @introduceDomain");
    is_int(xs_core_watch(st, 0, &o0, "@releaseDomain", "rel0"), 0,
           "dom0 watches @releaseDomain");
    nev = 0;
    is_int(xs_core_introduce(st, 9, NULL), 0, "introduce 9");
    ok(has_event(&o0, "@introduceDomain", "intro"),
       "@introduceDomain fires for dom0");
    ok(!has_event(&o3, "@introduceDomain", "gintro"),
       "@introduceDomain not delivered to a guest");
    nev = 0;
    is_int(xs_core_release(st, 9), 0, "release 9");
    ok(has_event(&o0, "@releaseDomain", "rel0"), "@releaseDomain fires");
    ok(!xs_core_is_introduced(st, 9), "9 no longer introduced");

    is_int(xs_core_unwatch(st, 0, &o0, "/w", "tok0"), 0, "unwatch");
    is_int(xs_core_unwatch(st, 0, &o0, "/w", "tok0"), -ENOENT,
           "unwatch twice: ENOENT");
    nev = 0;
    wr(st, 0, "/w/z", "");
    ok(!has_event(&o0, "/w/z", "tok0"), "no event after unwatch");
    xs_core_rm(st, 0, NULL, 0, "/w");
    xs_core_rm(st, 0, NULL, 0, "/other");
    xs_core_rm(st, 0, NULL, 0, "/local/domain/1/device");
    xs_core_drop_owner(st, &o0);
    xs_core_drop_owner(st, &o1);
    xs_core_drop_owner(st, &o2);
    xs_core_drop_owner(st, &o3);
    is_int(xs_core_watch_count(st, &o0), 0, "drop_owner drops watches");
}

static void
test_transactions(struct xs_store *st)
{
    uint32_t t1, t2;
    char buf[64];

    wr(st, 0, "/x", "0");
    xs_core_watch(st, 0, &o1, "/x", "wx");
    is_int(xs_core_tx_start(st, 0, &o0, &t1), 0, "start tx");
    ok(t1 != 0, "tx id is not 0");
    nev = 0;
    is_int(xs_core_write(st, 0, &o0, t1, "/x", "1", 1), 0, "write in tx");
    is_int(nev, 0, "no event before commit");
    rd(st, 0, 0, NULL, "/x", buf, sizeof(buf));
    ok(strcmp(buf, "0") == 0, "outside the tx the old value shows");
    rd(st, 0, t1, &o0, "/x", buf, sizeof(buf));
    ok(strcmp(buf, "1") == 0, "inside the tx the new value shows");
    is_int(xs_core_read(st, 0, &o1, t1, "/x", &(char *){0}, &(size_t){0}),
           -ENOENT, "another owner cannot use the tx");
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), 0, "commit");
    ok(has_event(&o1, "/x", "wx"), "watch fired at commit");
    rd(st, 0, 0, NULL, "/x", buf, sizeof(buf));
    ok(strcmp(buf, "1") == 0, "committed value visible");

    /* Abort. */
    xs_core_tx_start(st, 0, &o0, &t1);
    xs_core_write(st, 0, &o0, t1, "/x", "2", 1);
    xs_core_write(st, 0, &o0, t1, "/newnode", "n", 1);
    is_int(xs_core_tx_end(st, 0, &o0, t1, false), 0, "abort");
    rd(st, 0, 0, NULL, "/x", buf, sizeof(buf));
    ok(strcmp(buf, "1") == 0, "aborted write not applied");
    is_int(rd(st, 0, 0, NULL, "/newnode", buf, sizeof(buf)), -ENOENT,
           "aborted create not applied");

    /* Conflict on a read node. */
    xs_core_tx_start(st, 0, &o0, &t1);
    rd(st, 0, t1, &o0, "/x", buf, sizeof(buf));
    xs_core_write(st, 0, &o0, t1, "/y", "from-tx", 7);
    wr(st, 0, "/x", "changed");
    rd(st, 0, t1, &o0, "/x", buf, sizeof(buf));
    ok(strcmp(buf, "1") == 0, "tx sees its snapshot");
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), -EAGAIN,
           "commit after a conflicting write: EAGAIN");
    is_int(rd(st, 0, 0, NULL, "/y", buf, sizeof(buf)), -ENOENT,
           "failed commit applied nothing");

    /* Two transactions creating the same node: the second conflicts. */
    xs_core_tx_start(st, 0, &o0, &t1);
    xs_core_tx_start(st, 0, &o1, &t2);
    xs_core_write(st, 0, &o0, t1, "/z", "a", 1);
    xs_core_write(st, 0, &o1, t2, "/z", "b", 1);
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), 0, "first commit wins");
    is_int(xs_core_tx_end(st, 0, &o1, t2, true), -EAGAIN, "second: EAGAIN");

    /* Unrelated changes do not conflict. */
    xs_core_tx_start(st, 0, &o0, &t1);
    xs_core_write(st, 0, &o0, t1, "/z", "c", 1);
    wr(st, 0, "/x", "unrelated");
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), 0,
           "unrelated change: commit succeeds");
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), -ENOENT,
           "ended tx is gone");

    /* Several creations under one new parent in one tx. */
    xs_core_tx_start(st, 0, &o0, &t1);
    xs_core_write(st, 0, &o0, t1, "/m/a", "1", 1);
    xs_core_write(st, 0, &o0, t1, "/m/b", "2", 1);
    rd(st, 0, t1, &o0, "/m", buf, sizeof(buf));
    is_int(xs_core_tx_end(st, 0, &o0, t1, true), 0,
           "tx creating a parent and two children commits");
    is_int(rd(st, 0, 0, NULL, "/m/b", buf, sizeof(buf)), 0, "both applied");
    xs_core_rm(st, 0, NULL, 0, "/m");

    /* A guest transaction still obeys permissions. */
    xs_core_tx_start(st, 1, &o2, &t1);
    is_int(xs_core_write(st, 1, &o2, t1, "/local/domain/2/x", "e", 1),
           -EACCES, "permissions apply inside transactions");
    xs_core_tx_end(st, 1, &o2, t1, false);

    /* Disconnect mid-transaction. */
    xs_core_tx_start(st, 0, &o0, &t1);
    xs_core_write(st, 0, &o0, t1, "/leftover", "x", 1);
    xs_core_drop_owner(st, &o0);
    xs_core_drop_owner(st, &o1);
    is_int(rd(st, 0, 0, NULL, "/leftover", buf, sizeof(buf)), -ENOENT,
           "dropped owner's transaction discarded");
    xs_core_rm(st, 0, NULL, 0, "/x");
    xs_core_rm(st, 0, NULL, 0, "/z");
}

/* The frontend's connect transaction: a guest writes its queue-N/
 * directories, which do not exist yet, into the device directory the
 * toolstack made for it; and a reconnect removes queue-0/ and writes it
 * anew.  Neither may conflict unless another connection changed something
 * the transaction used. */
static void
test_tx_queue_layout(void)
{
    static const char fe[] = "/local/domain/3/device/vbd/51712";
    static const char *const keys[] = {
        "multi-queue-num-queues", "queue-0/ring-ref", "queue-0/event-channel",
        "queue-1/ring-ref", "queue-1/event-channel", "state",
    };
    const struct xs_core_perm fe_perms[2] = {
        { 3, XS_CORE_PERM_NONE }, { 0, XS_CORE_PERM_READ },
    };
    struct xs_store *st = xs_core_new(NULL, capture, NULL);
    char path[128], buf[64];
    size_t base = xs_core_live_nodes(st);
    uint32_t t;
    int r = 0;

    xs_core_introduce(st, 3, "fe");
    xs_core_mkdir(st, 0, NULL, 0, fe);
    xs_core_set_perms(st, 0, NULL, 0, fe, fe_perms, 2);
    snprintf(path, sizeof(path), "%s/state", fe);
    wr(st, 0, path, "1");

    is_int(xs_core_tx_start(st, 3, &o1, &t), 0, "guest starts a tx");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && r == 0; i++) {
        snprintf(path, sizeof(path), "%s/%s", fe, keys[i]);
        r = xs_core_write(st, 3, &o1, t, path, "7", 1);
    }
    is_int(r, 0, "writes creating queue-0/ and queue-1/ in the tx");
    is_int(xs_core_tx_end(st, 3, &o1, t, true), 0,
           "tx creating missing queue-N/ parents commits");
    snprintf(path, sizeof(path), "%s/queue-1/event-channel", fe);
    is_int(rd(st, 0, 0, NULL, path, buf, sizeof(buf)), 0,
           "queue-1/event-channel applied");
    snprintf(path, sizeof(path), "%s/queue-1", fe);
    is_int(owner_of(st, path), 3, "the created parent belongs to the guest");

    /* Reconnect: remove queue-0/ and recreate part of it. */
    xs_core_tx_start(st, 3, &o1, &t);
    snprintf(path, sizeof(path), "%s/queue-0", fe);
    is_int(xs_core_rm(st, 3, &o1, t, path), 0, "rm queue-0/ in a tx");
    snprintf(path, sizeof(path), "%s/queue-0/ring-ref", fe);
    is_int(xs_core_write(st, 3, &o1, t, path, "9", 1), 0,
           "write queue-0/ring-ref again in the same tx");
    is_int(xs_core_tx_end(st, 3, &o1, t, true), 0,
           "rm and recreate of queue-0/ in one tx commits");
    is_int(rd(st, 0, 0, NULL, path, buf, sizeof(buf)), 0, "ring-ref there");
    ok(strcmp(buf, "9") == 0, "with the new value");
    snprintf(path, sizeof(path), "%s/queue-0/event-channel", fe);
    is_int(rd(st, 0, 0, NULL, path, buf, sizeof(buf)), -ENOENT,
           "the removed child that was not recreated is gone");

    /* Another connection changes a node inside the removed subtree: that
     * must conflict. */
    xs_core_tx_start(st, 3, &o1, &t);
    snprintf(path, sizeof(path), "%s/queue-1", fe);
    xs_core_rm(st, 3, &o1, t, path);
    snprintf(path, sizeof(path), "%s/queue-1/ring-ref", fe);
    xs_core_write(st, 3, &o1, t, path, "10", 2);
    snprintf(path, sizeof(path), "%s/queue-1/event-channel", fe);
    xs_core_write(st, 3, &o2, 0, path, "99", 2);
    is_int(xs_core_tx_end(st, 3, &o1, t, true), -EAGAIN,
           "a change inside the removed subtree conflicts");
    is_int(rd(st, 0, 0, NULL, path, buf, sizeof(buf)), 0,
           "nothing of the conflicting tx applied");
    ok(strcmp(buf, "99") == 0, "the other connection's value stays");

    /* ... while a change elsewhere does not. */
    xs_core_tx_start(st, 3, &o1, &t);
    snprintf(path, sizeof(path), "%s/queue-1", fe);
    xs_core_rm(st, 3, &o1, t, path);
    snprintf(path, sizeof(path), "%s/queue-1/ring-ref", fe);
    xs_core_write(st, 3, &o1, t, path, "11", 2);
    wr(st, 3, "/local/domain/3/name", "renamed");
    is_int(xs_core_tx_end(st, 3, &o1, t, true), 0,
           "an unrelated change does not conflict with rm + recreate");

    is_int(xs_core_release(st, 3), 0, "release");
    is_int(xs_core_live_nodes(st), base, "no leaked nodes");
    xs_core_free(st);
}

/* Transactions copy the tree on demand, not at start; what they see and
 * when they conflict follows cxenstored's generation-at-first-access. */
static void
test_tx_views(void)
{
    struct xs_store *st = xs_core_new(NULL, capture, NULL);
    char path[64], buf[64];
    size_t before;
    uint32_t t;

    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof(path), "/big/d%d/leaf", i);
        wr(st, 0, path, "x");
    }
    wr(st, 0, "/gone/child", "g");
    before = xs_core_live_nodes(st);
    is_int(xs_core_tx_start(st, 0, &o0, &t), 0, "tx start");
    is_int(xs_core_live_nodes(st), before + 1,
           "starting a tx copies the root alone, not the tree");
    is_int(rd(st, 0, t, &o0, "/big/d7/leaf", buf, sizeof(buf)), 0,
           "read through the lazily copied view");
    ok(xs_core_live_nodes(st) < before + 220,
       "a read copies the nodes on its path and their siblings only");

    /* First access after another connection's change: the new value, and
     * no conflict. */
    wr(st, 0, "/big/d8/leaf", "changed-before");
    is_int(rd(st, 0, t, &o0, "/big/d8/leaf", buf, sizeof(buf)), 0,
           "first read in the tx");
    ok(strcmp(buf, "changed-before") == 0,
       "a node first read after a change shows the change");
    wr(st, 0, "/big/d7/leaf", "changed-after");
    is_int(rd(st, 0, t, &o0, "/big/d7/leaf", buf, sizeof(buf)), 0,
           "second read in the tx");
    ok(strcmp(buf, "x") == 0,
       "a node read before a change keeps the value first seen");
    is_int(xs_core_tx_end(st, 0, &o0, t, true), -EAGAIN,
           "a change after the first read conflicts");

    xs_core_tx_start(st, 0, &o0, &t);
    rd(st, 0, t, &o0, "/big/d8/leaf", buf, sizeof(buf));
    wr(st, 0, "/big/d9/leaf", "unrelated");
    xs_core_write(st, 0, &o0, t, "/big/d8/leaf", "tx", 2);
    is_int(xs_core_tx_end(st, 0, &o0, t, true), 0,
           "a change to a node the tx never read does not conflict");
    is_int(rd(st, 0, 0, NULL, "/big/d8/leaf", buf, sizeof(buf)), 0, "read");
    ok(strcmp(buf, "tx") == 0, "the tx's write applied");

    /* A node copied into the view (as a sibling) and then removed from the
     * live tree: writing below it must conflict, not resurrect it. */
    xs_core_tx_start(st, 0, &o0, &t);
    rd(st, 0, t, &o0, "/big", buf, sizeof(buf));    /* copies /gone too */
    xs_core_rm(st, 0, NULL, 0, "/gone");
    is_int(xs_core_write(st, 0, &o0, t, "/gone/child2", "r", 1), 0,
           "write below a node removed live since it was copied");
    is_int(xs_core_tx_end(st, 0, &o0, t, true), -EAGAIN,
           "it conflicts");
    is_int(rd(st, 0, 0, NULL, "/gone", buf, sizeof(buf)), -ENOENT,
           "and does not bring /gone back");

    /* Directory in a tx: copied once, then stable. */
    xs_core_tx_start(st, 0, &o0, &t);
    {
        char *names;
        size_t len;
        is_int(xs_core_directory(st, 0, &o0, t, "/big/d3", &names, &len,
                                 NULL), 0, "directory in a tx");
        ok(len == 5 && strcmp(names, "leaf") == 0, "lists the copied child");
        free(names);
        wr(st, 0, "/big/d3/new", "n");
        is_int(xs_core_directory(st, 0, &o0, t, "/big/d3", &names, &len,
                                 NULL), 0, "directory again");
        ok(len == 5, "a child created live later does not show");
        free(names);
    }
    is_int(xs_core_tx_end(st, 0, &o0, t, true), -EAGAIN,
           "and the listed directory's change conflicts");
    xs_core_rm(st, 0, NULL, 0, "/big");
    xs_core_free(st);
}

/* Random operations of three connections, each often inside a
 * transaction, on a small tree: a transaction reads back what it wrote,
 * reads a node it saw before unchanged (what another connection did since
 * stays out of its view), and an aborted one changes nothing.  Under the
 * sanitizer build this also walks the lazy copying through many shapes. */
#define RND_CONNS 3
#define RND_PATHS 12
static const char *const rnd_paths[RND_PATHS] = {
    "/r/a", "/r/a/x", "/r/a/y", "/r/a/x/deep", "/r/b", "/r/b/x",
    "/r/b/y", "/r/c", "/r/c/q0", "/r/c/q0/ring", "/r/c/q1", "/r/c/q1/ring",
};

static unsigned int rnd_state = 12345;
static unsigned int
rnd(unsigned int n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

static void
test_tx_random(void)
{
    struct xs_store *st = xs_core_new(NULL, capture, NULL);
    static char conn[RND_CONNS];
    struct {
        uint32_t tx;
        int seen[RND_PATHS];             /* 0 unseen, 1 absent, 2 value */
        char val[RND_PATHS][64];
    } c[RND_CONNS];
    size_t base = xs_core_live_nodes(st);
    unsigned int bad_repeat = 0, bad_own = 0, commits = 0, conflicts = 0;
    char before[RND_PATHS][64], buf[64];
    int present[RND_PATHS];

    memset(c, 0, sizeof(c));
    for (int step = 0; step < 20000; step++) {
        int k = (int)rnd(RND_CONNS), i = (int)rnd(RND_PATHS);
        unsigned int op = rnd(10);
        uint32_t tx = c[k].tx;

        if (tx == 0 && op < 3) {
            xs_core_tx_start(st, 0, &conn[k], &c[k].tx);
            memset(c[k].seen, 0, sizeof(c[k].seen));
            continue;
        }
        if (tx != 0 && op == 9) {
            bool commit = k != 0;       /* connection 0 always aborts */
            int r;
            /* What an abort must leave. */
            for (int j = 0; !commit && j < RND_PATHS; j++)
                present[j] = rd(st, 0, 0, NULL, rnd_paths[j], before[j],
                                sizeof(before[j])) == 0;
            r = xs_core_tx_end(st, 0, &conn[k], tx, commit);
            c[k].tx = 0;
            if (commit && r == 0)
                commits++;
            else if (commit && r == -EAGAIN)
                conflicts++;
            if (!commit)
                for (int j = 0; j < RND_PATHS; j++) {
                    int p = rd(st, 0, 0, NULL, rnd_paths[j], buf,
                               sizeof(buf)) == 0;
                    if (p != present[j] || (p && strcmp(buf, before[j])))
                        bad_own++;
                }
            continue;
        }
        if (op < 5) {                    /* write */
            char v[16];
            snprintf(v, sizeof(v), "v%d", step);
            if (xs_core_write(st, 0, &conn[k], tx, rnd_paths[i], v,
                              strlen(v)) == 0 && tx != 0) {
                c[k].seen[i] = 2;
                memcpy(c[k].val[i], v, sizeof(v));
                /* Parents now exist in the view. */
                for (int j = 0; j < RND_PATHS; j++)
                    if (j != i && strncmp(rnd_paths[i], rnd_paths[j],
                                          strlen(rnd_paths[j])) == 0 &&
                        rnd_paths[i][strlen(rnd_paths[j])] == '/' &&
                        c[k].seen[j] == 1) {
                        c[k].seen[j] = 2;
                        c[k].val[j][0] = '\0';
                    }
            }
        } else if (op < 6) {             /* rm */
            if (xs_core_rm(st, 0, &conn[k], tx, rnd_paths[i]) == 0 && tx)
                for (int j = 0; j < RND_PATHS; j++)
                    if (strncmp(rnd_paths[j], rnd_paths[i],
                                strlen(rnd_paths[i])) == 0 &&
                        (rnd_paths[j][strlen(rnd_paths[i])] == '\0' ||
                         rnd_paths[j][strlen(rnd_paths[i])] == '/'))
                        c[k].seen[j] = 1;
        } else {                         /* read */
            int r = rd(st, 0, tx, &conn[k], rnd_paths[i], buf, sizeof(buf));
            if (tx == 0)
                continue;
            if (c[k].seen[i] == 1 && r != -ENOENT)
                bad_repeat++;
            else if (c[k].seen[i] == 2 &&
                     (r != 0 || strcmp(buf, c[k].val[i]) != 0))
                bad_repeat++;
            else if (c[k].seen[i] == 0) {
                c[k].seen[i] = r == 0 ? 2 : 1;
                if (r == 0)
                    snprintf(c[k].val[i], sizeof(c[k].val[i]), "%s", buf);
            }
        }
    }
    is_int(bad_repeat, 0, "inside a tx, every read repeats what it saw or wrote");
    is_int(bad_own, 0, "an aborted tx left the tree as it found it");
    ok(commits > 0 && conflicts > 0,
       "random mix: %u commits, %u conflicts", commits, conflicts);
    for (int k = 0; k < RND_CONNS; k++)
        xs_core_drop_owner(st, &conn[k]);
    xs_core_rm(st, 0, NULL, 0, "/r");
    is_int(xs_core_live_nodes(st), base, "no leaked nodes after the mix");
    xs_core_free(st);
}

/* Domain 0's own nodes, as xen-init-dom0 writes them on a Xen host. */
static void
test_dom0_nodes(void)
{
    struct xs_store *st = xs_core_new(NULL, capture, NULL);
    char buf[64];

    xs_core_watch(st, 0, &o0, "@introduceDomain", "i");
    nev = 0;
    is_int(xs_core_introduce(st, 0, "Domain-0"), 0, "name domain 0");
    is_int(rd(st, 0, 0, NULL, "/local/domain/0/name", buf, sizeof(buf)), 0,
           "/local/domain/0/name exists");
    ok(strcmp(buf, "Domain-0") == 0, "dom0's name is Domain-0");
    is_int(rd(st, 0, 0, NULL, "/local/domain/0/domid", buf, sizeof(buf)), 0,
           "/local/domain/0/domid exists");
    ok(strcmp(buf, "0") == 0, "dom0's domid is 0");
    is_int(owner_of(st, "/local/domain/0"), 0, "dom0's dir stays dom0's");
    ok(xs_core_is_introduced(st, 0), "dom0 is introduced");
    is_int(nev, 0, "no @introduceDomain for dom0");
    xs_core_introduce(st, 5, "g");
    is_int(rd(st, 5, 0, NULL, "/local/domain/0/name", buf, sizeof(buf)),
           -EACCES, "a guest cannot read dom0's name (n0, as on Xen)");
    xs_core_free(st);
}

static void
test_quotas(void)
{
    struct xs_core_limits lim = { .nodes = 8, .watches = 3,
                                  .transactions = 2, .value_size = 16 };
    struct xs_store *st = xs_core_new(&lim, capture, NULL);
    char path[64], big[32];
    uint32_t t;
    int r = 0, i;

    xs_core_introduce(st, 4, "q");    /* owns dir, domid, name: 3 nodes */
    is_int(xs_core_nodes_owned(st, 4), 3, "introduce counts 3 nodes");
    for (i = 0; i < 10 && r == 0; i++) {
        snprintf(path, sizeof(path), "/local/domain/4/n%d", i);
        r = wr(st, 4, path, "x");
    }
    is_int(r, -ENOSPC, "node quota: ENOSPC");
    is_int(xs_core_nodes_owned(st, 4), 8, "stopped exactly at the quota");
    is_int(wr(st, 0, "/local/domain/4/dom0made", "x"), 0,
           "dom0 is not limited");
    is_int(xs_core_nodes_owned(st, 4), 9,
           "a node dom0 creates in the guest's dir belongs to the guest");
    xs_core_rm(st, 4, NULL, 0, "/local/domain/4/n0");
    xs_core_rm(st, 4, NULL, 0, "/local/domain/4/n1");
    is_int(wr(st, 4, "/local/domain/4/again", "x"), 0,
           "room again after rm");
    memset(big, 'v', sizeof(big));
    is_int(xs_core_write(st, 4, NULL, 0, "/local/domain/4/again", big, 17),
           -ENOSPC, "value over value_size: ENOSPC");
    is_int(xs_core_write(st, 4, NULL, 0, "/local/domain/4/again", big, 16),
           0, "value of exactly value_size accepted");
    for (i = 0, r = 0; i < 5 && r == 0; i++) {
        snprintf(path, sizeof(path), "w%d", i);
        r = xs_core_watch(st, 4, &o1, path, "t");
    }
    is_int(r, -E2BIG, "watch quota: E2BIG");
    is_int(xs_core_watch_count(st, &o1), 3, "three watches held");
    {
        /* Node quota at commit: two transactions of the same domain, in
         * different directories (no conflict), that each fit alone but not
         * together. */
        uint32_t ta, tb;
        unsigned int room;
        for (i = 2; i <= 4; i++) {
            snprintf(path, sizeof(path), "/local/domain/4/n%d", i);
            xs_core_rm(st, 4, NULL, 0, path);
        }
        xs_core_rm(st, 4, NULL, 0, "/local/domain/4/again");
        xs_core_mkdir(st, 0, NULL, 0, "/local/domain/4/pa");
        xs_core_mkdir(st, 0, NULL, 0, "/local/domain/4/pb");
        room = lim.nodes - xs_core_nodes_owned(st, 4);
        is_int(room, 2, "room for two nodes");
        xs_core_tx_start(st, 4, &o2, &ta);
        xs_core_tx_start(st, 4, &o3, &tb);
        for (unsigned int k = 0; k < room; k++) {
            snprintf(path, sizeof(path), "/local/domain/4/pa/x%u", k);
            xs_core_write(st, 4, &o2, ta, path, "", 0);
            snprintf(path, sizeof(path), "/local/domain/4/pb/y%u", k);
            xs_core_write(st, 4, &o3, tb, path, "", 0);
        }
        is_int(xs_core_tx_end(st, 4, &o2, ta, true), 0,
               "first tx within the quota commits");
        is_int(xs_core_tx_end(st, 4, &o3, tb, true), -ENOSPC,
               "second tx would exceed the quota: ENOSPC at commit");
        is_int(xs_core_read(st, 0, NULL, 0, "/local/domain/4/pb/y0",
                            &(char *){0}, &(size_t){0}), -ENOENT,
               "nothing of the refused tx applied");
        xs_core_rm(st, 0, NULL, 0, "/local/domain/4/pa");
        xs_core_rm(st, 0, NULL, 0, "/local/domain/4/pb");
    }
    is_int(xs_core_tx_start(st, 4, &o1, &t), 0, "tx 1");
    is_int(xs_core_tx_start(st, 4, &o1, &t), 0, "tx 2");
    is_int(xs_core_tx_start(st, 4, &o1, &t), -ENOSPC, "tx quota: ENOSPC");
    xs_core_drop_owner(st, &o1);
    {
        /* Across connections: XS_CORE_TX_PER_DOMAIN x the per-conn quota. */
        static char conns[16];
        int got = 0;
        for (int k = 0; k < 16; k++)
            for (int j = 0; j < 2; j++)
                if (xs_core_tx_start(st, 4, &conns[k], &t) == 0)
                    got++;
        is_int(got, XS_CORE_TX_PER_DOMAIN * lim.transactions,
               "per-domain cap on open transactions across connections");
        for (int k = 0; k < 16; k++)
            xs_core_drop_owner(st, &conns[k]);
    }
    is_int(xs_core_tx_start(st, 4, &o1, &t), 0, "tx again after drop");
    {
        /* A guest transaction's bookkeeping is bounded. */
        int rr = 0;
        unsigned int k;
        for (k = 0; k < 5000 && rr != -ENOSPC; k++) {
            snprintf(path, sizeof(path), "/local/domain/4/absent%u", k);
            rr = xs_core_read(st, 4, &o1, t, path, &(char *){0},
                              &(size_t){0});
        }
        is_int(rr, -ENOSPC, "reading too many nodes in one tx: ENOSPC");
        is_int(k, XS_CORE_TX_MAX_NODES + 1, "after XS_CORE_TX_MAX_NODES");
        is_int(xs_core_tx_end(st, 4, &o1, t, false), 0, "abort it");
        xs_core_tx_start(st, 4, &o1, &t);
        for (k = 0, rr = 0; k < 5000 && rr == 0; k++)
            rr = xs_core_write(st, 4, &o1, t, "/local/domain/4/name", "x", 1);
        is_int(rr, -ENOSPC, "too many writes in one tx: ENOSPC");
    }
    xs_core_drop_owner(st, &o1);
    is_int(xs_core_release(st, 4), 0, "release");
    is_int(xs_core_nodes_owned(st, 4), 0, "release frees the domain's nodes");
    xs_core_free(st);
}

int
main(void)
{
    struct xs_store *st = xs_core_new(NULL, capture, NULL);
    size_t base;

    if (st == NULL)
        bail_out("xs_core_new failed");
    base = xs_core_live_nodes(st);
    is_int(base, 4, "fresh store: /, /local, /local/domain, /local/domain/0");
    test_paths();
    test_basic(st);
    test_perms(st);
    test_watches(st);
    test_transactions(st);
    xs_core_release(st, 1);
    xs_core_release(st, 2);
    xs_core_rm(st, 0, NULL, 0, "/local/domain/0/backend");
    is_int(xs_core_live_nodes(st), base,
           "no leaked nodes: back to the initial count");
    xs_core_free(st);
    test_quotas();
    test_tx_queue_layout();
    test_dom0_nodes();
    test_tx_views();
    test_tx_random();
    return done_testing();
}
