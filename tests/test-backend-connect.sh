#!/usr/bin/env bash
# xbd-backd with a real frontend (xbdfront, libxbdfront) in xbd-sim: verify
# reads back what it wrote over 1 to 64 ring pages, 1 to 4 queues, with and
# without persistent grants and indirect descriptors, each run a reconnect
# of the same device; while connected the tree passes xbd-check-tree,
# `xbdctl status` shows what was negotiated and a grown image is published
# (sectors rewritten, state re-written); the counters add up; destroying
# the guest (@releaseDomain) closes its device.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1 --domain guest2
truncate -s 8M "$d/disk.img"
truncate -s 8M "$d/disk2.img"

start_backd "$d/backd.log" --kind qdisk,vbd
backd=$backd_pid

be=/local/domain/0/backend/qdisk/1/51712
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
alive() { kill -0 $backd 2>/dev/null || fail "xbd-backd died"; }

xbdctl block-attach guest1 "$d/disk.img" >/dev/null
wait_for 10 node_is $be/state 2 || fail "no InitWait"

# Ring pages x queues x features; every run reconnects the same device.
n=0
for run in "1 1" "2 1 --no-persistent --indirect 0" "4 2" "16 2 --indirect 32" \
           "64 4" "64 1 --no-persistent"; do
    set -- $run
    pages=$1 queues=$2; shift 2
    run_as guest1 xbdfront verify xvda --ring-pages $pages --queues $queues \
        --size 2M --seed $((++n)) --timeout 10 "$@" ||
        fail "verify with $pages page(s), $queues queue(s) $*"
    # The daemon logs the connection just after publishing it: wait.
    wait_for 10 grep -q "ring connected: $pages pages\? x $queues queues\?" "$d/backd.log" ||
        fail "no ring line for $pages page(s) x $queues queue(s)"
done
# The persistent-grant cache is sized by what was negotiated (auto): ring
# entries x (256 indirect segments + 1 indirect page), 1024..16384.
grep -q "q0: ring of 1 page(s) (32 entries, native), indirect 256, grants persistent (cache 8224)" \
    "$d/backd.log" || fail "1 page: the cache is not 32 x 257"
grep -q "q0: ring of 64 page(s) (2048 entries, native), indirect 256, grants persistent (cache 16384)" \
    "$d/backd.log" || fail "64 pages: the cache is not capped at 16384"
grep -q "q0: ring of 2 page(s) (64 entries, native), indirect 256, grants copied" \
    "$d/backd.log" || fail "without persistent grants: no cache"
alive

# While connected (a bench keeps it so until stopped): the tree, the
# status, a resize.
start_bench guest1 "$d/bench" xvda --rw randread --queues 2 --ring-pages 8 --timeout 10
# Connected is both sides: the frontend writes its Connected after ours.
wait_for 10 node_is $be/state 4 || fail "bench did not connect"
wait_for 10 node_is /local/domain/1/device/vbd/51712/state 4 ||
    fail "the bench's frontend did not reach Connected"
xbd-check-tree || fail "xbd-check-tree on a connected device"
xbdctl status >"$d/status"
cat "$d/status"
grep -Eq '^qdisk/1/51712 +Connected +Connected +8 +2 +256 +yes +native +16384 ' "$d/status" ||
    fail "status does not show the connection"
[ "$(xenstore-read $be/sectors)" = 16384 ] || fail "sectors"
truncate -s 12M "$d/disk.img"
wait_for 10 node_is $be/sectors 24576 || fail "resize not published"
wait_for 10 grep -q 'resized: 16384 -> 24576 sectors' "$d/backd.log" || fail "no resize log line"
node_is $be/state 4 || fail "not Connected after resize"
stop_bench
cat "$d/bench"

# The counters: verify wrote and read through every run.
xbdctl stats --json >"$d/stats.json"
grep -Eq '"totals":\{"req_read":[1-9][0-9]*,"req_write":[1-9]' "$d/stats.json" ||
    fail "counters do not show the reads and writes: $(cat "$d/stats.json")"
xbdctl stats >"$d/stats"
grep -Eq '^  bytes_written +[1-9]' "$d/stats" || fail "stats table"

# A guest that dies while connected: @releaseDomain closes its device.
be2=/local/domain/0/backend/qdisk/2/51712
xbdctl block-attach guest2 "$d/disk2.img" >/dev/null
xbdctl run-as guest2 -- xbdfront bench xvda --seconds 3600 --timeout 10 >/dev/null 2>&1 &
bench2=$!
cleanup_fn kill_wait $bench2
wait_for 10 node_is $be2/state 4 || fail "guest2 did not connect"
xbdctl domain-destroy guest2
wait_for 10 node_is $be2/state 6 || fail "guest2's device not Closed after its death"
wait_for 10 grep -q 'qdisk/2/51712: released (frontend domain gone)' "$d/backd.log" ||
    fail "no release line for guest2"
kill_wait $bench2 || :   # set -e would trip on its wait status
alive
node_is $be/state 6 || node_is $be/state 2 || fail "guest1's device disturbed"

# Detach under I/O: libxl's online=0 + Closing reaches the frontend, and
# the device is Closed and released within libxl's 10 s.
xbdctl run-as guest1 -- xbdfront bench xvda --seconds 3600 --timeout 10 >/dev/null 2>&1 &
bench3=$!
cleanup_fn kill_wait $bench3
wait_for 10 node_is $be/state 4 || fail "bench did not connect before the detach"
xbdctl block-detach guest1 xvda || fail "detach under I/O did not reach Closed in 10 s"
wait_for 10 grep -q 'qdisk/1/51712: released (detached' "$d/backd.log" || fail "no release line"
kill_wait $bench3 || :

# What the toolstack asked for shows in info and the features: read-only,
# no discard, cdrom.
bd=/local/domain/0/backend/qdisk/1
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb mode=r >/dev/null
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdc discard-enable=0 >/dev/null
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdd devtype=cdrom >/dev/null
for v in xvdb xvdc xvdd; do
    run_as guest1 xbdfront info $v --timeout 10 >"$d/info-$v" || fail "info $v"
done
node_is $bd/51728/info 4 || fail "mode=r: info is $(xenstore-read $bd/51728/info), not 4"
node_is $bd/51728/feature-discard 0 || fail "discard offered on a read-only disk"
node_is $bd/51744/info 0 || fail "a writable disk's info"
node_is $bd/51744/feature-discard 0 || fail "discard offered despite discard-enable=0"
grep -q 'features: *flush barrier$' "$d/info-xvdc" || fail "xbdfront sees: $(cat "$d/info-xvdc")"
node_is $bd/51760/info 7 || fail "cdrom: info is $(xenstore-read $bd/51760/info), not 7"
if run_as guest1 sh -c "echo x | xbdfront write xvdb 0 --timeout 10" 2>"$d/err"; then
    fail "a write to a read-only disk succeeded"
fi

# A 4096-byte-sector disk: sector-size says so, sectors stays in 512-byte
# units (the Xen 4.20 reading), and reads work (the null driver: zeroes).
bv=/local/domain/0/backend/vbd/1/51776
xbdctl block-attach guest1 "null:size=64M,sector-size=4096" vdev=xvde backendtype=phy >/dev/null
run_as guest1 xbdfront info xvde --timeout 10 >"$d/info-4k" || fail "info on 4k disk"
node_is $bv/sector-size 4096 || fail "sector-size $(xenstore-read $bv/sector-size)"
node_is $bv/sectors 131072 || fail "sectors $(xenstore-read $bv/sectors), not in 512-byte units"
grep -q '^sector size: *4096' "$d/info-4k" || fail "xbdfront sees: $(cat "$d/info-4k")"
run_as guest1 xbdfront read xvde 4096 8192 --timeout 10 >"$d/read-4k" || fail "read on a 4k disk"
cmp "$d/read-4k" <(head -c 8192 /dev/zero) || fail "the null disk did not read zeroes"
alive
exit 0
