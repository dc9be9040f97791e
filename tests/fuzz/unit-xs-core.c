/* The code under test, compiled into the harness so that it carries the
 * harness's instrumentation (libFuzzer coverage) rather than the library's. */
#include "../../sim/xs-core.c"
