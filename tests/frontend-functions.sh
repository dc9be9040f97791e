# Helpers for the frontend's shell tests against tests/xbdf-fakeback.
# Source after functions.sh:
#
#   source "$srcdir/frontend-functions.sh"
#   fake_disk_setup             # private xbd-sim, guest1, an 8 MiB image
#                               # attached as xvda: sets d, be, fe
#   fakeback_run FB-ARGS -- CMD...   # a fresh backend for one command
#                               # run as guest1; returns CMD's status

fake_disk_setup() {
    requires xbd-sim --help
    requires command -v xenstore-read
    d=$(test_tmpdir)
    start_sim "$d/sim" --domain guest1
    truncate -s 8M "$d/disk.img"
    xbdctl block-attach guest1 "$d/disk.img" >/dev/null
    be=/local/domain/0/backend/qdisk/1/51712
    fe=/local/domain/1/device/vbd/51712
}

fakeback_run() {
    local fb=() rc=0 fbpid
    while [ "$1" != -- ]; do fb+=("$1"); shift; done; shift
    "$builddir/xbdf-fakeback" $be "${fb[@]}" &
    fbpid=$!
    cleanup_fn kill_wait $fbpid
    run_as guest1 "$@" || rc=$?
    kill_wait $fbpid
    return $rc
}

# backd_disk_setup SIZE: private xbd-sim with guest1, xbd-backd (log in
# $d/backd.log), an image of SIZE attached as xvda and its backend in
# InitWait.  Sets d, be, fe; defines node_is PATH VALUE.
backd_disk_setup() {
    requires command -v xenstore-read
    requires xbdfront --help
    d=$(test_tmpdir)
    start_sim "$d/sim" --domain guest1
    truncate -s "$1" "$d/disk.img"
    start_backd "$d/backd.log"
    xbdctl block-attach guest1 "$d/disk.img" >/dev/null
    be=/local/domain/0/backend/qdisk/1/51712
    fe=/local/domain/1/device/vbd/51712
    wait_for 10 node_is $be/state 2 || fail "the backend did not reach InitWait"
}

node_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
