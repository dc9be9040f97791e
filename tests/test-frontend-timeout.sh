#!/usr/bin/env bash
# xbdfront's --timeout bounds the wait for a completion in the simple
# commands too (their requests wait through reconnects in the library):
# `xbdfront write` connects to xbd-backd, the daemon is then stopped
# (SIGSTOP: its rings stay up, nothing answers), and the write fails,
# saying why, instead of waiting for ever.
source "$srcdir/functions.sh"
set -e
requires xbd-backd --help
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain g1
start_backd "$d/backd.log"
truncate -s 8M "$d/disk.img"
xbdctl block-attach 1 "$d/disk.img" >/dev/null || fail "cannot attach the disk"
be=/local/domain/0/backend/qdisk/1/51712
cleanup_fn "kill -CONT $backd_pid 2>/dev/null || :"

# The data comes through a fifo: xbdfront connects, then waits for it.
mkfifo "$d/in"
rc=0
run_as g1 xbdfront write xvda 0 --timeout 2 <"$d/in" 2>"$d/err" &
fe_pid=$!
cleanup_fn kill_wait $fe_pid
exec 3>"$d/in"
connected() { [ "$(xenstore-read "$be/state")" = 4 ]; }
wait_for 30 connected || fail "xbdfront did not connect"
kill -STOP $backd_pid
head -c 4096 /dev/zero >&3
exec 3>&-
# Generous: the command gives up after 2 s without an answer.
exited() { local s; s=$(awk '{ print $3 }' "/proc/$fe_pid/stat" 2>/dev/null) || :; [ -z "$s" ] || [ "$s" = Z ]; }
wait_for 60 exited || fail "xbdfront write waits past --timeout"
wait $fe_pid || rc=$?
kill -CONT $backd_pid
cat "$d/err"
[ $rc -ne 0 ] || fail "the write succeeded with the backend stopped"
grep -q 'no response from the backend in 2000 ms' "$d/err" ||
    fail "no word about the timeout"
echo "xbdfront write gave up after --timeout with the backend stopped"
