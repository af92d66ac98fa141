#!/usr/bin/env bash
# Where a saved process's time goes, seen from its side: off-CPU time of
# the owner's threads by kernel stack, mmap_lock waits, TLB flushes, and
# each write fault from the fault to its wake-up and then to running
# again, while 'bgsnap save --pid' saves it.
#
#   tests/bench/profile_owner.sh [--size 1G] [--bgsnap PATH]
#
# Starts the built-in guest (two writers at full speed), attaches
# bpftrace (tests/bench/profile_owner.bt) to it, saves it once, and
# prints bpftrace's maps, the TLB line of /proc/interrupts before and
# after, and the save's JSON report. Needs root and bpftrace (installed
# with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=1G
bgsnap=build/bgsnap
while (($#)); do
	case "$1" in
	--size) size=$2; shift ;;
	--bgsnap) bgsnap=$2; shift ;;
	-h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "profile_owner: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "profile_owner: needs root (bpftrace)" >&2; exit 1; }
command -v bpftrace >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y bpftrace >/dev/null
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

out=$(mktemp -d /var/tmp/profile_owner.XXXXXX)
coproc GUEST { exec "$bgsnap" guest --size "$size"; }
guest=$GUEST_PID
trap 'kill $guest 2>/dev/null; rm -rf "$out"' EXIT
echo info >&"${GUEST[1]}"
read -r reply <&"${GUEST[0]}"
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$reply")

tlb_before=$(grep TLB /proc/interrupts)
bpftrace tests/bench/profile_owner.bt "$pid" >"$out/trace" 2>&1 &
tracer=$!
sleep 3 # bpftrace attaches
"$bgsnap" save --pid "$pid" -o "$out/snap.bgs" --json >"$out/report"
kill -INT "$tracer"
wait "$tracer" || true
cat "$out/trace"
echo "TLB before: $tlb_before"
echo "TLB after:  $(grep TLB /proc/interrupts)"
cat "$out/report"
