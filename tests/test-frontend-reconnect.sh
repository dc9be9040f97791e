#!/usr/bin/env bash
# libxbdfront's recovery against a scripted backend (tests/xbdf-fakeback
# --bounce N): after N requests the backend drops its rings with requests
# in flight, unanswered, goes Closed, and comes back with other limits.
# The library reconnects - a different ring size, the same queues - and
# re-issues what was lost: verify completes without an error, both with a
# smaller and a larger ring the second time, with 1 and 2 queues.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup

bounce() {
    local q=$1 rc=0; shift
    fakeback_run --image "$d/disk.img" "$@" -- \
        xbdfront verify xvda --queues $q --timeout 10 2>"$d/err" || rc=$?
    cat "$d/err"
    [ $rc -eq 0 ] || fail "verify across a backend restart ($*) exited $rc"
    grep -q 'reconnected' "$d/err" || fail "no reconnect happened ($*)"
}

bounce 1 --bounce 20 --max-order 2 --max-order2 0
bounce 2 --bounce 40 --max-order 0 --max-order2 3
bounce 2 --bounce 5 --max-order 1 --max-order2 1 --indirect 0
