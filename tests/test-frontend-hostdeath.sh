#!/usr/bin/env bash
# The host going away under a running frontend (xbd-sim killed in the
# middle of a verify): the library notices the store is gone, fails the
# requests with a message saying so, and the tool exits 1 instead of
# waiting for completions that cannot come.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup
truncate -s 512M "$d/disk.img"
"$builddir/xbdf-fakeback" $be --image "$d/disk.img" 2>/dev/null &
fb=$!
cleanup_fn kill_wait $fb
run_as guest1 xbdfront verify xvda --timeout 30 2>"$d/err" &
v=$!
cleanup_fn kill_wait $v
be_connected() { [ "$(xenstore-read $be/state)" = 4 ]; }
wait_for 10 be_connected || fail "verify did not connect"
# (Ours first, then the frontend's: verify is past connecting only then.)
fe_connected() { [ "$(xenstore-read $fe/state)" = 4 ]; }
wait_for 10 fe_connected || fail "verify's frontend did not reach Connected"
kill -9 $sim_pid
rc=0
wait $v || rc=$?
cat "$d/err"
[ $rc -eq 1 ] || fail "xbdfront exited $rc, not 1"
grep -q 'lost the connection to xenstore' "$d/err" ||
    fail "the failure does not say the store went away"
