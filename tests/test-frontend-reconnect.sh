#!/usr/bin/env bash
# libxbdfront's recovery against a scripted backend (tests/xbdf-fakeback
# --bounce N): after N requests the backend drops its rings with requests
# in flight, unanswered, goes Closed, and comes back with other limits.
# The library reconnects - a different ring size, the same queues - and
# re-issues what was lost: verify completes without an error, both with a
# smaller and a larger ring the second time, with 1 and 2 queues.
source "$srcdir/functions.sh"
set -e
requires xbd-sim --help
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 8M "$d/disk.img"
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
be=/local/domain/0/backend/qdisk/1/51712

bounce() {
    local q=$1 fbpid rc=0; shift
    "$builddir/xbdf-fakeback" $be --image "$d/disk.img" "$@" &
    fbpid=$!
    cleanup_fn kill_wait $fbpid
    run_as guest1 xbdfront verify xvda --queues $q --timeout 10 \
        2>"$d/err" || rc=$?
    cat "$d/err"
    kill_wait $fbpid
    [ $rc -eq 0 ] || fail "verify across a backend restart ($*) exited $rc"
    grep -q 'reconnected' "$d/err" || fail "no reconnect happened ($*)"
}

bounce 1 --bounce 20 --max-order 2 --max-order2 0
bounce 2 --bounce 40 --max-order 0 --max-order2 3
bounce 2 --bounce 5 --max-order 1 --max-order2 1 --indirect 0
