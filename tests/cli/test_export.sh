#!/bin/bash
# SPDX-License-Identifier: MIT
# bgsnap export: the bytes of each region as saved, sparse files, 0600,
# nothing replaced without --force, symlinks and other files that are not
# regular refused even with it, no partial output.
. "$(dirname "$0")/lib.sh"
make_snapshot
S=$T/snap.bgs

# orig NAME: the file holding what region NAME held at the save.
orig() {
	py -c 'import json,sys
for m in json.load(open(sys.argv[1])):
    if m["name"] == sys.argv[2]: print(m["orig"])' "$T/orig/manifest.json" "$1"
}

# Only the expected files in a directory: no temporaries left behind.
only_files() {
	local dir=$1
	shift
	local got want
	got=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
	want=$([ $# -gt 0 ] && printf '%s\n' "$@" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] || fail "$dir holds '$got', expected '$want'"
}

mode_0600() {
	[ "$(stat -c %a "$1")" = 600 ] || fail "$1: mode $(stat -c %a "$1")"
}

# One region.
mkdir "$T/one"
run ram 0 "$BGSNAP" export "$S" --region ram -o "$T/one/ram.bin"
no_stderr ram
grep -qF "region 'ram' -> $T/one/ram.bin: 2 MiB" "$T/ram.out" ||
	fail "export summary: $(cat "$T/ram.out")"
cmp "$T/one/ram.bin" "$T/orig/$(orig ram)" || fail "ram: bytes differ"
mode_0600 "$T/one/ram.bin"

# Holes stay holes: 3 data pages of 16 MiB.
run sparse 0 "$BGSNAP" export "$S" -q -r sparse -o "$T/one/sparse.bin"
[ -s "$T/sparse.out" ] && fail "export -q printed: $(cat "$T/sparse.out")"
cmp "$T/one/sparse.bin" "$T/orig/$(orig sparse)" || fail "sparse: bytes differ"
size=$(stat -c %s "$T/one/sparse.bin")
alloc=$(($(stat -c %b "$T/one/sparse.bin") * $(stat -c %B "$T/one/sparse.bin")))
[ "$size" -eq $((16 << 20)) ] || fail "sparse: size $size"
[ "$alloc" -le $((1 << 20)) ] ||
	fail "sparse: $alloc bytes allocated for 3 data pages: not sparse"

# Not replaced without --force; replaced with it.
echo precious >"$T/one/keep"
run exists 1 "$BGSNAP" export "$S" -r ram -o "$T/one/keep"
one_line_error exists "$T/one/keep: exists (--force replaces it)"
[ "$(cat "$T/one/keep")" = precious ] || fail "keep was overwritten"
chmod 0644 "$T/one/keep"
run force 0 "$BGSNAP" export "$S" -r ram -o "$T/one/keep" --force
cmp "$T/one/keep" "$T/orig/$(orig ram)" || fail "--force: bytes differ"
mode_0600 "$T/one/keep"

# A symlink at the output is refused, with --force too; its target is
# untouched.
echo target >"$T/victim"
ln -s "$T/victim" "$T/one/link"
run link 1 "$BGSNAP" export "$S" -r ram -o "$T/one/link"
one_line_error link "$T/one/link: is a symbolic link: refused"
run link_force 1 "$BGSNAP" export "$S" -r ram -o "$T/one/link" --force
one_line_error link_force "is a symbolic link: refused"
[ "$(cat "$T/victim")" = target ] || fail "the symlink's target was written"
[ -L "$T/one/link" ] || fail "the symlink was replaced"
# Nor anything else that is not a regular file: a FIFO stays one.
mkfifo "$T/one/fifo"
run fifo_force 1 timeout 10 "$BGSNAP" export "$S" -r ram -o "$T/one/fifo" \
	--force
one_line_error fifo_force "$T/one/fifo: is a FIFO: refused"
[ -p "$T/one/fifo" ] || fail "the FIFO was replaced"
rm -f "$T/one/fifo"
ln -s "$T/one" "$T/dirlink"
run dirlink 1 "$BGSNAP" export "$S" --all -o "$T/dirlink"
one_line_error dirlink "$T/dirlink: is a symbolic link: refused"
only_files "$T/one" ram.bin sparse.bin keep link

# --all: one file per region, names that stay inside DIR.
run all 0 "$BGSNAP" export "$S" --all -o "$T/all" --json
no_stderr all
[ "$(stat -c %a "$T/all")" = 700 ] || fail "--all: DIR mode $(stat -c %a "$T/all")"
py - "$T/all.out" "$T/orig/manifest.json" "$T/all" <<'PY' || fail "export --all --json"
import json, os, sys
d = json.load(open(sys.argv[1]))
manifest = {m["name"]: m for m in json.load(open(sys.argv[2]))}
out = os.path.realpath(sys.argv[3])
assert [list(r) for r in d["regions"]] == \
    [["name", "output", "length", "bytes_written", "skipped"]] * 5, d
for r in d["regions"]:
    path = os.path.realpath(r["output"])
    assert os.path.dirname(path) == out, ("escaped the directory", r)
    name = os.path.basename(path)
    assert not name.startswith("."), name
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-~"), name
    assert name.endswith(".raw"), name
    m = manifest[r["name"]]
    assert r["length"] == m["len"] and not r["skipped"]
    assert open(path, "rb").read() == \
        open(os.path.join(os.path.dirname(sys.argv[2]), m["orig"]), "rb").read(), \
        "bytes of " + r["name"]
    assert os.stat(path).st_mode & 0o777 == 0o600, path
sparse = [r for r in d["regions"] if r["name"] == "sparse"][0]
assert sparse["bytes_written"] == 3 * 4096, sparse  # zero pages not written
PY
only_files "$T/all" ram.raw sparse.raw shm.raw noise.raw \
	"_._.._evil_name_with_space.raw"
[ -e "$T/evil" ] && fail "a region name wrote outside DIR"
# Again: nothing replaced, and refused before anything is written.
run all_again 1 "$BGSNAP" export "$S" --all -o "$T/all"
one_line_error all_again "exists (--force replaces it)"
only_files "$T/all" ram.raw sparse.raw shm.raw noise.raw \
	"_._.._evil_name_with_space.raw"
run all_force 0 "$BGSNAP" export "$S" --all -o "$T/all" --force -q

# To stdout (a pipe: every byte, zeroes included).
"$BGSNAP" export "$S" -r shm -o - 2>"$T/stdout.err" | cmp - "$T/orig/$(orig shm)" ||
	fail "export -o -: bytes differ"
no_stderr stdout

# A damaged record: exit 3, one line naming it, no output file, no
# temporary left.
# Which region holds the first uncompressed record depends on how the
# save cut its runs: ask verify.
py "$HERE/corrupt.py" "$S" "$T/raw.bgs" raw >/dev/null
mkdir "$T/bad"
hit=$("$BGSNAP" verify "$T/raw.bgs" 2>&1 | sed -n "s/.*(region '\([^']*\)'.*/\1/p")
[ -n "$hit" ] || fail "verify does not name the damaged record's region"
run damaged 3 "$BGSNAP" export "$T/raw.bgs" -r "$hit" -o "$T/bad/region.bin"
one_line_error damaged "$T/raw.bgs: record at offset" "(region '$hit'" \
	"data checksum mismatch"
only_files "$T/bad"

# Usage and lookup errors.
run noregion 2 "$BGSNAP" export "$S" -r nope -o "$T/bad/x"
one_line_error noregion "no region named 'nope'"
run neither 2 "$BGSNAP" export "$S" -o "$T/bad/x"
one_line_error neither "give one of --region NAME, --all and --core"
run both 2 "$BGSNAP" export "$S" -r ram --all -o "$T/bad"
one_line_error both "give one of --region NAME, --all and --core"
run noout 2 "$BGSNAP" export "$S" -r ram
one_line_error noout "-o OUT is needed"
run missing_arg 2 "$BGSNAP" export "$S" -r
one_line_error missing_arg "option '-r' needs an argument"
run dotdot 1 "$BGSNAP" export "$S" -r ram -o "$T/bad/.."
one_line_error dotdot "not a file name for the output"
run nosnap 3 "$BGSNAP" export "$T/nope.bgs" -r ram -o "$T/bad/x"
one_line_error nosnap "$T/nope.bgs: cannot open"
only_files "$T/bad"
finish
