#!/usr/bin/env bash
# xbdctl block-attach / block-list / block-detach in xbd-sim: the node set
# libxl writes (checked by xbd-check-tree and by looking at a few nodes and
# permissions), refusal of a second disk at the same vdev, and libxl's
# detach handshake: with a backend that answers Closing with Closed the
# detach succeeds and removes the directories; with no backend it times out,
# says so, and removes them anyway.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 64M "$d/disk.img"

# Attach: default vdev xvda, default backendtype qdisk (backend/qdisk).
vdev=$(xbdctl block-attach guest1 "$d/disk.img")
[ "$vdev" = xvda ] || fail "first vdev is $vdev, not xvda"
be=/local/domain/0/backend/qdisk/1/51712
fe=/local/domain/1/device/vbd/51712
[ "$(xenstore-read $be/params)" = "aio:$d/disk.img" ] || fail "qdisk params"
[ "$(xenstore-read $be/mode)" = w ] || fail "mode"
[ "$(xenstore-read $be/state)" = 1 ] || fail "backend state"
[ "$(xenstore-read $fe/backend)" = "$be" ] || fail "frontend's backend path"
[ "$(xenstore-read $fe/virtual-device)" = 51712 ] || fail "virtual-device"
xenstore-ls -p /local/domain/1/device/vbd | grep -q '(n1,r0)' ||
    fail "frontend directory not owned by the guest, readable by dom0"
xbd-check-tree || fail "xbd-check-tree finds faults in a fresh attach"

# The guest can read its frontend directory but not the backend's private one.
run_as guest1 xenstore-read $fe/virtual-device >/dev/null || fail "guest cannot read its fe dir"
[ "$(run_as guest1 xenstore-read $be/params 2>/dev/null)" = "aio:$d/disk.img" ] &&
    : # readable by the guest, as on Xen: libxl gives the frontend r on <be>

# A second, read-only phy disk, and a refused duplicate.
vdev2=$(xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb mode=r backendtype=phy)
[ "$vdev2" = xvdb ] || fail "second vdev"
[ "$(xenstore-read /local/domain/0/backend/vbd/1/51728/mode)" = r ] || fail "ro mode"
if xbdctl block-attach guest1 "$d/disk.img" vdev=xvda 2>"$d/err"; then
    fail "second attach at xvda succeeded"
fi
grep -q 'already has a disk at xvda' "$d/err" || fail "unclear duplicate error: $(cat "$d/err")"
xbdctl block-list guest1 | grep -q '^51712 *xvda *Initialising' || fail "block-list"
xbd-check-tree || fail "xbd-check-tree after two attaches"

# Detach with a stand-in backend that answers Closing with Closed.
(
    for i in $(seq 200); do
        [ "$(xenstore-read $be/state 2>/dev/null)" = 5 ] && { xenstore-write $be/state 6; exit; }
        sleep 0.05
    done
) &
closer=$!
xbdctl block-detach guest1 xvda || fail "detach with a cooperating backend failed"
wait $closer
xenstore-read $be/state 2>/dev/null && fail "backend dir left behind"
xenstore-read $fe/state 2>/dev/null && fail "frontend dir left behind"

# Detach with nobody serving the device: times out, says so, cleans up.
if xbdctl block-detach guest1 xvdb --timeout 1 2>"$d/err"; then
    fail "detach without a backend reported success"
fi
grep -q 'did not reach Closed within 1 s' "$d/err" || fail "unclear timeout: $(cat "$d/err")"
xenstore-read /local/domain/1/device/vbd/51728/state 2>/dev/null && fail "xvdb left behind"

# Errors for misuse.
xbdctl block-attach nosuch "$d/disk.img" 2>"$d/err" && fail "attach to unknown domain"
grep -q 'no domain "nosuch"' "$d/err" || fail "unclear unknown-domain error"
xbdctl block-detach guest1 xvdq 2>"$d/err" && fail "detach of a missing disk"
grep -q 'has no disk xvdq' "$d/err" || fail "unclear missing-disk error"
xbdctl block-attach guest1 "$d/disk.img" bogus=1 2>/dev/null && fail "unknown key accepted"
exit 0
