#!/usr/bin/env bash
# The claim rule: two xbd-backd serving the same kind never both take a
# device (the claim is a transaction from Initialising to InitWait); a
# daemon serves only the kinds it is given; a daemon that stops leaves its
# devices Closed, the other running daemon leaves them alone, and a daemon
# started afterwards adopts them and serves a frontend that starts over.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 4M "$d/disk.img"
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
be=/local/domain/0/backend/qdisk/1

start_backd "$d/a.log" --kind qdisk
a=$backd_pid
xbd-backd --debug --kind vbd,qdisk --control-socket "$d/b.sock" 2>"$d/b.log" &
b=$!
cleanup_fn kill_wait $b
cleanup_fn 'echo "--- daemon b"; cat "$d/b.log"'
wait_for 10 test -S "$d/b.sock" || fail "daemon b did not start"

devids=
for v in a b c d e f g h; do
    xbdctl block-attach guest1 "$d/disk.img" vdev=xvd$v >/dev/null
done
# A daemon logs its claim just after the transaction: wait for the line.
claims() { cat "$d/a.log" "$d/b.log" | grep -c "qdisk/1/$1: Initialising -> InitWait" || :; }
claimed() { [ "$(claims $1)" -ge 1 ]; }
for id in 51712 51728 51744 51760 51776 51792 51808 51824; do
    wait_for 10 node_is $be/$id/state 2 || fail "device $id not claimed"
    wait_for 10 claimed $id || fail "device $id: no claim logged"
    n=$(claims $id)
    [ "$n" = 1 ] || fail "device $id claimed $n times"
done
echo "daemon a took $(grep -c 'Initialising -> InitWait' "$d/a.log" || :)," \
     "daemon b $(grep -c 'Initialising -> InitWait' "$d/b.log" || :)"

# vbd: only b serves it.
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdi backendtype=phy >/dev/null
wait_for 10 node_is /local/domain/0/backend/vbd/1/51840/state 2 || fail "vbd not served"
wait_for 10 grep -q 'vbd/1/51840: Initialising -> InitWait' "$d/b.log" || fail "vbd served by a"

# a stops: its devices go Closed and b leaves them alone.
mine=$(grep -o 'qdisk/1/[0-9]*: Initialising -> InitWait' "$d/a.log" | cut -d/ -f3 | cut -d: -f1)
kill -TERM $a
wait $a || fail "daemon a exit status"
for id in $mine; do
    node_is $be/$id/state 6 || fail "device $id not Closed after daemon a stopped"
done
sleep 1
for id in $mine; do
    node_is $be/$id/state 6 || fail "daemon b touched a's device $id"
done

# c starts, adopts the Closed devices, serves a frontend that starts over.
for id in $mine; do first=$id; break; done
[ -n "$first" ] || skip "daemon a took no device (b was faster at all of them)"
xbd-backd --debug --control-socket "$d/c.sock" 2>"$d/c.log" &
c=$!
cleanup_fn kill_wait $c
cleanup_fn 'echo "--- daemon c"; cat "$d/c.log"'
wait_for 10 grep -q "qdisk/1/$first: adopted" "$d/c.log" || fail "device $first not adopted"
run_as guest1 xenstore-write /local/domain/1/device/vbd/$first/state 6
vdev=$(xbdctl block-list guest1 | awk -v id=$first '$1 == id {print $2}')
run_as guest1 xbdfront verify $vdev --size 1M --timeout 10 || fail "adopted device does not serve"
wait_for 10 grep -q "qdisk/1/$first: ring connected" "$d/c.log" || fail "daemon c did not connect it"
