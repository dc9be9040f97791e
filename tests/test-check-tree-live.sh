#!/usr/bin/env bash
# xbd-check-tree reading a live tree through libxenstore: a recorded real
# tree is loaded into xbd-sim's xenstored (values and permissions) with
# Debian's xenstore-write/xenstore-chmod, then checked live; a broken node
# must be reported exactly.  Skips until xbd-sim (with --run) is built.
source "$srcdir/functions.sh"
set -e

check=$top_builddir/xenstore-schema/xbd-check-tree
[ -x "$check" ] || fail "$check not built"
requires command -v xenstore-write
requires command -v xenstore-chmod
command -v xbd-sim >/dev/null 2>&1 || skip "xbd-sim not built"
xbd-sim --help 2>&1 | grep -q -- '--run' || skip "xbd-sim has no --run"
d=$(test_tmpdir)

cat > "$d/inner.sh" <<'INNER'
#!/usr/bin/env bash
# Runs inside xbd-sim --run, with XENSTORED_PATH set by the sim.
set -e
check=$1 tree=$2
[ -n "$XENSTORED_PATH" ] || { echo "xbd-sim --run did not set XENSTORED_PATH"; exit 77; }
# An empty store is clean.
"$check" || { echo "empty store not clean"; exit 1; }
re='^(/local/domain/[0-9]+/(backend/vbd|device/vbd)/[^ ]*) = "([^"]*)"   \(([^)]*)\)$'
while IFS= read -r line; do
    [[ $line =~ $re ]] || continue
    p=${BASH_REMATCH[1]} v=${BASH_REMATCH[3]} perms=${BASH_REMATCH[4]}
    xenstore-write "$p" "$v"
    xenstore-chmod "$p" ${perms//,/ }
done < "$tree"
out=$("$check" 2>&1) || { echo "recorded tree not clean live: $out"; exit 1; }
xenstore-write /local/domain/0/backend/vbd/1/51712/sectors "1x"
xenstore-chmod /local/domain/0/backend/vbd/1/51712/sectors n0 r1
set +e
out=$("$check" 2>/dev/null); rc=$?
set -e
want='/local/domain/0/backend/vbd/1/51712/sectors: type: value "1x" is not a decimal unsigned integer (expected: uint sectors in [0, 18446744073709551615], written by backend)'
[ "$rc" -eq 1 ] && [ "$out" = "$want" ] || { echo "broken node: exit $rc, got: $out"; exit 1; }
exit 0
INNER
chmod +x "$d/inner.sh"
xbd-sim --run-dir "$d/sim" --run "$d/inner.sh $check $srcdir/data/reference-trees/phy-loop-xenstore-perms.txt"
