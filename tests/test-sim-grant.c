/* Grant tables on xbd-sim: share, multi-page map, copy, read-only, bad
 * references, end access while in use, and pins released when the mapping
 * process is killed.  Runs itself under a private captive xbd-sim. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <xen/grant_table.h>

#include "sim-proto.h"
#include "sim-test.h"

/* The frames behind refs of domain `domid`, read from its grant table the
 * way a privileged process can: to prove the test's frames are scattered. */
static void
frames_of(uint32_t domid, const uint32_t *refs, uint32_t n, uint32_t *frames)
{
    struct simp_hello_rep h;
    struct simp_domain_rep d;
    grant_entry_v1_t *gt;
    uint32_t len, i;
    int fds[3], s = xbd_sim_connect(SIMP_ROLE_GNTTAB, &h, fds);

    if (s < 0)
        bail_out("%s", xbd_platform_error());
    close(fds[0]);
    if (xbd_sim_call(s, SIMP_GET_DOMAIN, &domid, 4, &d, sizeof(d), &len, fds, 3) < 0)
        bail_out("%s", xbd_platform_error());
    gt = mmap(NULL, d.nr_grants * sizeof(*gt), PROT_READ, MAP_SHARED, fds[1], 0);
    if (gt == MAP_FAILED)
        bail_out("mmap");
    for (i = 0; i < n; i++)
        frames[i] = gt[refs[i]].frame;
    munmap(gt, d.nr_grants * sizeof(*gt));
    for (i = 0; i < 3; i++)
        close(fds[i]);
    close(s);
}

/* The flags of one grant entry of `domid`. */
static uint16_t
grant_flags(uint32_t domid, uint32_t ref)
{
    struct simp_hello_rep h;
    struct simp_domain_rep d;
    grant_entry_v1_t *gt;
    uint32_t len, i;
    uint16_t f;
    int fds[3], s = xbd_sim_connect(SIMP_ROLE_GNTTAB, &h, fds);

    if (s < 0)
        bail_out("%s", xbd_platform_error());
    close(fds[0]);
    if (xbd_sim_call(s, SIMP_GET_DOMAIN, &domid, 4, &d, sizeof(d), &len, fds, 3) < 0)
        bail_out("%s", xbd_platform_error());
    gt = mmap(NULL, d.nr_grants * sizeof(*gt), PROT_READ, MAP_SHARED, fds[1], 0);
    if (gt == MAP_FAILED)
        bail_out("mmap");
    f = __atomic_load_n(&gt[ref].flags, __ATOMIC_ACQUIRE);
    munmap(gt, d.nr_grants * sizeof(*gt));
    for (i = 0; i < 3; i++)
        close(fds[i]);
    close(s);
    return f;
}

static uint64_t
ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A privileged process dies inside the pin protocol: holding entry R1's lock
 * with its pin half-recorded, and holding a plain pin on R2.  The sim must
 * repair R1 from the maptracks and drop both pins, so the guest can end
 * access and the entries work again.  The child plays the in-process side
 * of sim-proto.h by hand to stop exactly there. */
static void
crash_in_critical_section(void)
{
    struct agent b = agent_start(1);
    struct ag_rep r = agent_call(&b, AG_SHARE, 2, 1, 0);
    int pfd[2], rc;
    uint64_t deadline;
    pid_t pid;
    char ch;

    is_int(r.rc, 0, "guest shares two pages for the crash test");
    if (pipe(pfd) < 0)
        bail_out("pipe");
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        struct simp_hello_rep h;
        struct simp_domain_rep d;
        struct simp_maptrack_hdr *mt;
        struct simp_maptrack_slot *slot;
        struct simp_active_hdr *ah;
        struct simp_active *act;
        grant_entry_v1_t *gt;
        uint32_t len, domid = 1, r1 = r.refs[0], r2 = r.refs[1];
        int fds[3], s = xbd_sim_connect(SIMP_ROLE_GNTTAB, &h, fds);

        if (s < 0)
            _exit(1);
        mt = mmap(NULL, sizeof(*mt) + SIMP_MAPTRACK_SLOTS * sizeof(*slot),
                  PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
        if (xbd_sim_call(s, SIMP_GET_DOMAIN, &domid, 4, &d, sizeof(d), &len, fds, 3) < 0)
            _exit(1);
        gt = mmap(NULL, d.nr_grants * sizeof(*gt), PROT_READ | PROT_WRITE,
                  MAP_SHARED, fds[1], 0);
        ah = mmap(NULL, sizeof(*ah) + d.nr_grants * sizeof(*act),
                  PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0);
        if (mt == MAP_FAILED || gt == MAP_FAILED || ah == MAP_FAILED)
            _exit(1);
        slot = (struct simp_maptrack_slot *)(void *)(mt + 1);
        act = (struct simp_active *)(void *)(ah + 1);
        /* R2: a completed writable pin. */
        act[r2].lock = h.token;
        gt[r2].flags |= GTF_reading | GTF_writing;
        slot[7] = (struct simp_maptrack_slot){ 1, r2, 2, 0 };
        act[r2].pin_wr++;
        act[r2].lock = 0;
        /* R1: die in the middle: busy, locked, flags and slot set, pin not
         * yet counted. */
        mt->busy_domid = 1;
        mt->busy_ref = r1;
        mt->busy = 1;
        act[r1].lock = h.token;
        gt[r1].flags |= GTF_reading;
        slot[9] = (struct simp_maptrack_slot){ 1, r1, 1, 0 };
        (void)!write(pfd[1], "x", 1);
        pause();
        _exit(0);
    }
    close(pfd[1]);
    ok(read(pfd[0], &ch, 1) == 1, "child is stuck inside the pin protocol");
    close(pfd[0]);
    is_int(agent_call(&b, AG_UNSHARE, r.v, 0, 0).rc, -EBUSY, "end access: -EBUSY meanwhile");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    deadline = ms() + 10000;
    while ((grant_flags(1, r.refs[0]) != GTF_permit_access ||
            grant_flags(1, r.refs[1]) != GTF_permit_access) && ms() < deadline)
        usleep(10000);
    is_int(grant_flags(1, r.refs[0]), GTF_permit_access,
           "the half-pinned entry was repaired: not in use");
    is_int(grant_flags(1, r.refs[1]), GTF_permit_access, "the pinned entry was released");
    {
        struct xbd_platform *p;
        struct xbd_gnttab *g;
        void *m = NULL;

        if (xbd_platform_open(&p, NULL) < 0 || xbd_gnttab_open(p, &g) < 0)
            bail_out("%s", xbd_platform_error());
        is_int(xbd_gnttab_map(g, 1, 2, r.refs, 1, &m), 0,
               "the repaired entries map again (no lock left behind)");
        if (m != NULL) {
            is_int(agent_call(&b, AG_UNSHARE, r.v, 0, 0).rc, -EBUSY,
                   "pins count right again: end access while mapped is -EBUSY");
            xbd_gnttab_unmap(g, m, 2);
        }
        xbd_gnttab_close(g);
        xbd_platform_close(p);
    }
    rc = agent_call(&b, AG_UNSHARE, r.v, 0, 0).rc;
    is_int(rc, 0, "after unmap end access succeeds");
    agent_stop(&b);
}

int
main(int argc, char **argv)
{
    static const char *const sim_args[] = {
        "--domain", "guest1", "--domain", "guest2", "--memory", "64M", NULL };
    struct xbd_platform *p;
    struct xbd_gnttab *g;
    struct agent a;
    struct ag_rep r, big;
    uint32_t refs[64], frames[64], i, scattered = 0, good;
    uint8_t *m, buf[4096], buf2[4096];
    uint32_t ro_ref, other_ref;
    int rc;

    sim_test_enter(argc, argv, sim_args);

    /* ---- Platform selection ---- */
    {
        char *saved = strdup(getenv("XBD_SIM_DIR"));

        unsetenv("XBD_SIM_DIR");
        if (access("/dev/xen/gntdev", F_OK) != 0 && access("/dev/xen/evtchn", F_OK) != 0) {
            rc = xbd_platform_open(&p, NULL);
            is_int(rc, -ENOENT, "no sim and no Xen: open fails");
            ok(strstr(xbd_platform_error(), "no /dev/xen/gntdev and no xbd-sim found") != NULL,
               "and says what to do: %s", xbd_platform_error());
        }
        setenv("XBD_SIM_DIR", saved, 1);
        free(saved);
    }
    rc = xbd_platform_open(&p, NULL);
    is_int(rc, 0, "open platform");
    if (rc < 0)
        bail_out("%s", xbd_platform_error());
    ok(strcmp(xbd_platform_name(p), "sim") == 0, "platform is sim");
    is_int(xbd_platform_domid(p), 0, "we are dom0");
    is_int(xbd_gnttab_open(p, &g), 0, "gnttab open");

    a = agent_start(1);
    r = agent_call(&a, AG_GNTTAB_OPEN, 0, 0, 0);
    is_int(r.rc, -EPERM, "a guest may not open a gnttab (unprivileged)");

    /* ---- Scatter the guest's free frames: 128 single shares, end every
     * other one, so the next 64-page share gets non-contiguous frames. */
    {
        uint32_t idx[128];
        int bad = 0;

        for (i = 0; i < 128; i++) {
            r = agent_call(&a, AG_SHARE, 1, 1, 0);
            bad += r.rc != 0;
            idx[i] = r.v;
        }
        for (i = 0; i < 128; i += 2)
            bad += agent_call(&a, AG_UNSHARE, idx[i], 0, 0).rc != 0;
        is_int(bad, 0, "128 single shares, 64 ended");
    }
    big = agent_call(&a, AG_SHARE, 64, 1, 0);
    is_int(big.rc, 0, "share 64 writable pages to dom0");
    memcpy(refs, big.refs, sizeof(refs));
    frames_of(1, refs, 64, frames);
    for (i = 1; i < 64; i++)
        scattered += frames[i] != frames[i - 1] + 1;
    ok(scattered > 0, "the 64 frames are not contiguous (%u breaks)", scattered);

    /* Fresh pages are zero. */
    r = agent_call(&a, AG_CHECK, big.v, 63, 0);
    is_int(r.v, 4096, "shared pages start zeroed");

    /* ---- Map contiguously, write and read through both views ---- */
    rc = xbd_gnttab_map(g, 1, 64, refs, 1, (void **)&m);
    is_int(rc, 0, "map 64 refs into one range");
    if (rc < 0)
        bail_out("%s", xbd_platform_error());
    for (i = 0; i < 64; i++)
        memset(m + i * 4096, (int)(i + 1), 4096);
    good = 0;
    for (i = 0; i < 64; i++)
        good += agent_call(&a, AG_CHECK, big.v, i, i + 1).v == 4096;
    is_int(good, 64, "guest sees what dom0 wrote, page by page");
    agent_call(&a, AG_FILL, big.v, 17, 0xab);
    ok(m[17 * 4096] == 0xab && m[17 * 4096 + 4095] == 0xab && m[18 * 4096] == 19,
       "dom0 sees what the guest wrote");

    /* ---- End access while mapped fails and changes nothing ---- */
    r = agent_call(&a, AG_UNSHARE, big.v, 0, 0);
    is_int(r.rc, -EBUSY, "end access while mapped: -EBUSY");
    ok(m[17 * 4096] == 0xab, "mapping still intact");
    is_int(xbd_gnttab_unmap(g, m, 64), 0, "unmap");
    is_int(xbd_gnttab_unmap(g, m, 64), -EINVAL, "unmap twice: -EINVAL");
    r = agent_call(&a, AG_UNSHARE, big.v, 0, 0);
    is_int(r.rc, 0, "end access after unmap succeeds");
    rc = xbd_gnttab_map(g, 1, 1, &refs[0], 0, (void **)&m);
    is_int(rc, -EPERM, "map of an ended grant is refused");

    /* Pages come back zeroed: share again, the frames are reused. */
    big = agent_call(&a, AG_SHARE, 64, 1, 0);
    good = 0;
    for (i = 0; i < 64; i++)
        good += agent_call(&a, AG_CHECK, big.v, i, 0).v == 4096;
    is_int(good, 64, "re-shared pages are zero");
    is_int(agent_call(&a, AG_UNSHARE, big.v, 0, 0).rc, 0, "end them");

    /* ---- Read-only grants ---- */
    r = agent_call(&a, AG_SHARE, 1, 0, 0);
    is_int(r.rc, 0, "share one read-only page");
    ro_ref = r.refs[0];
    agent_call(&a, AG_FILL, r.v, 0, 0x5a);
    rc = xbd_gnttab_map(g, 1, 1, &ro_ref, 1, (void **)&m);
    is_int(rc, -EPERM, "writable map of a read-only grant refused");
    rc = xbd_gnttab_map(g, 1, 1, &ro_ref, 0, (void **)&m);
    is_int(rc, 0, "read-only map of a read-only grant");
    ok(rc == 0 && m[100] == 0x5a, "read through it");
    if (rc == 0)
        xbd_gnttab_unmap(g, m, 1);
    {
        struct xbd_gnt_copy_seg seg[2];

        memset(seg, 0, sizeof(seg));
        memset(buf, 0x11, sizeof(buf));
        seg[0].source.virt = buf;
        seg[0].dest.foreign.ref = ro_ref;
        seg[0].dest.foreign.domid = 1;
        seg[0].len = 4096;
        seg[0].flags = XBD_GNTCOPY_DEST_GREF;
        seg[1].source.foreign.ref = ro_ref;
        seg[1].source.foreign.domid = 1;
        seg[1].source.foreign.offset = 96;
        seg[1].dest.virt = buf2;
        seg[1].len = 4000;
        seg[1].flags = XBD_GNTCOPY_SOURCE_GREF;
        is_int(xbd_gnttab_copy(g, 2, seg), 0, "copy batch processed");
        is_int(seg[0].status, GNTST_general_error, "copy into a read-only grant refused");
        is_int(seg[1].status, GNTST_okay, "copy out of a read-only grant works");
        ok(buf2[0] == 0x5a && buf2[3999] == 0x5a, "copied data is right");
    }
    is_int(agent_call(&a, AG_CHECK, r.v, 0, 0x5a).v, 4096, "read-only page unchanged");
    is_int(agent_call(&a, AG_UNSHARE, r.v, 0, 0).rc, 0, "end read-only grant");

    /* ---- Bad references ---- */
    r = agent_call(&a, AG_SHARE, 1, 1, 2);
    is_int(r.rc, 0, "share a page to domain 2");
    other_ref = r.refs[0];
    {
        uint32_t bad0 = 0, badbig = 1u << 30, badend = 32768;

        is_int(xbd_gnttab_map(g, 1, 1, &bad0, 0, (void **)&m), -EPERM,
               "ref 0 (never granted) refused");
        is_int(xbd_gnttab_map(g, 1, 1, &badbig, 0, (void **)&m), -EINVAL,
               "out-of-range ref refused");
        is_int(xbd_gnttab_map(g, 1, 1, &badend, 0, (void **)&m), -EINVAL,
               "ref just past the table refused");
        is_int(xbd_gnttab_map(g, 1, 1, &other_ref, 0, (void **)&m), -EPERM,
               "ref granted to another domain refused");
        is_int(xbd_gnttab_map(g, 999, 1, &bad0, 0, (void **)&m), -ESRCH,
               "map from a nonexistent domain refused");
    }

    /* ---- A copy batch with mixed good and bad segments ---- */
    big = agent_call(&a, AG_SHARE, 2, 1, 0);
    is_int(big.rc, 0, "share two pages for copying");
    agent_call(&a, AG_FILL, big.v, 0, 0x77);
    {
        struct xbd_gnt_copy_seg s[8];
        static const int16_t want[8] = {
            GNTST_okay, GNTST_bad_gntref, GNTST_general_error, GNTST_bad_copy_arg,
            GNTST_bad_domain, GNTST_okay, GNTST_general_error, GNTST_bad_copy_arg };

        memset(s, 0, sizeof(s));
        memset(buf, 0, sizeof(buf));
        memset(buf2, 0x33, sizeof(buf2));
        for (i = 0; i < 8; i++) {
            s[i].flags = XBD_GNTCOPY_SOURCE_GREF;
            s[i].source.foreign.domid = 1;
            s[i].source.foreign.ref = big.refs[0];
            s[i].dest.virt = buf;
            s[i].len = 512;
            s[i].status = 99;
        }
        s[1].source.foreign.ref = 40000;                      /* past the table */
        s[2].source.foreign.ref = other_ref;                  /* for domain 2 */
        s[3].source.foreign.offset = 4000;                    /* crosses the page */
        s[4].source.foreign.domid = 77;                       /* no such domain */
        s[5].flags = XBD_GNTCOPY_DEST_GREF;                   /* write into page 1 */
        s[5].source.virt = buf2;
        s[5].dest.foreign.domid = 1;
        s[5].dest.foreign.ref = big.refs[1];
        s[5].dest.foreign.offset = 1024;
        s[5].len = 2048;
        s[6].source.foreign.ref = 0;                          /* reserved, never granted */
        s[7].flags = 0x80;                                    /* unknown flag */
        is_int(xbd_gnttab_copy(g, 8, s), 0, "mixed batch processed");
        for (i = 0; i < 8; i++)
            is_int(s[i].status, want[i], "segment %u status", i);
        ok(buf[0] == 0x77 && buf[511] == 0x77, "good segment copied");
        is_int(agent_call(&a, AG_CHECK, big.v, 1, 0x33).v, 2048,
               "good write segment landed, nothing else");
    }
    is_int(agent_call(&a, AG_UNSHARE, big.v, 0, 0).rc, 0,
           "copies left no pins behind: end access succeeds");

    /* ---- A mapping process killed: its pins are released ---- */
    big = agent_call(&a, AG_SHARE, 4, 1, 0);
    {
        int pfd[2];
        pid_t pid;
        char ch;
        uint64_t deadline;

        if (pipe(pfd) < 0)
            bail_out("pipe");
        fflush(NULL);
        pid = fork();
        if (pid == 0) {
            struct xbd_platform *cp;
            struct xbd_gnttab *cg;
            void *cm;

            if (xbd_platform_open(&cp, NULL) < 0 || xbd_gnttab_open(cp, &cg) < 0 ||
                xbd_gnttab_map(cg, 1, 4, big.refs, 1, &cm) < 0)
                _exit(1);
            (void)!write(pfd[1], "m", 1);
            pause();
            _exit(0);
        }
        close(pfd[1]);
        ok(read(pfd[0], &ch, 1) == 1, "child mapped 4 pages");
        close(pfd[0]);
        is_int(agent_call(&a, AG_UNSHARE, big.v, 0, 0).rc, -EBUSY,
               "end access while the child maps them: -EBUSY");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* The sim notices the closed socket asynchronously. */
        deadline = ms() + 10000;
        while ((rc = agent_call(&a, AG_UNSHARE, big.v, 0, 0).rc) == -EBUSY &&
               ms() < deadline)
            usleep(10000);
        is_int(rc, 0, "after SIGKILL the sim released the pins: end access succeeds");
    }

    agent_stop(&a);

    /* ---- A guest killed while dom0 maps its page: the grant's end is
     * deferred (as gntalloc does) until dom0 unmaps, then it happens. */
    a = agent_start(2);
    r = agent_call(&a, AG_SHARE, 1, 1, 0);
    is_int(r.rc, 0, "domain 2 shares a page");
    agent_call(&a, AG_FILL, r.v, 0, 0x42);
    rc = xbd_gnttab_map(g, 2, 1, r.refs, 1, (void **)&m);
    is_int(rc, 0, "dom0 maps it");
    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    close(a.fd);
    {
        uint16_t flags = 0xffff;
        uint64_t deadline = ms() + 10000;

        usleep(50000);
        flags = grant_flags(2, r.refs[0]);
        ok((flags & GTF_permit_access) && (flags & GTF_writing),
           "guest died: the grant stays while mapped (flags %#x)", flags);
        ok(rc == 0 && m[0] == 0x42, "and the page keeps its data");
        if (rc == 0)
            m[1] = 1;
        if (rc == 0)
            xbd_gnttab_unmap(g, m, 1);
        while ((flags = grant_flags(2, r.refs[0])) != 0 && ms() < deadline)
            usleep(10000);
        is_int(flags, 0, "after unmap the deferred end of access happened");
    }

    crash_in_critical_section();
    xbd_gnttab_close(g);
    xbd_platform_close(p);
    return done_testing();
}
