#!/usr/bin/env bash
# xbd-sim's status report (SIGUSR1 -> DIR/status): a line per domain, the
# figures at rest are zero, a connected frontend and backend show up in
# them (grants shared by the guest and pinned by the daemon, bound ports),
# and everything returns to zero once the frontend has gone.
source "$srcdir/functions.sh"
source "$srcdir/sim-status.sh"
set -e
requires xbdfront --help
d=$(test_tmpdir)
start_sim "$d/sim" --domain guest1
sim_status
[ "$(sim_status | grep -c '^domain ')" = 2 ] || fail "not one line per domain"
sim_status | grep -q '^domain 1 name guest1 granted 0 mapped 0 ports 0 bound 0 deferred 0 clients 0$' ||
    fail "guest1 is not at rest"

truncate -s 64M "$d/disk.img"
start_backd "$d/backd.log"
xbdctl block-attach guest1 "$d/disk.img" >/dev/null
start_bench guest1 "$d/bench.out" xvda --rw randread   # connected until stopped
node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
wait_for 10 node_is /local/domain/0/backend/qdisk/1/51712/state 4 ||
    fail "the device did not connect"
wait_for 10 sim_check 1 bound -ge 1 || fail "no bound port while connected"
sim_status
sim_check 1 granted -gt 0 || fail "no grants while connected"
wait_for 10 sim_check 1 mapped -gt 0 || fail "nothing pinned while connected"
stop_bench
wait_for 10 sim_check total granted = 0 || { sim_status; fail "grants left"; }
wait_for 10 sim_check total bound = 0 || { sim_status; fail "ports left"; }
sim_status
