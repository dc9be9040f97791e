/* xbd-backd — logging to stderr or syslog, with a rate limit for lines a
 * guest can provoke. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "xbd-backd.h"

static bool log_syslog;
static bool log_debug;

void
xbd_log_init(const char *ident, bool use_syslog, bool debug)
{
    log_syslog = use_syslog;
    log_debug = debug;
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static const char *
level_name(int level)
{
    switch (level) {
    case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
    case LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

static void vlog(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
vlog(int level, const char *fmt, va_list ap)
{
    if (level >= LOG_DEBUG && !log_debug)
        return;
    if (log_syslog) {
        vsyslog(level, fmt, ap);
        return;
    }
    /* One fprintf per line so that lines of different threads do not
     * interleave (stdio locks the stream per call). */
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    fprintf(stderr, "xbd-backd: %s: %s\n", level_name(level), buf);
}

void
xbd_log(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
xbd_log_limited(struct xbd_ratelimit *rl, int level, const char *fmt, ...)
{
    unsigned int interval = rl->interval_ms ? rl->interval_ms : 5000u;
    unsigned int burst = rl->burst ? rl->burst : 10u;
    uint64_t now = now_ms();
    va_list ap;

    if (now - rl->window_start_ms >= interval) {
        rl->window_start_ms = now;
        rl->printed = 0;
    }
    if (rl->printed >= burst) {
        rl->suppressed++;
        return;
    }
    rl->printed++;
    if (rl->suppressed) {
        xbd_log(level, "(%lu similar messages suppressed)", rl->suppressed);
        rl->suppressed = 0;
    }
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}
