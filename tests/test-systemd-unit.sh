#!/usr/bin/env bash
# tools/systemd/xbd-backd.service as built (configured paths filled in):
# `systemd-analyze verify` accepts it, and it is ordered as Xen's
# xen-qemu-dom0-disk-backend.service is (after xenstored, before the guests).
source "$srcdir/functions.sh"
set -e
requires systemd-analyze --version

unit=$top_builddir/tools/systemd/xbd-backd.service
[ -f "$unit" ] || fail "$unit was not built"
d=$(test_tmpdir)

# systemd-analyze must work here at all (it needs no running systemd, but
# a container may still refuse): a trivial unit is the control.
printf '[Service]\nExecStart=/bin/true\n' > "$d/control.service"
systemd-analyze verify --man=no "$d/control.service" >/dev/null 2>&1 ||
    skip "systemd-analyze verify does not work here"

# verify insists that ExecStart's program exists: the daemon, once it is
# built in this tree, else a stand-in; what is checked is the unit.
daemon=$top_builddir/backend/xbd-backd
[ -x "$daemon" ] || daemon=/bin/true
sed "s|^ExecStart=[^ ]*|ExecStart=$daemon|" "$unit" > "$d/xbd-backd.service"
systemd-analyze verify --man=no "$d/xbd-backd.service" 2>"$d/err" ||
    fail "systemd-analyze verify: $(cat "$d/err")"
[ ! -s "$d/err" ] || fail "systemd-analyze verify warns: $(cat "$d/err")"

grep -q '^ExecStart=/.*/xbd-backd --platform xen ' "$unit" ||
    fail "ExecStart does not run the configured xbd-backd on the xen platform"
grep -q '^After=.*xenstored\.service' "$unit" || fail "not ordered after xenstored"
grep -q '^After=.*proc-xen\.mount' "$unit" || fail "not ordered after proc-xen.mount"
grep -q '^Before=.*xendomains\.service' "$unit" || fail "not ordered before xendomains"
if grep -q '^Requires=' "$unit"; then
    fail "Requires= a unit a distribution may lack (Debian starts xenstored from /etc/init.d/xen)"
fi
echo ok
