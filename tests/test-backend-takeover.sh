#!/usr/bin/env bash
# Restart takeover (xbd-backd(8), FILES): xbd-backd killed with SIGKILL
# leaves its devices InitWait or Connected; the next daemon on the same
# control socket takes over exactly those its ownership record lists with
# the mark still in their xbd-backd-claim node, resets them (Closing), and
# serves the frontend when it reconnects - nobody writes a state by hand.
#
#  1. three devices in InitWait, daemon killed; one device's mark changed
#     meanwhile (as if another backend had claimed a re-created directory),
#     another being detached (online=0): the new daemon takes over the
#     first, leaves the second alone, and lets the third go (Closed)
#  2. a verify running on the taken-over device, daemon killed mid-write:
#     the new daemon takes it over, the library reconnects, re-issues, and
#     reads back everything it wrote
#  3. SIGTERM leaves no record; a record with junk in it is survived
#  4. a daemon killed in the middle of taking devices over: its record,
#     written ahead, lists a directory twice (its predecessor's mark and
#     its own), and the node holds either; the next daemon takes both
#     over, and its own record then lists its mark alone
#  5. the same for real: a daemon SIGKILLed as soon as it has taken over
#     its first device; the next takes over every device, whichever the
#     killed one reached
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
record=$XBD_SIM_DIR/xbd-backd.owned
be=/local/domain/0/backend/qdisk/1
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
listed() { grep -q "^$be/$1 $(xenstore-read $be/$1/xbd-backd-claim) *$" "$record"; }
killed() { kill -9 $backd_pid; wait $backd_pid 2>/dev/null || :; }

# ---- 1. InitWait, two devices, one with a foreign mark ---------------------
truncate -s 256M "$d/a.img" "$d/b.img" "$d/c.img"
start_backd "$d/backd1.log"
xbdctl block-attach guest1 "$d/a.img" vdev=xvda >/dev/null
xbdctl block-attach guest1 "$d/b.img" vdev=xvdb >/dev/null
xbdctl block-attach guest1 "$d/c.img" vdev=xvdc >/dev/null
wait_for 10 node_is $be/51712/state 2 || fail "xvda not claimed"
wait_for 10 node_is $be/51728/state 2 || fail "xvdb not claimed"
wait_for 10 node_is $be/51744/state 2 || fail "xvdc not claimed"
wait_for 10 listed 51744 || fail "the record does not list xvdc with its mark"
wait_for 10 listed 51712 || fail "the record does not list xvda with its mark"
wait_for 10 listed 51728 || fail "the record does not list xvdb with its mark"
killed
node_is $be/51712/state 2 || fail "xvda not left InitWait by the killed daemon"
xenstore-write $be/51728/xbd-backd-claim 0123456789abcdef
xenstore-write $be/51744/online 0
start_backd "$d/backd2.log"
wait_for 10 grep -q "qdisk/1/51712: taken over .*InitWait" "$d/backd2.log" ||
    fail "xvda (InitWait, in the record) was not taken over"
# Reset: Closing, and, the frontend being Initialising, InitWait again
# with fresh limits and the new daemon's mark.
wait_for 10 grep -q "qdisk/1/51712: Closing -> InitWait" "$d/backd2.log" ||
    fail "taken-over xvda was not reset to InitWait"
wait_for 10 node_is $be/51712/state 2 || fail "taken-over xvda not in InitWait"
# Both devices were decided in the same first pass: xvdb is left alone.
node_is $be/51728/state 2 || fail "xvdb (someone else's mark) was touched"
node_is $be/51728/xbd-backd-claim 0123456789abcdef || fail "xvdb's mark rewritten"
grep -q "qdisk/1/51728" "$d/backd2.log" && fail "the daemon acted on xvdb"
wait_for 10 listed 51712 || fail "the new record does not list xvda with the new mark"
grep -q "/51728 " "$record" && fail "the new record lists xvdb"
wait_for 10 node_is $be/51744/state 6 || fail "xvdc (online=0) was not let go"
# (Logged just after the Closed it waited for.)
wait_for 10 grep -q "qdisk/1/51744: released" "$d/backd2.log" || fail "xvdc not released"
echo "InitWait: taken over with the record's mark, left alone without it," \
     "released when being detached"

# ---- 2. Connected, killed mid-verify -----------------------------------------
run_as guest1 xbdfront verify xvda --size 256M --queues 2 --iodepth 4 --seed 7 \
    --timeout 60 >"$d/verify.out" 2>"$d/verify.err" &
v=$!
cleanup_fn kill_wait $v
wait_for 10 node_is $be/51712/state 4 || fail "verify did not connect"
# (Ours first, then the frontend's: verify is past connecting only then.)
wait_for 10 node_is /local/domain/1/device/vbd/51712/state 4 ||
    fail "verify's frontend did not reach Connected"
wait_for 10 grep -q "qdisk/1/51712: ring connected" "$d/backd2.log" ||
    fail "no ring connected"
killed
start_backd "$d/backd3.log"
rc=0
wait $v || rc=$?
cat "$d/verify.out" "$d/verify.err"
[ $rc -eq 0 ] || fail "verify across a SIGKILL and takeover exited $rc"
if grep -q 'reconnecting' "$d/verify.err"; then
    grep -q "qdisk/1/51712: taken over .*Connected" "$d/backd3.log" ||
        fail "the frontend reconnected, but the device was not taken over"
    grep -q 'reconnected' "$d/verify.err" || fail "taken over, but no reconnect"
    # Logged just after the Connected the frontend acted on: wait.
    wait_for 10 grep -q "qdisk/1/51712: ring connected" "$d/backd3.log" ||
        fail "the new daemon did not serve the reconnect"
    echo "Connected: taken over mid-verify, the frontend reconnected"
else
    # The kill landed as verify was closing the device (nothing to recover).
    # Nothing waited for the new daemon to look at it: wait for that here.
    wait_for 10 grep -q "qdisk/1/51712: \(taken over\|adopted\)" "$d/backd3.log" ||
        fail "xvda neither taken over nor adopted"
    echo "Connected: verify had finished before the kill (nothing to recover)"
fi

# ---- 3. clean exit, a damaged record --------------------------------------------
kill_wait $backd_pid
[ ! -e "$record" ] || fail "the record outlived a clean exit: $(cat "$record")"
{
    echo "garbage"
    echo "$be/51712 nothex!nothex!!!"
    head -c 2000 /dev/zero | tr '\0' x; echo
    echo "/local/domain/7/backend/qdisk/1/51712 0123456789abcdef"
} >"$record"
start_backd "$d/backd4.log"
wait_for 10 grep -q "4 unusable lines ignored" "$d/backd4.log" ||
    fail "the damaged record was not reported"
run_as guest1 xbdfront verify xvda --size 1M --timeout 20 >/dev/null ||
    fail "the daemon does not serve after reading a damaged record"
echo "a damaged record is reported and ignored"

# ---- 4. killed mid-takeover ------------------------------------------------------
# The record lists a device before the transaction that puts a mark into
# its node, and keeps the lines found at start until the first pass is
# done.  What a daemon killed between the two leaves, for xvdd (killed
# before its transaction: the node still holds the old mark, listed after
# the new one) and xvde (killed after it: the node holds the new mark).
truncate -s 16M "$d/d.img" "$d/e.img"
xbdctl block-attach guest1 "$d/d.img" vdev=xvdd >/dev/null
xbdctl block-attach guest1 "$d/e.img" vdev=xvde >/dev/null
wait_for 10 node_is $be/51760/state 2 || fail "xvdd not claimed"
wait_for 10 node_is $be/51776/state 2 || fail "xvde not claimed"
wait_for 10 listed 51760 || fail "the record does not list xvdd"
wait_for 10 listed 51776 || fail "the record does not list xvde"
old_d=$(xenstore-read $be/51760/xbd-backd-claim)
old_e=$(xenstore-read $be/51776/xbd-backd-claim)
killed
new=fedcba9876543210
xenstore-write $be/51776/xbd-backd-claim $new
printf '# killed mid-takeover\n%s %s\n%s %s\n%s %s\n%s %s\n' \
    "$be/51760" $new "$be/51760" "$old_d" "$be/51776" "$old_e" "$be/51776" $new >"$record"
start_backd "$d/backd5.log"
wait_for 10 grep -q "qdisk/1/51760: taken over" "$d/backd5.log" ||
    fail "xvdd (the old mark, listed second) was not taken over"
wait_for 10 grep -q "qdisk/1/51776: taken over" "$d/backd5.log" ||
    fail "xvde (the new mark, listed second) was not taken over"
wait_for 10 listed 51760 || fail "the new record does not list xvdd with the new mark"
wait_for 10 listed 51776 || fail "the new record does not list xvde with the new mark"
no_old_lines() { ! grep -q "$new\|$old_d\|$old_e" "$record"; }
wait_for 10 no_old_lines || fail "the new record keeps the dead daemons' lines: $(cat "$record")"
run_as guest1 xbdfront verify xvde --size 1M --timeout 20 >/dev/null ||
    fail "taken-over xvde does not serve"
echo "killed mid-takeover: both marks listed, either in the node, taken over"

# ---- 5. SIGKILLed mid-takeover ---------------------------------------------------
# Six devices in InitWait; their daemon killed; the next one killed as
# soon as it has taken over one (at once: it logs each right after the
# transaction); the one after that must take over all six, those the
# killed daemon had marked and those it had not reached alike.
ids="51792 51808 51824 51840 51856 51872"
for v in f g h i j k; do
    xbdctl block-attach guest1 "$d/d.img" vdev=xvd$v >/dev/null
done
for id in $ids; do
    wait_for 10 node_is $be/$id/state 2 || fail "$id not claimed"
    wait_for 10 listed $id || fail "the record does not list $id"
done
killed
start_backd "$d/backd6.log"
timeout 10 sh -c "until grep -q 'taken over' '$d/backd6.log'; do :; done" ||
    fail "the daemon after a SIGKILL took nothing over"
killed
echo "killed after $(grep -c 'taken over' "$d/backd6.log") takeover(s)"
start_backd "$d/backd7.log"
for id in $ids; do
    wait_for 10 grep -q "qdisk/1/$id: taken over" "$d/backd7.log" ||
        fail "$id, left live by a daemon killed mid-takeover, was not taken over"
done
echo "SIGKILLed mid-takeover: the next daemon took over all six"
