#!/bin/bash
# SPDX-License-Identifier: MIT
# bgsnap core and gcore, one after the other, on one 1 GiB 'bgsnap guest'
# with two writer threads: what the README's "Debug a live process" table
# shows. Run as root from the top of the tree after a build:
#
#   tests/bench/core_vs_gcore.sh [BUILD_DIR] [SIZE]
#
# For each tool: how long it took, the longest time a writer of the guest
# wanted to run and could not (its stop_max_ns: the stop, a write fault,
# or preemption), the file's size, and gdb's 'info threads' on the core.
# Not a test: figures depend on the machine and its load.
set -eu
BUILD=${1:-build}
SIZE=${2:-1G}
B=$BUILD/bgsnap
D=$(mktemp -d "${TMPDIR:-/tmp}/core-vs-gcore.XXXXXX")
trap 'rm -rf "$D"' EXIT

coproc GUEST { exec "$B" guest --size "$SIZE" --writers 2; }
# A coprocess's descriptors are not there in a pipeline's subshells: the
# reply goes into a variable first.
ask() { echo "$*" >&"${GUEST[1]}"; read -r REPLY_LINE <&"${GUEST[0]}"; }
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
stop_max_us() {
	ask stats
	echo $(($(echo "$REPLY_LINE" | field stop_max_ns) / 1000))
}
ask info
PID=$(echo "$REPLY_LINE" | field pid)
sleep 1

ask reset
t0=$(date +%s%N)
gcore -o "$D/gcore" "$PID" >/dev/null 2>&1
t1=$(date +%s%N)
stop=$(stop_max_us)
echo "gcore:  elapsed $(((t1 - t0) / 1000000)) ms," \
	"writers' longest stop $stop us," \
	"$(stat -c %s "$D/gcore.$PID") bytes"

sleep 0.5
ask reset
t0=$(date +%s%N)
"$B" core --pid "$PID" -o "$D/bgsnap.core" --json --quiet >"$D/core.json"
t1=$(date +%s%N)
stop=$(stop_max_us)
echo "bgsnap: elapsed $(((t1 - t0) / 1000000)) ms," \
	"writers' longest stop $stop us," \
	"$(stat -c %s "$D/bgsnap.core") bytes," \
	"blackout $(($(field blackout_ns <"$D/core.json") / 1000)) us," \
	"longest write fault $(($(field stall_ns_max <"$D/core.json") / 1000)) us"
ask reset
sleep 5
stop=$(stop_max_us)
echo "nothing: writers' longest stop over 5 s with no dump $stop us" \
	"(preemption alone)"
ask quit

for c in "$D/gcore.$PID" "$D/bgsnap.core"; do
	echo "== gdb -batch -ex 'info threads' on $(basename "$c")"
	gdb -batch -nx -ex 'info threads' "$B" "$c" 2>&1 |
		perl -0pe "s/warning: Unexpected size of section \`[^']*' in core file\.\n//g" |
		grep -E '^[* ] +[0-9]+ +Thread'
done
