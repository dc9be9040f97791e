#!/usr/bin/env bash
# xbd-check-tree passes every recorded real-Xen tree (with and without
# permissions), quietly and with exit status 0.
source "$srcdir/functions.sh"
set -e

check=$top_builddir/xenstore-schema/xbd-check-tree
[ -x "$check" ] || fail "$check not built"
n=0
for f in "$srcdir"/data/reference-trees/*-xenstore*.txt; do
    out=$("$check" --dump "$f" 2>&1) || fail "$(basename "$f"): exit $?: $out"
    [ -z "$out" ] || fail "$(basename "$f"): unexpected output: $out"
    n=$((n + 1))
done
[ "$n" -eq 10 ] || fail "expected 10 recorded trees, found $n"

# Standard input, --help, usage errors.
"$check" --dump - < "$srcdir/data/reference-trees/phy-loop-xenstore-perms.txt"
"$check" --help | grep -q -- '--dump FILE' || fail "--help"
set +e
"$check" --no-such-option 2>/dev/null; [ $? -eq 2 ] || fail "bad option: want exit 2"
"$check" --dump /nonexistent 2>/dev/null; [ $? -eq 2 ] || fail "missing file: want exit 2"
echo '/local/domain/0/backend/vbd/1/2/state = "4' | "$check" --dump - 2>/dev/null
[ $? -eq 2 ] || fail "malformed line: want exit 2"
exit 0
