#!/usr/bin/env bash
# Crash consistency across daemon crashes (issue 7).  For each seed: a
# guest runs xbd-crashload (versioned, checksummed 4 KiB writes, 16 in
# flight, a flush every 32 acknowledgements, a log of acknowledgements and
# completed flushes) while xbd-backd is killed with SIGKILL at seeded random
# points and restarted, as a supervisor would; nobody touches xenstore in
# between: the new daemon takes the device over (its ownership record,
# xbd-backd(8), FILES) and resets it.  The library must reconnect and
# re-issue, and the workload must finish with no error returned to it.  Then, with everything stopped, dom0 checks the
# image: no torn block, every write acknowledged before the last completed
# flush present (or a later acknowledged one), every block at its last
# acknowledged generation.  A failure prints the seed and the first bad
# block.
#
#   CRASH_SEEDS="1 2 3" CRASH_KILLS=3 CRASH_WRITES=N   override the defaults
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbd-backd --help
load="$builddir/xbd-crashload"
[ -x "$load" ] || skip "xbd-crashload is not built"
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
be=/local/domain/0/backend/qdisk/1/51712
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
acks() { grep -c '^W' "$1" 2>/dev/null || :; }
acks_ge() { [ "$(acks "$1")" -ge "$2" ]; }
load_running() { kill -0 $lpid 2>/dev/null; }
connected_or_over() { node_is $be/state 4 || ! load_running; }
due_or_over() { acks_ge "$1" "$2" || ! load_running; }
decided_or_over() {
    grep -q 'qdisk/1/51712: \(taken over\|adopted\|serving\)' "$1" || ! load_running
}

seeds=${CRASH_SEEDS:-"1 2 3"}
kills_per_seed=${CRASH_KILLS:-3}
writes=${CRASH_WRITES:-100000}
blocks=2048
total_kills=0
n=0
for seed in $seeds; do
    RANDOM=$seed
    img="$d/disk$seed.img" log="$d/load$seed.log"
    truncate -s 16M "$img"
    n=$((n + 1))
    start_backd "$d/backd$n.log"
    xbdctl block-attach guest1 "$img" >/dev/null
    wait_for 10 node_is $be/state 2 || fail "seed $seed: the backend did not reach InitWait"
    # (xbdctl run-as execs it: lpid is the workload itself.)
    xbdctl run-as guest1 -- "$load" run xvda --seed "$seed" --log "$log" --blocks $blocks \
        --writes "$writes" --iodepth 16 --flush-every 32 \
        --ring-pages $(( 1 << (seed % 3) )) 2>"$d/load$seed.err" &
    lpid=$!
    cleanup_fn kill_wait $lpid
    kills=0
    for k in $(seq "$kills_per_seed"); do
        # A seeded point: kill k of K after about k/(K+1) of the writes
        # (up to a quarter of a slice earlier), then a pause of 0 to 49 ms,
        # so the kill lands mid-write or mid-flush alike.
        slice=$(( writes / (kills_per_seed + 1) ))
        due=$(( k * slice - RANDOM % (slice / 4) ))
        pause="0.0$(( RANDOM % 50 ))"
        # However slow the machine: wait for the workload's progress, not
        # for a time.  Only the workload's end (it gives up by itself
        # after 120 s without a completion) stops a wait early; its exit
        # status says why below.
        wait_for 900 connected_or_over || fail "seed $seed: the workload hangs"
        wait_for 900 due_or_over "$log" $due || fail "seed $seed: the workload hangs"
        load_running || break
        sleep "$pause"
        grep -q '^D' "$log" && break
        kill -9 $backd_pid
        wait $backd_pid 2>/dev/null || :
        kills=$((kills + 1))
        n=$((n + 1))
        start_backd "$d/backd$n.log"
        # The socket is there before the new daemon has looked at the
        # device: the dead one's Connected is still in the store.  Wait
        # for the takeover (or, had the workload just finished, anything
        # the new daemon did with the device) before looking for the next
        # connection.
        wait_for 900 decided_or_over "$d/backd$n.log" || fail "seed $seed: the workload hangs"
    done
    rc=0
    wait $lpid || rc=$?
    cat "$d/load$seed.err"
    [ $rc -eq 0 ] || fail "seed $seed: the workload failed (exit $rc) after $kills kills"
    # A kill that lands after the last acknowledgement finds nothing to
    # recover (on a busy machine the script can lag that far): count the
    # kills the workload lived through, its reconnects.
    survived=$(grep -c reconnected "$d/load$seed.err" || :)
    [ "$survived" -ge 1 ] && [ "$survived" -le $kills ] ||
        fail "seed $seed: $survived reconnects for $kills kills (raise CRASH_WRITES)"
    total_kills=$((total_kills + survived))
    # Everything stopped: the device detached, the daemon gone.
    xbdctl block-detach guest1 xvda >/dev/null 2>&1 || :
    kill_wait $backd_pid
    "$load" check "$img" --seed "$seed" --log "$log" --blocks $blocks ||
        fail "seed $seed: the image is not consistent after $kills kills (log: $log)"
    echo "seed $seed: $survived SIGKILLs survived mid-workload ($kills sent)"
    xenstore-rm /local/domain/0/backend/qdisk/1 2>/dev/null || :
    xenstore-rm /local/domain/1/device/vbd 2>/dev/null || :
done
echo "$total_kills SIGKILLs survived mid-workload over seeds: $seeds"
# Every kill the workload lived through was a takeover by the next daemon.
takeovers=$(cat "$d"/backd*.log | grep -c "qdisk/1/51712: taken over" || :)
[ "$takeovers" -ge "$total_kills" ] ||
    fail "$total_kills reconnects but only $takeovers takeovers"
echo "$takeovers takeovers by a restarted xbd-backd"

# The check can fail: block 5 of the last image, with eight bytes
# overwritten, is reported torn, with the seed.
printf 'XBDTORN!' | dd of="$img" bs=1 seek=$((5 * 4096 + 100)) conv=notrunc 2>/dev/null
if "$load" check "$img" --seed "$seed" --log "$log" --blocks $blocks >"$d/bad.out"; then
    fail "a torn block went unnoticed"
fi
cat "$d/bad.out"
grep -q "^seed $seed: block 5 (sector 40) is torn" "$d/bad.out" || fail "the torn block was not named"
