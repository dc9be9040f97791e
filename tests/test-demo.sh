#!/usr/bin/env bash
# The README's first command runs tools/xbd-demo: keep it working.  The demo
# checks its own results (data read back, bytes in the image, clean
# shutdown) and exits non-zero on any failure.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
"$top_builddir/tools/xbd-demo" --size 96 || fail "xbd-demo failed"
