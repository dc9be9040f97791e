#!/usr/bin/env bash
# A frontend that lies about its ring (xbd-evil-front --case prod-far-ahead:
# a producer index 1000 in a 32-slot ring): the dataplane stops the queue
# and its on_fail reaches the control thread, so the device gets an `error`
# node naming the queue and goes to Closing, then Closed when the frontend
# closes, letting go of every page the frontend shared; another guest's
# device keeps working and the broken one can be detached.  Then a frontend
# floods its state node with no ring nodes at all (--case state-flood): the
# daemon comes out of it with the device Closed, and the device connects
# and serves again.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
requires "$builddir/xbd-evil-front" --list
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1 --domain guest2
truncate -s 8M "$d/disk.img" "$d/disk2.img"
start_backd "$d/backd.log"
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }

# evil CASE FRONTEND-DIR: xbd-evil-front as guest1, its output in $d/out
# (and the test log); fails the test unless the backend answered as the
# case expects.
evil() {
    local rc=0
    run_as guest1 "$builddir/xbd-evil-front" --case "$1" "$2" >"$d/out" 2>&1 || rc=$?
    sed "s/^/  /" "$d/out"
    [ $rc -eq 0 ] || fail "$1: the backend did not answer as it should (exit $rc)"
}

be=/local/domain/0/backend/qdisk/1/51712
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
xbdctl block-attach guest2 "$d/disk2.img" >/dev/null

# The lie.  xbd-evil-front itself checks Closing with a non-empty error
# node, then Closed after it closed, and that every page it shared (ring,
# data, indirect) is released.
evil prod-far-ahead /local/domain/1/device/vbd/51712
err=$(sed -n 's/^.*: error node: //p' "$d/out" | head -n 1)
[ -n "$err" ] || fail "no error node"
echo "error node: $err"
case $err in
"queue 0: "?*) ;;
*) fail "the error node does not name the queue: $err" ;;
esac
# The reason in the node is the one the dataplane gave when it stopped
# the queue: it came through on_fail, not from a control-path check.
grep -qF -- "buggy or malicious frontend: ${err#queue 0: }; queue stopped" "$d/backd.log" ||
    fail "the error node's reason is not the one the dataplane stopped the queue for"
wait_for 10 node_is $be/state 6 || fail "not Closed after the frontend closed"
kill -0 $backd_pid || fail "xbd-backd died"

run_as guest2 xbdfront verify xvda --size 1M --timeout 10 || fail "the other guest's disk"
xbdctl block-detach guest1 xvda || fail "detach of the failed device"
[ -z "$(xenstore-read $be/state 2>/dev/null)" ] || fail "the failed device's backend dir is left"

# A frontend flooding its state node with every value in turn (2000
# writes), no ring nodes at all, ending Closed.  xbd-evil-front checks the
# backend Closed, then starts over, connects an honest ring and reads.
bb=/local/domain/0/backend/qdisk/1/51728
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb >/dev/null
wait_for 10 node_is $bb/state 2 || fail "xvdb InitWait"
evil state-flood /local/domain/1/device/vbd/51728
wait_for 10 node_is $bb/state 6 || fail "after the flood: state $(xenstore-read $bb/state)"
kill -0 $backd_pid || fail "xbd-backd died in the flood"
run_as guest2 xbdfront verify xvda --size 1M --seed 2 --timeout 10 ||
    fail "the other guest's disk after the flood"
xbdctl block-detach guest1 xvdb || fail "detach after the flood"
