#!/bin/bash
# SPDX-License-Identifier: MIT
# bgsnap info, text and --json, on a snapshot with known content.
. "$(dirname "$0")/lib.sh"
make_snapshot

run text 0 "$BGSNAP" info "$T/snap.bgs"
no_stderr text
for want in "file        $T/snap.bgs" "snapshot    " "format 1.2" \
	"parent      none (a full snapshot)" "created     " "regions (5)" \
	"attachments (2)" "vmm.state" "bgsnap.stats" "save statistics" \
	"blackout" "writer stall"; do
	grep -qF -- "$want" "$T/text.out" || fail "info text lacks '$want'"
done
grep -qE '^  ram +0x[0-9a-f]{12} +2 MiB +4K anon +rw- ' "$T/text.out" ||
	fail "info text: no row for region 'ram': $(cat "$T/text.out")"
grep -qE '^  shm .* shmem ' "$T/text.out" || fail "info text: no shm row"

run json 0 "$BGSNAP" info --json "$T/snap.bgs"
no_stderr json
py - "$T/json.out" "$T/orig/manifest.json" <<'PY' || fail "info --json"
import json, sys
doc = json.load(open(sys.argv[1]))
manifest = json.load(open(sys.argv[2]))
top = ["file", "format_version", "snapshot_id", "parent_id", "incremental",
       "created", "created_ns", "host", "kernel", "file_size", "records",
       "pages", "pages_data", "pages_zero", "pages_parent", "data_bytes",
       "compression_ratio", "regions", "attachments", "stats"]
assert list(doc) == top, "keys or their order changed: %s" % list(doc)
assert doc["format_version"] == "1.2"
assert len(doc["snapshot_id"]) == 32 and doc["parent_id"] is None
assert doc["incremental"] is False
reg = ["name", "address", "length", "page_size", "kind", "prot", "pages",
       "pages_data", "pages_zero", "pages_parent", "data_bytes", "records",
       "compression_ratio"]
byname = {r["name"]: r for r in doc["regions"]}
assert len(doc["regions"]) == len(manifest) == 5
for r in doc["regions"]:
    assert list(r) == reg, list(r)
    assert r["pages"] == r["pages_data"] + r["pages_zero"] + r["pages_parent"]
    assert r["page_size"] == 4096 and r["prot"] == "rw-"
for m in manifest:
    r = byname[m["name"]]
    assert r["length"] == m["len"], (r, m)
    assert r["kind"] == ("shmem" if m["name"] == "shm" else "anon"), r
assert byname["noise"]["pages_data"] == 32, byname["noise"]  # stored raw
assert byname["noise"]["data_bytes"] == 32 * 4096, byname["noise"]
assert byname["sparse"]["pages_data"] == 3, byname["sparse"]
assert byname["ram"]["pages_zero"] == 128, byname["ram"]  # 2 of every 8
assert doc["pages"] == sum(m["len"] for m in manifest) // 4096
assert [a["name"] for a in doc["attachments"]] == ["vmm.state", "bgsnap.stats"]
assert doc["attachments"][0]["size"] == 30
st = doc["stats"]
for k in ["blackout_ns", "pages_total", "pages_by_scan", "pages_by_fault",
          "pages_unpopulated", "faults", "stall_ns_p50", "stall_ns_p99",
          "stall_ns_max", "stop_the_world"]:
    assert k in st, "stats lacks " + k
assert st["pages_total"] == doc["pages"]
assert st["pages_by_scan"] + st["pages_by_fault"] + st["pages_unpopulated"] \
    <= st["pages_total"] + st["pages_unpopulated"]
assert st["stop_the_world"] is False
PY

# Help and usage errors.
run help 0 "$BGSNAP" info --help
grep -q '^usage: bgsnap info FILE \[--json\]' "$T/help.out" || fail "info --help"
no_stderr help
run badopt 2 "$BGSNAP" info --jsn "$T/snap.bgs"
one_line_error badopt "info: unknown option '--jsn'" "bgsnap info --help"
run nofile 2 "$BGSNAP" info
one_line_error nofile "info: missing FILE"
run twofiles 2 "$BGSNAP" info "$T/snap.bgs" "$T/snap.bgs"
one_line_error twofiles "unexpected argument"
run missing 3 "$BGSNAP" info "$T/nope.bgs"
one_line_error missing "$T/nope.bgs: cannot open: No such file or directory"
run missing_json 3 "$BGSNAP" info --json "$T/nope.bgs"
[ -s "$T/missing_json.out" ] && fail "info --json printed on a missing file"

# Every command of the table answers --help with its usage on stdout.
for cmd in caps info verify export; do
	run "help_$cmd" 0 "$BGSNAP" "$cmd" --help
	grep -q "^usage: bgsnap $cmd" "$T/help_$cmd.out" || fail "$cmd --help"
done
run top_help 0 "$BGSNAP" --help
for cmd in info verify export; do
	grep -q "^  $cmd " "$T/top_help.out" || fail "bgsnap --help lacks $cmd"
done
# A file of format 1.0 is described, and says so.
run legacy 0 "$BGSNAP" info "$LEGACY_1_0"
no_stderr legacy
grep -qF "format 1.0" "$T/legacy.out" || fail "info 1.0: $(cat "$T/legacy.out")"
run legacy_json 0 "$BGSNAP" info --json "$LEGACY_1_0"
py -c 'import json,sys; assert json.load(open(sys.argv[1]))["format_version"] == "1.0"' \
	"$T/legacy_json.out" || fail "info --json 1.0"
finish
