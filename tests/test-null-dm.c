/* Unit tests for xbd-null-dm's pure parts (tools/xbd-null-dm.h): the
 * -chardev specs libxl passes, QMP framing, parsing and replies. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xbd-null-dm.h"

static void
test_chardev(void)
{
    char *p;

    p = null_dm_chardev_path("socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-3,server=on,wait=off");
    ok(p != NULL && strcmp(p, "/var/run/xen/qmp-libxl-3") == 0,
       "libxl's QMP chardev: its path");
    free(p);
    p = null_dm_chardev_path("socket,id=x,server,nowait,path=/tmp/q");
    ok(p != NULL && strcmp(p, "/tmp/q") == 0, "older spelling: server,nowait");
    free(p);
    ok(null_dm_chardev_path("socket,id=x,path=/tmp/q") == NULL,
       "a client socket is not ours to listen on");
    ok(null_dm_chardev_path("pty,id=serial0") == NULL, "a pty is ignored");
    ok(null_dm_chardev_path("socket,id=x,server=on") == NULL,
       "a socket without path (tcp) is ignored");
}

static void
test_framing(void)
{
    const char two[] = "{\"execute\": \"qmp_capabilities\", \"id\": 1}\r\n"
                       "{\"execute\": \"query-chardev\", \"id\": 2}";
    const char nested[] = " {\"a\": {\"b\": \"}\\\"{\"}, \"c\": [1, {\"d\": 2}]}x";

    is_int(null_dm_next_object(two, sizeof(two) - 1),
           strlen("{\"execute\": \"qmp_capabilities\", \"id\": 1}"),
           "first of two objects");
    is_int(null_dm_next_object(two, 20), 0, "incomplete object: wait");
    is_int(null_dm_next_object("  \r\n", 4), 0, "white space only: wait");
    is_int(null_dm_next_object("x{}", 3), -1, "garbage: drop the client");
    is_int(null_dm_next_object(nested, sizeof(nested) - 1),
           (int)sizeof(nested) - 2,
           "braces inside strings and nesting do not end the object");
}

static void
check_reply(const char *in, const char *want, const char *what)
{
    struct null_dm_cmd cmd;
    char out[512];
    int n = null_dm_next_object(in, strlen(in));

    if (n <= 0) {
        ok(0, "%s: framed (%d)", what, n);
        return;
    }
    null_dm_parse(in, (size_t)n, &cmd);
    if (null_dm_reply(&cmd, out, sizeof(out)) < 0) {
        ok(0, "%s: reply fits", what);
        return;
    }
    if (!ok(strcmp(out, want) == 0, "%s", what))
        diag("got  %s# want %s", out, want);
}

static void
test_replies(void)
{
    struct null_dm_cmd cmd;
    char small[8];

    check_reply("{\"execute\": \"qmp_capabilities\", \"id\": 1}",
                "{\"return\": {}, \"id\": 1}\r\n", "qmp_capabilities");
    check_reply("{ \"id\" : \"libxl-7\" , \"execute\":\"query-chardev\" }",
                "{\"return\": [], \"id\": \"libxl-7\"}\r\n",
                "query-chardev, members in any order, string id");
    check_reply("{\"execute\": \"query-status\"}",
                "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                "\"running\": true}}\r\n", "query-status without id");
    check_reply("{\"execute\": \"xen-save-devices-state\", \"arguments\": "
                "{\"filename\": \"/x\"}, \"id\": 9}",
                "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                "\"The command xen-save-devices-state has not been found "
                "(xbd-null-dm serves no devices)\"}, \"id\": 9}\r\n",
                "an operation it cannot do fails, it does not pretend");
    check_reply("{\"execute\": \"qu\\\"it\", \"id\": 3}",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP "
                "input lacks member 'execute' or it is not a command of "
                "xbd-null-dm\"}, \"id\": 3}\r\n",
                "an escaped name is not a command and is not echoed");
    check_reply("{\"id\": 4}",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP "
                "input lacks member 'execute' or it is not a command of "
                "xbd-null-dm\"}, \"id\": 4}\r\n", "no execute member");
    check_reply("{\"execute\" \"quit\"}",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON "
                "parse error\"}}\r\n", "malformed object");
    check_reply("{\"execute\": \"quit\", \"id\": 5}",
                "{\"return\": {}, \"id\": 5}\r\n", "quit");
    null_dm_parse("{\"execute\": \"quit\"}", 19, &cmd);
    is_int(null_dm_reply(&cmd, small, sizeof(small)), -1,
           "a reply that does not fit is refused, not cut");
}

int
main(void)
{
    test_chardev();
    test_framing();
    test_replies();
    return done_testing();
}
