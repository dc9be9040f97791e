#!/usr/bin/env bash
# libxbdfront's recovery against a scripted backend (tests/xbdf-fakeback
# --bounce N): after N requests the backend drops its rings with requests
# in flight, unanswered, goes Closed, and comes back with other limits.
# The library reconnects - a different ring size, maybe fewer rings - and
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

# --quiet (a NULL log callback): the same restart, not a word on stderr.
fakeback_run --image "$d/disk.img" --bounce 20 --max-order 2 --max-order2 0 -- \
    xbdfront verify xvda --quiet --timeout 10 2>"$d/err" ||
    { cat "$d/err"; fail "verify --quiet across a backend restart failed"; }
[ ! -s "$d/err" ] || { cat "$d/err"; fail "--quiet: the library still spoke"; }

# A backend that comes back with fewer queues than the caller drives: the
# queue count is renegotiated, and the requests of the queues beyond (those
# lost on their ring, those waiting, those submitted later) ride on the
# remaining rings; their callbacks still run on their own threads.  The
# caller sees no error.
for q in 2 4; do
    fakeback_run --image "$d/disk.img" --bounce 20 --max-queues2 1 -- \
        xbdfront verify xvda --queues $q --timeout 10 2>"$d/err" ||
        { cat "$d/err"; fail "$q queues, 1 after a restart: verify failed"; }
    cat "$d/err"
    grep -q "reconnected (.*1 queues): the backend offers 1 rings for our $q queues" \
        "$d/err" || fail "no message about fewer rings"
done
fakeback_run --image "$d/disk.img" --bounce 30 --max-queues 4 --max-queues2 3 -- \
    xbdfront verify xvda --queues 4 --iodepth 16 --timeout 10 2>"$d/err" ||
    { cat "$d/err"; fail "4 queues, 3 after a restart: verify failed"; }
grep -q "3 rings for our 4 queues" "$d/err" || fail "no message about 3 rings"

# A backend that comes back publishing nonsense: every queue fails with a
# message, the frontend goes Closed, nothing hangs.
rc=0
fakeback_run --image "$d/disk.img" --bounce 20 --sectors2 0 -- \
    xbdfront verify xvda --queues 2 --timeout 10 2>"$d/err" || rc=$?
cat "$d/err"
[ $rc -eq 1 ] || fail "nonsense after a restart: exited $rc, not 1"
grep -q 'after a reconnect: .*sectors = 0 is not a usable size' "$d/err" ||
    fail "no message about the nonsense"
[ "$(xenstore-read $fe/state)" = 6 ] || fail "frontend not Closed"
