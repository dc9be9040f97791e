/* The public header alone, as strict C99 (built with -std=c99 -pedantic):
 * nothing in xbdfront.h may need more than the standard headers it
 * includes.  Linked against the installed library to prove the exported
 * symbols resolve. */
#include "xbdfront.h"
#include "xbdfront.h"           /* twice: the include guard works */

#include <stdio.h>
#include <string.h>

static void
on_done(void *user_data, int err)
{
    (void)user_data;
    (void)err;
}

int
main(void)
{
    struct xbdfront_stats st;
    xbdfront_completion_fn fn = on_done;
    uint32_t vdev = 0;
    uint64_t f = XBDFRONT_FEATURE_FLUSH | XBDFRONT_FEATURE_DISCARD;
    int ok = 1;

    memset(&st, 0, sizeof(st));
    (void)fn;
    if (xbdfront_parse_device("xvda", &vdev) != 0 || vdev != 51712)
        ok = 0;
    if (f == 0 || xbdfront_get_version()[0] == '\0')
        ok = 0;
    printf("1..1\n%sok 1 - xbdfront.h compiles as C99 and links\n",
           ok ? "" : "not ");
    return ok ? 0 : 1;
}
