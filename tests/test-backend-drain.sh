#!/usr/bin/env bash
# Teardown never waits on hung storage with the control thread: a device
# whose null backing takes 60 s per request is detached with I/O in flight;
# while it drains (bounded by --drain-ms) another device is attached and
# reaches InitWait, and the first still reaches Closed within libxl's 10 s,
# abandoning what never completed.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 4M "$d/disk.img"
start_backd "$d/backd.log" --kind vbd,qdisk --drain-ms 3000 --detach-grace-ms 0
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
stat_is() { xbdctl stats --json | grep -q "$1"; }
slow=/local/domain/0/backend/vbd/1/51712

xbdctl block-attach guest1 "null:size=64M,latency=60s" backendtype=phy >/dev/null
xbdctl run-as guest1 -- xbdfront bench xvda --rw randread --seconds 1 --iodepth 8 \
    --timeout 100 >/dev/null 2>&1 &
bench=$!
cleanup_fn kill_wait $bench
wait_for 10 stat_is '"in_flight":8' || fail "no I/O in flight"

xbdctl block-detach guest1 xvda >"$d/detach" 2>&1 &
detach=$!
wait_for 10 stat_is '"draining":true' || fail "the slow device is not draining"
xbdctl status | grep -q 'vbd/1/51712: draining' || fail "status does not say draining"

# Meanwhile another device is served.
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb >/dev/null
wait_for 10 node_is /local/domain/0/backend/qdisk/1/51728/state 2 ||
    fail "a new device waited for the drain"
# Logged just after the claim is published: wait for the line, then look
# at the order.
wait_for 10 grep -q 'qdisk/1/51728: Initialising -> InitWait' "$d/backd.log" ||
    fail "the new device's claim was not logged"
grep -n 'qdisk/1/51728: Initialising -> InitWait\|vbd/1/51712: Closing -> Closed' \
    "$d/backd.log" | head -1 | grep -q qdisk || fail "the new device came after the drain"

wait $detach || fail "detach of the draining device: $(cat "$d/detach")"
grep -q 'vbd/1/51712 q0: 8 I/O still in flight after 3000 ms; abandoning it' "$d/backd.log" ||
    fail "no word about the abandoned I/O"
kill -0 $backd_pid || fail "xbd-backd died"
kill -9 $bench 2>/dev/null || :     # still waiting for its 60 s requests
