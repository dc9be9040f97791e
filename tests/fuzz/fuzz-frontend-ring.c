/* Fuzz harness: the frontend's response path (frontend/xbdf-ring.c) against
 * a lying backend.
 *
 * The harness plays the frontend: it issues requests (READ, WRITE, FLUSH,
 * DISCARD) into a real ring of 1 or 4 pages, then lets the input write the
 * backend's half — the response slots and rsp_prod — in several rounds,
 * collecting after each.  Lies include wrong, reused and out-of-range ids,
 * wrong operation echoes, unknown statuses, more responses than requests
 * and a producer index that runs backwards or far ahead.
 *
 * Checked: every completion names a request that was issued and not yet
 * completed, with the operation it was issued with, and completes it once;
 * the library never consumes more responses than it had requests; once
 * the ring is broken it completes nothing more and says why.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xbdf-ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXTAGS 4096

struct state {
    uint8_t op_of[MAXTAGS];
    bool outstanding[MAXTAGS];
    unsigned int n_out;
};

static int
notify(void *arg)
{
    (void)arg;
    return 0;
}

static void
done(void *arg, uint64_t tag, uint8_t op, int err)
{
    struct state *s = arg;

    if (tag >= MAXTAGS || !s->outstanding[tag] || s->op_of[tag] != op)
        abort();
    if (err != 0 && err != -EIO && err != -EOPNOTSUPP)
        abort();
    s->outstanding[tag] = false;
    s->n_out--;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t ops[] = { BLKIF_OP_READ, BLKIF_OP_WRITE,
                                   BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD };
    struct xbdf_ring r;
    struct state s;
    uint64_t next_tag = 0;
    size_t pos = 0;

    if (size < 2)
        return 0;
    unsigned int pages = (data[0] & 1) ? 4 : 1;
    void *sring = aligned_alloc(XBD_PAGE_SIZE, (size_t)pages * XBD_PAGE_SIZE);
    if (sring == NULL)
        return 0;
    memset(&s, 0, sizeof(s));
    if (xbdf_ring_init(&r, sring, pages, notify, NULL) < 0) {
        free(sring);
        return 0;
    }
    blkif_sring_t *sr = sring;
    pos = 1;

    for (unsigned int round = 0; round < 8 && pos < size; round++) {
        /* Issue up to data[pos] requests. */
        unsigned int want = data[pos++] % 64u;
        for (unsigned int i = 0; i < want && xbdf_ring_free(&r) > 0 &&
                                 next_tag < MAXTAGS; i++) {
            uint64_t id;
            int idx = xbdf_shadow_get(&r.shadow, next_tag, &id);
            if (idx < 0)
                break;
            uint8_t op = ops[(next_tag + round) % 4];
            union xbdf_req *q = &r.shadow.ent[idx].req;
            q->rw.operation = op;
            q->rw.id = id;
            s.op_of[next_tag] = op;
            s.outstanding[next_tag] = true;
            s.n_out++;
            next_tag++;
            xbdf_ring_queue(&r, (uint32_t)idx);
        }
        xbdf_ring_push(&r);

        /* The backend's turn: k responses from the input, then rsp_prod. */
        if (pos + 2 > size)
            break;
        unsigned int k = data[pos++] % 72u;
        RING_IDX prod = sr->rsp_prod;
        for (unsigned int i = 0; i < k && pos + sizeof(struct blkif_response) <= size; i++) {
            struct blkif_response rsp;
            memcpy(&rsp, data + pos, sizeof(rsp));
            pos += sizeof(rsp);
            /* Mostly plausible ids: an outstanding shadow id, sometimes
             * left as the input wrote it. */
            if ((rsp.id & 0x8000000000000000ull) == 0) {
                uint32_t e = (uint32_t)(rsp.id % r.shadow.size);
                rsp.id = ((uint64_t)r.shadow.ent[e].gen << 32) | e;
            }
            memcpy(&sr->ring[(prod + i) & (RING_SIZE(&r.front) - 1)].rsp, &rsp,
                   sizeof(rsp));
        }
        uint8_t mode = pos < size ? data[pos++] : 0;
        if (mode == 0xff && pos + 4 <= size)
            memcpy((void *)&sr->rsp_prod, data + pos, 4), pos += 4;
        else
            sr->rsp_prod = prod + k;

        unsigned int before = s.n_out;
        int n = xbdf_ring_collect(&r, mode & 7, done, &s);
        if (n >= 0 && (unsigned int)n != before - s.n_out)
            abort();
        if (n < 0) {
            if (xbdf_ring_broken(&r) == NULL || n != -ENODEV)
                abort();
            /* Broken: nothing more completes. */
            unsigned int left = s.n_out;
            xbdf_ring_collect(&r, 0, done, &s);
            if (s.n_out != left)
                abort();
            break;
        }
    }
    xbdf_ring_fini(&r);
    free(sring);
    return 0;
}
