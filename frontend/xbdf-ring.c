/* libxbdfront internals — shadow table, request push, response validation.
 * See xbdf-ring.h for the design. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-parse.h"
#include "xbdf-ring.h"

/* ======================================================================
 * Shadow table and free list
 * ====================================================================== */

int
xbdf_shadow_init(struct xbdf_shadow *s, uint32_t size)
{
    memset(s, 0, sizeof(*s));
    if (size == 0 || size == XBDF_SHADOW_NONE)
        return -EINVAL;
    s->ent = calloc(size, sizeof(*s->ent));
    if (s->ent == NULL)
        return -ENOMEM;
    s->size = size;
    /* Thread the free list through every entry, in index order. */
    for (uint32_t i = 0; i < size; i++)
        s->ent[i].next_free = i + 1 < size ? i + 1 : XBDF_SHADOW_NONE;
    s->free_head = 0;
    return 0;
}

void
xbdf_shadow_fini(struct xbdf_shadow *s)
{
    free(s->ent);
    memset(s, 0, sizeof(*s));
}

int
xbdf_shadow_get(struct xbdf_shadow *s, uint64_t tag, uint64_t *id_out)
{
    uint32_t idx = s->free_head;
    struct xbdf_shadow_entry *e;

    if (idx == XBDF_SHADOW_NONE)
        return -ENOSPC;
    e = &s->ent[idx];
    s->free_head = e->next_free;
    e->next_free = XBDF_SHADOW_NONE;
    e->in_use = true;
    e->gen++;
    e->tag = tag;
    memset(&e->req, 0, sizeof(e->req));
    s->in_use++;
    *id_out = ((uint64_t)e->gen << 32) | idx;
    return (int)idx;
}

void
xbdf_shadow_put(struct xbdf_shadow *s, uint32_t idx)
{
    struct xbdf_shadow_entry *e = &s->ent[idx];

    /* Callers only put entries they got; a double put would corrupt the
     * free list, so refuse it loudly rather than silently. */
    if (idx >= s->size || !e->in_use)
        abort();
    e->in_use = false;
    e->next_free = s->free_head;
    s->free_head = idx;
    s->in_use--;
}

uint32_t
xbdf_shadow_next_in_use(const struct xbdf_shadow *s, uint32_t from)
{
    for (uint32_t i = from; i < s->size; i++)
        if (s->ent[i].in_use)
            return i;
    return XBDF_SHADOW_NONE;
}

int
xbdf_status_to_errno(int16_t status)
{
    switch (status) {
    case BLKIF_RSP_OKAY:       return 0;
    case BLKIF_RSP_EOPNOTSUPP: return -EOPNOTSUPP;
    default:                   return -EIO;
    }
}

int
xbdf_shadow_check_response(const struct xbdf_shadow *s,
                           const struct blkif_response *rsp,
                           uint32_t *idx_out, char *why, size_t whylen)
{
    uint64_t id = rsp->id;
    uint32_t idx = (uint32_t)id, gen = (uint32_t)(id >> 32);
    const struct xbdf_shadow_entry *e;

    if (idx >= s->size) {
        snprintf(why, whylen, "response id %#" PRIx64 " is out of range "
                 "(ring of %" PRIu32 ")", id, s->size);
        return -EPROTO;
    }
    e = &s->ent[idx];
    if (!e->in_use || e->gen != gen) {
        snprintf(why, whylen, "response id %#" PRIx64 " matches no request "
                 "in flight (completed twice, or never issued)", id);
        return -EPROTO;
    }
    /* For an indirect request Linux blkback echoes the inner operation
     * (and Linux blkfront checks that); accept BLKIF_OP_INDIRECT too. */
    if (rsp->operation != e->req.rw.operation &&
        !(e->req.rw.operation == BLKIF_OP_INDIRECT &&
          rsp->operation == e->req.indirect.indirect_op)) {
        snprintf(why, whylen, "response id %#" PRIx64 " echoes operation %u, "
                 "the request was operation %u", id, rsp->operation,
                 e->req.rw.operation);
        return -EPROTO;
    }
    if (rsp->status != BLKIF_RSP_OKAY && rsp->status != BLKIF_RSP_ERROR &&
        rsp->status != BLKIF_RSP_EOPNOTSUPP) {
        snprintf(why, whylen, "response id %#" PRIx64 " has unknown status "
                 "%d", id, rsp->status);
        return -EPROTO;
    }
    *idx_out = idx;
    return 0;
}

/* ======================================================================
 * The ring
 * ====================================================================== */

int
xbdf_ring_init(struct xbdf_ring *r, void *sring, unsigned int pages,
               xbdf_notify_fn notify, void *notify_arg)
{
    struct blkif_sring *sr = sring;
    int err;

    memset(r, 0, sizeof(*r));
    if (pages == 0 || !xbd_is_pow2(pages) ||
        pages > (1u << XBD_RING_ORDER_LIMIT))
        return -EINVAL;
    /* The frontend owns the shared header: prods 0, events 1. */
    SHARED_RING_INIT(sr);
    FRONT_RING_INIT(&r->front, sr, (size_t)pages * XBD_PAGE_SIZE);
    err = xbdf_shadow_init(&r->shadow, RING_SIZE(&r->front));
    if (err < 0)
        return err;
    r->notify = notify;
    r->notify_arg = notify_arg;
    return 0;
}

void
xbdf_ring_fini(struct xbdf_ring *r)
{
    xbdf_shadow_fini(&r->shadow);
    memset(r, 0, sizeof(*r));
}

unsigned int
xbdf_ring_free(const struct xbdf_ring *r)
{
    /* Equal to the free shadow entries: an entry is freed exactly when its
     * response is consumed (rsp_cons moves). */
    return RING_FREE_REQUESTS(&r->front);
}

void
xbdf_ring_queue(struct xbdf_ring *r, uint32_t idx)
{
    struct blkif_request *slot;

    /* One shadow entry per ring slot: with a free entry there is a free
     * slot.  Anything else is a bug in the caller. */
    if (RING_FULL(&r->front) || idx >= r->shadow.size ||
        !r->shadow.ent[idx].in_use)
        abort();
    slot = RING_GET_REQUEST(&r->front, r->front.req_prod_pvt);
    /* Built locally, copied whole: the backend never sees a half-built
     * request and padding is whatever we zeroed. */
    memcpy(slot, &r->shadow.ent[idx].req, sizeof(*slot));
    r->front.req_prod_pvt++;
    r->ring_requests++;
}

int
xbdf_ring_push(struct xbdf_ring *r)
{
    int notify;

    /* wmb (requests before req_prod), store req_prod, mb (req_prod before
     * reading req_event): all inside the macro. */
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r->front, notify);
    if (!notify)
        return 0;
    r->notify_sent++;
    if (r->notify != NULL) {
        int err = r->notify(r->notify_arg);
        if (err < 0)
            return err;
    }
    return 1;
}

__attribute__((format(printf, 2, 3))) static void
ring_break(struct xbdf_ring *r, const char *fmt, ...)
{
    va_list ap;

    if (r->broken)
        return;
    r->broken = true;
    va_start(ap, fmt);
    vsnprintf(r->broken_why, sizeof(r->broken_why), fmt, ap);
    va_end(ap);
}

const char *
xbdf_ring_broken(const struct xbdf_ring *r)
{
    return r->broken ? r->broken_why : NULL;
}

static int
collect(struct xbdf_ring *r, unsigned int budget, xbdf_complete_fn done,
        void *arg, bool arm)
{
    unsigned int n = 0;
    int more;

    if (r->broken)
        return -ENODEV;
    do {
        /* Read the backend's producer index once: an atomic load, so the
         * compiler may not re-read it after the checks below. */
        RING_IDX prod = __atomic_load_n(&r->front.sring->rsp_prod,
                                        __ATOMIC_RELAXED);
        RING_IDX cons = r->front.rsp_cons;
        RING_IDX outstanding = r->front.req_prod_pvt - cons;
        char why[160];

        /* More responses than requests we have put on the ring (which also
         * covers RING_RESPONSE_PROD_OVERFLOW: we never have more than
         * RING_SIZE outstanding).  Checked on our private req_prod_pvt. */
        if ((RING_IDX)(prod - cons) > outstanding ||
            RING_RESPONSE_PROD_OVERFLOW(&r->front, prod)) {
            ring_break(r, "backend published %u responses with only %u "
                       "requests outstanding (rsp_prod %u, rsp_cons %u)",
                       (unsigned int)(prod - cons), (unsigned int)outstanding,
                       (unsigned int)prod, (unsigned int)cons);
            return -ENODEV;
        }
        /* Read responses only after reading the index that covers them. */
        xen_rmb();

        while (cons != prod && (budget == 0 || n < budget)) {
            struct blkif_response rsp;
            uint32_t idx;
            uint64_t tag;
            uint8_t op;
            int err;

            /* Copy out once; every check and use reads our copy.  The
             * compiler barrier stops it re-reading the shared slot. */
            memcpy(&rsp, RING_GET_RESPONSE(&r->front, cons), sizeof(rsp));
            xbd_barrier();
            if (xbdf_shadow_check_response(&r->shadow, &rsp, &idx, why,
                                           sizeof(why)) < 0) {
                ring_break(r, "backend broke the protocol: %s", why);
                r->front.rsp_cons = cons;
                return -ENODEV;
            }
            cons++;
            r->front.rsp_cons = cons;
            tag = r->shadow.ent[idx].tag;
            op = r->shadow.ent[idx].req.rw.operation;
            if (op == BLKIF_OP_INDIRECT)
                op = r->shadow.ent[idx].req.indirect.indirect_op;
            err = xbdf_status_to_errno(rsp.status);
            /* Free before the callback, which may queue a new request. */
            xbdf_shadow_put(&r->shadow, idx);
            r->responses++;
            n++;
            if (done != NULL)
                done(arg, tag, op, err);
            if (r->broken)
                return -ENODEV;
        }
        if (budget != 0 && n >= budget)
            break;
        if (!arm)
            break;      /* busy-polling: the backend need not notify */
        /* Re-arm rsp_event and look once more: a response published
         * between our read of rsp_prod and the store to rsp_event would
         * otherwise sleep unnoticed.  (mb inside the macro.) */
        RING_FINAL_CHECK_FOR_RESPONSES(&r->front, more);
    } while (more);
    return (int)n;
}

int
xbdf_ring_collect(struct xbdf_ring *r, unsigned int budget,
                  xbdf_complete_fn done, void *arg)
{
    return collect(r, budget, done, arg, true);
}

int
xbdf_ring_poll(struct xbdf_ring *r, unsigned int budget,
               xbdf_complete_fn done, void *arg)
{
    return collect(r, budget, done, arg, false);
}
