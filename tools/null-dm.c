/* xbd-null-dm — the pure parts: see xbd-null-dm.h. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbd-null-dm.h"

char *
null_dm_chardev_path(const char *spec)
{
    const char *p, *path = NULL;
    size_t pathlen = 0;
    bool server = false;
    char *out;

    if (strncmp(spec, "socket,", 7) != 0)
        return NULL;
    for (p = spec + 7; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);

        if (l > 5 && strncmp(p, "path=", 5) == 0) {
            path = p + 5;
            pathlen = l - 5;
        } else if ((l == 6 && strncmp(p, "server", 6) == 0) ||
                   (l == 9 && strncmp(p, "server=on", 9) == 0)) {
            server = true;
        }
        p += l;
        if (*p == ',')
            p++;
    }
    if (path == NULL || !server)
        return NULL;
    out = malloc(pathlen + 1);
    if (out != NULL) {
        memcpy(out, path, pathlen);
        out[pathlen] = '\0';
    }
    return out;
}

/* ---- a minimal JSON scanner: enough to frame objects and read two
 * top-level members; values are skipped, never interpreted. ---------- */

static size_t
skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
                     s[i] == '\n'))
        i++;
    return i;
}

/* End (exclusive) of the string at s[i] == '"'; 0: incomplete. */
static size_t
str_end(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* End (exclusive) of the value at s[i]; 0: incomplete or not a value. */
static size_t
value_end(const char *s, size_t i, size_t n)
{
    size_t j;
    int depth = 0;

    if (i >= n)
        return 0;
    if (s[i] == '"')
        return str_end(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        for (; i < n; i++) {
            if (s[i] == '"') {
                size_t e = str_end(s, i, n);
                if (e == 0)
                    return 0;
                i = e - 1;
            } else if (s[i] == '{' || s[i] == '[') {
                depth++;
            } else if (s[i] == '}' || s[i] == ']') {
                if (--depth == 0)
                    return i + 1;
            }
        }
        return 0;
    }
    for (j = i; j < n && s[j] != '\0' && strchr(",}] \t\r\n", s[j]) == NULL;
         j++)
        ;
    return j > i && j < n ? j : 0;
}

int
null_dm_next_object(const char *buf, size_t len)
{
    size_t i = skip_ws(buf, 0, len), e;

    if (i == len)
        return 0;
    if (buf[i] != '{')
        return -1;
    e = value_end(buf, i, len);
    if (e > (size_t)0x7fffffff)
        return -1;
    return (int)e;
}

static bool
name_chars(const char *s, size_t l)
{
    for (size_t i = 0; i < l; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

int
null_dm_parse(const char *s, size_t n, struct null_dm_cmd *cmd)
{
    size_t i = skip_ws(s, 0, n);

    memset(cmd, 0, sizeof(*cmd));
    if (i >= n || s[i] != '{')
        return -1;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}')
        goto done;
    for (;;) {
        size_t ke, vs, ve, kl;
        const char *key;

        if (i >= n || s[i] != '"' || (ke = str_end(s, i, n)) == 0)
            return -1;
        key = s + i + 1;
        kl = ke - i - 2;
        i = skip_ws(s, ke, n);
        if (i >= n || s[i] != ':')
            return -1;
        vs = skip_ws(s, i + 1, n);
        ve = value_end(s, vs, n);
        if (ve == 0)
            return -1;
        if (kl == 7 && memcmp(key, "execute", 7) == 0 && s[vs] == '"') {
            size_t l = ve - vs - 2;
            /* Command names are [a-z0-9_-]: anything else (escapes,
             * quotes, control characters) is not one, and is never echoed. */
            if (l < sizeof(cmd->execute) && name_chars(s + vs + 1, l)) {
                memcpy(cmd->execute, s + vs + 1, l);
                cmd->execute[l] = '\0';
            }
        } else if (kl == 2 && memcmp(key, "id", 2) == 0 &&
                   ve - vs < sizeof(cmd->id)) {
            memcpy(cmd->id, s + vs, ve - vs);
            cmd->id[ve - vs] = '\0';
        }
        i = skip_ws(s, ve, n);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            continue;
        }
        if (i < n && s[i] == '}')
            break;
        return -1;
    }
done:
    cmd->valid = true;
    return 0;
}

int
null_dm_reply(const struct null_dm_cmd *cmd, char *out, size_t outsz)
{
    char body[256];
    const char *e = cmd->execute;
    int n;

    if (!cmd->valid)
        snprintf(body, sizeof(body), "\"error\": {\"class\": \"GenericError\", "
                 "\"desc\": \"JSON parse error\"}");
    else if (e[0] == '\0')
        snprintf(body, sizeof(body), "\"error\": {\"class\": \"GenericError\", "
                 "\"desc\": \"QMP input lacks member 'execute' or it is not "
                 "a command of xbd-null-dm\"}");
    else if (strcmp(e, "qmp_capabilities") == 0 || strcmp(e, "quit") == 0)
        snprintf(body, sizeof(body), "\"return\": {}");
    else if (strcmp(e, "query-chardev") == 0)
        snprintf(body, sizeof(body), "\"return\": []");
    else if (strcmp(e, "query-status") == 0)
        snprintf(body, sizeof(body), "\"return\": {\"status\": \"running\", "
                 "\"singlestep\": false, \"running\": true}");
    else
        snprintf(body, sizeof(body), "\"error\": {\"class\": \"CommandNotFound\", "
                 "\"desc\": \"The command %s has not been found "
                 "(xbd-null-dm serves no devices)\"}", e);
    if (cmd->id[0])
        n = snprintf(out, outsz, "{%s, \"id\": %s}\r\n", body, cmd->id);
    else
        n = snprintf(out, outsz, "{%s}\r\n", body);
    return n < 0 || (size_t)n >= outsz ? -1 : 0;
}
