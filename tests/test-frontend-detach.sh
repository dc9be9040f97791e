#!/usr/bin/env bash
# A toolstack detach under a running verify (xbdctl block-detach: online=0,
# backend Closing, then the directories removed): the library does not
# take it for a backend restart - no reconnect - fails the requests with a
# message that says the device was detached, and never re-creates the
# frontend directory the toolstack removed.  The detach itself completes.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
backd_disk_setup 512M

run_as guest1 xbdfront verify xvda --queues 2 --iodepth 2 --timeout 30 \
    >"$d/verify.out" 2>"$d/verify.err" &
v=$!
cleanup_fn kill_wait $v
wait_for 10 node_is $be/state 4 || fail "verify did not connect"
# (Ours first, then the frontend's: verify is past connecting only then.)
wait_for 10 node_is $fe/state 4 || fail "verify's frontend did not reach Connected"
xbdctl block-detach guest1 xvda || fail "block-detach failed"
rc=0
wait $v || rc=$?
cat "$d/verify.out" "$d/verify.err"
[ $rc -eq 1 ] || fail "verify exited $rc, not 1"
grep -q 'detached by the toolstack' "$d/verify.err" ||
    fail "the failure does not say the device was detached"
if grep -q 'reconnected' "$d/verify.err"; then
    fail "the library reconnected to a device being detached"
fi
if xenstore-read $fe/state 2>/dev/null; then
    fail "the frontend directory was re-created after the detach"
fi
