#!/usr/bin/env bash
# libxbdfront and xbdfront against the real backend: xbd-backd on xbd-sim
# serving a sparse image.  verify passes on ring pages 1 to 64, 1 and 2
# queues, persistent grants, indirect descriptors and zero-copy buffers on
# and off, each run a reconnect of the same device; xbd-check-tree finds
# the connected tree sound; `info` reports what was asked for; a disk
# attached with trusted=0 gets no persistent grants; the image, read from
# dom0 after a write phase, holds exactly the pattern (xbdfront pattern);
# and verify passes with the backend mapping grants per request
# (--grant-map) too.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
backd_disk_setup 4M

verify() {
    run_as guest1 xbdfront verify xvda --timeout 10 "$@" ||
        fail "verify $*"
}

n=0
for pages in 1 2 4 8 16 32 64; do
    for queues in 1 2; do
        verify --ring-pages $pages --queues $queues --seed $((++n))
    done
done
verify --ring-pages 4 --queues 2 --no-persistent --seed $((++n))
verify --ring-pages 4 --queues 2 --indirect 0 --seed $((++n))
verify --ring-pages 1 --queues 1 --no-persistent --indirect 0 --seed $((++n))
# Zero-copy buffers (granted by the caller, mapped by the backend), with
# persistent grants on and off: freed buffers never stay shared.
verify --ring-pages 8 --queues 2 --zero-copy --seed $((++n)) 2>"$d/zc.err"
verify --ring-pages 8 --queues 2 --zero-copy --no-persistent --seed $((++n)) \
    2>>"$d/zc.err"
cat "$d/zc.err"
if grep -q 'left shared' "$d/zc.err"; then
    fail "zero-copy buffers left shared after close"
fi

# What was negotiated is what was asked for.
run_as guest1 xbdfront info xvda --ring-pages 16 --queues 2 --indirect 64 \
    --no-persistent --json --timeout 10 >"$d/info"
cat "$d/info"
grep -q '"size": 4194304, "sector_size": 512, "ring_pages": 16, "queues": 2, "indirect_segments": 64, "persistent": false' \
    "$d/info" || fail "info does not show the negotiation"

# Connected: the whole tree passes the checker (a bench keeps it connected
# until stopped).
start_bench guest1 "$d/bench" xvda --rw randread --queues 2 --timeout 10
# Connected is both sides: the frontend writes its Connected after ours.
wait_for 10 node_is $be/state 4 || fail "bench did not connect"
wait_for 10 node_is $fe/state 4 || fail "the bench's frontend did not reach Connected"
xbd-check-tree || fail "xbd-check-tree on a connected device"
stop_bench

# An untrusted backend (trusted=0 from the toolstack): no persistent
# grants even when offered, and the tool says so.
truncate -s 1M "$d/disk2.img"
xbdctl block-attach guest1 "$d/disk2.img" vdev=xvdb trusted=0 >/dev/null
run_as guest1 xbdfront info xvdb --json --timeout 10 >"$d/info2"
cat "$d/info2"
grep -q '"persistent": false' "$d/info2" || fail "persistent grants with trusted=0"
grep -q '"untrusted"' "$d/info2" || fail "untrusted not reported"
run_as guest1 xbdfront verify xvdb --timeout 10 || fail "verify untrusted xvdb"

# The image from dom0 holds exactly the pattern of the last write.
verify --phase write --seed 77 --queues 2
xbdfront pattern --seed 77 --size 4M >"$d/expect"
cmp "$d/expect" "$d/disk.img" || fail "the image differs from the pattern"

# The backend's other data path (per-request grant mapping instead of grant
# copy), bounced and zero-copy: a restarted daemon adopts the device.
kill_wait $backd_pid
start_backd "$d/backd-map.log" --grant-map
verify --queues 2 --seed 90
verify --queues 2 --zero-copy --no-persistent --seed 91
