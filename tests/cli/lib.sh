# SPDX-License-Identifier: MIT
# Shared by the command's end-to-end tests: sourced with the bgsnap binary
# and the mksnap helper as $1 and $2.
set -u

BGSNAP=$1
MKSNAP=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# python3 for JSON and byte surgery: the interpreter itself rather than a
# version manager's shim, and without site (-S): the standard library is
# all it needs, and the start-up costs ten times less.
PY=$(python3 -c 'import sys; print(sys.executable)') || exit 1
py() {
	"$PY" -S "$@"
}
# A snapshot of format 1.0, written before 1.1 existed: still read.
LEGACY_1_0=$HERE/../fuzz/corpus/reader/v1.0-legacy-small
T=$(mktemp -d "${TMPDIR:-/tmp}/bgsnap-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILS=0

fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

# A snapshot with known content at $T/snap.bgs, its regions' bytes and a
# manifest in $T/orig; skips the test (77) only where the kernel lacks
# userfaultfd write-protect (mksnap says so), fails on anything else.
make_snapshot() {
	mkdir -p "$T/orig"
	"$MKSNAP" "$T/snap.bgs" "$T/orig"
	local rc=$?
	[ $rc -eq 77 ] && exit 77
	[ $rc -eq 0 ] || { echo "FAIL: mksnap exited $rc" >&2; exit 1; }
}

# run NAME EXPECTED_RC CMD...: runs CMD with stdout in $T/NAME.out and
# stderr in $T/NAME.err; checks its exit status.
run() {
	local name=$1 want=$2
	shift 2
	"$@" >"$T/$name.out" 2>"$T/$name.err"
	local rc=$?
	[ $rc -eq "$want" ] ||
		fail "$name: exit $rc, expected $want: $(head -c 300 "$T/$name.err")"
}

# The error of run NAME is one line, "bgsnap: error: ...", containing
# each further argument.
one_line_error() {
	local name=$1 err="$T/$1.err"
	shift
	[ "$(wc -l <"$err")" -eq 1 ] ||
		fail "$name: stderr is not one line: $(cat "$err")"
	grep -q '^bgsnap: error: ' "$err" ||
		fail "$name: stderr does not start 'bgsnap: error: ': $(cat "$err")"
	for want in "$@"; do
		grep -qF -- "$want" "$err" ||
			fail "$name: stderr lacks '$want': $(cat "$err")"
	done
}

no_stderr() {
	[ ! -s "$T/$1.err" ] || fail "$1: unexpected stderr: $(cat "$T/$1.err")"
}

finish() {
	if [ $FAILS -ne 0 ]; then
		echo "$FAILS check(s) failed" >&2
		exit 1
	fi
	echo "all checks passed"
	exit 0
}
