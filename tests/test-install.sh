#!/usr/bin/env bash
# `make install DESTDIR=…` from this build tree puts everything a Xen host
# needs where the configured directories say (README.md, docs/xen-host.md):
# the programs, libxbdfront (.so and its versioned names), xbdfront.h,
# xbdfront.pc, a man page for every installed program, the hotplug script,
# the systemd unit.  Files baked with paths (the .pc file, the unit) must
# name the configured --prefix, and nothing may land outside the configured
# directories.  Then a tiny program is built against the installed header
# and library through pkg-config and run.
source "$srcdir/functions.sh"
set -e
requires command -v make
requires command -v pkg-config
d=$(test_tmpdir)
dest=$d/root

# A sub-make of its own: not the jobserver of the `make check` running us.
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make --no-print-directory "$@"
}

# The configured directories, fully expanded, as the Makefiles see them.
dir_of() {
    printf 'print-%%:\n\t@echo $($*)\n' |
        submake -s -C "$top_builddir/$1" -f Makefile -f - "print-$2"
}
prefix=$(dir_of . prefix)
bindir=$(dir_of . bindir)
sbindir=$(dir_of . sbindir)
libdir=$(dir_of . libdir)
includedir=$(dir_of . includedir)
mandir=$(dir_of . mandir)
pkglibexecdir=$(dir_of tools pkglibexecdir)
xenscriptdir=$(dir_of tools xenscriptdir)
unitdir=$(dir_of tools systemdsystemunitdir)
unit_installed=no
grep -q '^systemdsystemunit_DATA = ' "$top_builddir/tools/Makefile" && unit_installed=yes
[ -n "$prefix" ] && [ -n "$sbindir" ] && [ -n "$xenscriptdir" ] || fail "cannot read the configured directories"

submake -C "$top_builddir" install DESTDIR="$dest" > "$d/install.log" 2>&1 || {
    tail -n 30 "$d/install.log"
    fail "make install DESTDIR=$dest failed"
}

exe() { [ -f "$dest$1" ] && [ -x "$dest$1" ] || fail "not installed (executable): $1"; }
file() { [ -f "$dest$1" ] || fail "not installed: $1"; }

for p in xbd-backd xbd-sim xbdctl; do exe "$sbindir/$p"; done
exe "$bindir/xbdfront"
exe "$bindir/xbd-check-tree"
exe "$pkglibexecdir/xbd-null-dm"

# The library: the development link, the soname, the real file.
[ -L "$dest$libdir/libxbdfront.so" ] || fail "no libxbdfront.so link in $libdir"
real=$(readlink -f "$dest$libdir/libxbdfront.so")
case $real in "$dest$libdir"/libxbdfront.so.*.*.*) ;; *) fail "libxbdfront.so -> $real" ;; esac
soname=$(objdump -p "$real" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
[ -n "$soname" ] || soname=libxbdfront.so.0
[ -e "$dest$libdir/$soname" ] || fail "no $soname (the soname) in $libdir"
file "$includedir/xbdfront.h"
file "$libdir/pkgconfig/xbdfront.pc"

# A man page for every program installed (section 1 or 8), and the library's.
for prog in "$dest$bindir"/* "$dest$sbindir"/* "$dest$pkglibexecdir"/*; do
    [ -f "$prog" ] || continue
    n=$(basename "$prog")
    [ -f "$dest$mandir/man1/$n.1" ] || [ -f "$dest$mandir/man8/$n.8" ] ||
        fail "no man page for $n in $mandir/man1 or man8"
done
file "$mandir/man3/libxbdfront.3"

# The hotplug script, and where libxl looks for it (/etc/xen/scripts)
# when configured with --sysconfdir=/etc.
exe "$xenscriptdir/block-xbd"
case $xenscriptdir in */xen/scripts) ;; *) fail "hotplug script dir $xenscriptdir" ;; esac
if [ "$xenscriptdir" = "$(dir_of . sysconfdir)/xen/scripts" ]; then
    submake -C "$top_builddir/tools" install-dist_xenscriptSCRIPTS sysconfdir=/etc \
        DESTDIR="$d/etc" > "$d/etc.log" 2>&1 || fail "installing with sysconfdir=/etc: $(cat "$d/etc.log")"
    [ -x "$d/etc/etc/xen/scripts/block-xbd" ] || fail "sysconfdir=/etc does not give /etc/xen/scripts/block-xbd"
fi
file "$(dir_of docs docdir)/xen-host.md"

# The systemd unit, starting the installed daemon.
if [ $unit_installed = yes ]; then
    file "$unitdir/xbd-backd.service"
    grep -q "^ExecStart=$sbindir/xbd-backd\\b" "$dest$unitdir/xbd-backd.service" ||
        fail "the unit does not start $sbindir/xbd-backd: $(grep ExecStart "$dest$unitdir/xbd-backd.service")"
    # Every directive is one systemd knows (the binary is not in its place
    # under DESTDIR, so only the parse is judged).
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify "$dest$unitdir/xbd-backd.service" >"$d/verify" 2>&1 || :
        ! grep -Ei 'unknown (key|section)|failed to parse|invalid' "$d/verify" ||
            fail "systemd does not accept the unit: $(cat "$d/verify")"
    fi
else
    echo "configured without a systemd unit directory: the unit is not installed"
fi

# Nothing outside the configured places: under the prefix, except the
# unit and the hotplug script (and configuration) whose directories
# configure chose (sysconfdir may be /etc, the unit dir /lib/systemd/system).
sysconfdir=$(dir_of . sysconfdir)
while IFS= read -r f; do
    f=${f#"$dest"}
    case $f in
        "$prefix"/*|"$sysconfdir"/*|"$xenscriptdir"/*) ;;
        "$unitdir"/*) [ $unit_installed = yes ] || fail "$f installed without a unit dir" ;;
        *) fail "$f is outside the prefix $prefix and the configured directories" ;;
    esac
done < <(find "$dest" -type f -o -type l)

# The .pc file names the installed places, and builds a program.
pc=$dest$libdir/pkgconfig/xbdfront.pc
grep -qx "prefix=$prefix" "$pc" || fail "xbdfront.pc: $(grep '^prefix=' "$pc"), configured $prefix"
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs xbdfront) || fail "pkg-config --cflags --libs xbdfront failed"
case " $flags " in *" -I$dest$includedir "*) ;; *" -I"*) fail "cflags $flags" ;; esac
case " $flags " in *" -L$dest$libdir "*) ;; *) fail "libs $flags" ;; esac
case " $flags " in *" -lxbdfront "*) ;; *) fail "libs $flags" ;; esac
cat > "$d/prog.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <xbdfront.h>

int
main(void)
{
    uint32_t v = 0;

    if (xbdfront_parse_device("xvdb", &v) != 0 || v != 51728)
        return 1;
    printf("%s\n", xbdfront_get_version());
    return strlen(xbdfront_get_version()) > 0 ? 0 : 1;
}
EOF
# The build's compiler, and its sanitizer flags: an ASan-built library
# needs an ASan-linked program.
cc=$(dir_of . CC)
san=$(dir_of . SANITIZER_CFLAGS)
# shellcheck disable=SC2086 # cc, san and flags are lists of words
${cc:-cc} $san -o "$d/prog" "$d/prog.c" $flags || fail "a program does not build against the installed library"
ver=$(LD_LIBRARY_PATH=$dest$libdir "$d/prog") || fail "the program does not run against the installed library"
ldd_out=$(LD_LIBRARY_PATH=$dest$libdir ldd "$d/prog" 2>/dev/null | grep libxbdfront || :)
case $ldd_out in *"$dest$libdir/"*) ;; *) fail "the program did not load the installed library: $ldd_out" ;; esac
echo "installed into $dest (prefix $prefix); a program built with pkg-config runs: libxbdfront $ver"
exit 0
