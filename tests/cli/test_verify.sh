#!/bin/bash
# SPDX-License-Identifier: MIT
# bgsnap verify: 0 only for a perfect file; 3 and one line naming the
# problem for every kind of damage and for what is not a snapshot. And a
# FIFO refused at once by every command that reads a file.
. "$(dirname "$0")/lib.sh"
make_snapshot
S=$T/snap.bgs

run good 0 "$BGSNAP" verify "$S"
no_stderr good
grep -qE "^$S: ok: 5 regions, [0-9]+ pages .* in [0-9]+ records, 2 attachments" \
	"$T/good.out" || fail "verify: no ok line: $(cat "$T/good.out")"
run quiet 0 "$BGSNAP" verify --quiet "$S"
no_stderr quiet
[ -s "$T/quiet.out" ] && fail "verify --quiet printed: $(cat "$T/quiet.out")"
run good_json 0 "$BGSNAP" verify --json "$S"
py - "$T/good_json.out" <<'PY' || fail "verify --json on a good file"
import json, sys
d = json.load(open(sys.argv[1]))
assert list(d) == ["file", "ok", "error", "file_size", "regions", "records",
                   "attachments", "pages", "format_version", "deep",
                   "elapsed_ns"], list(d)
assert d["ok"] is True and d["error"] is None and d["regions"] == 5
assert d["format_version"] == "1.2" and d["deep"] is False
PY
run deep 0 "$BGSNAP" verify --deep --json "$S"
py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] and d["deep"] is True' \
	"$T/deep.out" || fail "verify --deep --json on a good file"

# Format 1.0 (written before 1.1): verified by decoding its pages, both ways.
run legacy 0 "$BGSNAP" verify "$LEGACY_1_0"
no_stderr legacy
run legacy_deep 0 "$BGSNAP" verify -q --deep "$LEGACY_1_0"
run legacy_json 0 "$BGSNAP" verify --json "$LEGACY_1_0"
py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] and d["format_version"] == "1.0"' \
	"$T/legacy_json.out" || fail "verify --json on a 1.0 file"

# class|words the one-line message must contain (plain verify, then
# --deep: each checks every byte; an lz4 payload is checked as stored)
for spec in \
	"header|file header: checksum mismatch" \
	"regions|region table at offset 312: checksum mismatch" \
	"rechdr|record at offset|header checksum mismatch" \
	"payload|record at offset|(region '|stored checksum mismatch" \
	"raw|record at offset|(region '|pages |data checksum mismatch" \
	"attachment|attachment at offset|checksum mismatch" \
	"index|index at offset|checksum mismatch" \
	"footer|footer at offset|checksum mismatch" \
	"truncate|the store is incomplete" \
	"tail|no footer at the end of the file" \
	"hole|record at offset|no record header there"; do
	IFS='|' read -r cls w1 w2 w3 w4 <<<"$spec"
	py "$HERE/corrupt.py" "$S" "$T/$cls.bgs" "$cls" >/dev/null ||
		fail "corrupt.py $cls"
	run "$cls" 3 "$BGSNAP" verify "$T/$cls.bgs"
	words=("$T/$cls.bgs: ")
	for w in "$w1" "$w2" "$w3" "$w4"; do [ -n "$w" ] && words+=("$w"); done
	one_line_error "$cls" "${words[@]}"
	[ -s "$T/$cls.out" ] && fail "$cls: printed on stdout: $(cat "$T/$cls.out")"
	run "$cls-deep" 3 "$BGSNAP" verify --deep "$T/$cls.bgs"
	one_line_error "$cls-deep" "${words[@]}"
done

# 64 bits spread over an lz4 payload, one at a time: 1.1 refuses each
# without decoding (1.0 let some through: an lz4 block may still decode
# to the same pages; tests/unit/test_rs_corrupt.c flips every bit).
for k in $(seq 0 63); do
	py "$HERE/corrupt.py" "$S" "$T/bit.bgs" "bit$k" >/dev/null ||
		fail "corrupt.py bit$k"
	run "bit$k" 3 "$BGSNAP" verify "$T/bit.bgs"
	one_line_error "bit$k" "record at offset" "stored checksum mismatch"
done

# The JSON report of a damaged file says where, and exits 3 too.
run raw_json 3 "$BGSNAP" verify --json --quiet "$T/raw.bgs"
py - "$T/raw_json.out" <<'PY' || fail "verify --json on a damaged file"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False, d
assert d["error"]["code"] == -4103 and "checksum" in d["error"]["name"], d
assert "data checksum mismatch" in d["error"]["message"], d
PY

# Not snapshots at all.
head -c 100000 /dev/urandom >"$T/random"
run random 3 "$BGSNAP" verify "$T/random"
one_line_error random "$T/random: not a bgsnap store (bad magic)"
: >"$T/empty"
run empty 3 "$BGSNAP" verify "$T/empty"
one_line_error empty "$T/empty: the file is empty"
mkdir "$T/dir"
run dir 3 "$BGSNAP" verify "$T/dir"
one_line_error dir "$T/dir: is a directory"
run missing 3 "$BGSNAP" verify "$T/missing.bgs"
one_line_error missing "$T/missing.bgs: cannot open: No such file or directory"
run missing_json 3 "$BGSNAP" verify --json "$T/missing.bgs"
py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["file_size"] is None' \
	"$T/missing_json.out" || fail "verify --json on a missing file"
mkfifo "$T/fifo"
run fifo 3 timeout 10 "$BGSNAP" verify "$T/fifo"
one_line_error fifo "not a regular file"

# Every command that reads a file refuses a FIFO at once (issue 13, item
# 13: restore and flatten waited for a writer forever, restore with its
# signals held back: hence SIGKILL after 10 s), with nothing written.
sleep 120 &
SLEEPER=$!
run fifo_info 3 timeout -s KILL 10 "$BGSNAP" info "$T/fifo"
one_line_error fifo_info "$T/fifo: not a regular file"
run fifo_export 3 timeout -s KILL 10 "$BGSNAP" export "$T/fifo" --all \
	-o "$T/fifo-export"
one_line_error fifo_export "$T/fifo: not a regular file"
run fifo_restore 3 timeout -s KILL 10 "$BGSNAP" restore "$T/fifo" \
	--pid "$SLEEPER"
one_line_error fifo_restore \
	"restore: $T/fifo: not a regular file but a FIFO" "'restore -'"
run fifo_flatten 3 timeout -s KILL 10 "$BGSNAP" flatten "$T/fifo" \
	-o "$T/flat.bgs"
one_line_error fifo_flatten "flatten: $T/fifo: not a regular file but a FIFO"
run fifo_save 1 timeout -s KILL 10 "$BGSNAP" save --pid "$SLEEPER" \
	-o "$T/incr.bgs" --parent "$T/fifo"
one_line_error fifo_save "save: --parent $T/fifo: not a regular file but a FIFO"
run dev_restore 3 timeout -s KILL 10 "$BGSNAP" restore /dev/null \
	--pid "$SLEEPER"
one_line_error dev_restore \
	"/dev/null: not a regular file but a character device"
kill "$SLEEPER"
for f in flat.bgs incr.bgs; do
	[ ! -e "$T/$f" ] || fail "$f was written"
done
[ -p "$T/fifo" ] || fail "the FIFO was replaced"

# The original is untouched by all this and still perfect.
run again 0 "$BGSNAP" verify -q "$S"

# Usage.
run badopt 2 "$BGSNAP" verify --frobnicate "$S"
one_line_error badopt "verify: unknown option '--frobnicate'"
run nofile 2 "$BGSNAP" verify
one_line_error nofile "verify: missing FILE"
finish
