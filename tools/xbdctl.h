/* xbdctl — what the command files share. */
#ifndef XBDCTL_H
#define XBDCTL_H

#include <stdint.h>

/* NAME or decimal ID -> domid; exits with a message when there is none. */
uint32_t xbdctl_resolve_domain(const char *what);

/* block.c: argv[0] is the command name. */
int xbdctl_block_attach(int argc, char **argv);
int xbdctl_block_detach(int argc, char **argv);
int xbdctl_block_list(int argc, char **argv);
int xbdctl_block_resize(int argc, char **argv);

/* status.c: ask xbd-backd on its control socket. */
int xbdctl_status(int argc, char **argv);
int xbdctl_stats(int argc, char **argv);

#endif /* XBDCTL_H */
