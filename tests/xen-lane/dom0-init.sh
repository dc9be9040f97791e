#!/bin/sh
# dom0's /init (PID 1 of the initramfs, busybox sh): what a Debian dom0's
# boot and /etc/init.d/xencommons do, then the scenarios of
# /lane/dom0-lane.sh, then power off (qemu exits: -no-reboot).
export PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
# udev's links, absent from devtmpfs; the hotplug scripts' locking.sh reads /dev/stdin
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /run/lock /mnt
echo "@@MARK dom0-init uptime=$(cut -d' ' -f1 /proc/uptime)"

# Kernel side: the Xen device drivers.  blkback with 16-page rings; it has as
# many queues as dom0 has vCPUs (2).  Scenarios that need it gone unload it.
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd loop ext4; do
    modprobe $m || echo "modprobe $m FAILED"
done
modprobe xen-blkback max_ring_page_order=4 || echo "modprobe xen-blkback FAILED"
mount -t xenfs xenfs /proc/xen

# Toolstack: xenstored, dom0's own nodes, xenconsoled logging each guest's
# console to /var/log/xen/console/guest-NAME.log.
export XENSTORED_ROOTDIR=/run/xenstored
xenstored --pid-file /run/xenstore.pid
i=0; until xenstore-read -s / >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done
xen-init-dom0
xenconsoled --pid-file /run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
echo "@@MARK xen-tools-up uptime=$(cut -d' ' -f1 /proc/uptime)"

# The scenarios run under bash: busybox 1.35's ash crashes (SIGSEGV) running
# shell functions inside pipelines, which the scenarios do.
bash -c '. /lane/dom0-lane.sh && run_scenarios $(cat /lane/scenarios)'

if [ -e /lane/interactive ]; then
    echo "@@MARK interactive shell: exit it to power off"
    setsid cttyhack /bin/sh -l
fi
sync
echo "@@MARK poweroff"
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
