/* xbd-sim — a small single-threaded epoll event loop.
 *
 * Every part of the sim (the xenstore server, the host server for grants,
 * event channels and domains, signal handling) registers file descriptors
 * here and is called back from sim_loop_run() on the one thread of xbd-sim.
 * Nothing blocks inside a callback.
 *
 * A callback may add or remove any registration, including its own; an fd
 * removed during a dispatch round gets no further callbacks in that round,
 * even if its number is reused by a new registration at once.
 */
#ifndef XBD_SIM_LOOP_H
#define XBD_SIM_LOOP_H

#include <stdint.h>

struct sim_loop;

/* events: EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR as epoll reports them. */
typedef void sim_loop_fd_cb(struct sim_loop *loop, int fd, uint32_t events,
                            void *opaque);

struct sim_loop *sim_loop_new(void);
void sim_loop_free(struct sim_loop *loop);

/* Register fd for `events` (EPOLLIN and/or EPOLLOUT).  -EEXIST if already. */
int sim_loop_add(struct sim_loop *loop, int fd, uint32_t events,
                 sim_loop_fd_cb *cb, void *opaque);
/* Change the events of a registered fd. */
int sim_loop_mod(struct sim_loop *loop, int fd, uint32_t events);
/* Forget fd (it is not closed). */
int sim_loop_del(struct sim_loop *loop, int fd);

/* Run until sim_loop_quit(); returns the status given there. */
int sim_loop_run(struct sim_loop *loop);
void sim_loop_quit(struct sim_loop *loop, int status);

#endif /* XBD_SIM_LOOP_H */
