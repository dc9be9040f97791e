#!/usr/bin/env bash
# check-rbd.sh — `make check-rbd`: xbd-backd serving a Ceph RBD image to a
# guest, against a throwaway one-node cluster (ceph-lane.sh).
#
# Installs the Ceph packages when missing (as root), brings the cluster up,
# creates a pool and an image, starts xbd-sim and xbd-backd (vbd and qdisk),
# attaches rbd:POOL/IMAGE to guest1 as a phy disk (params is written bare),
# then as the guest:
#   attach      the backend opens the image and reaches InitWait
#   verify      xbdfront verify over 2 queues: everything written reads back
#   flush       data written and flushed by the guest is in the cluster:
#               another client (rbd export) reads it; flushes were counted
#   discard     feature-discard with the object size as granularity; a
#               discarded object reads back as zeroes, its neighbour intact
#   resize      `rbd resize` while the guest is connected: sectors is
#               republished and xbdfront info shows the new size
#   stats       xbdctl stats: the requests were counted, no backing errors
#   reconnect   the frontend reconnects with other ring sizes and queues,
#               then detach + attach: verify's data is still there
#   snapshot    rbd:POOL/IMAGE@SNAP is read-only to the guest
#   missing     a missing image fails the attach with a readable
#               hotplug-error
#   blocklist   the cluster blocklists the daemon's client: requests fail
#               at once, the log says why, a re-attach serves the data again
#   timeout     the OSD stops answering: a read fails after the 3 s OSD
#               timeout set in params instead of hanging, and works again
#   qdisk       the same image as a qdisk disk (params=aio:rbd:...)
# one PASS/FAIL line each, then "N passed, N failed"; the cluster is torn
# down at exit whatever happened.
#
# Exit: 0 all passed, 1 something failed, 77 skipped (the reason is
# printed): xbd-backd built without librbd, the packages missing and not
# root or not installable.
source "$srcdir/functions.sh"
lane=$srcdir/ceph-lane/ceph-lane.sh
POOL=xbd IMAGE=guest1-disk SIZE_MB=128
summary_skip() { echo "$0: skipped: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }

[ "${XBD_RBD_BUILT:-no}" = yes ] ||
    summary_skip "xbd-backd was built without librbd (apt-get install librbd-dev, then configure again)"
requires xbdfront --help
requires command -v xenstore-read

# The packages: ceph-lane.sh install exits 77 with the reason when it cannot.
CEPH_LANE_MGR=0 "$lane" install
rc=$?
[ $rc = 0 ] || { [ $rc = 77 ] && summary_skip "Ceph packages cannot be installed (see above)"; exit 1; }

t_start=$SECONDS
d=$(test_tmpdir)
export CEPH_LANE_DIR=$d/ceph CEPH_LANE_MGR=0 CEPH_LANE_POOL=$POOL CEPH_LANE_IMAGE=$IMAGE \
       CEPH_LANE_SIZE=${SIZE_MB}M
export CEPH_CONF=$CEPH_LANE_DIR/ceph.conf
cleanup_fn "$lane" down
"$lane" up || fail "the cluster did not come up"
"$lane" pool || fail "cannot create the pool and image"
t_cluster=$SECONDS

start_sim "$d/sim" --domain guest1
# As start_backd does, but its log is printed only when a test failed.
requires xbd-backd --help
xbd-backd --debug --kind vbd --kind qdisk 2>"$d/backd.log" &
backd_pid=$!
cleanup_fn kill_wait $backd_pid
wait_for 10 test -S "$XBD_SIM_DIR/xbd-backd.sock" || fail "xbd-backd did not start"
be=/local/domain/0/backend/vbd/1/51712
# The cache in writeback from the first write and holding dirty data for a
# minute: only a real rbd_aio_flush puts the guest's data in the cluster
# within the flush test (librbd's default policies would write it through).
cache=rbd_cache_policy=writeback:rbd_cache_writethrough_until_flush=false
cache=$cache:rbd_cache_max_dirty_age=60
params="rbd:$POOL/$IMAGE:conf=$CEPH_CONF:id=admin:$cache"

passed=0 failed=0
# check NAME CMD...: run one test function, print its line.
check() {
    local name=$1; shift
    # Not in a condition: there set -e would be ignored inside.
    ( set -e; "$@" ) >"$d/$name.out" 2>&1
    if [ $? = 0 ]; then
        echo "PASS: $name"
        passed=$((passed + 1))
    else
        echo "FAIL: $name"
        sed 's/^/    /' "$d/$name.out"
        failed=$((failed + 1))
    fi
}
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
guest() { run_as guest1 xbdfront "$@" --timeout 30; }
# stat_of COUNTER: the guest's xvda's total.
stat_of() {
    xbdctl stats --json | python3 -c "import json, sys
print([d for d in json.load(sys.stdin)['devices'] if d['name'] == 'vbd/1/51712'][0]['totals']['$1'])"
}
MiB=1048576

t_attach() {
    xbdctl block-attach guest1 "$params" backendtype=phy
    wait_for 20 node_is $be/state 2 || { xenstore-ls -f $be; exit 1; }
    grep -q "rbd: opened $POOL/$IMAGE: $((SIZE_MB * MiB)) bytes" "$d/backd.log"
}

t_verify() {
    guest verify xvda --size 64M --queues 2 --seed 11
}

# A pattern the guest writes and flushes at 80 MiB must be what another
# client of the cluster reads there.
t_flush() {
    local before
    before=$(stat_of req_flush)
    head -c $((4 * MiB)) /dev/urandom >"$d/pattern"
    guest write xvda $((80 * MiB)) <"$d/pattern"      # writes, then flushes
    guest flush xvda
    [ "$(stat_of req_flush)" -ge $((before + 2)) ] || { echo "flushes not counted"; exit 1; }
    rbd export --no-progress "$POOL/$IMAGE" "$d/export"
    cmp <(tail -c +$((80 * MiB + 1)) "$d/export" | head -c $((4 * MiB))) "$d/pattern"
    rm -f "$d/export"
}

# Two objects of data at 96 MiB; discard the first: it reads as zeroes.
t_discard() {
    local obj
    obj=$(rbd info --format json "$POOL/$IMAGE" | python3 -c "import json,sys; print(json.load(sys.stdin)['object_size'])")
    guest info xvda | grep -q 'features:.*discard'
    head -c $((2 * obj)) /dev/urandom >"$d/two"
    guest write xvda $((96 * MiB)) <"$d/two"
    run_as guest1 xbdfront bench xvda --seconds 2 --rw randread >/dev/null &  # connected
    local bench=$!
    wait_for 10 node_is $be/state 4
    node_is $be/feature-discard 1
    node_is $be/discard-granularity "$obj"
    wait $bench
    guest discard xvda $((96 * MiB)) "$obj"
    cmp <(guest read xvda $((96 * MiB)) "$obj") <(head -c "$obj" /dev/zero)
    cmp <(guest read xvda $((96 * MiB + obj)) "$obj") <(tail -c "$obj" "$d/two")
    [ "$(stat_of req_discard)" -ge 1 ]
}

# Grow the image while the guest is connected.
t_resize() {
    local new=$((SIZE_MB * 2))
    run_as guest1 xbdfront bench xvda --seconds 4 --rw randread >"$d/bench.out" &
    local bench=$!
    wait_for 10 node_is $be/state 4
    rbd resize --no-progress --size ${new}M "$POOL/$IMAGE"
    wait_for 10 node_is $be/sectors $((new * 2048))
    grep -q "resized: $((SIZE_MB * 2048)) -> $((new * 2048)) sectors" "$d/backd.log"
    node_is $be/state 4
    wait $bench
    guest info xvda | grep -Eq "^size: +$((new * MiB)) bytes"
}

t_reconnect() {
    guest verify xvda --size 64M --seed 11 --phase check --queues 4 --ring-pages 1
    guest verify xvda --size 64M --seed 11 --phase check --queues 1 --indirect 0 --no-persistent
    xbdctl block-detach guest1 xvda
    xbdctl block-attach guest1 "$params" backendtype=phy
    wait_for 20 node_is $be/state 2
    guest verify xvda --size 64M --seed 11 --phase check --queues 2
}

t_snapshot() {
    local v=/local/domain/0/backend/vbd/1/51728
    rbd snap create "$POOL/$IMAGE@golden"
    xbdctl block-attach guest1 "rbd:$POOL/$IMAGE@golden:conf=$CEPH_CONF" backendtype=phy vdev=xvdb
    wait_for 20 node_is $v/state 2
    guest info xvdb | grep -q readonly
    guest verify xvdb --size 64M --seed 11 --phase check
    if echo x | guest write xvdb 0; then echo "a snapshot took a write"; exit 1; fi
    xbdctl block-detach guest1 xvdb
}

t_missing() {
    local v=/local/domain/0/backend/vbd/1/51744
    xbdctl block-attach guest1 "rbd:$POOL/no-such-image:conf=$CEPH_CONF" backendtype=phy vdev=xvdc
    wait_for 20 node_is $v/hotplug-status error
    xenstore-read $v/hotplug-error | tee /dev/stderr | grep -q "no such image"
    kill -0 $backd_pid
    xbdctl block-detach guest1 xvdc || :
}

# Before reconnect re-attaches (a new device starts its counters at 0).
t_stats() {
    xbdctl stats
    [ "$(stat_of req_write)" -gt 0 ]
    [ "$(stat_of req_read)" -gt 0 ]
    [ "$(stat_of req_flush)" -gt 0 ]
    [ "$(stat_of req_discard)" -gt 0 ]
    [ "$(stat_of err_io)" = 0 ]
}

# The cluster blocklists the daemon's client (as when another client breaks
# the image's lock): requests fail at once instead of hanging, the log says
# why, and a detach + attach (a new client) serves the same data again.
t_blocklist() {
    local addr
    addr=$(rbd status --format json "$POOL/$IMAGE" |
           python3 -c "import json, sys; print(json.load(sys.stdin)['watchers'][0]['address'])")
    ceph osd blocklist add "$addr"
    if echo x | guest write xvda 0; then echo "a blocklisted client's write succeeded"; exit 1; fi
    grep -q "rbd: $POOL/$IMAGE: this client was blocklisted" "$d/backd.log"
    kill -0 $backd_pid
    xbdctl block-detach guest1 xvda
    xbdctl block-attach guest1 "$params" backendtype=phy
    wait_for 20 node_is $be/state 2
    guest verify xvda --size 64M --seed 11 --phase check
}

# The OSD stops answering (SIGSTOP) under a read-only disk whose params
# set a 3 s OSD timeout: a read fails within the timeout instead of
# hanging, and works again once the OSD is back.
t_timeout() {
    local v=/local/domain/0/backend/vbd/1/51760 osd rc=0
    osd=$(cat "$CEPH_LANE_DIR/pids/osd.0")
    xbdctl block-attach guest1 "rbd:$POOL/$IMAGE:conf=$CEPH_CONF:rados_osd_op_timeout=3" \
        backendtype=phy vdev=xvdd mode=r
    wait_for 20 node_is $v/state 2
    kill -STOP "$osd"
    run_as guest1 xbdfront read xvdd $((8 * MiB)) 4096 --timeout 30 >/dev/null || rc=$?
    kill -CONT "$osd"
    [ $rc != 0 ] || { echo "a read succeeded with the OSD stopped"; exit 1; }
    grep -q "rbd: $POOL/$IMAGE: the cluster did not answer within rados_osd_op_timeout" \
        "$d/backd.log"
    guest read xvdd $((8 * MiB)) 4096 >/dev/null
    xbdctl block-detach guest1 xvdd
}

# The qdisk route: libxl writes params=aio:rbd:..., as QEMU takes it.
t_qdisk() {
    local v=/local/domain/0/backend/qdisk/1/51776
    xbdctl block-attach guest1 "rbd:$POOL/$IMAGE:conf=$CEPH_CONF" vdev=xvde mode=r
    node_is $v/params "aio:rbd:$POOL/$IMAGE:conf=$CEPH_CONF"
    wait_for 20 node_is $v/state 2
    guest verify xvde --size 64M --seed 11 --phase check
    xbdctl block-detach guest1 xvde
}

check attach t_attach
check verify t_verify
check flush t_flush
check discard t_discard
check resize t_resize
check stats t_stats
check reconnect t_reconnect
check snapshot t_snapshot
check missing t_missing
check blocklist t_blocklist
check timeout t_timeout
check qdisk t_qdisk

echo "check-rbd: cluster up in $((t_cluster - t_start)) s, tests in $((SECONDS - t_cluster)) s"
if [ "$failed" != 0 ]; then
    echo "--- xbd-backd log"
    cat "$d/backd.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
