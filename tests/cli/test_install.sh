#!/bin/bash
# SPDX-License-Identifier: MIT
# cmake --install into a fresh prefix, then build a program against it the
# two ways users do (find_package and pkg-config) and run it.
#   test_install.sh BUILD_DIR C_COMPILER LIBDIR MANDIR SANITIZE
set -u
BUILD=$1 CC=$2 LIBDIR=$3 MANDIR=$4 SANITIZE=$5
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/bgsnap-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
P=$T/prefix
FAILS=0
fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}
# A sanitized library needs sanitized programs (the runtime comes first).
FLAGS=
[ "$SANITIZE" = ON ] && FLAGS="-fsanitize=address,undefined"

cmake --install "$BUILD" --prefix "$P" >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; echo "FAIL: cmake --install"; exit 1; }
for f in bin/bgsnap include/bgsnap.h "$LIBDIR/libbgsnap.a" \
	"$LIBDIR/libbgsnap.so" "$MANDIR/man1/bgsnap.1" \
	"$LIBDIR/pkgconfig/bgsnap.pc" "$LIBDIR/cmake/bgsnap/bgsnapConfig.cmake" \
	"$LIBDIR/cmake/bgsnap/bgsnapConfigVersion.cmake" \
	"$LIBDIR/cmake/bgsnap/bgsnapTargets.cmake"; do
	[ -e "$P/$f" ] || fail "not installed: $f"
done
# Only the one public header.
[ "$(find "$P/include" -type f | wc -l)" -eq 1 ] ||
	fail "headers installed: $(find "$P/include" -type f)"
"$P/bin/bgsnap" --version | grep -q '^bgsnap [0-9]' ||
	fail "the installed bgsnap does not run"
man -l "$P/$MANDIR/man1/bgsnap.1" 2>"$T/man.err" | grep -q 'EXIT STATUS' ||
	fail "the man page does not render"
[ -s "$T/man.err" ] && fail "man: $(cat "$T/man.err")"

# find_package(bgsnap): shared and static.
if cmake -S "$HERE/consumer" -B "$T/cm" -DCMAKE_PREFIX_PATH="$P" \
	-DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$FLAGS" \
	-DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >"$T/cm.log" 2>&1 &&
	cmake --build "$T/cm" >>"$T/cm.log" 2>&1; then
	"$T/cm/consumer" | grep -q '^bgsnap .*: checksum mismatch$' ||
		fail "find_package: the shared consumer does not run"
	"$T/cm/consumer_static" | grep -q '^bgsnap ' ||
		fail "find_package: the static consumer does not run"
	ldd "$T/cm/consumer_static" | grep -q libbgsnap &&
		fail "the static consumer loads libbgsnap.so"
else
	cat "$T/cm.log"
	fail "find_package(bgsnap): configure or build"
fi

# pkg-config.
export PKG_CONFIG_PATH=$P/$LIBDIR/pkgconfig
pc() { pkg-config "$@" bgsnap; }
pc --modversion | grep -q '^[0-9]' || fail "pkg-config --modversion"
pc --cflags | grep -qF -- "-I$P/include" || fail "pkg-config --cflags: $(pc --cflags)"
pc --libs | grep -qF -- "-L$P/$LIBDIR -lbgsnap" || fail "pkg-config --libs: $(pc --libs)"
for l in -luring -llz4 -lxxhash; do
	pc --static --libs | grep -qF -- "$l" ||
		fail "pkg-config --static lacks $l: $(pc --static --libs)"
done
# shellcheck disable=SC2046
"$CC" $FLAGS "$HERE/consumer/main.c" -o "$T/pc_consumer" $(pc --cflags --libs) ||
	fail "pkg-config: build"
LD_LIBRARY_PATH=$P/$LIBDIR "$T/pc_consumer" | grep -q '^bgsnap ' ||
	fail "pkg-config: the consumer does not run"

if [ $FAILS -ne 0 ]; then
	echo "$FAILS check(s) failed" >&2
	exit 1
fi
echo "all checks passed"
