#!/usr/bin/env bash
# An NBD server without multi-conn serves one queue (xbd-backd-nbd(8)):
# each queue has its own NBD connection, and without multi-conn a flush on
# one does not cover writes made through another.  So xbd-backd decides at
# probe time, once connected: multi-queue-max-queues is 1 for that device
# (and the --max-queues default for a server with multi-conn), a frontend
# asking for 4 queues gets 1 and works, and one that picks 2 anyway gets a
# clear error node instead of a half-connected device.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
requires nbdkit --version
nbdkit --filter=multi-conn null --dump-plugin >/dev/null 2>&1 ||
    skip "nbdkit has no multi-conn filter"
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }

# nbdkit's memory plugin: s1 without multi-conn, s2 with it.
nbd() {
    local n=$1; shift
    nbdkit -f --exit-with-parent -U "$d/s$n" -P "$d/s$n.pid" "$@" &
    cleanup_fn kill_wait $!
    wait_for 10 test -s "$d/s$n.pid" || fail "nbdkit $n did not start"
}
nbd 1 --filter=multi-conn memory 64M multi-conn-mode=disable
nbd 2 memory 64M

start_backd "$d/backd.log" --max-queues 4
xbdctl block-attach guest1 "nbd+unix:///?socket=$d/s1" vdev=xvda >/dev/null
xbdctl block-attach guest1 "nbd+unix:///?socket=$d/s2" vdev=xvdb >/dev/null
be=/local/domain/0/backend/qdisk/1
fe=/local/domain/1/device/vbd
wait_for 10 node_is $be/51712/state 2 || fail "xvda not in InitWait: $(cat "$d/backd.log")"
wait_for 10 node_is $be/51728/state 2 || fail "xvdb not in InitWait"
node_is $be/51712/multi-queue-max-queues 1 ||
    fail "no multi-conn: multi-queue-max-queues is $(xenstore-read $be/51712/multi-queue-max-queues)"
node_is $be/51728/multi-queue-max-queues 4 ||
    fail "multi-conn: multi-queue-max-queues is $(xenstore-read $be/51728/multi-queue-max-queues)"
# The daemon logs a claim or a connection just after publishing it.
wait_for 10 grep -q "qdisk/1/51712: serving .*one queue" "$d/backd.log" || fail "the cap is not logged"
echo "multi-queue-max-queues: 1 without multi-conn, 4 with it"

# A frontend asking for 4 gets what is offered, and the data is right.
run_as guest1 xbdfront verify xvda --queues 4 --size 8M --timeout 20 ||
    fail "verify on the one-queue device"
wait_for 10 grep -q "qdisk/1/51712: ring connected: .* x 1 queue," "$d/backd.log" ||
    fail "xvda did not connect with one queue"
run_as guest1 xbdfront verify xvdb --queues 4 --size 8M --timeout 20 ||
    fail "verify on the multi-conn device"
wait_for 10 grep -q "qdisk/1/51728: ring connected: .* x 4 queues," "$d/backd.log" ||
    fail "xvdb did not connect with four queues"
echo "xbdfront --queues 4: one queue on xvda, four on xvdb, data verified"

# A frontend that picks 2 queues anyway: an error node that says why.
wait_for 10 node_is $be/51712/state 6 || fail "xvda not Closed after verify"
run_as guest1 xenstore-write $fe/51712/multi-queue-num-queues 2
run_as guest1 xenstore-write $fe/51712/state 3
wait_for 10 node_is $be/51712/state 5 || fail "two queues on xvda did not fail the device"
err=$(xenstore-read $be/51712/error)
echo "error node: $err"
case $err in
*"multi-queue-num-queues is 2"*"serves at most 1 queue"*multi-conn*) ;;
*) fail "unclear error node: $err" ;;
esac
# The daemon and the other device are unharmed.
run_as guest1 xbdfront verify xvdb --queues 2 --size 1M --timeout 20 ||
    fail "xvdb broken by xvda's failure"
