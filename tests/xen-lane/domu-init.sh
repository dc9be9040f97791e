#!/bin/bash
# A PV domU's /init (bash: busybox 1.35's ash crashes running shell functions
# inside pipelines, which this script does).  What it does comes from its kernel command
# line, written by dom0-lane.sh into the xl config's extra= line:
#   lane=blk       Linux xen-blkfront (with ring_order= and queues=) on xvda:
#                  read check, pattern write + O_DIRECT read-back, ext2 + files
#   lane=xbdfront  no xen-blkfront: OUR xbdfront (libxbdfront) drives the
#                  device from user space (gntalloc, evtchn, xenbus)
#   lane=xbdfront-backd  the same against OUR xbd-backd, with what Linux's
#                  blkfront never asks for: 64-page rings (scenario 4a)
#   md5=           md5 of the whole disk as dom0 made it (read check)
#   persistent=0   lane=xbdfront: xbdfront --no-persistent
# Everything dom0 needs is printed on hvc0, which xenconsoled logs in dom0:
#   DOMU-PATTERN <md5>  DOMU-FILE <name> <md5>  DOMU-INFO ...
#   DOMU-RESULT PASS|FAIL <why>   (last; the domU then idles until destroyed)
export PATH=/usr/local/sbin:/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
lane=; md5=; ring_order=0; queues=1; persistent=1
for a in $(cat /proc/cmdline); do
    case $a in lane=*|md5=*|ring_order=*|queues=*|persistent=*) eval "$a";; esac
done
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "DOMU-$*"; }
result() { say "RESULT $* uptime=$(up)"; idle; }
idle() { while :; do sleep 3600; done; }   # keep the device connected for dom0
say "MARK init lane=$lane uptime=$(up)"

# ---------------------------------------------------------------- lane=blk
# Disk layout (32 MiB): [0, 16 MiB) ext2; [24 MiB, 28 MiB) a random pattern.
blk() {
    modprobe xen-blkfront max_ring_page_order=$ring_order max_queues=$queues ||
        result FAIL modprobe-xen-blkfront
    i=0; while [ ! -b /dev/xvda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    [ -b /dev/xvda ] || result FAIL "no /dev/xvda"
    say "INFO sectors=$(cat /sys/block/xvda/size) hw_queues=$(ls /sys/block/xvda/mq | wc -l) max_segments=$(cat /sys/block/xvda/queue/max_segments)"

    # 1. what dom0 wrote is what we read
    got=$(md5sum /dev/xvda | cut -d' ' -f1)
    [ "$got" = "$md5" ] || result FAIL "read md5 $got, dom0 wrote $md5"

    # 2. a pattern, written and read back with O_DIRECT (from the backend,
    #    not our page cache); dom0 compares it with the image afterwards
    dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
    want=$(md5sum /tmp/pat | cut -d' ' -f1)
    dd if=/tmp/pat of=/dev/xvda bs=1M seek=24 oflag=direct conv=fsync 2>/dev/null ||
        result FAIL "pattern write"
    back=$(dd if=/dev/xvda bs=1M skip=24 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$back" = "$want" ] || result FAIL "pattern read back $back, wrote $want"
    say "PATTERN $want"

    # 3. a filesystem and files; checked again after a remount
    mke2fs -q -F /dev/xvda 16384 >/dev/null || result FAIL mke2fs
    mkdir -p /mnt
    mount -t ext4 /dev/xvda /mnt || result FAIL mount
    mkdir /mnt/dir
    dd if=/dev/urandom of=/mnt/small bs=1k count=1 2>/dev/null
    dd if=/dev/urandom of=/mnt/dir/medium bs=1k count=300 2>/dev/null
    dd if=/dev/urandom of=/mnt/dir/large bs=1M count=4 2>/dev/null
    (cd /mnt && md5sum small dir/medium dir/large) > /tmp/files.md5
    umount /mnt || result FAIL umount
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 -o ro /dev/xvda /mnt || result FAIL remount
    (cd /mnt && md5sum -c /tmp/files.md5 >/dev/null) || result FAIL "files differ after remount"
    umount /mnt
    while read -r sum name; do say "FILE $name $sum"; done < /tmp/files.md5
    sync
    say "RESULT PASS read, pattern, ext2 files uptime=$(up)"

    # 4. after dom0's xl block-detach + block-attach (it writes
    #    lane/reattach = 1 once the disk is back): the pattern, read again
    wait_node lane/reattach
    i=0; while [ ! -b /dev/xvda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    say "REREAD $(dd if=/dev/xvda bs=1M skip=24 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
    idle
}

# ----------------------------------------------------------- lane=xbdfront
# xen-blkfront is never loaded: OUR xbdfront drives xvda from user space.
# Disk layout as for lane=blk; verify's seeded pattern covers [0, 16 MiB).
XF="--ring-pages 16 --queues $queues --timeout 60"
[ "$persistent" = 0 ] && XF="$XF --no-persistent"
# xbdfront CMD...: the tool, killed after 150 s (a hang becomes a failure
# with a message instead of a lane timeout)
xbdfront() {
    timeout 150 xbdfront "$@"; rc=$?   # timeout runs the program, not this function
    [ $rc = 143 ] && echo "DOMU-INFO xbdfront $1: killed after 150 s" >&2
    return $rc
}
# user_space_devices [GNTALLOC-LIMIT]: the grant and event-channel devices
# libxbdfront uses; gntalloc with a higher limit of grants if given.
user_space_devices() {
    modprobe xen-gntalloc ${1:+limit=$1}
    for m in xen-evtchn xen-gntdev; do modprobe $m; done
    for d in gntalloc evtchn xenbus; do
        [ -c /dev/xen/$d ] || result FAIL "no /dev/xen/$d"
    done
    if [ -n "${1:-}" ]; then
        l=$(cat /sys/module/xen_gntalloc/parameters/limit)
        [ "$l" = "$1" ] || result FAIL "gntalloc limit is $l, not $1"
    fi
}
xbdfront_lane() {
    user_space_devices
    # 1. what was negotiated, as the library reports it
    xbdfront info xvda $XF > /tmp/info 2>&1 || { cat /tmp/info; result FAIL "xbdfront info: $(tail -1 /tmp/info)"; }
    sed 's/^/DOMU-INFO /' /tmp/info
    grep -q '^ring pages: *16$' /tmp/info || result FAIL "info: ring pages not 16"
    grep -q "^queues: *$queues\$" /tmp/info || result FAIL "info: queues not $queues"

    # 2. what dom0 wrote is what we read
    xbdfront read xvda 0 4096 $XF | md5sum | sed 's/^/DOMU-INFO first 4k /'
    got=$(xbdfront read xvda 0 $((32 << 20)) $XF | md5sum | cut -d' ' -f1)
    [ "$got" = "$md5" ] || result FAIL "read md5 $got, dom0 wrote $md5"

    # 3. a pattern at 24 MiB.  The write holds the device connected while it
    #    waits for its standard input: dom0 checks the live tree meanwhile
    #    and then writes lane/release into our xenstore home.  (HOLD goes
    #    to stderr, the console: stdout is the data.)
    dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
    want=$(md5sum /tmp/pat | cut -d' ' -f1)
    { say "HOLD" >&2; wait_node lane/release; cat /tmp/pat; } |
        xbdfront write xvda $((24 << 20)) $XF || result FAIL "xbdfront write"
    back=$(xbdfront read xvda $((24 << 20)) $((4 << 20)) $XF | md5sum | cut -d' ' -f1)
    [ "$back" = "$want" ] || result FAIL "pattern read back $back, wrote $want"
    say "PATTERN $want"

    # 4. verify: many requests in flight on every queue; then the region's
    #    checksum, for dom0 to compare with the image
    xbdfront verify xvda --seed 7 --size 16M $XF > /tmp/verify 2>&1 ||
        { cat /tmp/verify; result FAIL "xbdfront verify: $(tail -1 /tmp/verify)"; }
    say "INFO $(cat /tmp/verify)"
    say "REGION0 $(xbdfront read xvda 0 $((16 << 20)) $XF | md5sum | cut -d' ' -f1)"
    result PASS "info, read, write, verify"
}

# ----------------------------------------------------- lane=xbdfront-backd
# Scenario 4a: OUR xbdfront against OUR xbd-backd in dom0, asking for 64
# ring pages, 2 queues, indirect descriptors and (the default) persistent
# grants.  Disk layout (8 MiB): verify's pattern (seed 4) over [0, 4 MiB),
# which dom0 recomputes with `xbdfront pattern`; a random 1 MiB at 4 MiB,
# written while dom0 checks the live tree.  Two rings of 64 pages plus
# their pools are more grants than gntalloc's default limit (1024) allows
# once the pools grow: the limit is raised as an operator would.
xbdfront_backd_lane() {
    XF="--ring-pages 64 --queues 2 --indirect 256 --timeout 60"
    user_space_devices 16384
    xbdfront info xvda $XF > /tmp/info 2>&1 || { cat /tmp/info; result FAIL "xbdfront info: $(tail -1 /tmp/info)"; }
    sed 's/^/DOMU-INFO /' /tmp/info     # dom0 checks what was negotiated

    dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
    want=$(md5sum /tmp/pat | cut -d' ' -f1)
    { say "HOLD" >&2; wait_node lane/release; cat /tmp/pat; } |
        xbdfront write xvda $((4 << 20)) $XF || result FAIL "xbdfront write"
    say "PATTERN $want"

    xbdfront verify xvda --seed 4 --size 4M $XF > /tmp/verify 2>&1 ||
        { cat /tmp/verify; result FAIL "xbdfront verify: $(tail -1 /tmp/verify)"; }
    say "INFO $(cat /tmp/verify)"
    result PASS "info, write, verify"
}

# wait_node NODE: until dom0 writes NODE (relative to our xenstore home)
# = 1, at most 5 minutes.
wait_node() {
    i=0
    until [ "$(xenstore-read $1 2>/dev/null)" = 1 ] || [ $i -gt 600 ]; do
        sleep 0.5; i=$((i+1))
    done
}

case $lane in
    blk) blk ;;
    xbdfront) xbdfront_lane ;;
    xbdfront-backd) xbdfront_backd_lane ;;
    *) result FAIL "unknown lane=$lane" ;;
esac
