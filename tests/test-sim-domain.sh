#!/usr/bin/env bash
# Domain create/destroy as xenstore sees it: /local/domain/<id> appears with
# the guest's permissions and disappears, @introduceDomain and @releaseDomain
# fire (Debian's xenstore-watch), a guest cannot read dom0's nodes.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-watch
requires command -v xenstore-read

d=$(test_tmpdir)
start_sim "$d/sim"

xenstore-watch -n 2 @introduceDomain > "$d/intro" &
w1=$!
cleanup_fn "kill $w1 2>/dev/null"
xenstore-watch -n 2 @releaseDomain > "$d/rel" &
w2=$!
cleanup_fn "kill $w2 2>/dev/null"
# A watch fires once when registered: then it is in place.
wait_for 10 grep -q . "$d/intro"
wait_for 10 grep -q . "$d/rel"
# wait_for runs its command again each time: count inside it.
fired_twice() { [ "$(grep -c "^$1" "$2")" -ge 2 ]; }

id=$(xbdctl domain-create g1)
[ "$id" = 1 ] || fail "first domid is $id"
[ "$(xenstore-read /local/domain/1/name)" = g1 ] || fail "name node"
[ "$(xenstore-read /local/domain/1/domid)" = 1 ] || fail "domid node"
[ "$(run_as g1 xenstore-read /local/domain/1/name)" = g1 ] || fail "guest reads its own tree"
run_as g1 xenstore-write /local/domain/1/data/x 1 || fail "guest writes its own tree"
if run_as g1 xenstore-read /local/domain/0/name 2>/dev/null; then
    fail "guest read dom0's node"
fi
wait_for 10 fired_twice @introduceDomain "$d/intro" ||
    fail "@introduceDomain did not fire"

xbdctl domain-list | grep -q '^1 g1$' || fail "domain-list"
xbdctl domain-destroy g1
wait_for 10 fired_twice @releaseDomain "$d/rel" ||
    fail "@releaseDomain did not fire"
if xenstore-read /local/domain/1/name 2>/dev/null; then
    fail "/local/domain/1 survived destroy"
fi
test ! -e "$d/sim/d1.xs" || fail "destroyed domain's xenstore socket remains"
test ! -e "$d/sim/d1.host" || fail "destroyed domain's host socket remains"
if run_as 1 true 2>/dev/null; then fail "run-as a destroyed domain"; fi

# A second domain gets a new id: ids are not reused.
[ "$(xbdctl domain-create g2)" = 2 ] || fail "domid reused"
