#!/usr/bin/env bash
# libxbdfront: every function xbdfront.h declares is listed in
# libxbdfront.syms and exported by the built library, and the library
# exports nothing else.
source "$srcdir/functions.sh"
set -e
requires nm --version

lib=$top_builddir/frontend/.libs/libxbdfront.so
test -f "$lib" || skip "no shared library built ($lib)"
d=$(test_tmpdir)

grep -oE '\bxbdfront_[a-z0-9_]+\(' "$top_srcdir/frontend/xbdfront.h" |
    tr -d '(' | sort -u >"$d/header"
grep -oE '^ +xbdfront_[a-z0-9_]+;' "$top_srcdir/frontend/libxbdfront.syms" |
    tr -d ' ;' | sort -u >"$d/syms"
nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' |
    sort -u >"$d/exported"

diff -u "$d/header" "$d/syms" ||
    fail "xbdfront.h and libxbdfront.syms disagree (see diff above)"
diff -u "$d/syms" "$d/exported" ||
    fail "libxbdfront.syms and the library's exports disagree"
test -s "$d/exported" || fail "no symbols exported"
echo "$(wc -l <"$d/exported") symbols: header, map and library agree"
