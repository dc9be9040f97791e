#!/bin/bash
# ceph-lane.sh — a throwaway one-node Ceph cluster (one mon, optionally one
# mgr, one bluestore OSD on a sparse file) on loopback, for `make check-rbd`
# and the RBD benchmark.  Debian 12's Ceph 16.2 (pacific) packages; no
# systemd, no privileged ports; only `install` needs root.
#
#   ceph-lane.sh install    apt-get the packages (root; does nothing when present)
#   ceph-lane.sh up         create and start a cluster in $CEPH_LANE_DIR, wait
#                           until it is healthy with its OSD up and in
#   ceph-lane.sh pool       create pool $CEPH_LANE_POOL (rbd pool init) and a
#                           $CEPH_LANE_SIZE image $CEPH_LANE_IMAGE in it
#   ceph-lane.sh fio        fio's rbd engine on that image: randread/randwrite,
#                           4k, iodepth 1 and 32 (the benchmark's reference)
#   ceph-lane.sh fio-one RW DEPTH    one of those jobs
#   ceph-lane.sh down       stop the daemons (by recorded PID only), delete the dir
#   ceph-lane.sh env        print `export CEPH_CONF=...` for clients
#
# Environment:
#   CEPH_LANE_DIR      /tmp/ceph-lane/cluster   all state, sockets, logs
#   CEPH_LANE_PORT     a free one in 40000-49999  monitor (msgr2) port on 127.0.0.1
#   CEPH_LANE_MGR      1 | 0    start a ceph-mgr (default 1).  RBD works without
#                               it; `ceph -s` then shows no PG states and turns
#                               HEALTH_WARN (MGR_DOWN) after 120 s
#   CEPH_LANE_KEEP     1        on a failed `up`, leave the cluster running
#   CEPH_LANE_POOL / CEPH_LANE_IMAGE / CEPH_LANE_SIZE    rbd / lane-img / 1G
#   CEPH_LANE_FIO_RUNTIME    seconds per fio job (default 10)
#   CEPH_LANE_UP_TIMEOUT     seconds to wait for health (default 120)
#
# Exit status: 0 done, 1 failed, 77 `install` cannot install (not root, or
# apt-get failed), with the reason on stderr.
#
# Facts this rests on (found while writing the recipe this is adapted from):
# Debian ships no pkg-config file for librbd; the monitor map names the
# release (pacific: change it when the base moves); the OSD needs about
# 1 GiB of memory (osd_memory_target); every client of one cluster needs
# its own admin socket (hence $pid.$cctid in its name).
set -euo pipefail

D=${CEPH_LANE_DIR:-/tmp/ceph-lane/cluster}
WITH_MGR=${CEPH_LANE_MGR:-1}
POOL=${CEPH_LANE_POOL:-rbd}
IMAGE=${CEPH_LANE_IMAGE:-lane-img}
SIZE=${CEPH_LANE_SIZE:-1G}
FIO_RUNTIME=${CEPH_LANE_FIO_RUNTIME:-10}
UP_TIMEOUT=${CEPH_LANE_UP_TIMEOUT:-120}
CONF=$D/ceph.conf
export CEPH_CONF=$CONF

log() { printf 'ceph-lane: %s\n' "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
ceph_() { timeout 60 ceph --conf "$CONF" --connect-timeout 20 "$@"; }

PACKAGES="ceph-mon ceph-osd ceph-common uuid-runtime python3"

missing_packages() {
    local p out=
    for p in $PACKAGES $([ "$WITH_MGR" = 1 ] && echo ceph-mgr); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || out="$out $p"
    done
    echo "$out"
}

cmd_install() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        log "packages missing and not root:$missing"
        exit 77
    fi
    log "apt-get install$missing"
    # The postinst scripts try systemd: "Failed to connect to bus" is harmless.
    # shellcheck disable=SC2086
    if ! { apt-get update -q >/dev/null &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
               $missing >/dev/null; }; then
        log "apt-get could not install:$missing"
        exit 77
    fi
}

write_conf() {
    local port=$1 fsid=$2
    cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.\$pid.\$cctid.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
crash dir = $D/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
[client]
log file = /dev/null
[mon]
mon data = $D/\$name
mon cluster log file = $D/log/cluster.log
mon data avail warn = 2
mon data avail crit = 1
[mgr]
mgr data = $D/\$name
[osd]
osd data = $D/\$name
osd objectstore = bluestore
osd memory target = 1073741824
bluestore block create = true
bluestore block path = $D/\$name.block
bluestore block size = 10737418240
bluestore fsck on mount = false
bluestore fsck on mkfs = false
CONF
}

free_port() {
    local p
    for _ in $(seq 50); do
        p=$((40000 + RANDOM % 10000))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
    done
    die "no free port"
}

# Alive: exists and is not a zombie.
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }

# Start a daemon in the foreground, in the background; record its PID (only
# recorded PIDs are ever signalled).
start_daemon() {
    local name=$1; shift
    "$@" -f >"$D/log/$name.stdout" 2>&1 &
    echo $! >"$D/pids/$name"
}

healthy() {
    local js
    js=$(ceph_ -s -f json 2>/dev/null) || return 1
    python3 - "$js" "$WITH_MGR" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
om = s["osdmap"]; om = om.get("osdmap", om)      # nesting differs between releases
ok = (s["health"]["status"] in ("HEALTH_OK", "HEALTH_WARN")
      and om["num_up_osds"] >= 1 and om["num_in_osds"] >= 1)
if sys.argv[2] == "1":
    ok = ok and s.get("mgrmap", {}).get("available", False)
sys.exit(0 if ok else 1)
PY
}

wait_health() {
    local deadline=$(( $(date +%s) + UP_TIMEOUT )) f
    until healthy; do
        [ "$(date +%s)" -lt "$deadline" ] || die "cluster not healthy after ${UP_TIMEOUT}s (logs: $D/log)"
        for f in "$D"/pids/*; do
            alive "$(cat "$f")" || die "$(basename "$f") died (see $D/log)"
        done
        sleep 0.5
    done
}

cmd_up() {
    local port fsid uuid osd_id t0=$SECONDS
    [ -e "$CONF" ] && die "$D already holds a cluster; run '$0 down' first"
    mkdir -p "$D"/{run,log,crash,pids,mon.a,mgr.x,osd.0}
    port=${CEPH_LANE_PORT:-$(free_port)}
    fsid=$(uuidgen)
    write_conf "$port" "$fsid"

    # One keyring for every entity: the monitor imports all of it at mkfs.
    ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$D/keyring" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' \
        --cap mds 'allow *' >/dev/null
    ceph-authtool "$D/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' \
        --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null

    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" --enable-all-features \
        --set-min-mon-release pacific "$D/monmap" >/dev/null
    ceph-mon --conf "$CONF" -i a --mkfs --monmap "$D/monmap" --keyring "$D/keyring" \
        >"$D/log/mon.a.mkfs" 2>&1 || { cat "$D/log/mon.a.mkfs" >&2; die "mon mkfs"; }
    start_daemon mon.a ceph-mon --conf "$CONF" -i a
    [ "$WITH_MGR" = 1 ] && start_daemon mgr.x ceph-mgr --conf "$CONF" -i x

    uuid=$(uuidgen)
    osd_id=$(ceph_ osd new "$uuid")         # also marks it "in"
    [ "$osd_id" = 0 ] || die "unexpected osd id $osd_id"
    ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$D/log/osd.0.mkfs" 2>&1 ||
        { tail -20 "$D/log/osd.0.mkfs" >&2; die "osd mkfs"; }
    start_daemon osd.0 ceph-osd --conf "$CONF" -i 0
    wait_health
    log "cluster up in $((SECONDS - t0)) s on v2:127.0.0.1:$port (mgr=$WITH_MGR), $D"
}

cmd_pool() {
    local out
    out=$(ceph_ osd pool create "$POOL" 8 8 2>&1) || { echo "$out" >&2; die "pool create"; }
    timeout 120 rbd pool init "$POOL"
    timeout 60 rbd create --size "$SIZE" "$POOL/$IMAGE"
    log "image $POOL/$IMAGE of $SIZE created"
}

fio_job() { # rw iodepth
    local js
    js=$(timeout $((FIO_RUNTIME + 60)) fio --name="$1-qd$2" --ioengine=rbd --clientname=admin \
        --pool="$POOL" --rbdname="$IMAGE" --rw="$1" --bs=4k --iodepth="$2" --numjobs=1 \
        --runtime="$FIO_RUNTIME" --time_based --output-format=json)
    python3 - "$js" "$1" "$2" <<'PY'
import json, sys
j = json.loads(sys.argv[1])["jobs"][0]
d = j["read"] if "read" in sys.argv[2] else j["write"]
cl = d["clat_ns"]; p = cl.get("percentile", {})
print(f"fio-rbd {sys.argv[2]:9s} 4k QD{sys.argv[3]:<3s} {d['iops']:9.0f} IOPS  "
      f"clat mean {cl['mean']/1000:8.0f} us  p99 {p.get('99.000000', 0)/1000:8.0f} us")
PY
}

cmd_fio() {
    local rw qd
    command -v fio >/dev/null || die "fio is not installed"
    for rw in randwrite randread; do for qd in 1 32; do fio_job $rw $qd; done; done
}

cmd_down() {
    local f pid n
    [ -d "$D" ] || return 0
    # OSD first, then mgr, then mon; each by its recorded PID only, and only
    # if that PID is still the program we started.
    for n in osd.0 mgr.x mon.a; do
        f=$D/pids/$n
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        alive "$pid" || continue
        [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "ceph-${n%%.*}" ] ||
            { log "pid $pid is not ceph-${n%%.*}: not touching it"; continue; }
        kill -TERM "$pid"
        for _ in $(seq 200); do alive "$pid" || break; sleep 0.05; done
        alive "$pid" && { log "$n ($pid) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$pid"; }
        wait "$pid" 2>/dev/null || true      # reap it if it is our child
    done
    rm -rf "$D"
    log "torn down $D"
}

# A failed `up` shows the daemons' log tails and tears the cluster down
# (CEPH_LANE_KEEP=1 leaves it up for debugging).
on_exit() {
    local rc=$? f
    [ "$rc" = 0 ] || [ "${UP_ARMED:-0}" = 0 ] && return
    for f in "$D"/log/*.log "$D"/log/*.mkfs "$D"/log/*.stdout; do
        [ -s "$f" ] && { echo "==> $f <=="; tail -n 15 "$f"; }
    done >&2
    [ "${CEPH_LANE_KEEP:-0}" = 1 ] && { log "CEPH_LANE_KEEP=1: leaving the cluster in $D"; return; }
    cmd_down || true
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case "${1:-}" in
install) cmd_install ;;
up) UP_ARMED=1; cmd_up; UP_ARMED=0 ;;
pool) cmd_pool ;;
fio) cmd_fio ;;
fio-one) fio_job "$2" "$3" ;;
down) cmd_down ;;
env) echo "export CEPH_CONF=$CONF" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
