/* libxbdfront — errors.
 *
 * The error convention of the whole library (see xbdfront.h): negative
 * errno returns, and a thread-local message set by xbdf_set_error() at the
 * point where the failure is understood best. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "xbdfront.h"
#include "xbdf-internal.h"

/* ======================================================================
 * Errors
 * ====================================================================== */

static _Thread_local char err_msg[512];
static _Thread_local int err_no;

int
xbdf_set_error(int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
    va_end(ap);
    err_no = err < 0 ? -err : err;
    return err < 0 ? err : -err;
}

const char *
xbdfront_get_error(void)
{
    return err_msg;
}

int
xbdfront_get_errno(void)
{
    return err_no;
}

