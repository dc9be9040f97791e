#!/usr/bin/env bash
# libxbdfront's resize: a backend that rewrites `sectors` and its
# Connected state while connected (tests/xbdf-fakeback --resize-at, which
# halves the disk) makes the library call the resize callback once with the
# old and new sizes; the getter reports the new size and a read beyond the
# new end is refused.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup

fakeback_run --resize-at 20 -- "$builddir/xbdf-resize-client" xvda >"$d/out" ||
    fail "resize client failed"
cat "$d/out"
grep -q '^resized 8388608 -> 4194304$' "$d/out" || fail "callback sizes"
