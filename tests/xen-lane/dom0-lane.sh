# tests/xen-lane/dom0-lane.sh -- the scenarios, run in dom0 by bash (with
# busybox's applets), sourced once xenstored and xenconsoled run.
#
# Output conventions on the serial console (lane.sh reads them):
#   @@RESULT <scenario> PASS|FAIL|SKIP <why>   the verdict, one per scenario
#   @@BEGIN <name> ... @@END <name>            a section kept as logs/<name>.txt
#   @@MARK ...                                 progress
# Our programs are under /usr/local (or wherever the build's prefix put them).

up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "@@MARK $* uptime=$(up)"; }
dump() { n=$1; shift; echo "@@BEGIN $n"; "$@" 2>&1; r=$?; echo "@@END $n"; return $r; }
result() { echo "@@RESULT $*"; }

VDEV=51712            # xvda
. /lane/env           # knobs lane.sh passes on
DISK_MB=32

# ---------------------------------------------------------------- helpers
# mkdisk PATH [MB]: MB (default DISK_MB) of random data; DISK_MD5 is its
# checksum.
mkdisk() {
    dd if=/dev/urandom of="$1" bs=1M count=${2:-$DISK_MB} 2>/dev/null
    DISK_MD5=$(md5sum "$1" | cut -d' ' -f1)
}

# domu_create NAME DISKSPEC DOMU-CMDLINE [XL-CFG-LINES]: xl create a PV domU
# with 2 vCPUs running domu-init.sh; sets CREATE_RC and DOMID.
domu_create() {
    name=$1 cfg=/tmp/$1.cfg
    cat > "$cfg" <<EOF
name = "$1"
type = "pv"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/domu.cpio.gz"
extra = "console=hvc0 loglevel=4 $3"
memory = 256
vcpus = 2
disk = [ '$2' ]
on_poweroff = "destroy"
on_crash = "destroy"
${4:-}
EOF
    dump "$1-xl-cfg" cat "$cfg"
    mark "$1" create
    timeout 120 xl -vvv create "$cfg" > "/tmp/$1.xl.log" 2>&1
    CREATE_RC=$?
    DOMID=$(xl domid "$1" 2>/dev/null)
    mark "$1" create-returned rc=$CREATE_RC domid=$DOMID
    [ $CREATE_RC = 0 ] || dump "$1-xl-create" tail -c 20000 "/tmp/$1.xl.log"
    [ -n "$DOMID" ] && console_follow "$1"
    return $CREATE_RC
}

# console_follow NAME: copy the domU's console to ours as it comes, each line
# as "@@DOMU NAME line" (lane.sh makes logs/NAME-console.txt of them), so
# that a run that hangs or times out still shows what the domU did.
# domu_destroy NAME stops it and destroys the domain.
console_follow() {
    rm -f /tmp/$1.fifo; mkfifo /tmp/$1.fifo
    # (a bash loop: busybox awk crashed doing this)
    while IFS= read -r line; do
        printf '@@DOMU %s %s\n' "$1" "${line%$'\r'}"
    done < /tmp/$1.fifo &
    tail -f "/var/log/xen/console/guest-$1.log" > /tmp/$1.fifo &
    FOLLOW_PID=$!
}
domu_destroy() {
    xl destroy "$1"
    [ -n "${FOLLOW_PID:-}" ] && kill $FOLLOW_PID
    FOLLOW_PID=
}

# domu_wait NAME [SECONDS]: wait for the domU's DOMU-RESULT line; sets
# DOMU_RES (the line without its prefix) and returns 0 if it is a PASS.
domu_wait() {
    i=0
    until clog "$1" | grep -aq 'DOMU-RESULT'; do
        i=$((i+1)); [ $i -gt "${2:-240}" ] && break; sleep 1
    done
    DOMU_RES=$(clog "$1" | grep -a 'DOMU-RESULT' | head -1 | sed 's/.*DOMU-RESULT //')
    DOMU_RES=${DOMU_RES:-"TIMEOUT (no DOMU-RESULT)"}
    mark "$1" domu-result "$DOMU_RES"
    case $DOMU_RES in PASS*) return 0;; *) return 1;; esac
}

# domu_hold NAME DOMID: wait until the domU says it is about to hold its
# device connected (DOMU-HOLD) or gave up (DOMU-RESULT), then until its
# frontend is Connected.  domu_release DOMID lets it go on.
domu_hold() {
    i=0
    until clog "$1" | grep -Eaq 'DOMU-(HOLD|RESULT)'; do
        i=$((i+1)); [ $i -gt 240 ] && break; sleep 1
    done
    DOMU_RES=$(clog "$1" | grep -a 'DOMU-RESULT' | head -1 | sed 's/.*DOMU-RESULT //')
    clog "$1" | grep -aq 'DOMU-HOLD' || { mark "$1" hold "${DOMU_RES:-timeout}"; return 1; }
    i=0
    until [ "$(xenstore-read /local/domain/$2/device/vbd/$VDEV/state 2>/dev/null)" = 4 ]; do
        i=$((i+1)); [ $i -gt 120 ] && break; sleep 0.5
    done
    mark "$1" hold ok
}
domu_release() { domu_tell $1 release; }

# domu_tell DOMID NODE: write lane/NODE = 1 in the domU's home, readable by it.
domu_tell() {
    xenstore-write /local/domain/$1/lane/$2 1
    xenstore-chmod /local/domain/$1/lane/$2 n$1
}

# clog NAME: the domU's console as xenconsoled logged it, without the CRs.
clog() { tr -d '\r' < "/var/log/xen/console/guest-$1.log" 2>/dev/null; }

# check_geometry NAME DOMID PAGES QUEUES: the frontend and backend agreed on
# PAGES ring pages per queue and QUEUES queues, both sides are Connected.
# Sets WHY on failure.
check_geometry() {
    fe=/local/domain/$2/device/vbd/$VDEV
    be=$(xenstore-read $fe/backend 2>/dev/null)
    WHY=
    [ "$(xenstore-read $fe/state 2>/dev/null)" = 4 ] || WHY="$WHY frontend-not-connected"
    [ "$(xenstore-read $be/state 2>/dev/null)" = 4 ] || WHY="$WHY backend-not-connected"
    nq=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null)
    [ "$nq" = "$4" ] || WHY="$WHY multi-queue-num-queues=$nq(want $4)"
    order=0 p=$3; while [ $p -gt 1 ]; do p=$((p/2)); order=$((order+1)); done
    o=$(xenstore-read $fe/ring-page-order 2>/dev/null)
    [ "$o" = "$order" ] || WHY="$WHY ring-page-order=$o(want $order)"
    q=0
    while [ $q -lt "$4" ]; do
        xenstore-exists $fe/queue-$q/ring-ref$(($3 - 1)) ||
            WHY="$WHY no-queue-$q/ring-ref$(($3 - 1))"
        xenstore-exists $fe/queue-$q/ring-ref$3 && WHY="$WHY extra-queue-$q/ring-ref$3"
        xenstore-exists $fe/queue-$q/event-channel || WHY="$WHY no-queue-$q/event-channel"
        q=$((q+1))
    done
    mark "$1" geometry "${WHY:-ok}"
    [ -z "$WHY" ]
}

# check_tree NAME DOMID: OUR xbd-check-tree against the live xenstored tree
# must be clean (the tree with permissions is kept as a section).  Then a
# control: an unknown node planted in the device's backend directory must
# be reported, which proves the checker saw this device at all.  Sets WHY.
check_tree() {
    dump "$1-xenstore" xenstore-ls -fp
    xbd-check-tree > /tmp/$1.ct 2>&1; rc=$?
    dump "$1-check-tree" sh -c "cat /tmp/$1.ct; echo 'xbd-check-tree: exit $rc'"
    WHY=
    [ $rc = 0 ] || WHY="findings(exit $rc)"
    be=$(xenstore-read /local/domain/$2/device/vbd/$VDEV/backend)
    xenstore-write $be/xbd-lane-control 1
    xbd-check-tree > /tmp/$1.ct 2>&1; rc=$?
    xenstore-rm $be/xbd-lane-control
    grep -q "$be/xbd-lane-control: unknown" /tmp/$1.ct && [ $rc = 1 ] ||
        { WHY="$WHY control-not-reported(exit $rc)"; dump "$1-check-tree-control" cat /tmp/$1.ct; }
    mark "$1" check-tree "${WHY:-clean}"
    [ -z "$WHY" ]
}

# check_pattern NAME IMAGE [AT-MB MB]: the MB MiB (default 4) the domU wrote
# at AT-MB MiB (default 24; its md5 is on the domU's console) are in the
# image.  Sets WHY on failure.
check_pattern() {
    want=$(clog "$1" | grep -a 'DOMU-PATTERN' | head -1 | awk '{print $2}')
    got=$(dd if="$2" bs=1M skip=${3:-24} count=${4:-4} 2>/dev/null | md5sum | cut -d' ' -f1)
    WHY=
    [ -n "$want" ] && [ "$got" = "$want" ] || WHY="pattern($got!=$want)"
    [ -z "$WHY" ]
}

# check_image NAME IMAGE: after a lane=blk domU, dom0 checks the image: the
# pattern, the ext2 filesystem (e2fsck) and the files' contents.  Sets WHY.
check_image() {
    check_pattern "$1" "$2"
    dump "$1-e2fsck" e2fsck -fn "$2" || WHY="$WHY e2fsck"
    if mount -t ext4 -o ro,loop "$2" /mnt; then
        clog "$1" | grep -a 'DOMU-FILE' | awk '{print $3 "  " $2}' > /tmp/$1.md5
        [ -s /tmp/$1.md5 ] || WHY="$WHY no-files-listed"
        (cd /mnt && dump "$1-files" md5sum -c /tmp/$1.md5) || WHY="$WHY files"
        umount /mnt
    else
        WHY="$WHY mount"
    fi
    mark "$1" image "${WHY:-ok}"
    [ -z "$WHY" ]
}

# verdict NAME WHAT: PASS if no step added to FAILS; on a failure dom0's
# kernel log is kept as a section.
verdict() {
    if [ -z "$FAILS" ]; then
        result "$1" PASS "$2"
    else
        dump "$1-dmesg" dmesg
        result "$1" FAIL "$FAILS"
    fi
}

# ============================================================== scenarios

# blk_scenario NAME KIND DISKSPEC REATTACH [XL-CFG-LINES]: a Linux domU
# (blkfront with max_ring_page_order=4 max_queues=2) does lane=blk's I/O on
# the disk (@IMG@ in DISKSPEC is its image); while it is connected the tree
# must show 16 ring pages x 2 queues and pass xbd-check-tree; with REATTACH
# = yes, xl block-detach and block-attach on the running domU; after the
# domU is destroyed dom0 checks the image.
blk_scenario() {
    s=$1 kind=$2 FAILS=
    mkdisk /tmp/$s.img
    spec=$(echo "$3" | sed "s|@IMG@|/tmp/$s.img|")
    if domu_create $s "$spec" "lane=blk md5=$DISK_MD5 ring_order=4 queues=2" "${5:-}"; then
        domu_wait $s || FAILS="$FAILS domU:$DOMU_RES"
        check_geometry $s $DOMID 16 2 || FAILS="$FAILS geometry:$WHY"
        check_tree $s $DOMID || FAILS="$FAILS xbd-check-tree:$WHY"
        if [ "$4" = yes ]; then
            reattach $s $DOMID $kind "$spec" || FAILS="$FAILS reattach:$WHY"
        fi
    else
        FAILS="xl-create-rc=$CREATE_RC"
    fi
    domu_destroy $s
    check_image $s /tmp/$s.img || FAILS="$FAILS image:$WHY"
    rm -f /tmp/$s.img
}

# 1. Linux's blkback serves Linux's blkfront with 16-page rings and 2 queues;
#    OUR xbd-check-tree must find the live tree real Xen made clean.  A
#    plain file and backendtype=phy: libxl runs /etc/xen/scripts/block
#    (losetup), the kernel's blkback serves the loop device.
scn_kernel_blkback_tree() {
    blk_scenario kernel-blkback-tree vbd \
        'format=raw, vdev=xvda, access=rw, backendtype=phy, target=@IMG@' no
    verdict $s "16 ring pages x 2 queues, domU I/O ok, xbd-check-tree clean, image ok"
}

# xbdfront_domu NAME DISKSPEC DOMU-CMDLINE PAGES CHECK: a domU whose xbdfront
# write holds its disk connected (lane=xbdfront...); meanwhile the live
# tree must show PAGES ring pages x 2 queues and pass `CHECK NAME DOMID`;
# then the domU is let go on, its verdict read, and it is destroyed.  Adds
# to FAILS.
xbdfront_domu() {
    if domu_create $1 "$2" "$3"; then
        if domu_hold $1 $DOMID; then
            check_geometry $1 $DOMID $4 2 || FAILS="$FAILS geometry:$WHY"
            $5 $1 $DOMID || FAILS="$FAILS $5:$WHY"
            domu_release $DOMID
            domu_wait $1 || FAILS="$FAILS domU:$DOMU_RES"
        else
            FAILS="$FAILS hold:$DOMU_RES"
            dump $1-xenstore xenstore-ls -fp
        fi
    else
        FAILS="xl-create-rc=$CREATE_RC"
    fi
    domu_destroy $1
}

# 2. OUR libxbdfront (the xbdfront tool) in the domU's user space, against
#    Linux's blkback in dom0: 16-page rings and 2 queues negotiated, the
#    data checked in dom0.
scn_xbdfront_kernel_blkback() {
    s=xbdfront-kernel-blkback FAILS=
    command -v xbdfront >/dev/null || { result $s SKIP "xbdfront is not in this tree"; return; }
    mkdisk /tmp/$s.img
    xbdfront_domu $s "format=raw, vdev=xvda, access=rw, backendtype=phy, target=/tmp/$s.img" \
        "lane=xbdfront md5=$DISK_MD5 queues=2 ${XBDFRONT_DOMU_ARGS:-}" 16 check_tree
    check_pattern $s /tmp/$s.img || FAILS="$FAILS image:$WHY"
    want=$(clog $s | grep -a 'DOMU-REGION0' | head -1 | awk '{print $2}')
    got=$(dd if=/tmp/$s.img bs=1M count=16 2>/dev/null | md5sum | cut -d' ' -f1)
    [ -n "$want" ] && [ "$got" = "$want" ] || FAILS="$FAILS verify-region($got!=$want)"
    rm -f /tmp/$s.img
    verdict $s "xbdfront: 16 ring pages x 2 queues with Linux blkback, read/write/verify, image ok"
}

# backd_start: OUR xbd-backd as a standing daemon serving vbd and qdisk,
# with the kernel's blkback unloaded (it would serve backend/vbd itself).
# Its log goes to our console as it comes, as "@@BACKD line" (lane.sh
# makes logs/backd.log of them), so that it survives a hang.
backd_start() {
    [ -n "${BACKD_PID:-}" ] && return 0
    rmmod xen_blkback 2>/dev/null
    [ -d /sys/module/xen_blkback ] && { WHY="cannot unload xen_blkback"; return 1; }
    rm -f /tmp/backd.fifo; mkfifo /tmp/backd.fifo
    while IFS= read -r line; do printf '@@BACKD %s\n' "$line"; done < /tmp/backd.fifo &
    xbd-backd --platform xen --kind vbd,qdisk > /tmp/backd.fifo 2>&1 &
    BACKD_PID=$!
    mark xbd-backd started pid=$BACKD_PID
}
backd_stop() {
    [ -n "${BACKD_PID:-}" ] || return 0
    kill $BACKD_PID; wait $BACKD_PID
    mark xbd-backd stopped rc=$?
    BACKD_PID=
}

# reattach NAME DOMID KIND SPEC: xl block-detach must succeed (libxl gives
# the backend 10 s to reach Closed and fails the detach otherwise) and
# remove both directories; xl block-attach must connect the disk again,
# and the domU must read its pattern back from it.  Sets WHY.
reattach() {
    WHY=
    fe=/local/domain/$2/device/vbd/$VDEV
    be=/local/domain/0/backend/$3/$2/$VDEV
    t0=$(cut -d. -f1 /proc/uptime)
    timeout 60 xl block-detach $1 xvda > /tmp/$1.detach 2>&1; rc=$?
    mark $1 block-detach rc=$rc seconds=$(($(cut -d. -f1 /proc/uptime) - t0))
    [ $rc = 0 ] || { WHY="block-detach-rc=$rc"; dump $1-block-detach cat /tmp/$1.detach; }
    xenstore-exists $be && WHY="$WHY backend-dir-left"
    xenstore-exists $fe && WHY="$WHY frontend-dir-left"
    timeout 60 xl block-attach $1 "$4" > /tmp/$1.attach 2>&1; rc=$?
    mark $1 block-attach rc=$rc
    [ $rc = 0 ] || { WHY="$WHY block-attach-rc=$rc"; dump $1-block-attach cat /tmp/$1.attach; }
    i=0
    until [ "$(xenstore-read $fe/state 2>/dev/null)" = 4 ] && [ "$(xenstore-read $be/state 2>/dev/null)" = 4 ]; do
        i=$((i+1)); [ $i -gt 120 ] && { WHY="$WHY not-connected-after-attach"; break; }; sleep 0.5
    done
    domu_tell $2 reattach
    i=0
    until clog $1 | grep -aq 'DOMU-REREAD'; do
        i=$((i+1)); [ $i -gt 120 ] && break; sleep 1
    done
    want=$(clog $1 | grep -a 'DOMU-PATTERN' | head -1 | awk '{print $2}')
    got=$(clog $1 | grep -a 'DOMU-REREAD' | head -1 | awk '{print $2}')
    [ -n "$got" ] && [ "$got" = "$want" ] || WHY="$WHY reread($got!=$want)"
    mark $1 reattach "${WHY:-ok}"
    [ -z "$WHY" ]
}

# 3a. OUR xbd-backd as a standing daemon for backendtype=phy with
#     script=block-xbd: docs/xen-host.md section 2.1, its disk line.
scn_backd_phy() {
    backd_scenario backd-phy vbd \
        'format=raw, vdev=xvda, access=rw, backendtype=phy, script=block-xbd, target=@IMG@'
}

# backd_scenario NAME KIND DISKSPEC [XL-CFG-LINES]: blk_scenario with
# reattach, served by the standing xbd-backd.
backd_scenario() {
    command -v xbd-backd >/dev/null || { result $1 SKIP "xbd-backd is not in this tree"; return; }
    backd_start || { result $1 FAIL "$WHY"; return; }
    blk_scenario "$1" "$2" "$3" yes "${4:-}"
    verdict $s "xbd-backd ($2): 16 ring pages x 2 queues, domU I/O ok, xbd-check-tree clean, detach+attach, image ok"
}

# 3b. backendtype=qdisk, libxl spawning OUR xbd-null-dm as the device model
#     (it answers the QMP handshake), the standing xbd-backd serving
#     backend/qdisk: docs/xen-host.md section 2.2, its lines.
scn_backd_qdisk() {
    if [ ! -x /usr/libexec/xbdkit/xbd-null-dm ]; then
        result backd-qdisk SKIP "xbd-null-dm is not in this tree"; return
    fi
    backd_scenario backd-qdisk qdisk \
        'format=raw, vdev=xvda, access=rw, backendtype=qdisk, target=@IMG@' \
        'device_model_override = "/usr/libexec/xbdkit/xbd-null-dm"'
}

# ---------------------------------------- 4. libxbdfront <-> xbd-backd
# What Linux's blkfront never asks for, between OUR two halves on real Xen:
# 64-page rings (Linux stops at 16), 2 queues, indirect descriptors (256
# segments: 1 MiB requests) and persistent grants.  8 MiB disks: verify's
# seeded pattern over [0, 4 MiB), a random 1 MiB at 4 MiB written while the
# device is held connected and the live tree is checked.
XF4="--ring-pages 64 --queues 2 --indirect 256 --timeout 60"
GNTALLOC_LIMIT=16384     # two 64-page rings and their pools need more than 1024

# check_features NAME DOMID: persistent grants negotiated on both sides, the
# backend offers 256 indirect segments.  Sets WHY.
check_features() {
    fe=/local/domain/$2/device/vbd/$VDEV
    be=$(xenstore-read $fe/backend 2>/dev/null)
    WHY=
    [ "$(xenstore-read $fe/feature-persistent 2>/dev/null)" = 1 ] || WHY="$WHY frontend-feature-persistent"
    [ "$(xenstore-read $be/feature-persistent 2>/dev/null)" = 1 ] || WHY="$WHY backend-feature-persistent"
    n=$(xenstore-read $be/feature-max-indirect-segments 2>/dev/null)
    [ "$n" = 256 ] || WHY="$WHY feature-max-indirect-segments=$n"
    mark "$1" features "${WHY:-ok}"
    [ -z "$WHY" ]
}

# check_info FILE PAGES QUEUES INDIRECT: xbdfront info's report shows them
# negotiated, and persistent grants; prints what is wrong (nothing if ok).
check_info() {
    grep -q "^ring pages: *$2\$" "$1" || printf ' ring-pages'
    grep -q "^queues: *$3\$" "$1" || printf ' queues'
    grep -q "^indirect segments: *$4\$" "$1" || printf ' indirect'
    grep -q '^persistent grants: *yes$' "$1" || printf ' persistent'
}

# check_verified NAME IMAGE SEED: the image's first 4 MiB are the pattern
# `xbdfront verify --seed SEED --size 4M` writes, as dom0 computes it.
check_verified() {
    want=$(xbdfront pattern --size 4M --seed $3 | md5sum | cut -d' ' -f1)
    got=$(dd if="$2" bs=1M count=4 2>/dev/null | md5sum | cut -d' ' -f1)
    WHY=
    [ "$got" = "$want" ] || WHY="verify-region($got!=$want)"
    mark "$1" verified-region "${WHY:-ok}"
    [ -z "$WHY" ]
}

backd_front_skip() {
    command -v xbdfront >/dev/null && command -v xbd-backd >/dev/null && return 1
    result $1 SKIP "xbdfront or xbd-backd is not in this tree"
}

# 4a. domU <-> dom0: OUR xbdfront in a domU that never loads xen-blkfront
#     (as in scenario 2), OUR standing xbd-backd in dom0 serving the disk
#     (backendtype=phy, script=block-xbd, as in 3a).  A fresh domU: the only
#     one without a kernel blkfront is scenario 2's, whose disk belongs to
#     the kernel's blkback, which xbd-backd needs unloaded.
scn_xbdfront_backd_domu() {
    s=xbdfront-backd-domu FAILS=
    backd_front_skip $s && return
    backd_start || { result $s FAIL "$WHY"; return; }
    mkdisk /tmp/$s.img 8
    xbdfront_domu $s "format=raw, vdev=xvda, access=rw, backendtype=phy, script=block-xbd, target=/tmp/$s.img" \
        lane=xbdfront-backd 64 check_features
    # what the domU's xbdfront info reported (on its console)
    clog $s | grep -a '^DOMU-INFO ' | sed 's/^DOMU-INFO //' > /tmp/$s.info
    why=$(check_info /tmp/$s.info 64 2 256)
    [ -z "$why" ] || FAILS="$FAILS info:$why"
    check_pattern $s /tmp/$s.img 4 1 || FAILS="$FAILS image:$WHY"
    check_verified $s /tmp/$s.img 4 || FAILS="$FAILS image:$WHY"
    rm -f /tmp/$s.img
    verdict $s "xbdfront in a domU <-> xbd-backd: 64 ring pages x 2 queues, indirect 256, persistent; write, verify, image ok"
}

# dom0_front_io NAME: in dom0, on the attached xvda: xbdfront info must
# show what was asked for; a random 1 MiB goes to 4 MiB with xbdfront write
# holding the device connected until its input comes, while the live tree
# is checked; then verify (seed 5).  Adds to FAILS.
dom0_front_io() {
    timeout 150 xbdfront info xvda $XF4 > /tmp/$1.info 2>&1; rc=$?
    dump $1-info cat /tmp/$1.info
    why=$(check_info /tmp/$1.info 64 2 256)
    [ -z "$why" ] || FAILS="$FAILS info:$why"
    # when not even info connects, write and verify would only wait out
    # their timeouts
    [ $rc = 0 ] || { FAILS="$FAILS info-rc=$rc"; return; }

    dd if=/dev/urandom of=/tmp/$1.pat bs=1M count=1 2>/dev/null
    rm -f /tmp/$1.in; mkfifo /tmp/$1.in
    timeout 150 xbdfront write xvda $((4 << 20)) $XF4 < /tmp/$1.in > /tmp/$1.write 2>&1 &
    wpid=$!
    exec 7> /tmp/$1.in
    i=0
    until [ "$(xenstore-read /local/domain/0/device/vbd/$VDEV/state 2>/dev/null)" = 4 ]; do
        i=$((i+1)); [ $i -gt 120 ] && break; sleep 0.5
    done
    check_geometry $1 0 64 2 || FAILS="$FAILS geometry:$WHY"
    check_features $1 0 || FAILS="$FAILS features:$WHY"
    [ -n "$FAILS" ] && dump $1-xenstore xenstore-ls -fp
    cat /tmp/$1.pat >&7; exec 7>&-
    wait $wpid || { FAILS="$FAILS write-rc=$?"; dump $1-write cat /tmp/$1.write; }

    timeout 150 xbdfront verify xvda --seed 5 --size 4M $XF4 > /tmp/$1.verify 2>&1 ||
        FAILS="$FAILS verify-rc=$?"
    dump $1-verify cat /tmp/$1.verify
}

# 4b. dom0 alone: dom0 is the frontend domain and grants to itself, as
#     libxl's local attach (pygrub on a qdisk) makes it.  `xl block-attach 0`
#     writes the nodes for frontend-id 0 (libxl runs block-xbd; no kernel
#     blkfront exists in this dom0 to claim the disk), OUR xbdfront in dom0
#     negotiates with OUR xbd-backd (dom0_front_io), `xl block-detach 0`
#     must remove it.
scn_xbdfront_backd_dom0() {
    s=xbdfront-backd-dom0 FAILS=
    backd_front_skip $s && return
    backd_start || { result $s FAIL "$WHY"; return; }
    fe=/local/domain/0/device/vbd/$VDEV
    be=/local/domain/0/backend/vbd/0/$VDEV
    mkdisk /tmp/$s.img 8
    # dom0's gntalloc was loaded with the default limit: raised at run time
    echo $GNTALLOC_LIMIT > /sys/module/xen_gntalloc/parameters/limit
    l=$(cat /sys/module/xen_gntalloc/parameters/limit)
    [ "$l" = $GNTALLOC_LIMIT ] || FAILS="$FAILS gntalloc-limit=$l"
    spec="format=raw, vdev=xvda, access=rw, backendtype=phy, script=block-xbd, target=/tmp/$s.img"
    timeout 60 xl block-attach 0 "$spec" > /tmp/$s.attach 2>&1; rc=$?
    mark $s block-attach rc=$rc
    if [ $rc = 0 ]; then
        dom0_front_io $s
        # The image is in dom0's /tmp, on the initramfs's root (tmpfs or
        # ramfs), and the grants are persistent: xbd-backd moves the data
        # straight between the file and the mapped guest pages (direct_io).
        direct=$(xbdctl stats --json 2>&1 | tr -d ' \n' | grep -o '"totals":{[^}]*}' |
                 grep -o '"direct_io":[0-9]*' | head -1 | cut -d: -f2)
        mark $s direct_io=${direct:-none} fs=$(stat -f -c %T /tmp 2>&1)
        [ "${direct:-0}" -gt 0 ] 2>/dev/null || FAILS="$FAILS direct_io=${direct:-none}"
    else
        FAILS="$FAILS block-attach-rc=$rc"
        dump $s-block-attach cat /tmp/$s.attach
    fi
    if xenstore-exists $be; then        # (also after a failed attach)
        timeout 60 xl block-detach 0 xvda > /tmp/$s.detach 2>&1; rc=$?
        mark $s block-detach rc=$rc
        [ $rc = 0 ] || { FAILS="$FAILS block-detach-rc=$rc"; dump $s-block-detach cat /tmp/$s.detach; }
        xenstore-exists $be && FAILS="$FAILS backend-dir-left"
        xenstore-exists $fe && FAILS="$FAILS frontend-dir-left"
    fi
    want=$(md5sum < /tmp/$s.pat 2>/dev/null | cut -d' ' -f1)
    got=$(dd if=/tmp/$s.img bs=1M skip=4 count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    [ -n "$want" ] && [ "$got" = "$want" ] || FAILS="$FAILS image:pattern($got!=$want)"
    check_verified $s /tmp/$s.img 5 || FAILS="$FAILS image:$WHY"
    rm -f /tmp/$s.img /tmp/$s.pat /tmp/$s.in
    verdict $s "xbdfront in dom0 <-> xbd-backd, dom0 granting to itself: 64 ring pages x 2 queues, indirect 256, persistent, straight to the mapped pages; attach, write, verify, detach, image ok"
}

run_scenarios() {
    dump xl-info xl info
    for s in "$@"; do
        mark scenario $s begin
        scn_$(echo $s | tr - _)
        mark scenario $s end
    done
    backd_stop
    mark all-scenarios-done
}
