/* Unit tests for backend/control.c without a store: JSON string escaping,
 * one daemon per socket, a stale socket replaced, unknown commands
 * answered with an error object, an endless line dropped. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backd.h"
#include "tap.h"

static char path[108];

static int
client(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        bail_out("connect %s: %s", path, strerror(errno));
    return fd;
}

/* Run the control socket's poll loop a few rounds. */
static void
serve(struct xbd_control *c)
{
    for (int i = 0; i < 20; i++) {
        struct pollfd pfd[16];
        int n = xbd_control_pollfds(c, pfd, 16);

        if (poll(pfd, (nfds_t)n, 20) > 0)
            xbd_control_handle(c, pfd, n, NULL);
    }
}

static void
test_json(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    xbd_json_string(f, "a\"b\\c\nd\x01");
    fclose(f);
    ok(strcmp(buf, "\"a\\\"b\\\\c\\u000ad\\u0001\"") == 0, "JSON escaping: %s", buf);
    free(buf);
}

/* sd_notify: one datagram to $NOTIFY_SOCKET, a path or @abstract. */
static void
notify_case(const char *name, const char *env)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char got[64];
    ssize_t n;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);

    strcpy(sa.sun_path, env);
    if (env[0] == '@')
        sa.sun_path[0] = '\0';
    if (s < 0 || bind(s, (struct sockaddr *)&sa,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(env))) < 0)
        bail_out("bind notify socket");
    setenv("NOTIFY_SOCKET", env, 1);
    is_int(xbd_sd_notify("READY=1"), 0, "%s: sent", name);
    n = recv(s, got, sizeof(got) - 1, MSG_DONTWAIT);
    got[n > 0 ? n : 0] = '\0';
    ok(strcmp(got, "READY=1") == 0, "%s: the manager got \"%s\"", name, got);
    close(s);
    if (env[0] == '/')
        unlink(env);
}

static void
test_notify(const char *dir)
{
    char npath[108], abstract[64];

    unsetenv("NOTIFY_SOCKET");
    is_int(xbd_sd_notify("READY=1"), 0, "no NOTIFY_SOCKET: nothing to do");
    snprintf(npath, sizeof(npath), "%s/notify", dir);
    notify_case("a path", npath);
    snprintf(abstract, sizeof(abstract), "@xbd-test-notify-%ld", (long)getpid());
    notify_case("the abstract namespace", abstract);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    is_int(xbd_sd_notify("READY=1"), -EINVAL, "a relative NOTIFY_SOCKET is refused");
    snprintf(npath, sizeof(npath), "%s/nobody", dir);
    setenv("NOTIFY_SOCKET", npath, 1);
    ok(xbd_sd_notify("READY=1") < 0, "nobody listening: an error, not a crash");
    unsetenv("NOTIFY_SOCKET");
}

int
main(void)
{
    char dir[] = "/tmp/xbd-ctl.XXXXXX", err[256], reply[256];
    struct xbd_control *c, *c2;
    ssize_t n;
    int fd;

    test_json();
    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp");
    snprintf(path, sizeof(path), "%s/sub/ctl.sock", dir);

    c = xbd_control_open(path, err, sizeof(err));
    ok(c != NULL, "open, creating the directory (%s)", c ? "ok" : err);
    if (c == NULL)
        return done_testing();
    ok(access(path, F_OK) < 0, "not under its name before it is published");
    ok(xbd_control_publish(c, err, sizeof(err)) == 0, "published under its name");
    ok(access(path, F_OK) == 0, "then it is");
    c2 = xbd_control_open(path, err, sizeof(err));
    ok(c2 == NULL && strstr(err, "another xbd-backd answers"), "a second one refused: %s", err);

    fd = client();
    if (write(fd, "hello\n", 6) != 6)
        bail_out("write");
    serve(c);
    n = read(fd, reply, sizeof(reply) - 1);
    reply[n > 0 ? n : 0] = '\0';
    ok(strstr(reply, "\"error\":\"unknown command") != NULL, "unknown command: %s", reply);
    n = read(fd, reply, sizeof(reply));
    is_int(n, 0, "then the connection is closed");
    close(fd);

    /* A line that never ends is dropped, not buffered forever. */
    fd = client();
    {
        char junk[300];

        memset(junk, 'x', sizeof(junk));
        n = write(fd, junk, sizeof(junk));
    }
    serve(c);
    n = read(fd, reply, sizeof(reply));
    ok(n <= 0, "an endless line: dropped without an answer");
    close(fd);

    /* Closing removes the socket; a stale one is replaced. */
    xbd_control_close(c);
    ok(access(path, F_OK) < 0, "socket removed at close");
    {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int s = socket(AF_UNIX, SOCK_STREAM, 0);

        strcpy(sa.sun_path, path);
        if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            bail_out("bind stale");
        close(s);                       /* bound, never listening: stale */
    }
    c = xbd_control_open(path, err, sizeof(err));
    ok(c != NULL, "a stale socket is replaced (%s)", c ? "ok" : err);
    ok(access(path, F_OK) < 0, "the stale one is gone before publishing");
    {
        /* Another daemon published first: publishing fails, nothing removed. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int s = socket(AF_UNIX, SOCK_STREAM, 0);

        strcpy(sa.sun_path, path);
        if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0)
            bail_out("bind other");
        ok(xbd_control_publish(c, err, sizeof(err)) < 0 && strstr(err, "took"),
           "publishing over another daemon's socket refused: %s", err);
        xbd_control_close(c);
        ok(access(path, F_OK) == 0, "and the other's socket is left alone");
        close(s);
        unlink(path);
    }
    test_notify(dir);
    *strrchr(path, '/') = '\0';         /* the sub directory */
    rmdir(path);
    rmdir(dir);
    return done_testing();
}
