#!/usr/bin/env bash
# Debian's xenstore-write with several path/value pairs (it writes them in
# one transaction, retried on EAGAIN) against the whole xbd-sim, as dom0
# and as a guest: every call must finish and write every pair.  Also the
# nodes a Xen host has for dom0 (/local/domain/0/name and domid).
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-write
requires command -v xenstore-read
requires command -v xenstore-chmod

d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1

# A hang is a failure: every tool call has a timeout.
xs() { timeout 10 "$@"; }

# pairs PREFIX N: the arguments for N pairs PREFIX/kI = vI.
pairs() {
    local i
    for i in $(seq 1 "$2"); do printf '%s\n' "$1/k$i" "v$i"; done
}

for n in 1 2 3 4 5 10 50; do
    mapfile -t args < <(pairs /pairs/dom0-$n/deep/er "$n")
    xs xenstore-write "${args[@]}" || fail "dom0: xenstore-write with $n pairs"
    [ "$(xs xenstore-read /pairs/dom0-$n/deep/er/k$n)" = "v$n" ] ||
        fail "dom0: pair $n of $n missing"
    mapfile -t args < <(pairs data/w$n "$n")
    run_as guest1 timeout 10 xenstore-write "${args[@]}" ||
        fail "guest: xenstore-write with $n pairs"
    [ "$(xs xenstore-read /local/domain/1/data/w$n/k$n)" = "v$n" ] ||
        fail "guest: pair $n of $n missing"
done

# The frontend's layout, with the queue-N/ parents created in the same
# transaction, in the device directory libxl makes (n1,r0).
fe=/local/domain/1/device/vbd/51712
xs xenstore-write $fe/state 1 $fe/backend-id 0
xs xenstore-chmod -r $fe n1 r0
run_as guest1 timeout 10 xenstore-write \
    $fe/multi-queue-num-queues 2 \
    $fe/queue-0/ring-ref 8 $fe/queue-0/event-channel 5 \
    $fe/queue-1/ring-ref 9 $fe/queue-1/event-channel 6 \
    $fe/state 3 || fail "guest: the two-queue layout"
[ "$(xs xenstore-read $fe/queue-1/event-channel)" = 6 ] ||
    fail "queue-1/event-channel not written"

# Domain 0 as a Xen host shows it (compare reference-trees: name, domid).
[ "$(xs xenstore-read /local/domain/0/name)" = Domain-0 ] ||
    fail "/local/domain/0/name is not Domain-0"
[ "$(xs xenstore-read /local/domain/0/domid)" = 0 ] ||
    fail "/local/domain/0/domid is not 0"
echo ok
