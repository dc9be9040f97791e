#!/usr/bin/env bash
# Debian's xenstore-* tools against the sim's xenstore daemon (xs-testd),
# through XENSTORED_PATH pointing at dom0's socket.
source "$srcdir/functions.sh"
set -e

# The tools' --help exits 1, so test for them with command -v.
for t in xenstore-read xenstore-write xenstore-ls xenstore-rm xenstore-chmod \
         xenstore-watch xenstore-list xenstore-exists; do
    command -v $t >/dev/null || skip "requires $t (xenstore-utils)"
done
[ -x "$builddir/xs-testd" ] || skip "xs-testd not built"

d=$(test_tmpdir)
"$builddir/xs-testd" "$d" 5 7 2>"$d/testd.log" &
testd=$!
cleanup_fn kill_wait $testd
wait_for 10 test -e "$d/ready" || fail "xs-testd did not start: $(cat "$d/testd.log")"
export XENSTORED_PATH=$d/dom0.sock

# Every tool call has a timeout: a hang is a failure.
xs() { timeout 10 "$@"; }

# ---- write / read / exists / list / rm -------------------------------------
xs xenstore-write /t/a 1 /t/b "two words" || fail "xenstore-write"
[ "$(xs xenstore-read /t/a)" = 1 ] || fail "xenstore-read /t/a"
[ "$(xs xenstore-read /t/b)" = "two words" ] || fail "xenstore-read /t/b"
xs xenstore-exists /t/a || fail "xenstore-exists /t/a"
[ "$(xs xenstore-list /t | tr '\n' ' ')" = "a b " ] || fail "xenstore-list /t"
xs xenstore-rm /t/a || fail "xenstore-rm"
if xs xenstore-exists /t/a; then fail "/t/a still exists after rm"; fi
if xs xenstore-read /t/missing 2>/dev/null; then fail "read of missing node succeeded"; fi

# ---- chmod and ls -p ---------------------------------------------------------
xs xenstore-chmod /t/b n0 r5 || fail "xenstore-chmod"
xs xenstore-write /t/c 3
# Normalise the dot padding that xenstore-ls adds.
got=$(xs xenstore-ls -p /t | sed 's/  *\(\. \)*\.* *(/ (/')
want='b = "two words" (n0,r5)
c = "3" (n0)'
[ "$got" = "$want" ] || fail "xenstore-ls -p /t: got
$got
want
$want"

# The tree as xs-testd made it: domains with domid and name, owned by them.
got=$(xs xenstore-ls -p /local/domain/5 | sed 's/  *\(\. \)*\.* *(/ (/')
want='domid = "5" (n5)
name = "guest5" (n5)'
[ "$got" = "$want" ] || fail "xenstore-ls -p /local/domain/5: got
$got"
xs xenstore-ls -f / | grep -qx '/local/domain/7/name = "guest7"' \
    || fail "xenstore-ls -f / lacks guest 7"

# ---- guests: own socket, own permissions ------------------------------------
[ "$(XENSTORED_PATH=$d/dom5.sock xs xenstore-read name)" = guest5 ] \
    || fail "guest 5 relative read of its name"
[ "$(XENSTORED_PATH=$d/dom5.sock xs xenstore-read /t/b)" = "two words" ] \
    || fail "guest 5 reads a node shared r5"
if XENSTORED_PATH=$d/dom7.sock xs xenstore-read /t/b 2>/dev/null; then
    fail "guest 7 read a node shared only with 5"
fi
if XENSTORED_PATH=$d/dom5.sock xs xenstore-read /local/domain/7/name 2>/dev/null; then
    fail "guest 5 read guest 7's node"
fi
if XENSTORED_PATH=$d/dom5.sock xs xenstore-write /local/domain/7/x y 2>/dev/null; then
    fail "guest 5 wrote into guest 7's tree"
fi
if XENSTORED_PATH=$d/dom5.sock xs xenstore-write /t/b z 2>/dev/null; then
    fail "guest 5 wrote a read-only node"
fi

# ---- watch: initial fire, then events ---------------------------------------
timeout 10 xenstore-watch -n 3 /w >"$d/watch.out" &
watcher=$!
cleanup_fn kill_wait $watcher
wait_for 10 grep -qx /w "$d/watch.out" || fail "no initial watch event"
xs xenstore-write /w/x 1 /w/y 2
wait $watcher || fail "xenstore-watch exited with an error"
[ "$(tr '\n' ' ' <"$d/watch.out")" = "/w /w/x /w/y " ] \
    || fail "watch events: $(tr '\n' ' ' <"$d/watch.out")"

# ---- a directory too large for one reply (DIRECTORY_PART) ------------------
args=()
for i in $(seq -w 1 300); do
    args+=("/big/a-fairly-long-child-name-number-$i" "")
done
xs xenstore-write "${args[@]}" || fail "writing 300 children"
n=$(xs xenstore-list /big | wc -l)
[ "$n" -eq 300 ] || fail "xenstore-list /big gave $n names, want 300"
[ "$(xs xenstore-list /big | tail -n 1)" = a-fairly-long-child-name-number-300 ] \
    || fail "last name of /big wrong"
n=$(xs xenstore-ls /big | wc -l)
[ "$n" -eq 300 ] || fail "xenstore-ls /big gave $n lines, want 300"
xs xenstore-rm /big

# ---- destroying a domain (xs_server_release) --------------------------------
# (That the released domain's connections close is checked in test-xs-wire:
# libxenstore's xs_read_watch does not return when its connection dies.)
timeout 10 xenstore-watch -n 2 @releaseDomain >"$d/rel.out" &
relw=$!
cleanup_fn kill_wait $relw
wait_for 10 grep -qx @releaseDomain "$d/rel.out" || fail "no initial @releaseDomain"
kill -USR1 $testd
wait $relw || fail "@releaseDomain watcher failed"
[ "$(grep -cx @releaseDomain "$d/rel.out")" -eq 2 ] || fail "@releaseDomain did not fire"
[ ! -e "$d/dom7.sock" ] || fail "guest 7's socket remains"
if xs xenstore-exists /local/domain/7; then fail "/local/domain/7 remains"; fi
[ "$(xs xenstore-read /local/domain/5/name)" = guest5 ] || fail "guest 5 harmed"

kill -0 $testd || fail "xs-testd died"
# A clean exit on SIGTERM (under ASan this also means: no leaks).
kill $testd
rc=0; wait $testd || rc=$?
[ $rc -eq 0 ] || fail "xs-testd exited with $rc: $(cat "$d/testd.log")"
[ ! -e "$d/dom0.sock" ] || fail "xs-testd left its socket behind"
echo "ok"
