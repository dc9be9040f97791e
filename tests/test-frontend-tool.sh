#!/usr/bin/env bash
# xbdfront against a scripted honest backend (tests/xbdf-fakeback, which
# serves from the image file): info (text and JSON) shows what was
# negotiated; write/read round-trip bytes that land at the right place in
# the image; discard zeroes; verify passes on every ring size and queue
# count the backend allows, with persistent grants and indirect
# descriptors on and off, and its check phase alone finds a wrong seed;
# bench runs, also deeper than the ring holds; bad arguments say what is wrong.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup

# fe FAKEBACK-ARGS -- XBDFRONT-ARGS: one connection against a fresh backend
# serving the image.
fe() {
    local fb=()
    while [ "$1" != -- ]; do fb+=("$1"); shift; done; shift
    fakeback_run --image "$d/disk.img" "${fb[@]}" -- xbdfront "$@" --timeout 10
}

# info
fe --max-order 3 --max-queues 2 --indirect 32 -- info xvda --queues 4 >"$d/info"
cat "$d/info"
grep -q '^ring pages: *8$' "$d/info" || fail "ring pages not the backend's max"
grep -q '^queues: *2$' "$d/info" || fail "queues not clamped to 2"
grep -q '^indirect segments: *32$' "$d/info" || fail "indirect not clamped"
grep -q '^size: *8388608 bytes$' "$d/info" || fail "size"
grep -q 'features: *flush discard$' "$d/info" || fail "features"
fe --persistent 0 --indirect 0 -- info xvda --json --ring-pages 2 >"$d/info.json"
cat "$d/info.json"
grep -q '"ring_pages": 2, "queues": 1, "indirect_segments": 0, "persistent": false' \
    "$d/info.json" || fail "JSON info"

# write / read: an unaligned length at an aligned offset, read back, and
# found at that offset in the image.
head -c 12345 /dev/urandom >"$d/data"
fe -- write xvda 1M <"$d/data"
cmp -n 12345 "$d/data" <(tail -c +$((1048576 + 1)) "$d/disk.img") ||
    fail "written bytes not in the image at 1M"
fe -- read xvda 1M 16k >"$d/back"
cmp -n 12345 "$d/data" "$d/back" || fail "read back differs"
# discard zeroes in this backend.
fe -- discard xvda 1M 4k
cmp -n 4096 /dev/zero <(tail -c +$((1048576 + 1)) "$d/disk.img") ||
    fail "discarded range not zero"

# verify on every ring size, 1 and 2 queues, persistent and indirect on/off.
for pages in 1 2 4 8 16; do
    for q in 1 2; do
        fe --max-order 4 -- verify xvda --ring-pages $pages --queues $q \
            --seed $pages$q || fail "verify ring-pages $pages queues $q"
    done
done
fe --persistent 0 -- verify xvda --no-persistent --queues 2 || fail "verify no persistent"
fe --indirect 0 -- verify xvda --indirect 0 || fail "verify without indirect"
fe -- verify xvda --indirect 0 --queues 2 --iodepth 1 || fail "verify iodepth 1"

# The check phase alone: the pattern of the last write (seed 1) is there,
# another seed's is not.
fe -- verify xvda --phase write --seed 42 --size 1M
fe -- verify xvda --phase check --seed 42 --size 1M || fail "check after write"
if fe -- verify xvda --phase check --seed 43 --size 1M 2>"$d/err"; then
    fail "check with the wrong seed passed"
fi
grep -q 'mismatch in the sector at byte' "$d/err" || fail "mismatch not reported"

# bench: runs and reports (no timing assertions).
fe -- bench xvda --rw randrw --bs 8k --iodepth 4 --seconds 1 --json --queues 2 >"$d/bench"
cat "$d/bench"
grep -q '"iops": ' "$d/bench" || fail "bench JSON"
# An iodepth beyond four rings' worth (a 1-page ring holds 32) waits for
# ring space instead of failing; notifications are counted per direction.
fe -- bench xvda --rw randread --iodepth 300 --ring-pages 1 --poll-us 20 \
    --seconds 1 --json >"$d/bench"
cat "$d/bench"
grep -q '"notify_sent": [0-9]*, "notify_received": [0-9]*' "$d/bench" ||
    fail "bench at an iodepth beyond the ring"

# Usage errors: exit 2 or 1 with a message, before or without connecting.
rc=0; run_as guest1 xbdfront verify 2>"$d/err" || rc=$?
[ $rc -eq 2 ] || fail "verify without DEV exited $rc"
rc=0; run_as guest1 xbdfront info nosuchdisk 2>"$d/err" || rc=$?
[ $rc -eq 1 ] && grep -q 'not a Xen disk name' "$d/err" || fail "bad DEV"
rc=0; run_as guest1 xbdfront info xvdc --timeout 1 2>"$d/err" || rc=$?
[ $rc -eq 1 ] && grep -q 'no such virtual block device' "$d/err" ||
    fail "missing disk"
rc=0; fe -- read xvda 100 512 2>"$d/err" || rc=$?
[ $rc -eq 1 ] && grep -q 'multiples of' "$d/err" || fail "unaligned read"

# A 4096-byte logical sector: verify works in whole sectors (ring fields
# stay in 512-byte units), and a 512-byte read is refused before the ring.
fe --sector-size 4096 -- verify xvda --queues 2 --seed 9 || fail "verify, 4096-byte sectors"
rc=0; fe --sector-size 4096 -- read xvda 512 512 2>"$d/err" || rc=$?
[ $rc -eq 1 ] && grep -q "sector size, 4096 bytes" "$d/err" ||
    fail "a 512-byte read on a 4096-byte-sector disk"
