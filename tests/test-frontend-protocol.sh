#!/usr/bin/env bash
# libxbdfront against a lying backend (tests/xbdf-fakeback as dom0): a
# response with an id never issued, a wrong operation echo, an unknown
# status, a replayed response, more responses than requests, and nonsense
# in xenstore (sectors 0, not a number, beyond 64 bits; a sector size that
# is not a power of two).  Each time the library marks the device broken
# (or refuses to connect) with a message that says what the backend did,
# the tool exits 1 - no crash, no hang - and the frontend ends Closed.
source "$srcdir/functions.sh"
set -e
requires xbd-sim --help
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 8M "$d/disk.img"
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
be=/local/domain/0/backend/qdisk/1/51712
fe=/local/domain/1/device/vbd/51712

# expect_failure 'MESSAGE' FAKEBACK-ARGS -- XBDFRONT-ARGS
expect_failure() {
    local want=$1 fb=() rc=0 fbpid; shift
    while [ "$1" != -- ]; do fb+=("$1"); shift; done; shift
    "$builddir/xbdf-fakeback" $be "${fb[@]}" &
    fbpid=$!
    cleanup_fn kill_wait $fbpid
    run_as guest1 xbdfront "$@" --timeout 5 >"$d/out" 2>"$d/err" || rc=$?
    kill_wait $fbpid
    cat "$d/err"
    [ $rc -eq 1 ] || fail "${fb[*]}: xbdfront exited $rc, not 1"
    grep -q -- "$want" "$d/err" || fail "${fb[*]}: no \"$want\" in the message"
    [ "$(xenstore-read $fe/state)" = 6 ] || fail "${fb[*]}: frontend not Closed"
}

expect_failure 'matches no request in flight' --lie bad-id --lie-at 3 -- verify xvda
expect_failure 'echoes operation' --lie wrong-op --lie-at 3 -- verify xvda
expect_failure 'unknown status 7' --lie bad-status -- verify xvda
expect_failure 'device is broken' --lie replay --lie-at 2 -- verify xvda
expect_failure 'responses with only' --lie overflow -- verify xvda --queues 2
expect_failure 'sectors = 0 is not a usable size' --sectors 0 -- info xvda
expect_failure 'not a decimal 64-bit number' --sectors abc -- info xvda
expect_failure 'not a usable size' --sectors 18446744073709551615 -- info xvda
expect_failure 'sector-size' --sector-size 1000 -- info xvda

# After all that, an honest backend still gets an honest frontend.
"$builddir/xbdf-fakeback" $be --image "$d/disk.img" &
fbpid=$!
cleanup_fn kill_wait $fbpid
run_as guest1 xbdfront verify xvda --timeout 5 || fail "honest verify failed"
wait $fbpid
