#!/usr/bin/env bash
# An image in tmpfs, end to end through libxbdfront: with persistent grants
# xbd-backd reads and writes it straight to and from the guest's mapped
# pages (direct_io counts every read and write), without them through its
# own buffer and grant copies (direct_io stays put); the data is right
# either way, bounced or zero-copy in the guest, one queue or two.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires xbdfront --help
[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || skip "/dev/shm is not tmpfs"
d=$(test_tmpdir)
img=$(mktemp /dev/shm/xbd-tmpfs-test.XXXXXX)
cleanup_fn "rm -f '$img'"
truncate -s 16M "$img"
start_sim "$d/sim" --domain guest1
start_backd "$d/backd.log" --kind qdisk
xbdctl block-attach guest1 "$img" direct-io-safe=1 >/dev/null

# The device's total of one counter, from xbdctl stats --json.
total() {
    xbdctl stats --json | tr -d ' \n' | grep -o "\"totals\":{[^}]*}" |
        grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}
reqs() { echo $(( $(total req_read) + $(total req_write) )); }

run_as guest1 xbdfront verify xvda --seed 3 --queues 2 --iodepth 16 --quiet --timeout 10 ||
    fail "verify (persistent grants, bounced, 2 queues) failed"
[ "$(total direct_io)" -gt 0 ] && [ "$(total direct_io)" -eq "$(reqs)" ] ||
    fail "persistent grants: $(total direct_io) of $(reqs) requests straight to the guest's pages"

run_as guest1 xbdfront verify xvda --seed 4 --zero-copy --quiet --timeout 10 ||
    fail "verify (persistent grants, zero-copy) failed"
[ "$(total direct_io)" -eq "$(reqs)" ] ||
    fail "zero-copy: $(total direct_io) of $(reqs) requests straight to the guest's pages"

# What one connection wrote, read back by another (verify's requests are
# 1 sector to 1 MiB long: direct and indirect ones).
run_as guest1 xbdfront verify xvda --seed 5 --phase write --quiet --timeout 10 ||
    fail "verify --phase write failed"
run_as guest1 xbdfront verify xvda --seed 5 --phase check --quiet --timeout 10 ||
    fail "verify --phase check of what the previous connection wrote failed"

before=$(total direct_io)
run_as guest1 xbdfront verify xvda --seed 6 --no-persistent --quiet --timeout 10 ||
    fail "verify (grant copy) failed"
[ "$(total direct_io)" -eq "$before" ] || fail "without persistent grants direct_io moved"
[ "$(total grant_copies)" -gt 0 ] || fail "without persistent grants: no grant copy"
