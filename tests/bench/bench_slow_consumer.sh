#!/usr/bin/env bash
# A save into a consumer slower than the writers: how long a write fault
# waits when the disk is far behind.
#
#   tests/bench/bench_slow_consumer.sh [--size 768M] [--rate 10m]
#                                      [--repeat 3] [--bgsnap PATH]
#
# Starts the built-in guest (SIZE of memory, two writer threads at full
# speed), then saves it with 'bgsnap save --pid P -o - --json', once into
# /dev/null (the baseline: a consumer that keeps up) and once through
# 'pv -L RATE' (a reader throttled to RATE bytes a second), REPEAT times
# each, alternating, on the same guest. Prints, per consumer, the medians
# of the save's elapsed time, its write faults and its stall p50, p99 and
# max (the time from bgsnap reading a write fault to letting its writer
# go), and the peak write buffers (the overflow included); then checks
# the last throttled snapshot with 'bgsnap verify'. A benchmark: nothing
# here is asserted but that every save and the verify succeed.
#
# pv is installed with apt-get when run as root, otherwise the command is
# printed (exit 1). Exit 4: this machine cannot save ('bgsnap caps').
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."

size=768M
rate=10m
repeat=3
bgsnap=build/bgsnap
die() { echo "bench_slow_consumer: $*" >&2; exit 1; }
while (($#)); do
	case "$1" in
	--size) size=$2; shift ;;
	--rate) rate=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--bgsnap) bgsnap=$2; shift ;;
	-h | --help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

if ! command -v pv >/dev/null; then
	[ "$(id -u)" -eq 0 ] || die "needs pv: sudo apt-get install -y pv"
	DEBIAN_FRONTEND=noninteractive apt-get install -y pv >/dev/null 2>&1 ||
		{ apt-get update >/dev/null &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y pv >/dev/null; } ||
		die "apt-get install pv failed"
fi
[ -x "$bgsnap" ] || die "no bgsnap at '$bgsnap' (build first: .ci/bootstrap build)"
"$bgsnap" caps >/dev/null || exit 4

work=$(mktemp -d /var/tmp/bench_slow.XXXXXX)
coproc GUEST { exec "$bgsnap" guest --size "$size"; }
guest=$GUEST_PID
cleanup() {
	kill "$guest" 2>/dev/null || true
	wait "$guest" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
echo info >&"${GUEST[1]}"
read -r reply <&"${GUEST[0]}"
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$reply")
[ -n "$pid" ] || die "the guest did not start: $reply"

# One save; prints its JSON report (stderr, as the snapshot takes stdout).
save() {
	if [ "$1" = null ]; then
		"$bgsnap" save --pid "$pid" -o - --json 2>"$work/report" >/dev/null
	else
		"$bgsnap" save --pid "$pid" -o - --json 2>"$work/report" |
			pv -q -L "$rate" >"$work/slow.bgs"
	fi
	cat "$work/report"
}

echo "bench_slow_consumer: $size guest (pid $pid, 2 writers), consumer" \
	"/dev/null and pv -L $rate, $repeat saves each; load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < repeat; i++)); do
	save null >>"$work/null.json"
	save slow >>"$work/slow.json"
done

python3 - "$work/null.json" "$work/slow.json" "$rate" <<'EOF'
import json, statistics, sys

def rows(path):
    return [json.loads(line) for line in open(path) if line.startswith("{")]

print("%-16s %9s %8s %11s %11s %11s %11s" %
      ("consumer", "elapsed", "faults", "stall p50", "stall p99",
       "stall max", "peak buf"))
for name, path in (("/dev/null", sys.argv[1]), ("pv -L " + sys.argv[3], sys.argv[2])):
    r = rows(path)
    med = lambda k: statistics.median(x[k] for x in r)
    print("%-16s %7.2f s %8d %8.1f us %8.1f us %8.2f ms %7.1f MiB" %
          (name, med("elapsed_s"), med("faults"), med("stall_us_p50"),
           med("stall_us_p99"), med("stall_us_max") / 1000,
           med("peak_buffer_bytes") / 2**20))
EOF
"$bgsnap" verify "$work/slow.bgs" --quiet &&
	echo "bgsnap verify: the last snapshot through pv is whole"
