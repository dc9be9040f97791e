#!/bin/bash
# tests/xen-lane/lane.sh -- xbdkit's real-Xen test lane (`make check-xen`).
#
# Boots Debian 12's own Xen 4.17 hypervisor with a PV dom0 (Debian's 6.1
# kernel) under qemu-system-x86_64 with software emulation (TCG), from Debian
# packages only, with OUR freshly built programs and libraries copied into
# dom0 and into the PV domUs, and runs the scenarios of dom0-lane.sh inside.
# Adapted from the project's shared recipe (../shared/xen-lane); see
# docs/testing-xen.md for what each scenario proves.
#
# Usage: lane.sh BUILDDIR          (what `make check-xen` runs)
#
# Steps:   1. host packages (apt-get, only the missing ones) and the kernel and
#             hypervisor .debs (downloaded and unpacked once, never installed);
#          2. `make install DESTDIR=...` of BUILDDIR: our programs, libxbdfront;
#          3. two initramfs images: the domU's (busybox, xen-blkfront, our
#             programs) inside dom0's (busybox, bash, the Xen tools, blkback,
#             our programs, the scenarios);
#          4. one boot; dom0 runs the scenarios and prints "@@RESULT name
#             PASS|FAIL|SKIP why" on the serial console, then powers off;
#          5. one line per scenario here, then "N passed, N failed, N skipped".
# Exit: 0 all ran scenarios passed, 1 a failure (or the boot failed), 77 the
#       lane cannot run on this machine (not root, no qemu and no apt-get).
#
# Knobs (environment):
#   XEN_LANE_DIR=/tmp/xbd-xen-lane   work directory: downloads, images, logs
#   XEN_LANE_SCENARIOS="..."         scenarios to run (default: all, in order)
#   XEN_LANE_TIMEOUT=1500            seconds before qemu is killed
#   XEN_LANE_CPU=Nehalem             qemu's -cpu model
#   XEN_LANE_TCG_THREAD=single       qemu's TCG threading (multi: one thread per vCPU)
#   XEN_LANE_LOGLEVEL=6              dom0 kernel console loglevel (7: more)
#   XEN_LANE_XBDFRONT_DOMU_ARGS=     extra domU command line of scenario 2
#                                    (persistent=0: xbdfront --no-persistent)
#   XEN_LANE_SHELL=1                 interactive dom0 shell after the scenarios
#                                    (console on this terminal; Ctrl-a x quits)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILDDIR=${1:?usage: lane.sh BUILDDIR}
BUILDDIR=$(cd "$BUILDDIR" && pwd)
W=${XEN_LANE_DIR:-/tmp/xbd-xen-lane}
ALL_SCENARIOS="kernel-blkback-tree xbdfront-kernel-blkback backd-phy backd-qdisk
    xbdfront-backd-domu xbdfront-backd-dom0"
SCENARIOS=${XEN_LANE_SCENARIOS:-$ALL_SCENARIOS}
TIMEOUT=${XEN_LANE_TIMEOUT:-1500}
# The virtual CPU.  With "max" (AVX/AVX2/AVX-512 and XSAVE, which QEMU 7.2's
# TCG emulates newly) processes in dom0 and the domUs of a loaded host died
# of SIGSEGVs at addresses made of text (busybox grep, tr, awk, sleep, ash)
# or of heap corruption, as if vector registers were mixed up between
# processes; with Nehalem (no AVX, no XSAVE) that was not seen again.
QEMU_CPU=${XEN_LANE_CPU:-Nehalem}
# TCG threading.  "single" (one host thread for all vCPUs) was tried first
# against those SIGSEGVs and did not stop them; the lane was then run with
# it and Nehalem.  "multi" is faster on an idle machine.
TCG_THREAD=${XEN_LANE_TCG_THREAD:-single}
XENVER=4.17
ARCH_TRIPLET=x86_64-linux-gnu
# Host packages: qemu to boot; busybox/cpio/kmod to make the images; the Xen
# user space (xl, xenstored, hotplug scripts) is copied from the host's own
# Debian packages into dom0; e2fsprogs (e2fsck) checks the guests' filesystems.
HOST_PACKAGES="qemu-system-x86 busybox-static cpio kmod gzip util-linux bash
    xen-utils-$XENVER xenstore-utils e2fsprogs"

log() { echo "[xen-lane $(date +%T)] $*" >&2; }
skip() { echo "SKIP: check-xen: $*" >&2; echo "0 passed, 0 failed, 1 skipped"; exit 77; }

# ------------------------------------------------------------- 1. host
need_root_and_qemu() {
    [ "$(id -u)" = 0 ] || skip "must run as root (installs packages, makes device nodes in images)"
    if ! command -v qemu-system-x86_64 >/dev/null && ! command -v apt-get >/dev/null; then
        skip "qemu-system-x86_64 is not installed and there is no apt-get to install it"
    fi
}

host_packages() {
    local p missing=""
    for p in $HOST_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && { log "host packages present"; return 0; }
    log "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } \
            > "$W/apt.log" 2>&1; then
        tail -20 "$W/apt.log" >&2
        command -v qemu-system-x86_64 >/dev/null ||
            skip "cannot install qemu-system-x86_64 (apt-get failed, see $W/apt.log)"
        echo "FAIL: check-xen: apt-get install$missing failed (see $W/apt.log)" >&2
        exit 1
    fi
}

# The hypervisor and the kernel are only unpacked (dpkg-deb -x) under $W/x,
# never installed: the host's /boot and boot loader are not touched.  The
# same kernel serves dom0 and the domUs.  Done once; kept between runs.
guest_debs() {
    if [ -s "$W/xen" ] && [ -s "$W/vmlinuz" ] && [ -d "$W/x/lib/modules" ]; then
        return 0
    fi
    local kpkg
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    log "download $kpkg xen-hypervisor-$XENVER-amd64"
    rm -rf "$W/debs" "$W/x"; mkdir -p "$W/debs" "$W/x"
    (cd "$W/debs" && apt-get download -q "$kpkg" "xen-hypervisor-$XENVER-amd64" > "$W/download.log" 2>&1) ||
        { cat "$W/download.log" >&2; echo "FAIL: check-xen: cannot download the kernel/hypervisor" >&2; exit 1; }
    local d
    for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/x"; done
    depmod -b "$W/x" "$(kver)"    # the .deb ships no modules.dep (its postinst makes it)
    # qemu's multiboot loader wants the ELF, not the .gz
    zcat "$W/x/boot/xen-$XENVER-amd64.gz" > "$W/xen"
    cp "$W"/x/boot/vmlinuz-* "$W/vmlinuz"
}

kver() { ls "$W/x/lib/modules" | head -1; }

# ---------------------------------------------------- image helpers
# copy_bin ROOT FILE: an executable and every shared library ldd names.
copy_bin() {
    local R=$1 src=$2 lib
    install -D -m 0755 "$(readlink -f "$src")" "$R$src"
    ldd "$src" 2>/dev/null | grep -o '/[^ )]*' | while read -r lib; do
        [ -e "$R$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
    done
}

# copy_mods ROOT MODULE...: kernel modules with their dependencies.
copy_mods() {
    local R=$1; shift
    local K m f; K=$(kver)
    for m in "$@"; do
        modprobe -d "$W/x" -S "$K" --show-depends "$m" | awk '$1=="insmod"{print $2}' |
        while read -r f; do install -D -m 0644 "$f" "$R${f#"$W/x"}"; done
    done
    cp "$W/x/lib/modules/$K/modules.order" "$W/x/lib/modules/$K/"modules.builtin* "$R/lib/modules/$K/"
    depmod -b "$R" "$K"
}

# busybox_root ROOT: a fresh root with busybox applets and a root user.
busybox_root() {
    local R=$1 a
    rm -rf "$R"
    mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,root,var/log,var/lib,lib64}
    ln -s ../run "$R/var/run"
    install -m 0755 /bin/busybox "$R/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
    done
    ln -sf ../bin/busybox "$R/sbin/modprobe"
    echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
    echo 'root:x:0:' > "$R/etc/group"
}

# add_ours ROOT [NAME...]: our installed tree (prefix as configured), or
# only the files called NAME (globs), and the host libraries they link
# (libxenstore, libxengnttab, liburing, libnbd and its gnutls, ...).  An
# ld.so.cache made for ROOT lets the loader find libxbdfront under the
# configured libdir whatever the environment (libxl spawns device models
# with a clean one).
add_ours() {
    local R=$1 f n keep; shift
    if [ $# = 0 ]; then
        cp -a "$W/stage"/. "$R"/
    else
        (cd "$W/stage" && find . \( -type f -o -type l \) -print) | while read -r f; do
            keep=0
            for n in "$@"; do case ${f##*/} in $n) keep=1;; esac; done
            if [ $keep = 1 ]; then mkdir -p "$(dirname "$R/$f")"; cp -a "$W/stage/$f" "$R/$f"; fi
        done
    fi
    find "$R" -path "$R/proc" -prune -o -type f -perm -u+x -print | while read -r f; do
        [ -e "$W/stage${f#"$R"}" ] || continue        # ours only
        file "$f" | grep -q 'ELF.*dynamically linked' || continue
        LD_LIBRARY_PATH=$STAGE_LIBDIRS ldd "$f" | grep -o '/[^ )]*' | while read -r lib; do
            case $lib in "$W/stage"/*) continue;; esac
            [ -e "$R$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
        done
    done
    # glibc dlopen()s libgcc_s for pthread_cancel, unknown to ldd; xl and
    # libxbdfront abort without it
    install -D -m 0644 /lib/$ARCH_TRIPLET/libgcc_s.so.1 "$R/lib/$ARCH_TRIPLET/libgcc_s.so.1"
    echo "$LIBDIRS" > "$R/etc/ld.so.conf"
    ldconfig -r "$R"
    # every program of ours must load inside the image as it is
    find "$R" -path "$R/proc" -prune -o -type f -perm -u+x -print | while read -r f; do
        [ -e "$W/stage${f#"$R"}" ] || continue
        file "$f" | grep -q 'ELF.*dynamically linked' || continue
        if chroot "$R" /lib64/ld-linux-x86-64.so.2 --list "${f#"$R"}" | grep 'not found'; then
            echo "FAIL: check-xen: ${f#"$R"} does not load in $R" >&2; exit 1
        fi
    done
}

# link_as ROOT NAME PATH: PATH in ROOT is our installed NAME (if installed).
link_as() {
    local f
    f=$(cd "$W/stage" && find . -name "$2" -type f | head -1)
    [ -n "$f" ] || return 0
    f=${f#.}
    [ "$f" = "$3" ] && return 0
    mkdir -p "$1$(dirname "$3")"
    ln -sf "$f" "$1$3"
}

mk_cpio() { # ROOT OUT.cpio.gz
    (cd "$1" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$2"
}

# ------------------------------------------------------- 2+3. images
stage_ours() {
    log "make install DESTDIR=$W/stage (from $BUILDDIR)"
    rm -rf "$W/stage"
    make -s -C "$BUILDDIR" install DESTDIR="$W/stage" > "$W/install.log" 2>&1 ||
        { tail -20 "$W/install.log" >&2; echo "FAIL: check-xen: make install failed" >&2; exit 1; }
    # the directories our shared libraries went to (the configured libdir)
    LIBDIRS=$(find "$W/stage" -name '*.so*' -printf '%h\n' | sed "s|^$W/stage||" | sort -u)
    STAGE_LIBDIRS=$(echo $LIBDIRS | sed "s|^|$W/stage|; s| |:$W/stage|g")
    # headers, man pages, libtool and pkg-config files are not needed inside
    find "$W/stage" -depth \( -name include -o -name share -o -name pkgconfig \) \
        -type d -exec rm -rf {} +
    find "$W/stage" -name '*.la' -delete
}

build_images() {
    local K; K=$(kver)

    # ---- domU: busybox, blkfront, ext4, the user-space grant devices, ours
    local D="$W/domu-root"
    log "domU image"
    busybox_root "$D"
    copy_mods "$D" xen-blkfront xen-gntalloc xen-gntdev xen-evtchn ext4
    # the domU needs only the frontend (xbd-backd's libnbd brings 40 MB)
    add_ours "$D" xbdfront 'libxbdfront.so*' xbd-check-tree
    copy_bin "$D" /bin/bash
    copy_bin "$D" /usr/bin/xenstore
    ln -sf xenstore "$D/usr/bin/xenstore-read"
    install -m 0755 "$HERE/domu-init.sh" "$D/init"
    mk_cpio "$D" "$W/domu.cpio.gz"

    # ---- dom0: busybox, bash, the Xen tools and scripts, blkback, ours
    local R="$W/dom0-root" b
    log "dom0 image"
    busybox_root "$R"
    for b in /bin/bash /sbin/losetup /usr/bin/stat /usr/bin/flock \
             /sbin/e2fsck /usr/bin/xenstore; do
        copy_bin "$R" "$b"
    done
    # xenstore-read, -write, -ls ... are one program under several names
    for b in chmod exists list ls read rm watch write; do
        ln -sf xenstore "$R/usr/bin/xenstore-$b"
    done
    for b in /usr/lib/xen-$XENVER/bin/*; do
        case ${b##*/} in pygrub|xenpvnetboot|xendomains) continue;; esac
        file -L "$b" | grep -q ELF && copy_bin "$R" "$b"
    done
    for b in xl xenstored xenconsoled xen-init-dom0; do
        ln -sf /usr/lib/xen-$XENVER/bin/$b "$R/usr/sbin/$b"
    done
    mkdir -p "$R/etc/xen" "$R/var/lib/xen" "$R/var/log/xen/console" "$R/var/lib/xenstored"
    cp -a /etc/xen/scripts "$R/etc/xen/"
    cp /etc/xen/xl.conf "$R/etc/xen/"
    copy_mods "$R" xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback loop ext4
    add_ours "$R"
    # The xl lines of docs/xen-host.md name block-xbd and xbd-null-dm where
    # `configure --prefix=/usr --sysconfdir=/etc` installs them; link them
    # there from wherever this build's prefix put them.
    link_as "$R" block-xbd /etc/xen/scripts/block-xbd
    link_as "$R" xbd-null-dm /usr/libexec/xbdkit/xbd-null-dm
    mkdir -p "$R/guest" "$R/lane"
    cp "$W/vmlinuz" "$R/guest/vmlinuz"
    cp "$W/domu.cpio.gz" "$R/guest/domu.cpio.gz"
    install -m 0755 "$HERE/dom0-init.sh" "$R/init"
    install -m 0644 "$HERE/dom0-lane.sh" "$R/lane/dom0-lane.sh"
    echo "$SCENARIOS" > "$R/lane/scenarios"
    echo "XBDFRONT_DOMU_ARGS='${XEN_LANE_XBDFRONT_DOMU_ARGS:-}'" > "$R/lane/env"
    [ "${XEN_LANE_SHELL:-0}" = 1 ] && touch "$R/lane/interactive"
    mk_cpio "$R" "$W/dom0.cpio.gz"
    log "images: $(du -h "$W/domu.cpio.gz" | cut -f1) domU, $(du -h "$W/dom0.cpio.gz" | cut -f1) dom0"
}

# ------------------------------------------------------------ 4. boot
# Xen: smap=0 because with TCG's "-cpu max" (SMAP exposed) the PV dom0 dies
# on its first bounce frame.  dom0 gets 1 GiB and 2 vCPUs (2 blkback queues).
boot() {
    local xen_cmd="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot
        dom0_mem=1024M,max:1024M dom0_max_vcpus=2 smap=0"
    local dom0_cmd="console=hvc0 earlyprintk=xen loglevel=${XEN_LANE_LOGLEVEL:-6} rdinit=/init"
    local serial="$W/logs/serial.log" rc
    log "boot (TCG, timeout ${TIMEOUT}s); console in $serial"
    if [ "${XEN_LANE_SHELL:-0}" = 1 ]; then
        qemu-system-x86_64 -accel tcg,thread=$TCG_THREAD -cpu $QEMU_CPU -machine q35 -m 3G -smp 2 \
            -display none -monitor none -serial mon:stdio -no-reboot -nic none \
            -kernel "$W/xen" -append "$(echo $xen_cmd)" \
            -initrd "$W/vmlinuz $dom0_cmd,$W/dom0.cpio.gz"
        exit 0
    fi
    set +e
    timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=$TCG_THREAD -cpu $QEMU_CPU \
        -machine q35 -m 3G -smp 2 \
        -display none -monitor none -serial stdio -no-reboot -nic none \
        -kernel "$W/xen" -append "$(echo $xen_cmd)" \
        -initrd "$W/vmlinuz $dom0_cmd,$W/dom0.cpio.gz" \
        < /dev/null > "$serial" 2>&1
    rc=$?
    set -e
    tr -d '\r' < "$serial" > "$serial.tmp" && mv "$serial.tmp" "$serial"
    log "qemu exited with $rc"
    [ "$rc" = 124 ] && log "TIMEOUT: qemu killed after ${TIMEOUT}s"
    return 0
}

# --------------------------------------------------------- 5. results
# Sections between "@@BEGIN name" and "@@END name" become $W/logs/name.txt
# (xenstore dumps, checker output); "@@DOMU name line" lines become
# $W/logs/name-console.txt (each domU's console), "@@BACKD line" lines
# $W/logs/backd.log (xbd-backd's log).
split_log() {
    awk -v dir="$W/logs" '
        /@@BEGIN /{f=$0; sub(/.*@@BEGIN /,"",f); sub(/[ ].*/,"",f); next}
        /@@END /{f=""; next}
        /^@@DOMU /{n=$2; l=$0; sub(/^@@DOMU [^ ]* /,"",l); print l > (dir "/" n "-console.txt"); next}
        /^@@BACKD /{l=$0; sub(/^@@BACKD /,"",l); print l > (dir "/backd.log"); next}
        f!=""{print > (dir "/" f ".txt")}' "$W/logs/serial.log"
}

report() {
    local s line verdict why secs npass=0 nfail=0 nskip=0 done=0
    grep -aq '@@MARK all-scenarios-done' "$W/logs/serial.log" && done=1
    for s in $SCENARIOS; do
        line=$(grep -a "@@RESULT $s " "$W/logs/serial.log" | tail -1 | sed 's/.*@@RESULT //' || true)
        verdict=$(echo "$line" | awk '{print $2}')
        why=$(echo "$line" | cut -d' ' -f3-)
        # How long it took in the guest (dom0's uptime at its marks), so a
        # slow run says where its time went.
        secs=$(awk -v s="$s" '
            /@@MARK scenario / && $3 == s { u = $NF; sub(/^uptime=/, "", u)
                if ($4 == "begin") b = u; else if ($4 == "end") e = u }
            END { if (b != "" && e != "") printf " (%.0f s)", e - b }' "$W/logs/serial.log")
        why="$why$secs"
        case $verdict in
            PASS) npass=$((npass + 1)); echo "PASS: $s: $why" ;;
            SKIP) nskip=$((nskip + 1)); echo "SKIP: $s: $why" ;;
            FAIL) nfail=$((nfail + 1)); echo "FAIL: $s: $why" ;;
            *)    nfail=$((nfail + 1)); echo "FAIL: $s (no verdict: dom0 did not get this far)" ;;
        esac
    done
    if [ "$nfail" -gt 0 ] || [ "$done" = 0 ]; then
        echo "--- artifacts kept in $W/logs; tail of the serial console:"
        tail -n 40 "$W/logs/serial.log"
        [ "$done" = 1 ] || { echo "dom0 did not finish the scenarios"; [ "$nfail" -gt 0 ] || nfail=1; }
    fi
    echo "$npass passed, $nfail failed, $nskip skipped"
    [ "$nfail" = 0 ]
}

main() {
    need_root_and_qemu
    mkdir -p "$W"
    exec 9> "$W/lock"
    flock 9        # one lane at a time per work directory
    local t0=$SECONDS
    host_packages
    command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing after apt-get"
    guest_debs
    stage_ours
    build_images
    rm -rf "$W/logs"; mkdir -p "$W/logs"
    log "prepared in $((SECONDS - t0))s"
    boot
    split_log
    log "lane took $((SECONDS - t0))s"
    report
}

main
