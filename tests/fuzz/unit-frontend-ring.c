/* The code under test, compiled into the harness (see unit-xs-core.c). */
#include "../../frontend/xbdf-ring.c"
