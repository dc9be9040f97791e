#!/usr/bin/env bash
# A domain with few grants (1024 entries, like gntalloc's default limit on
# Xen) against a frontend whose default pool would need more: the pool
# shrinks and the library says so (and how to raise the limit), unless
# --quiet; a pool size the caller chose is not shrunk: connecting fails,
# naming the limit.  Against a scripted backend offering 64 ring pages.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1 --grant-entries 1024
truncate -s 8M "$d/disk.img"
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
be=/local/domain/0/backend/qdisk/1/51712
fe=/local/domain/1/device/vbd/51712

# The automatic pool (2048 slots + a 65-page request) shrinks to fit.
fakeback_run --image "$d/disk.img" --max-order 6 -- \
    xbdfront info xvda --json --timeout 10 >"$d/info" 2>"$d/err" ||
    { cat "$d/err"; fail "info with few grants failed"; }
cat "$d/info" "$d/err"
grep -q '"ring_pages": 64' "$d/info" || fail "not 64 ring pages"
pool=$(sed -n 's/.*"pool_pages": \([0-9]*\)}$/\1/p' "$d/info")
[ -n "$pool" ] && [ "$pool" -ge 32 ] && [ "$pool" -lt 2113 ] ||
    fail "pool of '$pool' pages: expected shrunk below 2113, at least 32"
grep -q "only $pool of 2113 buffer pages could be granted" "$d/err" ||
    fail "no message about the smaller pool"
grep -q 'xen_gntalloc.*limit' "$d/err" || fail "the message does not name the limit"

# ... and I/O still works on it.
fakeback_run --image "$d/disk.img" --max-order 6 -- \
    xbdfront verify xvda --quiet --timeout 10 2>"$d/err" ||
    { cat "$d/err"; fail "verify on a shrunk pool failed"; }
[ ! -s "$d/err" ] || { cat "$d/err"; fail "--quiet: the library still spoke"; }

# Even when one full request (4096 segments) would not fit: large
# requests go in pieces the pool can carry.
fakeback_run --image "$d/disk.img" --max-order 6 --indirect 4096 -- \
    xbdfront verify xvda --indirect 4096 --timeout 10 2>"$d/err" ||
    { cat "$d/err"; fail "verify with 4096 segments and few grants failed"; }
cat "$d/err"
grep -q "only [0-9]* of 6152 buffer pages could be granted" "$d/err" ||
    fail "no message about the smaller pool (4096 segments)"

# A size the caller asked for is not shrunk.
rc=0
fakeback_run --image "$d/disk.img" --max-order 6 -- \
    xbdfront info xvda --pool-pages 2000 --timeout 10 2>"$d/err" || rc=$?
cat "$d/err"
[ $rc -eq 1 ] || fail "--pool-pages 2000 with 1024 grants: exited $rc, not 1"
grep -q 'cannot grant 2000 buffer pages.*xen_gntalloc.*limit' "$d/err" ||
    fail "no message naming the grant limit"
