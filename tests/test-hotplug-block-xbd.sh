#!/usr/bin/env bash
# tools/hotplug/block-xbd run the way libxl 4.17 runs a disk's script=
# (argv add|remove; XENBUS_PATH, XENBUS_TYPE, XENBUS_BASE_PATH, script in
# the environment; after the backend reached InitWait), against xbd-sim's
# xenstore with the nodes `xbdctl block-attach backendtype=phy` writes as
# libxl does.  Files, a block device, the refusals (missing target,
# sharing, image formats, a mounted device), and remove.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires command -v xenstore-write
requires command -v xenstore-rm
requires command -v xenstore-list

script=$top_srcdir/tools/hotplug/block-xbd
[ -x "$script" ] || fail "$script is not executable"

d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 16M "$d/disk.img"
ln -s disk.img "$d/link.img"
mkdir "$d/adir"

# attach VDEV TARGET [KEY=VALUE...]: a phy disk with our script, as libxl
# writes it, and the backend at InitWait (libxl runs the script only then).
attach() {
    local vdev=$1 target=$2
    shift 2
    xbdctl block-attach guest1 "$target" vdev="$vdev" backendtype=phy \
        script="$script" "$@" >/dev/null
    xenstore-write "$(be_of "$vdev")/state" 2
}
devid_of() {
    case $1 in
    xvda) echo 51712 ;; xvdb) echo 51728 ;; xvdc) echo 51744 ;;
    xvdd) echo 51760 ;; xvde) echo 51776 ;; xvdf) echo 51792 ;;
    xvdg) echo 51808 ;; xvdh) echo 51824 ;; xvdi) echo 51840 ;;
    esac
}
be_of() { echo "/local/domain/0/backend/vbd/1/$(devid_of "$1")"; }

# hotplug VDEV add|remove: the script with libxl's environment; its exit
# status is the function's.
hotplug() {
    script=$script XENBUS_TYPE=vbd XENBUS_BASE_PATH=backend \
        XENBUS_PATH="backend/vbd/1/$(devid_of "$1")" \
        XBD_HOTPLUG_LOCK_DIR="$d/lock" \
        timeout 30 "$script" "$2" 2>>"$d/script.err"
}
node() { xenstore-read "$(be_of "$1")/$2" 2>/dev/null; }
absent() { ! xenstore-read "$(be_of "$1")/$2" >/dev/null 2>&1; }

# expect_error VDEV TEXT: add fails, reports error and a reason with TEXT.
expect_error() {
    if hotplug "$1" add; then fail "$1: add succeeded, want an error ($2)"; fi
    [ "$(node "$1" hotplug-status)" = error ] ||
        fail "$1: hotplug-status is '$(node "$1" hotplug-status)', want error"
    node "$1" hotplug-error | grep -q -- "$2" ||
        fail "$1: hotplug-error '$(node "$1" hotplug-error)' lacks '$2'"
    absent "$1" physical-device-path || fail "$1: physical-device-path on error"
}

# ---- a regular file, read-write ----------------------------------------------
attach xvda "$d/disk.img"
[ "$(node xvda script)" = "$script" ] || fail "xbdctl did not write script="
hotplug xvda add || fail "add of a file failed: $(cat "$d/script.err")"
[ "$(node xvda hotplug-status)" = connected ] || fail "hotplug-status not connected"
[ "$(node xvda physical-device-path)" = "$(readlink -f "$d/disk.img")" ] ||
    fail "physical-device-path is '$(node xvda physical-device-path)'"
absent xvda physical-device || fail "physical-device written for a regular file"
absent xvda hotplug-error || fail "hotplug-error written on success"
xbd-check-tree || fail "xbd-check-tree finds faults after the script ran"

# ---- sharing: the same file through a link, writable: refused ----------------
attach xvdb "$d/link.img"
expect_error xvdb "already in use by backend/vbd/1/51712"

# ---- errors -------------------------------------------------------------------
attach xvdc "$d/missing.img"
expect_error xvdc "does not exist"
attach xvdd "$d/adir"
expect_error xvdd "neither a regular file nor a block device"
attach xvde "$d/disk.img"
xenstore-write "$(be_of xvde)/params" "qcow2:$d/disk.img"
expect_error xvde "format qcow2 cannot be served"
attach xvdi "$d/disk.img"
xenstore-rm "$(be_of xvdi)/mode"
expect_error xvdi "cannot read backend/vbd/1/51840/mode"

# ---- remove: our nodes go, and the file is free again ------------------------
hotplug xvda remove || fail "remove failed"
for n in hotplug-status physical-device-path physical-device hotplug-error; do
    absent xvda $n || fail "remove left $n"
done
[ "$(node xvda params)" = "$d/disk.img" ] || fail "remove touched libxl's nodes"
hotplug xvdb add || fail "add after the other user's remove failed"
[ "$(node xvdb physical-device-path)" = "$(readlink -f "$d/disk.img")" ] ||
    fail "link not resolved to the file"
hotplug xvdb remove
# Remove of a device whose directory is already gone (forced detach).
xenstore-rm "$(be_of xvdb)"
hotplug xvdb remove || fail "remove with the directory gone failed"

# ---- read-only sharing is fine; writing beside a reader is not ---------------
attach xvdf "$d/disk.img" mode=r
attach xvdg "$d/disk.img" mode=r
hotplug xvdf add || fail "first read-only add failed"
hotplug xvdg add || fail "second read-only add of the same file failed"
attach xvdh "$d/disk.img"
expect_error xvdh "already in use"

# ---- a block device (read-only: the script only inspects it) ----------------
blk=
for b in /dev/loop7 /dev/loop0 /dev/zram0 /dev/vda /dev/sda; do
    if [ -b "$b" ] && [ -r "$b" ]; then blk=$b; break; fi
done
for v in xvdf xvdg xvdh; do
    hotplug $v remove
    xenstore-rm "$(be_of $v)"
    xenstore-rm "/local/domain/1/device/vbd/$(devid_of $v)"
done
if [ -n "$blk" ]; then
    attach xvdf "$blk" mode=r
    hotplug xvdf add || fail "add of block device $blk failed: $(cat "$d/script.err")"
    [ "$(node xvdf physical-device)" = "$(stat -L -c %t:%T "$blk")" ] ||
        fail "physical-device '$(node xvdf physical-device)' for $blk"
    [ "$(node xvdf hotplug-status)" = connected ] || fail "block device not connected"
    hotplug xvdf remove
else
    echo "no readable block device: block-device case not run"
fi

# A mounted block device is refused for writing.
mnt=$(awk '$1 ~ /^\/dev\// { print $1; exit }' /proc/mounts)
if [ -n "$mnt" ] && [ -b "$mnt" ] && [ -w "$mnt" ]; then
    attach xvdg "$mnt"
    expect_error xvdg "is mounted in this domain"
else
    echo "no mounted block device: mounted-device case not run"
fi

# ---- misuse ------------------------------------------------------------------
if env -u XENBUS_PATH "$script" add 2>"$d/err"; then fail "ran without XENBUS_PATH"; fi
grep -q 'XENBUS_PATH is not set' "$d/err" || fail "unclear error: $(cat "$d/err")"
if hotplug xvdc frobnicate; then fail "unknown command accepted"; fi
echo ok
