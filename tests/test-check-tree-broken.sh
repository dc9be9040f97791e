#!/usr/bin/env bash
# xbd-check-tree fails on deliberately broken copies of the recorded trees:
# one case per kind of finding, each checking the exact line printed.
source "$srcdir/functions.sh"
set -e

check=$top_builddir/xenstore-schema/xbd-check-tree
[ -x "$check" ] || fail "$check not built"
R=$srcdir/data/reference-trees
PF=$R/phy-file-xenstore-perms.txt       # phy, 1 queue, 4 pages, dom2
MQ=$R/multiqueue-xenstore-perms.txt     # phy, 2 queues, 16 pages, dom3
B=/local/domain/0/backend/vbd/2/51712
F=/local/domain/2/device/vbd/51712
Q=/local/domain/3/device/vbd/51712
d=$(test_tmpdir)
failed=0

# case NAME BASE EXPECTED-LINE SED-ARGS...: apply the sed edit to BASE, run
# the checker, want exit 1 and exactly EXPECTED-LINE on stdout.
case_() {
    local name=$1 base=$2 want=$3 got rc
    shift 3
    sed "$@" "$base" > "$d/$name.txt"
    cmp -s "$base" "$d/$name.txt" && { echo "FAIL $name: edit did nothing"; failed=1; return; }
    set +e
    got=$("$check" --dump "$d/$name.txt" 2>/dev/null)
    rc=$?
    set -e
    if [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
        echo "FAIL $name: exit $rc"
        echo "  want: $want"
        echo "  got:  $got"
        failed=1
    else
        echo "ok $name"
    fi
}

case_ unknown-key "$PF" \
"$B/bogus: unknown: \"bogus\" is not a blkif backend key (expected: only keys of docs/xenstore-keys.md for this side)" \
    -e "\$a $B/bogus = \"1\"   (n0,r2)"

case_ stray-device-dir "$PF" \
"/local/domain/0/backend/vbd/2/xvdb: unknown: not a blkif device directory (expected: backend/<kind>/<fdom>/<devid> or device/vbd/<devid> with decimal ids)" \
    -e "\$a /local/domain/0/backend/vbd/2/xvdb = \"\"   (n0,r2)"

case_ key-of-other-side "$PF" \
"$F/sectors: unknown: \"sectors\" is a backend key, found in the frontend directory (expected: only keys of docs/xenstore-keys.md for this side)" \
    -e "\$a $F/sectors = \"1\"   (n2,r0)"

case_ mistyped "$PF" \
"$B/mode: type: value \"x\" is not one of the listed words (expected: mode one of r|w, written by toolstack)" \
    -e "s|$B/mode = \"w\"|$B/mode = \"x\"|"

case_ mistyped-number "$PF" \
"$F/event-channel: type: value \"8 \" is not a decimal unsigned integer (expected: uint event-channel in [1, 4294967295], written by frontend)" \
    -e "s|$F/event-channel = \"8\"|$F/event-channel = \"8 \"|"

case_ out-of-range "$PF" \
"$B/sector-size: range: value \"1000\" is not a power of two (expected: uint sector-size in [512, 65536] and a power of two, written by backend)" \
    -e "s|$B/sector-size = \"512\"|$B/sector-size = \"1000\"|"

case_ be-node-owned-by-frontend "$PF" \
"$B/sectors: perm: owned by domain 2, the frontend domain: the frontend side can write it (expected: (n0,r2): owned by the backend domain, readable by the frontend domain)" \
    -e "s|$B/sectors = \"65536\"   (n0,r2)|$B/sectors = \"65536\"   (n2,r0)|"

case_ be-node-writable-by-frontend "$PF" \
"$B/sectors: perm: the frontend domain 2 may write it ('b') (expected: (n0,r2): owned by the backend domain, readable by the frontend domain)" \
    -e "s|$B/sectors = \"65536\"   (n0,r2)|$B/sectors = \"65536\"   (n0,b2)|"

case_ fe-node-owned-by-backend "$PF" \
"$F/ring-ref0: perm: owned by domain 0, the backend domain: the backend side can write it (expected: (n2,r0): owned by the frontend domain, readable by the backend domain)" \
    -e "s|$F/ring-ref0 = \"8\"   (n2,r0)|$F/ring-ref0 = \"8\"   (n0,r2)|"

case_ peer-cannot-read "$PF" \
"$B/info: perm: the frontend domain 2 cannot read it (expected: (n0,r2): owned by the backend domain, readable by the frontend domain)" \
    -e "s|$B/info = \"0\"   (n0,r2)|$B/info = \"0\"   (n0)|"

case_ connected-without-sectors "$PF" \
"$B/sectors: missing: absent while the backend is Connected (4) (expected: written by backend; present whenever the backend is Connected)" \
    -e "\|$B/sectors = |d"

case_ toolstack-key-missing "$PF" \
"$B/params: missing: absent while the backend is Connected (4) (expected: written by toolstack; present whenever the backend is Initialising..Closed)" \
    -e "\|$B/params = |d"

case_ connected-without-event-channel "$PF" \
"$F/event-channel: missing: absent while the frontend is Initialised or Connected (expected: written by the frontend before Initialised)" \
    -e "\|$F/event-channel = |d"

case_ initialised-without-all-ring-refs "$PF" \
"$F/ring-ref3: missing: absent for a ring of 4 pages (expected: ring-ref0..ring-ref3 (4 pages))" \
    -e "s|$F/state = \"4\"|$F/state = \"3\"|" -e "\|$F/ring-ref3 = |d"

case_ multi-page-ring-refs-absent "$MQ" \
"$Q/queue-1/ring-ref14: missing: absent, with 1 more of the ring's 16 refs (expected: ring-ref0..ring-ref15 (16 pages))" \
    -e "\|$Q/queue-1/ring-ref1[45] = |d"

case_ ring-ref-and-ring-ref0 "$PF" \
"$F/ring-ref: conflict: both ring-ref and ring-ref0 are present (expected: ring-ref for a one-page ring or ring-ref0..N-1, never both)" \
    -e "\$a $F/ring-ref = \"12\"   (n2,r0)"

case_ ring-ref-beyond-order "$PF" \
"$F/ring-ref4: conflict: page 4 is beyond the ring's 4 pages (expected: ring refs 0..3 only)" \
    -e "\$a $F/ring-ref4 = \"12\"   (n2,r0)"

case_ order-above-backend-max "$PF" \
"$F/ring-page-order: range: ring of 4 pages exceeds what the backend accepts (expected: at most the backend's maximum order 1 (max-ring-page-order/max-ring-pages))" \
    -e "s|$B/max-ring-page-order = \"4\"|$B/max-ring-page-order = \"1\"|"

case_ schemes-disagree "$PF" \
"$B/max-ring-pages: conflict: 2 pages but max-ring-page-order is 4 (expected: max-ring-pages = 1 << max-ring-page-order (publish both schemes alike))" \
    -e "\$a $B/max-ring-pages = \"2\"   (n0,r2)"

case_ discard-half "$PF" \
"$B/discard-alignment: missing: absent while discard-granularity is present (expected: discard-granularity and discard-alignment together (blkif.h note 4))" \
    -e "\|$B/discard-alignment = |d"

case_ hotplug-error-without-reason "$PF" \
"$B/hotplug-error: missing: absent while hotplug-status is error (expected: a reason beside hotplug-status=error, for the operator)" \
    -e "s|$B/hotplug-status = \"connected\"|$B/hotplug-status = \"error\"|"

case_ frontend-id-mismatch "$PF" \
"$B/frontend-id: mismatch: frontend-id is 3 (expected: 2 (the domain in the path))" \
    -e "s|$B/frontend-id = \"2\"|$B/frontend-id = \"3\"|"

case_ queue-beyond-num-queues "$MQ" \
"$Q/queue-2: conflict: queue 2 is beyond multi-queue-num-queues 2 (expected: queue-0..queue-1)" \
    -e "\$a $Q/queue-2 = \"\"   (n3,r0)"

case_ queues-above-backend-max "$MQ" \
"$Q/multi-queue-num-queues: range: 2 queues requested (expected: at most the backend's multi-queue-max-queues 1)" \
    -e "s|multi-queue-max-queues = \"2\"|multi-queue-max-queues = \"1\"|"

case_ top-level-ring-with-queues "$MQ" \
"$Q/event-channel: conflict: top-level event-channel with 2 queues (expected: ring refs and event channels under queue-N/ when multi-queue-num-queues > 1)" \
    -e "\$a $Q/event-channel = \"9\"   (n3,r0)"

case_ queue-without-event-channel "$MQ" \
"$Q/queue-1/event-channel: missing: absent while the frontend is Initialised or Connected (expected: written by the frontend before Initialised)" \
    -e "\|$Q/queue-1/event-channel = |d"

# Without -p (no permissions) the permission checks stay silent, the rest
# still runs.
case_ no-perms-still-checked "$PF" \
"$B/sectors: missing: absent while the backend is Connected (4) (expected: written by backend; present whenever the backend is Connected)" \
    -e "s|   ([nrwb0-9,]*)\$||" -e "\|$B/sectors = |d"

[ "$failed" -eq 0 ] || fail "some broken trees were not reported exactly"
exit 0
