/* xbdctl — status and stats: ask xbd-backd on its control socket and show
 * the answer as a table (or pass its JSON through).  Works on Xen and in
 * xbd-sim alike: only the socket is needed.
 *
 * The daemon answers one line ("status" or "stats") with one JSON document
 * (see xbd-backd(8)); a small parser below turns it into a tree.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "xbdctl.h"

/* Replies are a few hundred bytes per queue; this bounds a confused peer. */
#define REPLY_MAX (16u << 20)

/* ---- a minimal JSON tree ------------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
    enum jtype type;
    bool b;
    char *s;                    /* J_STR: the string; J_NUM: its text */
    size_t n;                   /* J_ARR, J_OBJ: members */
    char **keys;                /* J_OBJ */
    struct jval *items;
};

struct jparser {
    const char *p;
    int depth;
};

static void
jfree(struct jval *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys)
            free(v->keys[i]);
        jfree(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
}

static void
skip_ws(struct jparser *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')
        j->p++;
}

static int jparse(struct jparser *j, struct jval *v);

static int
jstring(struct jparser *j, char **out)
{
    size_t cap = 16, n = 0;
    char *s = malloc(cap);

    if (s == NULL || *j->p != '"')
        goto bad;
    j->p++;
    while (*j->p != '"') {
        char c = *j->p++;

        if (c == '\0')
            goto bad;
        if (c == '\\') {
            c = *j->p++;
            if (c == 'u') {
                unsigned int u;

                if (sscanf(j->p, "%4x", &u) != 1)
                    goto bad;
                j->p += 4;
                c = u < 0x80 ? (char)u : '?';
            } else if (c == 'n')
                c = '\n';
            else if (c == 't')
                c = '\t';
            else if (c != '"' && c != '\\' && c != '/')
                goto bad;
        }
        if (n + 2 > cap) {
            char *t = realloc(s, cap *= 2);

            if (t == NULL)
                goto bad;
            s = t;
        }
        s[n++] = c;
    }
    j->p++;
    s[n] = '\0';
    *out = s;
    return 0;
bad:
    free(s);
    return -1;
}

static int
jmembers(struct jparser *j, struct jval *v, bool obj)
{
    char close = obj ? '}' : ']';

    j->p++;
    skip_ws(j);
    if (*j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        struct jval *items = realloc(v->items, (v->n + 1) * sizeof(*items));
        char *key = NULL;

        if (items == NULL)
            return -1;
        v->items = items;
        if (obj) {
            char **keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));

            if (keys == NULL)
                return -1;
            v->keys = keys;
            skip_ws(j);
            if (jstring(j, &key) < 0)
                return -1;
            skip_ws(j);
            if (*j->p++ != ':') {
                free(key);
                return -1;
            }
            v->keys[v->n] = key;
        }
        memset(&v->items[v->n], 0, sizeof(v->items[0]));
        v->n++;
        if (jparse(j, &v->items[v->n - 1]) < 0)
            return -1;
        skip_ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p++ != close)
            return -1;
        return 0;
    }
}

static int
jvalue(struct jparser *j, struct jval *v)
{
    switch (*j->p) {
    case '{':
        v->type = J_OBJ;
        return jmembers(j, v, true);
    case '[':
        v->type = J_ARR;
        return jmembers(j, v, false);
    case '"':
        v->type = J_STR;
        return jstring(j, &v->s);
    case 't':
    case 'f':
    case 'n':
        if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) {
            v->type = j->p[0] == 't' ? J_BOOL : J_NULL;
            v->b = j->p[0] == 't';
            j->p += 4;
            return 0;
        }
        if (strncmp(j->p, "false", 5) == 0) {
            v->type = J_BOOL;
            j->p += 5;
            return 0;
        }
        return -1;
    default: {
        const char *start = j->p;

        while ((*j->p >= '0' && *j->p <= '9') || *j->p == '-' || *j->p == '.' ||
               *j->p == 'e' || *j->p == 'E' || *j->p == '+')
            j->p++;
        if (j->p == start)
            return -1;
        v->type = J_NUM;
        v->s = strndup(start, (size_t)(j->p - start));
        return v->s ? 0 : -1;
    }
    }
}

/* Nesting is bounded so that a hostile peer cannot exhaust the stack. */
static int
jparse(struct jparser *j, struct jval *v)
{
    int r;

    skip_ws(j);
    memset(v, 0, sizeof(*v));
    if (j->depth >= 16)
        return -1;
    j->depth++;
    r = jvalue(j, v);
    j->depth--;
    return r;
}

static const struct jval *
jget(const struct jval *o, const char *key)
{
    static const struct jval none = { .type = J_NULL };

    if (o == NULL || o->type != J_OBJ)
        return &none;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return &none;
}

/* A member as text for a table cell. */
static const char *
jtext(const struct jval *o, const char *key)
{
    const struct jval *v = jget(o, key);

    switch (v->type) {
    case J_STR:
    case J_NUM:
        return v->s;
    case J_BOOL:
        return v->b ? "yes" : "no";
    default:
        return "-";
    }
}

/* ---- talking to the daemon --------------------------------------------------- */

static const char *
socket_path(char *buf, size_t len)
{
    const char *env = getenv("XBD_BACKD_SOCKET"), *sim = getenv("XBD_SIM_DIR");

    if (env != NULL && *env != '\0')
        snprintf(buf, len, "%s", env);
    else if (sim != NULL && *sim != '\0')
        snprintf(buf, len, "%s/xbd-backd.sock", sim);
    else
        snprintf(buf, len, "/run/xbd-backd/control.sock");
    return buf;
}

/* Send one command; return the reply (malloc()ed) or NULL after a message. */
static char *
ask(const char *sock, const char *cmd)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t cap = 4096, n = 0;
    char *buf;
    int fd;

    if (strlen(sock) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "xbdctl: socket path too long: %s\n", sock);
        return NULL;
    }
    strcpy(sa.sun_path, sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        if (e == ENOENT || e == ECONNREFUSED)
            fprintf(stderr, "xbdctl: xbd-backd is not running (no socket at %s)\n", sock);
        else
            fprintf(stderr, "xbdctl: cannot reach xbd-backd at %s: %s\n", sock,
                    strerror(e));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    /* A daemon that accepts but never answers (stopped, wedged) must not
     * hang the command forever. */
    {
        struct timeval tv = { .tv_sec = 10 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) || write(fd, "\n", 1) != 1) {
        fprintf(stderr, "xbdctl: writing to %s: %s\n", sock, strerror(errno));
        close(fd);
        return NULL;
    }
    buf = malloc(cap);
    while (buf != NULL) {
        ssize_t r;

        if (n + 1 == cap) {
            char *t = cap >= REPLY_MAX ? NULL : realloc(buf, cap *= 2);

            if (t == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = t;
        }
        r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fprintf(stderr, "xbdctl: xbd-backd at %s did not answer within 10 s\n", sock);
            free(buf);
            close(fd);
            return NULL;
        }
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (buf == NULL) {
        fprintf(stderr, "xbdctl: reply from xbd-backd too large or out of memory\n");
        return NULL;
    }
    buf[n] = '\0';
    if (n == 0) {
        fprintf(stderr, "xbdctl: xbd-backd at %s closed without answering\n", sock);
        free(buf);
        return NULL;
    }
    return buf;
}

static int
fetch(const char *cmd, char **raw, struct jval *doc)
{
    char path[256];
    struct jparser j;

    *raw = ask(socket_path(path, sizeof(path)), cmd);
    if (*raw == NULL)
        return -1;
    j.p = *raw;
    j.depth = 0;
    if (jparse(&j, doc) < 0 || doc->type != J_OBJ) {
        fprintf(stderr, "xbdctl: malformed reply from xbd-backd\n");
        jfree(doc);
        free(*raw);
        return -1;
    }
    if (jget(doc, "error")->type == J_STR) {
        fprintf(stderr, "xbdctl: xbd-backd: %s\n", jget(doc, "error")->s);
        jfree(doc);
        free(*raw);
        return -1;
    }
    return 0;
}

/* ---- commands ------------------------------------------------------------------ */

int
xbdctl_status(int argc, char **argv)
{
    const struct jval *devs;
    struct jval doc;
    char *raw;

    if (argc != 1)
        return -1;
    if (fetch("status", &raw, &doc) < 0)
        return 1;
    devs = jget(&doc, "devices");
    printf("%-18s %-12s %-12s %5s %6s %8s %7s %-10s %12s  %s\n", "DEVICE", "STATE",
           "FRONTEND", "RING", "QUEUES", "INDIRECT", "PERSIST", "PROTOCOL", "SECTORS",
           "BACKING");
    for (size_t i = 0; devs->type == J_ARR && i < devs->n; i++) {
        const struct jval *v = &devs->items[i];

        printf("%-18s %-12s %-12s %5s %6s %8s %7s %-10s %12s  %s%s\n", jtext(v, "name"),
               jtext(v, "state"), jtext(v, "frontend_state"), jtext(v, "ring_pages"),
               jtext(v, "queues"), jtext(v, "indirect"), jtext(v, "persistent"),
               jtext(v, "protocol"), jtext(v, "sectors"), jtext(v, "backing"),
               jget(v, "read_only")->b ? " (ro)" : "");
    }
    for (size_t i = 0; devs->type == J_ARR && i < devs->n; i++) {
        const struct jval *v = &devs->items[i];
        const char *e = jtext(v, "error");

        if (strcmp(e, "-") != 0 && *e != '\0')
            printf("%s: error: %s\n", jtext(v, "name"), e);
        if (jget(v, "draining")->b)
            printf("%s: draining the in-flight I/O of its last connection\n",
                   jtext(v, "name"));
    }
    jfree(&doc);
    free(raw);
    return 0;
}

int
xbdctl_stats(int argc, char **argv)
{
    const struct jval *devs;
    struct jval doc;
    bool json = false;
    char *raw;

    if (argc == 2 && strcmp(argv[1], "--json") == 0)
        json = true;
    else if (argc != 1)
        return -1;
    if (fetch("stats", &raw, &doc) < 0)
        return 1;
    if (json) {
        fputs(raw, stdout);
        jfree(&doc);
        free(raw);
        return 0;
    }
    devs = jget(&doc, "devices");
    for (size_t i = 0; devs->type == J_ARR && i < devs->n; i++) {
        const struct jval *v = &devs->items[i], *qs = jget(v, "queue_stats");
        const struct jval *tot = jget(v, "totals");

        printf("%s%s  %s, %s ring page(s) x %s queue(s)\n", i ? "\n" : "",
               jtext(v, "name"), jtext(v, "state"), jtext(v, "ring_pages"),
               jtext(v, "queues"));
        if (tot->type != J_OBJ || tot->n == 0)
            continue;
        printf("  %-18s", "COUNTER");
        for (size_t q = 0; qs->type == J_ARR && q < qs->n; q++) {
            char h[16];

            snprintf(h, sizeof(h), "q%s", jtext(&qs->items[q], "queue"));
            printf(" %14s", h);
        }
        printf(" %14s\n", "TOTAL");
        for (size_t k = 0; k < tot->n; k++) {
            printf("  %-18s", tot->keys[k]);
            for (size_t q = 0; qs->type == J_ARR && q < qs->n; q++)
                printf(" %14s", jtext(&qs->items[q], tot->keys[k]));
            printf(" %14s\n", jtext(tot, tot->keys[k]));
        }
    }
    jfree(&doc);
    free(raw);
    return 0;
}
