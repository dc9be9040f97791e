#!/usr/bin/env bash
# libxbdfront against a malicious backend (tests/xbdf-fakeback as dom0),
# PROTOCOL.md 4.4 list 5 and 4.2, beyond test-frontend-protocol.sh: an id
# whose slot is beyond the ring, an id already answered, operation echoes
# of every kind, statuses blkif does not define; and nonsense where the
# backend publishes its limits and properties.  A lie about a response
# breaks the device: xbdfront exits 1 with a message naming what the
# backend did (no crash, no hang, no request completed wrongly - verify
# would say so), and the frontend ends Closed.  Nonsense in a node either
# refuses the connection with a message naming the node, or - for limits
# beyond ours - is clamped to our own maximum, and then the data verifies.
# A backend that keeps our rings mapped after closing gets them left
# shared, never reused (XSA-396); one that storms the event channel with
# every answer changes nothing (XSA-391).
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup
n=0

# run FAKEBACK-ARGS -- XBDFRONT-ARGS: sets rc; output in $d/out, $d/err
run() {
    local fb=() fbpid
    while [ "$1" != -- ]; do fb+=("$1"); shift; done; shift
    "$builddir/xbdf-fakeback" $be "${fb[@]}" 2>"$d/fb.err" &
    fbpid=$!
    cleanup_fn kill_wait $fbpid
    rc=0
    run_as guest1 xbdfront "$@" --timeout 5 >"$d/out" 2>"$d/err" || rc=$?
    kill_wait $fbpid || :
    what="${fb[*]} -- $*"
    n=$((n + 1))
}

# expect_failure 'MESSAGE' FAKEBACK-ARGS -- XBDFRONT-ARGS
expect_failure() {
    local want=$1; shift
    run "$@"
    cat "$d/err"
    [ $rc -eq 1 ] || fail "$what: xbdfront exited $rc, not 1"
    grep -q -- "$want" "$d/err" || fail "$what: no \"$want\" in the message"
    [ "$(xenstore-read $fe/state)" = 6 ] || fail "$what: frontend not Closed"
}

# expect_clamped 'INFO-LINE-REGEX' FAKEBACK-ARGS -- [XBDFRONT-OPTIONS]:
# `xbdfront info` shows the clamped value, then verify passes.
expect_clamped() {
    local want=$1; shift
    run "$@" info xvda
    [ $rc -eq 0 ] || fail "$what: exited $rc: $(cat "$d/err")"
    grep -Eq -- "$want" "$d/out" || fail "$what: info does not show \"$want\": $(cat "$d/out")"
    echo "$what: $(grep -E -- "$want" "$d/out")"
    run "$@" verify xvda --size 1M
    [ $rc -eq 0 ] || fail "$what: verify exited $rc: $(cat "$d/err")"
}

# Responses (list 5).
broken='backend broke the protocol'
expect_failure "$broken: response id 0x[0-9a-f]* is out of range" \
    --lie out-of-range-id --lie-at 3 -- verify xvda
expect_failure "$broken: response id 0x[0-9a-f]* matches no request in flight" \
    --lie stale-id --lie-at 3 -- verify xvda
expect_failure "$broken: response id 0x[0-9a-f]* matches no request in flight" \
    --lie stale-id --lie-at 40 -- verify xvda --queues 2
for op in 0 2 3 5 6 255; do
    expect_failure "echoes operation $op, the request was operation 1" \
        --lie wrong-op --lie-value $op -- verify xvda
done
for st in 1 -3 -32768 32767; do
    expect_failure "$broken: .* has unknown status $st\$" \
        --lie bad-status --lie-value $st -- verify xvda
done
expect_failure 'responses with only' --lie overflow --lie-at 5 -- verify xvda

# Properties (4.2 F6): refused, with the node named.
expect_failure 'sector-size = 0 is not a power of two' --node sector-size=0 -- info xvda
expect_failure 'sector-size = 3 is not a power of two' --node sector-size=3 -- info xvda
expect_failure 'sector-size = 131072 is not a power of two in \[512, 65536\]' \
    --node sector-size=131072 -- info xvda
expect_failure 'sector-size = "-512" is not a decimal' --node sector-size=-512 -- info xvda
expect_failure 'not a multiple of its sector-size 4096' \
    --node sector-size=4096 --node sectors=12345 -- info xvda
expect_failure 'sectors = 9223372036854775807 is not a usable size' \
    --node sectors=9223372036854775807 -- info xvda
expect_failure 'sectors = "18446744073709551616" is not a decimal 64-bit number' \
    --node sectors=18446744073709551616 -- info xvda
expect_failure 'max-ring-page-order = "x" is not a decimal' \
    --node max-ring-page-order=x -- info xvda
expect_failure 'multi-queue-max-queues = "99999999999999999999" is not a decimal' \
    --node multi-queue-max-queues=99999999999999999999 -- info xvda
expect_failure 'feature-max-indirect-segments = "-1" is not a decimal' \
    --node feature-max-indirect-segments=-1 -- info xvda
expect_failure 'feature-persistent = "2" is not 0 or 1' --node feature-persistent=2 -- info xvda
expect_failure 'feature-flush-cache = "junk" is not 0 or 1' \
    --node feature-flush-cache=junk -- info xvda

# Limits beyond ours (4.2 F6): clamped to our maxima, then the data verifies.
# Unasked, the library stops at 64 ring pages whatever the backend offers;
# asked for 256, it gets its own ceiling (order 8), not the backend's 2^200.
expect_clamped '^ring pages: +64$' --max-order 8 --node max-ring-page-order=200 --
expect_clamped '^ring pages: +256$' --max-order 8 --node max-ring-page-order=200 \
    -- --ring-pages 256
expect_clamped '^queues: +1$' --node multi-queue-max-queues=0 --
expect_clamped '^queues: +16$' --max-queues 16 --node multi-queue-max-queues=1000000000 \
    -- --queues 16
expect_clamped '^indirect segments: +256$' --indirect 4294967295 --
expect_clamped '^indirect segments: +0$' --node feature-max-indirect-segments=0 --

# A backend that keeps our rings mapped after it closed (4.2 F3, XSA-396):
# the pages are quarantined, not reused; a notification storm with every
# batch of answers (F2, XSA-391) changes nothing.
# The library leaks what it keeps shared on purpose; LeakSanitizer (the
# sanitizer build) would call that a leak.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 run --lie keep-mapped -- info xvda
[ $rc -eq 0 ] || fail "$what: exited $rc: $(cat "$d/err")"
grep -q 'grant still in use by the peer.*never reused' "$d/err" || fail "$what: no quarantine: $(cat "$d/err")"
echo "$what: $(cat "$d/err")"
run --lie storm -- verify xvda --queues 2
[ $rc -eq 0 ] || fail "$what: exited $rc: $(cat "$d/err")"

# An honest backend still gets an honest frontend.
run --image "$d/disk.img" -- verify xvda
[ $rc -eq 0 ] || fail "honest verify failed: $(cat "$d/err")"
echo "$n runs against a lying backend, each ended as it should"
