#!/usr/bin/env bash
# xbd-null-dm started the way libxl 4.17 starts a PV guest's device model
# (QEMU arguments, QMP sockets), against xbd-sim's xenstore: it reports
# state=running, answers libxl's QMP handshake on every QMP socket, refuses
# what it cannot do, and exits cleanly on "quit" and on SIGTERM, removing
# its sockets.
source "$srcdir/functions.sh"
set -e
requires python3 --version
requires command -v xenstore-read
dm=$top_builddir/tools/xbd-null-dm
[ -x "$dm" ] || fail "$dm not built"

d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1

dm_running() {
    [ "$(xenstore-read /local/domain/0/device-model/1/state 2>/dev/null)" = running ]
}

# start_dm: as libxl does for domain 1 (from the Xen lane's record).
start_dm() {
    rm -f "$d/qmp-libxl-1" "$d/qmp-libxenstat-1"
    xenstore-rm /local/domain/0/device-model 2>/dev/null || :
    "$dm" -xen-domid 1 \
        -chardev "socket,id=libxl-cmd,path=$d/qmp-libxl-1,server=on,wait=off" \
        -mon chardev=libxl-cmd,mode=control \
        -chardev "socket,id=libxenstat-cmd,path=$d/qmp-libxenstat-1,server=on,wait=off" \
        -mon chardev=libxenstat-cmd,mode=control \
        -nodefaults -no-user-config -xen-attach -name guest1 -vnc none \
        -display none -nographic -machine xenpv -m 257 2>"$d/dm.err" &
    dm_pid=$!
    cleanup_fn kill_wait $dm_pid
    wait_for 10 dm_running ||
        fail "device-model/1/state never became running: $(cat "$d/dm.err")"
    test -S "$d/qmp-libxl-1" || fail "no QMP socket"
}

# qmp SOCKET LINE...: send each line (one write), print every reply line.
qmp() {
    python3 - "$@" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rb")
print(f.readline().decode().strip())          # the greeting
for line in sys.argv[2:]:
    s.sendall(line.encode() + b"\r\n")
    for _ in range(line.count('"execute"')):
        print(f.readline().decode().strip())
PY
}

start_dm
out=$(qmp "$d/qmp-libxl-1" \
    '{"execute": "qmp_capabilities", "id": 1}' \
    '{"execute": "query-chardev", "id": 2}' \
    '{"execute": "device_add", "arguments": {"driver": "x"}, "id": 3}{"execute": "query-status", "id": 4}')
want='{"return": {}, "id": 1}
{"return": [], "id": 2}
{"error": {"class": "CommandNotFound", "desc": "The command device_add has not been found (xbd-null-dm serves no devices)"}, "id": 3}
{"return": {"status": "running", "singlestep": false, "running": true}, "id": 4}'
echo "$out" | head -n 1 | grep -q '^{"QMP": {"version": {"qemu": ' || fail "greeting: $out"
[ "$(echo "$out" | tail -n +2)" = "$want" ] || fail "QMP replies:
$out"
# The second QMP socket (libxl's statistics one) answers too.
qmp "$d/qmp-libxenstat-1" '{"execute": "qmp_capabilities", "id": 7}' |
    grep -qx '{"return": {}, "id": 7}' || fail "second QMP socket"
# quit: the reply, then a clean exit without leftovers.
qmp "$d/qmp-libxl-1" '{"execute": "quit", "id": 8}' | grep -qx '{"return": {}, "id": 8}' ||
    fail "quit reply"
rc=0; wait $dm_pid || rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after quit: $(cat "$d/dm.err")"
[ ! -e "$d/qmp-libxl-1" ] && [ ! -e "$d/qmp-libxenstat-1" ] || fail "sockets left after quit"

# SIGTERM (libxl kills the device model when the domain goes).
start_dm
kill -TERM $dm_pid
rc=0; wait $dm_pid || rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM: $(cat "$d/dm.err")"
[ ! -e "$d/qmp-libxl-1" ] || fail "socket left after SIGTERM"

# Misuse.
rc=0; "$dm" -machine xenpv 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "no -xen-domid: exit $rc, want 2"
rc=0; "$dm" -xen-domid x1 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "bad -xen-domid: exit $rc, want 2"
"$dm" --help | grep -q 'serves no devices' || fail "--help"
echo ok
