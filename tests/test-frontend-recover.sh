#!/usr/bin/env bash
# libxbdfront's recovery with the real backend: xbd-backd goes away in the
# middle of a verify and a new one comes back; the library reconnects,
# re-issues what was in flight, and verify completes without an error
# (its check phase reads back every byte written across the restart).
#
#  1. SIGTERM: the daemon finishes in-flight I/O, takes the device to
#     Closed and exits; the new one adopts it (xbd-backd(8), CLAIM RULE).
#  2. kill -9: the dead daemon's Connected stays in xenstore; the new
#     xbd-backd takes the device over (its ownership record, xbd-backd(8),
#     FILES) and resets it, nobody writing a state by hand.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
backd_disk_setup 512M

# The current connection's queue 0 (its counters start at zero) has writes.
writing() {
    xbdctl stats --json | grep -q '"queue_stats":\[{"queue":0,"req_read":[0-9]*,"req_write":[1-9]'
}
n=0
restart_mid_verify() {
    local how=$1 v rc=0
    n=$((n + 1))
    run_as guest1 xbdfront verify xvda --queues 2 --iodepth 2 --seed $n \
        --timeout 30 >"$d/verify.out" 2>"$d/verify.err" &
    v=$!
    cleanup_fn kill_wait $v
    wait_for 10 node_is $be/state 4 || fail "verify did not connect"
    # (Ours first, then the frontend's: verify is past connecting only then.)
    wait_for 10 node_is $fe/state 4 || fail "verify's frontend did not reach Connected"
    # In the write phase of 512 MiB: writes have reached the daemon.
    wait_for 10 writing || fail "verify's writes do not reach the daemon"
    if [ "$how" = kill ]; then
        kill -9 $backd_pid
        wait $backd_pid 2>/dev/null || :
    else
        kill $backd_pid
        wait $backd_pid 2>/dev/null || :
    fi
    start_backd "$d/backd$n.log"
    wait $v || rc=$?
    cat "$d/verify.out" "$d/verify.err"
    [ $rc -eq 0 ] || fail "verify across a daemon $how exited $rc"
    grep -q 'reconnecting' "$d/verify.err" ||
        fail "the daemon $how happened after verify had finished"
    grep -q 'reconnected' "$d/verify.err" || fail "no reconnect after $how"
}

restart_mid_verify term
restart_mid_verify kill
