#!/usr/bin/env bash
# `xbdctl block-attach` and `block-detach` on xbd-sim against the trees
# recorded under libxl 4.17 (tests/data/reference-trees/): for every
# recording, the disk of its xl config is attached live and the device's
# nodes — backend and frontend directories with their parents, libxl's copy
# under /libxl — must match the recording key by key: the same paths,
# values and permissions, with the frontend's domid and the target path
# normalised (tests/xbd-tree-cmp.c says how).  Then block-detach must remove
# exactly what libxl__device_destroy removes.  Altered copies of a recording
# (a node dropped, added, a value or a permission changed) must make the
# comparison fail, so it cannot pass by comparing nothing.
source "$srcdir/functions.sh"
set -e
requires command -v xenstore-ls
requires command -v xenstore-read
requires command -v xenstore-write
cmp=$builddir/xbd-tree-cmp
[ -x "$cmp" ] || fail "$cmp not built"
refs=$srcdir/data/reference-trees
d=$(test_tmpdir)
# Two guests, so that the live frontend's domid (2) differs from most of
# the recorded ones.
start_sim "$d/sim" --domain other --domain guest
guest_id=2
xenstore-read /local/domain/$guest_id/domid >/dev/null || fail "guest is not domid $guest_id"

# The backend of a detached disk: answer Closing with Closed, as a backend does.
be_closer() {
    local be=$1 i
    for i in $(seq 200); do
        if [ "$(xenstore-read "$be/state" 2>/dev/null)" = 5 ]; then
            xenstore-write "$be/state" 6
            return 0
        fi
        sleep 0.05
    done
    return 1
}

nrec=0
for cfg in "$refs"/*-cfg.txt; do
    rec=${cfg%-cfg.txt}
    name=$(basename "$rec")
    { read -r rtarget; read -r opts; } < <("$cmp" args "$rec")
    [ -n "$opts" ] || fail "$name: no disk options"
    # The live target: a file standing in for the recorded one (a path for
    # phy, a file for qdisk); the comparison normalises it.
    target=$d/$name.img
    truncate -s 32M "$target"
    # shellcheck disable=SC2086 # opts is a list of KEY=VALUE words
    vdev=$(xbdctl block-attach guest "$target" $opts) || fail "$name: block-attach $opts"
    xenstore-ls -fp / > "$d/$name.attached"
    "$cmp" attach "$rec" "$d/$name.attached" "$target" > "$d/$name.out" || {
        cat "$d/$name.out"
        fail "$name: the live tree of block-attach $opts differs from libxl's"
    }
    echo "$name ($rtarget; $opts): $(cat "$d/$name.out")"
    xbd-check-tree || fail "$name: xbd-check-tree finds faults after block-attach"

    # Negative checks on the first recording: altered copies must not match.
    if [ $nrec -eq 0 ]; then
        alt=$d/alt-$name
        # mutate WHAT SED-SCRIPT REPORT: an edited copy of the recording
        # must not match, and the difference must be reported as REPORT.
        mutate() {
            local what=$1 script=$2 report=$3 f
            cp "$rec-cfg.txt" "$alt-cfg.txt"
            for f in xenstore xenstore-perms; do
                sed -e "$script" "$rec-$f.txt" > "$alt-$f.txt"
            done
            if "$cmp" attach "$alt" "$d/$name.attached" "$target" > "$d/alt.out"; then
                fail "$name: a recording with $what still matches"
            fi
            grep -q -- "$report" "$d/alt.out" ||
                fail "$name: $what not reported as $report: $(cat "$d/alt.out")"
            echo "  altered recording ($what): $(head -n1 "$d/alt.out")"
        }
        mutate "no bootable node" '/\/bootable = /d' '^extra: .*/bootable '
        mutate "an extra direct-io-safe node" \
            's|^\(/local/domain/0/backend/[a-z]*/[0-9]*/[0-9]*\)/mode = "w"\(.*\)$|&\n\1/direct-io-safe = "1"\2|' \
            '^missing: .*/direct-io-safe '
        mutate "removable=1" 's|/removable = "0"|/removable = "1"|' '^value: .*/removable '
        mutate "the frontend writable by dom0" \
            's|^\(/local/domain/[0-9]*/device/vbd/[0-9]*/virtual-device = .*(n[0-9]*\),r0)|\1,b0)|' \
            '^perms: .*/virtual-device '
    fi

    # Detach: exactly the nodes libxl removes go.
    be=$(xbdctl block-list guest | awk -v v="$vdev" '$2 == v { print $5 }')
    [ -n "$be" ] || fail "$name: block-list does not show $vdev"
    devid=${be##*/}
    be_closer "$be" &
    closer=$!
    xbdctl block-detach guest "$vdev" || fail "$name: block-detach"
    wait $closer || fail "$name: block-detach never wrote state Closing"
    xenstore-ls -fp / > "$d/$name.detached"
    "$cmp" detach "$d/$name.attached" "$d/$name.detached" $guest_id "$devid" > "$d/$name.out" || {
        cat "$d/$name.out"
        fail "$name: block-detach did not remove what libxl removes"
    }
    echo "  $(cat "$d/$name.out")"
    if [ $nrec -eq 0 ]; then
        # The same comparison must fail when nothing was removed.
        if "$cmp" detach "$d/$name.attached" "$d/$name.attached" $guest_id "$devid" > "$d/alt.out"; then
            fail "$name: an unchanged tree passes as detached"
        fi
    fi
    nrec=$((nrec + 1))
done
[ $nrec -ge 5 ] || fail "only $nrec recordings found in $refs"
exit 0
