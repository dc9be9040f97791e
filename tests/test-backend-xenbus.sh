#!/usr/bin/env bash
# xbd-backd's control path against xbd-sim, with no real frontend: a device
# reaches InitWait with the advertised limits; a missing image gives
# hotplug-status=error and hotplug-error; a scripted frontend (the guest's
# own xenstore-write) with junk, overflowing or contradictory values gets an
# `error` node and Closing while the daemon and the other devices carry on;
# detach reaches Closed within libxl's 10 s; SIGTERM exits 0 with every
# device Closed.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 16M "$d/disk.img"
# A name that JSON must escape, to see it come back whole in xbdctl status.
odd="$d/odd \"name\"\\.img"
truncate -s 1M "$odd"

start_backd "$d/backd.log"
backd=$backd_pid

be=/local/domain/0/backend/qdisk/1
fe=/local/domain/1/device/vbd
alive() { kill -0 $backd 2>/dev/null || fail "xbd-backd died"; }
state_is() { [ "$(xenstore-read "$1/state" 2>/dev/null)" = "$2" ]; }

# A good disk: InitWait with both ring-size schemes and every limit.
xbdctl block-attach guest1 "$d/disk.img" vdev=xvda >/dev/null
wait_for 10 state_is $be/51712 2 || fail "xvda did not reach InitWait"
[ "$(xenstore-read $be/51712/max-ring-page-order)" = 6 ] || fail "max-ring-page-order"
[ "$(xenstore-read $be/51712/max-ring-pages)" = 64 ] || fail "max-ring-pages"
[ "$(xenstore-read $be/51712/multi-queue-max-queues)" = 4 ] || fail "multi-queue-max-queues"
[ "$(xenstore-read $be/51712/feature-max-indirect-segments)" = 256 ] ||
    fail "feature-max-indirect-segments"
[ "$(xenstore-read $be/51712/feature-persistent)" = 1 ] || fail "feature-persistent"
xbd-check-tree || fail "xbd-check-tree on a device in InitWait"

# A missing image: the reason, for the toolstack, and no crash.
xbdctl block-attach guest1 "$d/nonexistent.img" vdev=xvdb >/dev/null
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
wait_for 10 node_is $be/51728/hotplug-status error ||
    fail "no hotplug-status=error for a missing image"
xenstore-read $be/51728/hotplug-error | grep -q "nonexistent.img: No such file" ||
    fail "hotplug-error does not say what: $(xenstore-read $be/51728/hotplug-error)"
state_is $be/51728 5 || fail "a device that cannot open is not Closing"
alive

# A hostile frontend: each bad value on its own device, written by the
# guest itself; then Initialised.
hostile() {
    local vdev=$1 devid=$2 want=$3; shift 3
    xbdctl block-attach guest1 "$d/disk.img" vdev=$vdev >/dev/null
    wait_for 10 state_is $be/$devid 2 || fail "$vdev did not reach InitWait"
    run_as guest1 xenstore-write "$@"
    run_as guest1 xenstore-write $fe/$devid/state 3
    wait_for 10 state_is $be/$devid 5 || fail "$vdev: bad values ($*) not refused"
    xenstore-read $be/$devid/error | grep -q -- "$want" ||
        fail "$vdev: error node says \"$(xenstore-read $be/$devid/error)\", not \"$want\""
    alive
}
hostile xvdc 51744 'ring-ref is "12junk"' \
    $fe/51744/ring-ref 12junk $fe/51744/event-channel 3
hostile xvdd 51760 "out of range" \
    $fe/51760/ring-page-order 99999999999 $fe/51760/ring-ref0 1 $fe/51760/event-channel 3
hostile xvde 51776 "contradict" \
    $fe/51776/ring-page-order 2 $fe/51776/num-ring-pages 2 \
    $fe/51776/ring-ref0 1 $fe/51776/ring-ref1 2 $fe/51776/event-channel 3
hostile xvdf 51792 "above the max-ring-page-order 6" \
    $fe/51792/ring-page-order 7 $fe/51792/event-channel 3
hostile xvdg 51808 'multi-queue-num-queues is "0"' \
    $fe/51808/multi-queue-num-queues 0 $fe/51808/ring-ref 1 $fe/51808/event-channel 3
hostile xvdh 51824 'protocol is "sparc-abi"' \
    $fe/51824/protocol sparc-abi $fe/51824/ring-ref 1 $fe/51824/event-channel 3
hostile xvdi 51840 "queue-1/ring-ref is missing" \
    $fe/51840/multi-queue-num-queues 2 $fe/51840/queue-0/ring-ref 1 \
    $fe/51840/queue-0/event-channel 3
# The frontend then flaps its state through values that are not states.
for s in 9 255 7 x 3; do run_as guest1 xenstore-write $fe/51840/state $s; done
alive
# What we wrote on failure (error, hotplug-*, Closing) is schema-clean; the
# checker only objects to what the guest wrote.
xbd-check-tree >"$d/check" 2>&1 || :
grep '/backend/' "$d/check" && fail "xbd-check-tree objects to backend nodes"
grep -q '/device/vbd/51744/ring-ref' "$d/check" || fail "the checker missed the guest's junk"
# The good device did not notice any of it.
state_is $be/51712 2 || fail "xvda left InitWait while other devices failed"
xbdctl block-attach guest1 "$odd" vdev=xvdj >/dev/null
wait_for 10 state_is $be/51856 2 || fail "the odd name did not reach InitWait"
xbdctl status >"$d/status"
cat "$d/status"
grep -qF "aio:$odd" "$d/status" || fail "status mangles the backing's name"
grep -q '^qdisk/1/51712 *InitWait' "$d/status" || fail "status lacks xvda in InitWait"
grep -q '^qdisk/1/51744: error: bad frontend node: ring-ref' "$d/status" ||
    fail "status does not show xvdc's error"

# Detach: Closed within libxl's 10 s, for the healthy and the failed.
for v in xvda xvdb xvdc xvdd xvde xvdf xvdg xvdh xvdi xvdj; do
    xbdctl block-detach guest1 $v || fail "detach of $v did not reach Closed in 10 s"
done
alive
xenstore-read $be/51744/state 2>/dev/null && fail "xvdc's directory left after detach"

# SIGTERM with a device in InitWait: exit 0, the device Closed.
xbdctl block-attach guest1 "$d/disk.img" vdev=xvda >/dev/null
wait_for 10 state_is $be/51712 2 || fail "xvda did not reach InitWait again"
kill -TERM $backd
rc=0
wait $backd || rc=$?
[ $rc = 0 ] || fail "xbd-backd exited $rc on SIGTERM"
state_is $be/51712 6 || fail "SIGTERM left xvda in state $(xenstore-read $be/51712/state)"
grep -q 'closed 1 device' "$d/backd.log" || fail "no shutdown summary in the log"
test -e "$d/sim/xbd-backd.sock" && fail "control socket left behind"
if xbdctl status 2>"$d/err"; then fail "xbdctl status without a daemon"; fi
grep -q "xbd-backd is not running (no socket at $d/sim/xbd-backd.sock)" "$d/err" ||
    fail "unclear error without a daemon: $(cat "$d/err")"
exit 0
