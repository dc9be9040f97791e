# xbdkit test helpers.  Source this at the top of every shell test:
#
#   source "$srcdir/functions.sh"
#   set -e
#   requires xenstore-ls --help
#   d=$(test_tmpdir)            # unique per test, removed at exit
#   cleanup_fn echo bye         # run at exit, last registered first
#
# Tests exit 0 on success, 77 to skip, anything else on failure.
# Names are unique per test (the script name and $$), so `make -j check`
# is safe.

# Where are we?  The harness sets these; running a test by hand from
# tests/ in the build tree works too.
: "${srcdir:=$(cd "$(dirname "$0")" && pwd)}"
: "${builddir:=$(pwd)}"
: "${top_builddir:=$(cd "$builddir/.." && pwd)}"
: "${top_srcdir:=$(cd "$srcdir/.." && pwd)}"
export srcdir builddir top_builddir top_srcdir

test_name=$(basename "$0" .sh)

# ---- cleanup ------------------------------------------------------------
_cleanup_fns=()
cleanup_fn() {
    _cleanup_fns+=("$*")
}
_run_cleanup() {
    local rc=$? i
    for (( i=${#_cleanup_fns[@]}-1; i>=0; i-- )); do
        eval "${_cleanup_fns[$i]}" || :
    done
    exit $rc
}
trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- skipping -------------------------------------------------------------
# requires CMD [ARGS...]: skip the test unless CMD runs successfully.
requires() {
    if ! "$@" >/dev/null 2>&1; then
        echo "$0: skipped: requires: $*"
        exit 77
    fi
}

# requires_root: skip unless running as root.
requires_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: skipped: requires root"
        exit 77
    fi
}

skip() {
    echo "$0: skipped: $*"
    exit 77
}

fail() {
    echo "$0: FAIL: $*" >&2
    exit 1
}

# ---- temporary files ------------------------------------------------------
# A private directory, removed at exit.  It lives under /tmp with a short
# name because unix socket paths are limited to 107 bytes.  Tests call it as
# d=$(test_tmpdir), in a subshell, where a cleanup_fn would be lost; so the
# name carries the test's pid ($$ is the test's in a subshell too) and the
# test removes its own directories at exit.
test_tmpdir() {
    mktemp -d "/tmp/xbd-${test_name:0:12}.$$.XXXXXX"
}
cleanup_fn "rm -rf /tmp/xbd-${test_name:0:12}.$$.*"

# ---- waiting --------------------------------------------------------------
# wait_for SECONDS CMD [ARGS...]: retry CMD every 0.05 s until it succeeds;
# fail the test after SECONDS.
wait_for() {
    local limit=$1; shift
    local deadline=$(( $(date +%s%N) / 1000000 + limit * 1000 ))
    until "$@" >/dev/null 2>&1; do
        if [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ]; then
            echo "$0: timed out after ${limit}s waiting for: $*" >&2
            return 1
        fi
        sleep 0.05
    done
}

# kill_wait PID: SIGTERM a process and wait for it (then SIGKILL after 5 s).
kill_wait() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || :; return 0; }
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || :
    wait "$pid" 2>/dev/null || :
}

# ---- xbd-sim --------------------------------------------------------------
# Most tests run captive: `xbd-sim --run-dir "$d/sim" --run 'CMD'` exits with
# CMD's status.  A test that wants to stay in its own shell instead:
#
#   start_sim "$d/sim" --domain guest1    # foreground sim in the background,
#                                         # waits for $DIR/ready, stops at exit,
#                                         # and exports dom0's environment
#   run_as guest1 xenstore-ls             # a command as another domain
start_sim() {
    local dir=$1; shift
    requires xbd-sim --help
    xbd-sim --run-dir "$dir" "$@" &
    sim_pid=$!
    cleanup_fn kill_wait $sim_pid
    wait_for 10 test -e "$dir/ready" || fail "xbd-sim did not become ready"
    export XBD_SIM_DIR=$dir XBD_SIM_DOMID=0 XENSTORED_PATH=$dir/d0.xs
}

run_as() {
    local dom=$1; shift
    xbdctl run-as "$dom" -- "$@"
}

# A bench as background load, for as long as the checks made under it take
# on however slow a machine (a fixed --seconds can end first):
#
#   start_bench guest1 "$d/bench" xvda --queues 2   # sets bench_pid
#   ...checks while it runs...
#   stop_bench                # fails the test if the bench had already
#                             # ended; SIGINT, then it must exit 0 with
#                             # its results on stdout (xbdfront(1))
#
# xbdctl run-as execs xbdfront, so bench_pid is xbdfront itself (a
# `run_as ... &` would give a subshell, and killing it leaves xbdfront).
start_bench() {
    local dom=$1 out=$2; shift 2
    xbdctl run-as "$dom" -- xbdfront bench "$@" --seconds 3600 >"$out" &
    bench_pid=$!
    _bench_out=$out
    cleanup_fn kill_wait $bench_pid
}
stop_bench() {
    kill -0 $bench_pid 2>/dev/null ||
        fail "the bench ended before the checks made under it: $(cat "$_bench_out")"
    kill -INT $bench_pid
    wait $bench_pid || fail "the bench failed or did not stop on SIGINT: $(cat "$_bench_out")"
    grep -q ' I/Os in ' "$_bench_out" || fail "no bench results after SIGINT"
}

# ---- xbd-backd ------------------------------------------------------------
# start_backd LOG [OPTION]...: xbd-backd in the background against the sim
# start_sim started, with --debug, its log in LOG (printed at exit); waits
# for its control socket; stops it at exit.  Sets backd_pid.
start_backd() {
    local log=$1; shift
    requires xbd-backd --help
    xbd-backd --debug "$@" 2>"$log" &
    backd_pid=$!
    cleanup_fn kill_wait $backd_pid
    cleanup_fn "echo '--- xbd-backd log'; cat '$log'"
    wait_for 10 test -S "$XBD_SIM_DIR/xbd-backd.sock" || fail "xbd-backd did not start"
}
