#!/usr/bin/env bash
# xbd-sim's command line: captive mode exit status and environment,
# foreground mode readiness and cleanup, xbdctl's domain commands.
source "$srcdir/functions.sh"
set -e

d=$(test_tmpdir)

# Captive mode: the command's status is the sim's; the environment is dom0's.
set +e
xbd-sim --run-dir "$d/a" --run 'exit 7'
rc=$?
set -e
[ $rc -eq 7 ] || fail "captive exit status: got $rc, want 7"
out=$(xbd-sim --run-dir "$d/a" --run 'echo "$XBD_SIM_DOMID $XENSTORED_PATH"; test -S "$XBD_SIM_DIR/d0.host"')
[ "$out" = "0 $d/a/d0.xs" ] || fail "captive environment: $out"
[ -z "$(ls "$d/a")" ] || fail "sockets left behind: $(ls "$d/a")"

# Domains: create, list, run-as, destroy.
out=$(xbd-sim --run-dir "$d/b" --domain pre --run '
    xbdctl domain-create g1
    xbdctl domain-list
    xbdctl run-as g1 -- sh -c "echo as=\$XBD_SIM_DOMID"
    xbdctl run-as g1 -- xbdctl domain-create evil 2>&1 || echo refused
    xbdctl domain-create g1 2>&1 || echo dup
    xbdctl domain-destroy g1
    xbdctl domain-destroy 0 2>&1 || echo nodom0
    test ! -e "$XBD_SIM_DIR/d2.host" && echo gone
    xbdctl domain-list')
echo "$out"
grep -qx '2' <<<"$out" || fail "domain-create did not print 2"
grep -q '^1 pre$' <<<"$out" || fail "--domain pre missing"
grep -qx 'as=2' <<<"$out" || fail "run-as environment"
grep -q 'only dom0 may manage domains' <<<"$out" || fail "guest could create a domain"
grep -qx 'refused' <<<"$out" || fail "guest domain-create did not fail"
grep -qx 'dup' <<<"$out" || fail "duplicate name accepted"
grep -qx 'nodom0' <<<"$out" || fail "dom0 destroyable"
grep -qx 'gone' <<<"$out" || fail "destroyed domain's socket remains"
[ "$(grep -c '^2 g1$' <<<"$out")" -eq 1 ] || fail "g1 listed after destroy"

# Foreground mode: ready file, then SIGTERM cleans up.
xbd-sim --run-dir "$d/c" --domain x &
pid=$!
cleanup_fn kill_wait $pid
wait_for 10 test -e "$d/c/ready"
test -S "$d/c/d0.host" || fail "no dom0 host socket"
test -S "$d/c/d1.host" || fail "no domain 1 host socket"
XBD_SIM_DIR="$d/c" XBD_SIM_DOMID=0 xbdctl domain-list | grep -q '^1 x$' || fail "foreground list"
kill -TERM $pid
wait $pid || fail "xbd-sim exited with $? on SIGTERM"
[ -z "$(ls "$d/c")" ] || fail "left behind after SIGTERM: $(ls "$d/c")"

# Bad usage is refused.
if xbd-sim --memory 12345 --run-dir "$d/e" 2>/dev/null; then fail "bad --memory accepted"; fi
xbd-sim --help | grep -q -- '--run-dir' || fail "--help"
