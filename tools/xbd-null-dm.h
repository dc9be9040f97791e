/* xbd-null-dm — the pure parts (no I/O), unit-tested in
 * tests/test-null-dm.c: QEMU -chardev specs, framing and parsing of QMP
 * commands, and the replies. */
#ifndef XBD_NULL_DM_H
#define XBD_NULL_DM_H

#include <stdbool.h>
#include <stddef.h>

/* The path of a listening unix socket chardev ("socket,id=X,path=P,
 * server=on,wait=off"), malloc'd; NULL for any other chardev. */
char *null_dm_chardev_path(const char *spec);

/* The length of buf's first complete JSON object, leading white space
 * included; 0 when it is not complete yet; -1 when buf does not start
 * (after white space) with '{'. */
int null_dm_next_object(const char *buf, size_t len);

/* One QMP command.  execute is the command name as sent (empty when the
 * object has none, or when it is too long or escaped to be one we know);
 * id the raw JSON of the "id" member, to be echoed (empty: none). */
struct null_dm_cmd {
    bool valid;                 /* a well-formed JSON object */
    char execute[64];
    char id[128];
};

/* Parse the object null_dm_next_object framed.  0, or -1 when it is not
 * well-formed (cmd->valid false; it still gets a reply). */
int null_dm_parse(const char *obj, size_t len, struct null_dm_cmd *cmd);

/* The reply line (with "\r\n") for a command: successes for what libxl
 * asks a PV device model (qmp_capabilities, query-chardev, query-status,
 * quit), QEMU's CommandNotFound for the rest.  0, or -1 if out is too
 * small. */
int null_dm_reply(const struct null_dm_cmd *cmd, char *out, size_t outsz);

#endif /* XBD_NULL_DM_H */
