#!/usr/bin/env bash
# libxbdfront's public API in an event loop (tests/xbdf-api-client, which
# prints TAP) against a scripted backend: poll on the queue fd, process
# with a budget, counters, refusals, close with requests in flight.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup
fakeback_run --image "$d/disk.img" -- "$builddir/xbdf-api-client" xvda ||
    fail "xbdf-api-client reported failures (see its TAP output above)"
