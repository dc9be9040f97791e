#!/usr/bin/env bash
# The committed generated files (xenstore-schema/xbd-keys.h and
# docs/xenstore-keys.md) are exactly what the schema generates now.
# Fix a failure with: make -C xenstore-schema regen, then commit.
source "$srcdir/functions.sh"
set -e

gen=$top_builddir/xenstore-schema/xbd-schema-gen
[ -x "$gen" ] || fail "$gen not built"
d=$(test_tmpdir)

"$gen" --keys-h > "$d/xbd-keys.h"
"$gen" --markdown > "$d/xenstore-keys.md"
diff -u "$top_srcdir/xenstore-schema/xbd-keys.h" "$d/xbd-keys.h" ||
    fail "xenstore-schema/xbd-keys.h is out of date: run make -C xenstore-schema regen"
diff -u "$top_srcdir/docs/xenstore-keys.md" "$d/xenstore-keys.md" ||
    fail "docs/xenstore-keys.md is out of date: run make -C xenstore-schema regen"

# Every backend and frontend key of the schema is documented.
for k in sectors ring-ref%u queue-%u/event-channel max-ring-pages hotplug-status; do
    grep -qF "| \`$k\` |" "$top_srcdir/docs/xenstore-keys.md" || fail "$k not documented"
done
"$gen" --bogus 2>/dev/null && fail "bad option accepted"
exit 0
