#!/usr/bin/env bash
# xbd-backd's operation: limits from a config file with the command line
# winning, a pidfile, a second daemon refused on the same control socket,
# SIGHUP applying new limits to devices probed afterwards (and keeping what
# needs a restart), a broken config on reload keeping the running one, and
# the service manager's readiness protocol (READY=1 when started, RELOADING=1
# and READY=1 around a reload, STOPPING=1 at the stop).
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-read
requires python3 --version
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
truncate -s 8M "$d/disk.img"
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
be=/local/domain/0/backend/qdisk/1

cat >"$d/conf" <<CONF
# limits for the test
max-ring-order = 2
max-queues = 2
max-indirect = 32
CONF
# A stand-in for systemd's notify socket: every datagram becomes a line.
python3 - "$d/notify.sock" "$d/notify" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode() + "\n")
        f.flush()
PY
cleanup_fn kill_wait $!
wait_for 10 test -S "$d/notify.sock" || fail "the notify stand-in did not start"
notified() { [ "$(tr '\n' ' ' <"$d/notify" 2>/dev/null)" = "$1" ]; }

NOTIFY_SOCKET=$d/notify.sock \
    start_backd "$d/backd.log" --config "$d/conf" --max-indirect 64 --pidfile "$d/pid"
# The socket appears when the daemon is ready: the pidfile is there by then.
[ "$(cat "$d/pid")" = $backd_pid ] || fail "pidfile"
wait_for 10 notified "READY=1 " || fail "no READY=1: $(cat "$d/notify")"

# A second daemon on the same socket is refused and leaves the first alone.
if xbd-backd 2>"$d/second"; then fail "a second daemon started"; fi
grep -q 'another xbd-backd answers' "$d/second" || fail "unclear refusal: $(cat "$d/second")"
xbdctl status >/dev/null || fail "the first daemon stopped answering"

xbdctl block-attach guest1 "$d/disk.img" vdev=xvda >/dev/null
wait_for 10 node_is $be/51712/state 2 || fail "no InitWait"
node_is $be/51712/max-ring-page-order 2 || fail "max-ring-order from the file"
node_is $be/51712/max-ring-pages 4 || fail "max-ring-pages from the file"
node_is $be/51712/multi-queue-max-queues 2 || fail "max-queues from the file"
node_is $be/51712/feature-max-indirect-segments 64 || fail "the command line did not win"

# Reload: new limits for devices probed from now on.
cat >"$d/conf" <<CONF
max-ring-order = 3
max-indirect = 0
persistent-max = 0
kind = vbd
CONF
kill -HUP $backd_pid
wait_for 10 grep -q 'configuration reloaded' "$d/backd.log" || fail "no reload"
grep -q 'kind cannot change without a restart' "$d/backd.log" || fail "no warning for kind"
wait_for 10 notified "READY=1 RELOADING=1 READY=1 " ||
    fail "a reload was not announced: $(cat "$d/notify")"
node_is $be/51712/max-ring-page-order 2 || fail "a device in InitWait changed its offer"
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdb >/dev/null
wait_for 10 node_is $be/51728/state 2 || fail "qdisk no longer served after the reload"
node_is $be/51728/max-ring-page-order 3 || fail "new max-ring-order not applied"
node_is $be/51728/feature-persistent 0 || fail "persistent-max 0 not applied"
node_is $be/51728/feature-max-indirect-segments 64 || fail "command line lost on reload"

# A broken file on reload: the running configuration stays.
echo "max-queues = 0" >"$d/conf"
kill -HUP $backd_pid
wait_for 10 grep -q 'keeping the running configuration' "$d/backd.log" ||
    fail "a broken config was not refused"
xbdctl block-attach guest1 "$d/disk.img" vdev=xvdc >/dev/null
wait_for 10 node_is $be/51744/state 2 || fail "no InitWait after a refused reload"
node_is $be/51744/max-ring-page-order 3 || fail "the refused reload changed something"

# grant-map by reload: the next connection without persistent grants maps
# each request's grants instead of copying.
if command -v xbdfront >/dev/null; then
    printf 'grant-map = yes\nmax-ring-order = 3\n' >"$d/conf"
    kill -HUP $backd_pid
    reloaded_twice() { [ "$(grep -c 'configuration reloaded' "$d/backd.log")" -ge 2 ]; }
    wait_for 10 reloaded_twice ||
        fail "no second reload"
    run_as guest1 xbdfront verify xvdc --size 1M --no-persistent --timeout 10 ||
        fail "verify with grant-map"
    xbdctl stats --json >"$d/stats.json"
    grep -q '"grant_map":true' "$d/stats.json" || fail "status does not show grant-map"
    grep -Eq '"name":"qdisk/1/51744".*"totals":\{[^}]*"grant_maps":[1-9]' "$d/stats.json" ||
        fail "no grant maps counted: $(cat "$d/stats.json")"
fi

kill -TERM $backd_pid
wait $backd_pid || fail "exit status after SIGTERM"
stopping() { tail -n 1 "$d/notify" | grep -qx 'STOPPING=1'; }
wait_for 10 stopping || fail "the stop was not announced: $(cat "$d/notify")"
test ! -e "$d/pid" || fail "pidfile left behind"
