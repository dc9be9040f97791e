/* xbd-sim — the event loop.  See loop.h. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

/* One slot per fd number.  `gen` changes whenever the slot is (re)used, and
 * each epoll registration carries the generation it was made with, so a
 * stale event for a removed fd is recognised and dropped. */
struct slot {
    sim_loop_fd_cb *cb;
    void *opaque;
    uint32_t gen;
    bool used;
};

struct sim_loop {
    int epfd;
    struct slot *slots;
    size_t nslots;
    uint32_t next_gen;
    bool quit;
    int status;
};

static uint64_t
pack(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

struct sim_loop *
sim_loop_new(void)
{
    struct sim_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    return loop;
}

void
sim_loop_free(struct sim_loop *loop)
{
    if (loop == NULL)
        return;
    close(loop->epfd);
    free(loop->slots);
    free(loop);
}

static int
grow(struct sim_loop *loop, int fd)
{
    size_t n = loop->nslots ? loop->nslots : 64;
    struct slot *s;

    while (n <= (size_t)fd)
        n *= 2;
    if (n == loop->nslots)
        return 0;
    s = realloc(loop->slots, n * sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    memset(s + loop->nslots, 0, (n - loop->nslots) * sizeof(*s));
    loop->slots = s;
    loop->nslots = n;
    return 0;
}

int
sim_loop_add(struct sim_loop *loop, int fd, uint32_t events,
             sim_loop_fd_cb *cb, void *opaque)
{
    struct epoll_event ev = { .events = events };
    struct slot *s;
    int r;

    if (fd < 0 || cb == NULL)
        return -EINVAL;
    r = grow(loop, fd);
    if (r < 0)
        return r;
    s = &loop->slots[fd];
    if (s->used)
        return -EEXIST;
    s->gen = ++loop->next_gen;
    ev.data.u64 = pack(fd, s->gen);
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    s->cb = cb;
    s->opaque = opaque;
    s->used = true;
    return 0;
}

int
sim_loop_mod(struct sim_loop *loop, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events };

    if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].used)
        return -ENOENT;
    ev.data.u64 = pack(fd, loop->slots[fd].gen);
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int
sim_loop_del(struct sim_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].used)
        return -ENOENT;
    /* The fd may already be closed by the caller; that removed it from the
     * epoll set unless it was dup'ed, so an error here is not interesting. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->slots[fd].used = false;
    loop->slots[fd].gen = ++loop->next_gen;
    return 0;
}

int
sim_loop_run(struct sim_loop *loop)
{
    struct epoll_event evs[64];

    loop->quit = false;
    while (!loop->quit) {
        int n = epoll_wait(loop->epfd, evs, 64, -1);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n && !loop->quit; i++) {
            int fd = (int)(uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            struct slot *s;

            if ((size_t)fd >= loop->nslots)
                continue;
            s = &loop->slots[fd];
            if (!s->used || s->gen != gen)
                continue;       /* removed (or replaced) earlier this round */
            s->cb(loop, fd, evs[i].events, s->opaque);
        }
    }
    return loop->status;
}

void
sim_loop_quit(struct sim_loop *loop, int status)
{
    loop->quit = true;
    loop->status = status;
}
