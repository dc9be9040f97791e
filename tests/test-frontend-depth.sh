#!/usr/bin/env bash
# A 64-page ring keeps 2048 small requests in flight, busy-polling cuts the
# backend's notifications, and a 4096-segment request goes out whole:
# tests/xbdf-depth-client (TAP) against a scripted backend offering 64
# ring pages and 4096 indirect segments.  Counts, not timing.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup
truncate -s 32M "$d/disk.img"
for mode in depth big; do
    fakeback_run --image "$d/disk.img" --max-order 6 --indirect 4096 -- \
        "$builddir/xbdf-depth-client" xvda $mode ||
        fail "xbdf-depth-client $mode reported failures (see its TAP output above)"
done
