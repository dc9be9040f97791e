#!/usr/bin/env bash
# Replay every fuzz harness's committed corpus (seeds and past crash
# reproducers, tests/fuzz/corpus/NAME/) through the harness: none may crash.
# With libFuzzer builds the harness is run with -runs=0 (replay only).
source "$srcdir/functions.sh"
set -e
d=$(test_tmpdir)
for h in $FUZZ_HARNESSES; do
    bin=$builddir/fuzz-$h
    [ -x "$bin" ] || fail "harness $bin not built"
    "$bin" -runs=0 "$srcdir/fuzz/corpus/$h" >"$d/$h.log" 2>&1 ||
        { cat "$d/$h.log"; fail "fuzz-$h crashed on its corpus"; }
    echo "fuzz-$h: corpus replayed"
done
