/* xbdkit — the protocol between the platform layer's "sim" implementation
 * (common/platform-sim.c) and the host side of xbd-sim (sim/host*.c).
 *
 * Transport: one SOCK_SEQPACKET unix socket per domain, $XBD_SIM_DIR/d<id>.host.
 * The socket a process connects to is its domain.  Every connection starts
 * with SIMP_HELLO naming its role; the host keeps per-connection state (the
 * ports an evtchn handle bound, the pages a gntshr handle shared, the
 * maptrack of a gnttab handle) and releases it when the connection closes,
 * so a process that dies leaves nothing behind.
 *
 * Each request is one message: struct simp_req followed by op-specific
 * payload; each reply is one message: struct simp_rep followed by payload,
 * with file descriptors (SCM_RIGHTS) where an op says so.  Requests are
 * answered in order, one at a time.  err is 0 or a negative errno; msg is a
 * NUL-terminated message for a human when err != 0.
 *
 * Shared memory layouts (all little-endian host order, all mmap'd MAP_SHARED):
 *   grant table  nr_grants * grant_entry_v1_t (from <xen/grant_table.h>)
 *   active table struct simp_active_hdr, then nr_grants * struct simp_active
 *   memory       mem_pages * 4 KiB frames; frame N at offset N*4096
 *   maptrack     struct simp_maptrack_hdr, then SIMP_MAPTRACK_SLOTS slots
 */
#ifndef XBD_SIM_PROTO_H
#define XBD_SIM_PROTO_H

#include <stdint.h>

#define SIMP_VERSION 1
#define SIMP_MSG_MAX (64 * 1024)        /* largest message either way */
#define SIMP_SHARE_MAX 4096u            /* pages per SIMP_SHARE */
#define SIMP_NAME_MAX 64                /* domain name incl. NUL */

enum simp_op {
    SIMP_HELLO = 1,         /* u32 role -> struct simp_hello_rep;
                             *  fds: GNTTAB: maptrack; GNTSHR: own memory,
                             *  own grant table */
    SIMP_GET_DOMAIN,        /* u32 domid (privileged only) -> struct
                             *  simp_domain_rep; fds: memory, grant table,
                             *  active table */
    SIMP_SHARE,             /* struct simp_share_req -> u32 refs[count],
                             *  u32 frames[count] */
    SIMP_UNSHARE,           /* u32 count, u32 refs[count] -> nothing;
                             *  -EBUSY when any is in use (none released) */
    SIMP_EVTCHN_ALLOC,      /* u32 remote_domid -> u32 port; fds: rx, tx */
    SIMP_EVTCHN_BIND,       /* u32 remote_domid, u32 remote_port ->
                             *  u32 port; fds: rx, tx */
    SIMP_EVTCHN_UNBIND,     /* u32 port -> nothing */
    SIMP_DOMAIN_CREATE,     /* char name[] (privileged) -> u32 domid */
    SIMP_DOMAIN_DESTROY,    /* u32 domid (privileged) -> nothing */
    SIMP_DOMAIN_LIST,       /* (privileged) -> text "domid name\n"... */
};

enum simp_role {
    SIMP_ROLE_CONTROL = 1,  /* domain ops, queries */
    SIMP_ROLE_GNTTAB,       /* map/copy (privileged only) */
    SIMP_ROLE_GNTSHR,       /* share/unshare */
    SIMP_ROLE_EVTCHN,       /* event channels */
};

struct simp_req {
    uint32_t op;
    uint32_t len;           /* payload bytes after this header */
};

struct simp_rep {
    int32_t err;
    uint32_t len;           /* payload bytes after this header */
    char msg[160];
};

struct simp_hello_rep {
    uint32_t version;
    uint32_t domid;
    uint32_t privileged;
    uint32_t token;         /* this connection's lock token (nonzero) */
    uint32_t nr_grants;     /* of this domain's table */
    uint32_t mem_pages;     /* of this domain's memory */
};

struct simp_domain_rep {
    uint32_t domid;
    uint32_t nr_grants;
    uint32_t mem_pages;
    uint32_t pad;
};

struct simp_share_req {
    uint32_t domid;         /* grantee */
    uint32_t count;
    uint32_t writable;
};

/* ---- The active (pin) table ----------------------------------------------
 *
 * Xen keeps, beside each domain's guest-visible grant table, a private
 * "active" entry per ref with its pin counts.  Here it is shared between
 * the sim and privileged processes (never guests).  All updates of an
 * entry's pins and of the GTF_reading/GTF_writing bits in the guest-visible
 * flags happen while holding `lock` (0 = free, else the token of the holding
 * connection), so "clear the flag when the last pin goes" cannot race a new
 * pin in another process.  The guest side never takes the lock: it only
 * cmpxchg's the flags, exactly as a Linux guest does.
 */
#define SIMP_ACTIVE_MAGIC 0x58424447u  /* "XBDG" */

struct simp_active_hdr {
    uint32_t magic;
    uint32_t nr_grants;
    uint32_t dead;          /* set (release) by the sim when the domain dies */
    uint32_t pad[1021];     /* one page */
};

struct simp_active {
    uint32_t lock;
    uint32_t pin_rd;        /* pins for reading (maps ro, copies from) */
    uint32_t pin_wr;        /* pins for writing (maps rw, copies to) */
    uint32_t pad;
};

/* ---- The maptrack --------------------------------------------------------
 *
 * Per gnttab connection: a record of every pin the process holds, so that
 * the sim can release them when the process dies (SIGKILL in the middle of a
 * copy included).  A slot is written while the entry's lock is held, before
 * the pin count changes, and cleared after it changes back; so for any entry
 * not left locked by the dead process, its HELD slots are exactly its pins.
 * An entry left locked by the dead process is repaired by recounting every
 * live maptrack.
 */
#define SIMP_MAPTRACK_SLOTS 65536u

struct simp_maptrack_slot {
    uint32_t domid;         /* 0 when the slot is free */
    uint32_t ref;
    uint32_t state;         /* 0 free, 1 pinned for reading, 2 for writing */
    uint32_t pad;
};

struct simp_maptrack_hdr {
    uint32_t magic;
    uint32_t nslots;
    /* The entry whose lock the process may be holding or taking: set before
     * taking a lock, cleared after releasing it, so that a lock left behind
     * by a dead process is found even when no slot names it. */
    uint32_t busy;          /* 1 while busy_domid/busy_ref are meaningful */
    uint32_t busy_domid;
    uint32_t busy_ref;
    uint32_t pad[1019];
};

#define SIMP_MAPTRACK_MAGIC 0x58424d54u /* "XBMT" */
#define SIMP_SIM_TOKEN 0xffffffffu      /* the sim's own lock token */

/* ---- Client side (common/platform-sim.c; used by xbdctl too) ------------- */

/* Connect to this process's domain ($XBD_SIM_DIR/d$XBD_SIM_DOMID.host) in
 * `role` and say hello.  fds receives up to 2 descriptors the hello reply
 * carries (-1 where none).  Returns the connected socket or -errno with
 * xbd_platform_error() set. */
int xbd_sim_connect(uint32_t role, struct simp_hello_rep *hello, int fds[2]);

/* One request/reply.  rep_buf receives up to rep_max payload bytes; *rep_len
 * how many came; fds up to nfds descriptors (-1 where none).  Returns the
 * reply's err (0 or -errno, message set) or -errno of the transport. */
int xbd_sim_call(int sock, uint32_t op, const void *req, uint32_t req_len,
                 void *rep_buf, uint32_t rep_max, uint32_t *rep_len,
                 int *fds, int nfds);

#endif /* XBD_SIM_PROTO_H */
