#!/usr/bin/env bash
# xbdctl block-resize: grows a file-backed disk; a connected frontend sees
# the new size (xbd-backd rewrites `sectors` and re-announces Connected);
# shrinking and non-file backings are refused with a reason.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
start_backd "$d/backd.log"
truncate -s 32M "$d/disk.img"
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
be=/local/domain/0/backend/qdisk/1/51712
state_is() { [ "$(xenstore-read $be/state 2>/dev/null)" = "$1" ]; }
wait_for 10 state_is 2 || fail "no InitWait"

# A frontend connected while the disk grows: reads until stopped.
start_bench guest1 "$d/v.out" xvda --rw randread --iodepth 1
wait_for 10 state_is 4 || fail "frontend did not connect"
out=$(xbdctl block-resize guest1 xvda 48M) || fail "block-resize failed: $out"
[ "$out" = "xvda: 50331648 bytes (98304 sectors)" ] || fail "unexpected output: $out"
[ "$(xenstore-read $be/sectors)" = 98304 ] || fail "sectors not rewritten"
[ "$(stat -c %s "$d/disk.img")" = 50331648 ] || fail "image not extended"
stop_bench          # fails if the reads failed across the resize

# Refusals.
if xbdctl block-resize guest1 xvda 16M 2>"$d/err"; then fail "shrink accepted"; fi
grep -q "shrinking a disk under a guest destroys its data" "$d/err" || fail "shrink: $(cat "$d/err")"
if xbdctl block-resize guest1 xvda 1000 2>"$d/err"; then fail "odd size accepted"; fi
grep -q "multiple of 512" "$d/err" || fail "odd size: $(cat "$d/err")"
if xbdctl block-resize guest1 xvdz 64M 2>"$d/err"; then fail "missing disk accepted"; fi
grep -q "has no disk xvdz" "$d/err" || fail "missing disk: $(cat "$d/err")"
xbdctl block-attach guest1 'null:size=1G' vdev=xvdb >/dev/null
if xbdctl block-resize guest1 xvdb 2G 2>"$d/err"; then fail "null backing resized"; fi
grep -q "is not a regular file" "$d/err" || fail "null: $(cat "$d/err")"
echo "block-resize: grown under a connected frontend, refusals clear"
