/* xbdkit — a tiny TAP producer for C unit tests.
 *
 *   ok(cond, "what was checked %d", n);
 *   is_int(got, want, "name");
 *   return done_testing();
 *
 * Prints "ok N - name" / "not ok N - name" and, at the end, the plan.  A test
 * program exits 0 when every check passed, 1 otherwise; tap-driver.sh reads
 * the individual results.
 */
#ifndef XBD_TAP_H
#define XBD_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3), unused)) static int
ok(int cond, const char *fmt, ...)
{
    va_list ap;

    tap_n++;
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond)
        tap_failed++;
    fflush(stdout);
    return cond;
}

#define is_int(got, want, ...) do {                                       \
    long long got_ = (long long)(got), want_ = (long long)(want);         \
    if (!ok(got_ == want_, __VA_ARGS__))                                   \
        printf("#   got %lld, want %lld\n", got_, want_);                  \
} while (0)

/* Diagnostics that do not count as results. */
#define diag(...) do { printf("# "); printf(__VA_ARGS__); printf("\n"); } while (0)

/* Abort the whole test program: a precondition failed. */
#define bail_out(...) do {                                                \
    printf("Bail out! "); printf(__VA_ARGS__); printf("\n");              \
    exit(1);                                                               \
} while (0)

__attribute__((unused)) static int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif /* XBD_TAP_H */
