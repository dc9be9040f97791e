#!/usr/bin/env bash
# libxbdfront against a lying backend (tests/xbdf-fakeback as dom0): a
# response with an id never issued, a wrong operation echo, an unknown
# status, a replayed response (at once, and later when its id may be
# reused), more responses than requests, and nonsense
# in xenstore (sectors 0, not a number, beyond 64 bits; a sector size that
# is not a power of two; limits in the billions, which are clamped).  Each time the library marks the device broken
# (or refuses to connect) with a message that says what the backend did,
# the tool exits 1 - no crash, no hang - and the frontend ends Closed.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup

# expect_failure 'MESSAGE' FAKEBACK-ARGS -- XBDFRONT-ARGS
expect_failure() {
    local want=$1 rc=0; shift
    fakeback_run "$@" --timeout 5 >"$d/out" 2>"$d/err" || rc=$?
    cat "$d/err"
    [ $rc -eq 1 ] || fail "$*: exited $rc, not 1"
    grep -q -- "$want" "$d/err" || fail "$*: no \"$want\" in the message"
    [ "$(xenstore-read $fe/state)" = 6 ] || fail "$*: frontend not Closed"
}

expect_failure 'matches no request in flight' --lie bad-id --lie-at 3 -- xbdfront verify xvda
# The synchronous path (read) carries the same reason.
expect_failure 'read of 1048576 bytes at 0 failed: the device is broken: .*matches no request' \
    --lie bad-id -- xbdfront read xvda 0 1M
expect_failure 'echoes operation' --lie wrong-op --lie-at 3 -- xbdfront verify xvda
expect_failure 'unknown status 7' --lie bad-status -- xbdfront verify xvda
expect_failure 'device is broken' --lie replay --lie-at 2 -- xbdfront verify xvda
expect_failure 'responses with only' --lie overflow -- xbdfront verify xvda --queues 2
expect_failure 'completed twice, or never issued' --lie replay-later --lie-at 4 -- \
    xbdfront verify xvda --iodepth 16
expect_failure 'sectors = 0 is not a usable size' --sectors 0 -- xbdfront info xvda
expect_failure 'not a decimal 64-bit number' --sectors abc -- xbdfront info xvda
expect_failure 'not a usable size' --sectors 18446744073709551615 -- xbdfront info xvda
expect_failure 'sector-size' --sector-size 1000 -- xbdfront info xvda

# Absurd limits are clamped, not trusted: 2^31 ring pages, 4 billion queues
# and indirect segments become 64 pages (the default ceiling), the queues
# asked for, and the most segments we asked for (4096, blkif's limit).
# Each queue's pool then holds 2048 + 4096 + 8 pages: more than one grant
# share may carry (4096 pages in xbd-sim), so it is shared in pieces.
fakeback_run --image "$d/disk.img" --max-order 31 --max-queues 4000000000 \
    --indirect 4000000000 -- \
    xbdfront info xvda --queues 4 --indirect 4096 --json --timeout 5 >"$d/info"
cat "$d/info"
grep -q '"ring_pages": 64, "queues": 4, "indirect_segments": 4096' "$d/info" ||
    fail "absurd backend limits not clamped"
grep -q '"pool_pages": 6152}' "$d/info" || fail "not a pool of 6152 pages"
# More ring-ref nodes than the domain's xenstore quota: refused, saying so.
# (Small pools: 8 queues of 256-page rings with their default pools would
# run out of grants first.)
expect_failure "xenstore quota: ask for fewer ring pages or queues" \
    --max-order 8 --max-queues 8 -- xbdfront info xvda --queues 8 --ring-pages 256 \
    --pool-pages 64

# After all that, an honest backend still gets an honest frontend.
fakeback_run --image "$d/disk.img" -- xbdfront verify xvda --timeout 5 ||
    fail "honest verify failed"
