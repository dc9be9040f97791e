#!/usr/bin/env bash
# A frontend that lies about its ring (a producer index 1000 in a 32-slot
# ring, tests/xbd-hostile-front): the queue's on_fail reaches the control
# thread, the device gets an `error` node and goes to Closing, then Closed
# when the frontend closes; another guest's device keeps working and the
# broken one can be detached.  Then a frontend floods its state node.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1 --domain guest2
truncate -s 8M "$d/disk.img" "$d/disk2.img"
start_backd "$d/backd.log"
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }

be=/local/domain/0/backend/qdisk/1/51712
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
xbdctl block-attach guest2 "$d/disk2.img" >/dev/null

run_as guest1 "$builddir/xbd-hostile-front" /local/domain/1/device/vbd/51712 >"$d/err" ||
    fail "the lying ring was not failed"
grep -q . "$d/err" || fail "no error node"
echo "error node: $(cat "$d/err")"
grep -q 'queue 0: ' "$d/err" || fail "the error node does not name the queue"
wait_for 10 node_is $be/state 6 || fail "not Closed after the frontend closed"
kill -0 $backd_pid || fail "xbd-backd died"

run_as guest2 xbdfront verify xvda --size 1M --timeout 10 || fail "the other guest's disk"
xbdctl block-detach guest1 xvda || fail "detach of the failed device"

# A frontend flooding its state node with every value in turn, no ring
# nodes at all: the daemon comes out of it with the device Closed.
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb >/dev/null
wait_for 10 node_is /local/domain/0/backend/qdisk/1/51728/state 2 || fail "xvdb InitWait"
run_as guest1 "$builddir/xbd-hostile-front" --flood 2000 /local/domain/1/device/vbd/51728 ||
    fail "the flood did not run"
wait_for 10 node_is /local/domain/0/backend/qdisk/1/51728/state 6 ||
    fail "after the flood: state $(xenstore-read /local/domain/0/backend/qdisk/1/51728/state)"
kill -0 $backd_pid || fail "xbd-backd died in the flood"
run_as guest2 xbdfront verify xvda --size 1M --seed 2 --timeout 10 ||
    fail "the other guest's disk after the flood"
