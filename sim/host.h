/* xbd-sim — the host side: domains, grant tables, guest memory and event
 * channels, served over one host socket per domain (common/sim-proto.h).
 *
 * Object graph (everything runs on the sim's one loop thread):
 *
 *   host ──► domain (dom0 first, then created ones; domids never reused)
 *              ├─ memory memfd, frame bitmap        (sparse, holes punched)
 *              ├─ grant table memfd + active table  (shared, see sim-proto.h)
 *              ├─ ports[]  ──► peer domain's port   (eventfd pair)
 *              └─ host socket ──► conn (one per client handle)
 *                                  ├─ role: control | gnttab | gntshr | evtchn
 *                                  ├─ gnttab: maptrack memfd (its pins)
 *                                  ├─ gntshr: shares it made
 *                                  └─ evtchn: ports it bound (port.owner)
 *
 * A conn's state is released when it closes, so a client that dies leaves
 * nothing behind: its ports close, its shares end (deferred while the peer
 * still has them pinned, as gntalloc does), its pins are dropped.
 */
#ifndef XBD_SIM_HOST_H
#define XBD_SIM_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sim_loop;
struct xs_server;
struct host;

struct host_config {
    const char *dir;            /* run directory: d<domid>.host / .xs live here */
    uint32_t mem_pages;         /* guest memory per domain, in 4 KiB frames */
    uint32_t nr_grants;         /* grant table entries per domain */
    int verbose;
};

#define HOST_DEFAULT_MEM_PAGES (262144u)    /* 1 GiB, sparse */
#define HOST_DEFAULT_GRANTS    (32768u)     /* Xen's default 64 grant frames */
/* Ports per domain.  Xen's 2-level ABI allows 4096 on 64-bit; each port
 * costs the sim two eventfds, so a smaller quota keeps one guest from
 * exhausting the sim's descriptors (main.c raises RLIMIT_NOFILE too). */
#define HOST_MAX_PORTS         1024u

/* Create the host with dom0 (its host socket, and its xenstore socket when
 * xs is not NULL: unit tests may run the host without a store).  NULL with a message on stderr on failure. */
struct host *host_new(struct sim_loop *loop, struct xs_server *xs,
                      const struct host_config *cfg);
/* Destroy every domain, close and unlink every socket. */
void host_free(struct host *h);

/* The toolstack's operations; errors are -errno with a message in err. */
int host_domain_create(struct host *h, const char *name, uint32_t *domid_out,
                       char *err, size_t errlen);
int host_domain_destroy(struct host *h, uint32_t domid, char *err, size_t errlen);

/* The status report (xbd-sim(8), STATUS): one line per live domain,
 *   domain ID name NAME granted G mapped M ports P bound B deferred D clients C
 * G: grant refs the domain has shared (refs 0-7 excluded); M: its entries
 * some process has pinned (mapped or being copied); P: event-channel ports
 * allocated, B of them bound interdomain; D: pages of ended shares still
 * pinned by a peer; C: host-socket clients.  -EIO on a write error. */
int host_report(struct host *h, FILE *f);


#endif /* XBD_SIM_HOST_H */
