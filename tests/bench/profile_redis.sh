#!/usr/bin/env bash
# Where a real Redis's main thread spends its time while 'bgsnap save
# --pid' saves it under load: per 100 ms, the time it ran, waited for a
# CPU, slept in write faults (and how many), slept otherwise, and how
# long it waited for its process's mmap lock; and bgsnap's holds of that
# lock over 5 ms.
#
#   tests/bench/profile_redis.sh [--size 1G] [--bgsnap PATH]
#
# Runs tests/bench/bench_redis.sh (its table is printed first) with
# bpftrace (tests/bench/profile_redis.bt) attached, and prints the
# buckets around bgsnap's save under load: those where Redis slept in
# faults for over 5 ms, with two before and two after. Needs root and
# bpftrace (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=1G
args=()
while (($#)); do
	case "$1" in
	--size) size=$2; shift ;;
	--bgsnap) args+=(--bgsnap "$2"); shift ;;
	-h | --help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "profile_redis: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "profile_redis: needs root (bpftrace)" >&2; exit 1; }
command -v bpftrace >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y bpftrace >/dev/null
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

out=$(mktemp -d /var/tmp/profile_redis.XXXXXX)
tracer=
trap '[ -z "$tracer" ] || kill $tracer 2>/dev/null; rm -rf "$out"' EXIT
bpftrace tests/bench/profile_redis.bt >"$out/trace" 2>&1 &
tracer=$!
sleep 3 # bpftrace attaches
tests/bench/bench_redis.sh --sizes "$size" --quiet --out "$out" "${args[@]}"
kill -INT "$tracer"
wait "$tracer" || true
tracer=

python3 - "$out/trace" <<'PY'
import re, sys

maps, holds = {}, []
for line in open(sys.argv[1]):
    m = re.match(r"@(\w+)\[(\d+)\]: (\d+)", line)
    if m:
        maps.setdefault(m.group(1), {})[int(m.group(2))] = int(m.group(3))
    m = re.match(r"hold (\d+) (read|write) (\d+)", line)
    if m:
        holds.append((int(m.group(1)), m.group(2), int(m.group(3))))
fault = maps.get("fault", {})
hot = [b for b, ns in fault.items() if ns > 5e6]
if not hot:
    sys.exit("profile_redis: no 100 ms with over 5 ms of fault sleep: "
             "did the save under load run?")
first, last = min(hot) - 2, max(hot) + 2
print("\nRedis's main thread per 100 ms, around bgsnap's save under load "
      "(ms; a span counts where it ends):")
print("%6s %8s %10s %12s %8s %12s %10s %10s" %
      ("t", "running", "runnable", "fault sleep", "faults", "other sleep",
       "mmap wait", "(longest)"))
keys = ("run", "wait", "fault", "faults", "sleep", "lockwait")
tot = [0] * len(keys)
for b in range(first, last + 1):
    row = [maps.get(k, {}).get(b, 0) for k in keys]
    tot = [a + r for a, r in zip(tot, row)]
    print("%5.1fs %8.1f %10.1f %12.1f %8d %12.1f %10.1f %10.1f" %
          ((b - first) / 10, row[0] / 1e6, row[1] / 1e6, row[2] / 1e6, row[3],
           row[4] / 1e6, row[5] / 1e6,
           maps.get("lockwait_max", {}).get(b, 0) / 1e6))
print("%6s %8.1f %10.1f %12.1f %8d %12.1f %10.1f" %
      ("all", tot[0] / 1e6, tot[1] / 1e6, tot[2] / 1e6, tot[3], tot[4] / 1e6,
       tot[5] / 1e6))
if tot[3]:
    print("mean fault sleep %.1f us" % (tot[2] / tot[3] / 1e3))
print("mmap wait: Redis's main thread waiting to take its process's mmap "
      "lock (counted in a sleep column too)")
near = [h for h in holds if first <= h[0] <= last]
print("bgsnap held Redis's mmap lock over 5 ms %d times around the save%s" %
      (len(near), ": " + ", ".join("%.1f ms (%s) at %.1fs" %
                                   (d / 1e6, w, (b - first) / 10)
                                   for b, w, d in near) if near else ""))
PY
