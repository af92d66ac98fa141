#!/usr/bin/env bash
# A save into Ceph RADOS against the cluster's own write throughput, in one
# command, on the project's one-node test cluster (tests/ceph/cluster.sh):
#
#   tests/bench/bench_rados.sh [--size 2G] [--seconds 4] [--rounds 2]
#                              [--dir DIR] [--shared-cpus]
#
# Each round starts a fresh cluster (bluestore frees space lazily: a second
# round on the same OSD would run out of it), its OSD file sized for what
# the round writes, and measures, in an order that alternates between
# rounds:
#   rados bench   'rados bench SECONDS write -b 4194304 -t 8': the cluster's
#                 aio write throughput for bgsnap's object size (4 MiB),
#                 over about as long as a save of --size takes (a bench of
#                 a second or less is mostly its own start: it reported
#                 460-580 MB/s here where 4 s gave 790-890)
#   --pid         'bgsnap save --pid GUEST -o rados://bgsnap/NAME
#                 --compress none --json' of a 'bgsnap guest' of --size,
#                 its writers held: bytes stored over elapsed_s
#   in-process    the guest's own save (the library, reading its memory in
#                 place) to rados://, compress=none, writers held
# and prints each as MB/s (10^6 bytes a second, as rados bench does) with
# its ratio to the rados bench of its round. Then, the guest's two writers
# let go, what a save costs them:
#   stall         'bgsnap save --pid GUEST --compress none --json' into a
#                 file in DIR and into rados://, in an order that
#                 alternates: the write faults' stall p50, p99 and max and
#                 the blackout, and their medians over the rounds with
#                 rados:// over the file as a ratio.
# With two CPUs or more the cluster's daemons run on the last CPU, and the
# guest, bgsnap and rados bench on the others, as if the cluster were
# another host's; --shared-cpus lets all run anywhere, which measures the
# clients' CPU as much as the store (the OSD needs about a CPU of its own
# at these rates, and a client's every cycle is taken from it).
# Needs root (the cluster's daemons, ptrace); ceph packages come from
# tests/ceph/ceph_lib.sh. Exit 1 on any failure.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
top=$PWD

size=2G
seconds=4
rounds=2
dir=/var/tmp
split_cpus=1
while (($#)); do
	case "$1" in
	--size) size=$2; shift ;;
	--seconds) seconds=$2; shift ;;
	--rounds) rounds=$2; shift ;;
	--dir) dir=$2; shift ;;
	--shared-cpus) split_cpus=0 ;;
	-h|--help) sed -n '2,36s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench_rados: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

say() { echo "bench_rados: $*" >&2; }
die() { say "error: $*"; exit 1; }

size_bytes=$(numfmt --from=iec "$size" 2>/dev/null) ||
	die "--size: '$size' is not a size (512M, 2G)"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds: '$seconds' is not a number"
# Room for the three saves and a bench at up to 1.5 GB/s, and 4 GiB to
# spare.
export BGSNAP_CEPH_OSD_GIB=$(((3 * size_bytes + seconds * 1500000000) / (1 << 30) + 4))
last_cpu=$(($(nproc) - 1))
((last_cpu > 0)) || split_cpus=0
# Where the clients run: 'on_clients CMD...'.
client_cpus=0-$((last_cpu - 1))
((last_cpu == 1)) && client_cpus=0
on_clients() {
	if ((split_cpus)); then
		taskset -c "$client_cpus" "$@"
	else
		"$@"
	fi
}

say "building bgsnap"
cmake --build build -j"$(nproc)" --target bgsnap_cli >/dev/null ||
	die "the build failed"
bgsnap=$top/build/bgsnap

work=$(mktemp -d "$dir/bench_rados.XXXXXX")
cluster=$work/cluster
guest_pid=
cleanup() {
	[ -n "$guest_pid" ] && kill "$guest_pid" 2>/dev/null
	tests/ceph/cluster.sh stop "$cluster" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# json_num KEY: the number after "KEY": in the JSON on stdin.
json_num() {
	grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2
}

# MB/s of BYTES over SECONDS.
mbps() {
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'
}

rados_bench() {
	on_clients rados --id "$BGSNAP_CEPH_ID" -p "$BGSNAP_CEPH_POOL" \
		bench "$seconds" write \
		-b 4194304 -t 8 --no-cleanup 2>&1 |
		awk '/^Bandwidth \(MB\/sec\):/ { print int($3 + 0.5) }'
}

# A guest of --size, talking on fds 3 (to) and 4 (from); its pid in
# guest_pid.
start_guest() {
	coproc GUEST { exec "$bgsnap" guest --size "$size" --writers 2; }
	exec 3>&"${GUEST[1]}" 4<&"${GUEST[0]}"
	guest_pid=$GUEST_PID
}

# guest CMD...: send a command, print its one-line reply; fail unless ok.
guest() {
	local reply
	echo "$*" >&3
	IFS= read -r -t 120 reply <&4 || die "the guest did not answer '$*'"
	case "$reply" in
	*'"ok":true'*) echo "$reply" ;;
	*) die "guest '$*': $reply" ;;
	esac
}

stop_guest() {
	echo quit >&3 || true
	wait "$guest_pid" 2>/dev/null || true
	guest_pid=
}

# The two saves, as MB/s: bytes_written over elapsed_s.
save_pid() {
	local out
	out=$(on_clients "$bgsnap" save --pid "$guest_pid" \
		-o "rados://$BGSNAP_CEPH_POOL/pid-$1" --compress none \
		--ceph-id "$BGSNAP_CEPH_ID" --json -q) ||
		die "bgsnap save --pid failed"
	mbps "$(json_num bytes_written <<<"$out")" \
		"$(json_num elapsed_s <<<"$out")"
}

# (nomem: no Pss walk of the guest every 20 ms during its own save.)
save_in_process() {
	local out
	out=$(guest save "rados://$BGSNAP_CEPH_POOL/ip-$1" compress=none held \
		nomem)
	mbps "$(json_num bytes_written <<<"$out")" \
		"$(json_num elapsed_s <<<"$out")"
}

# pin_cluster_apart: the cluster's daemons (all their threads) on the last
# CPU, the guest on the clients' CPUs.
pin_cluster_apart() {
	local f
	for f in "$cluster"/run/*.pid; do
		taskset -a -p -c "$last_cpu" "$(cat "$f")" >/dev/null ||
			die "cannot pin $(basename "$f" .pid) to CPU $last_cpu"
	done
	taskset -a -p -c "$client_cpus" "$guest_pid" >/dev/null ||
		die "cannot pin the guest"
}

# save_stall file|rados ROUND: a save --pid under the writers; appends its
# JSON report, tagged with where it went, to $work/stall.json.
save_stall() {
	local target=$work/stall-$2.bgs

	[ "$1" = rados ] && target=rados://$BGSNAP_CEPH_POOL/stall-$2
	on_clients "$bgsnap" save --pid "$guest_pid" -o "$target" \
		--compress none --ceph-id "$BGSNAP_CEPH_ID" --json -q |
		sed "s/^{/{\"into\":\"$1\",\"round\":$2,/" >>"$work/stall.json" ||
		die "bgsnap save --pid into $1 failed"
	rm -f "$work/stall-$2.bgs"
}

if ((split_cpus)); then
	where="the cluster on CPU $last_cpu, the guest, bgsnap and rados bench on $client_cpus"
else
	where="all on the same CPUs (--shared-cpus)"
fi
echo "save throughput against rados bench, the guest's writers held, $where"
printf '%-6s %12s %12s %12s %8s %8s\n' round "rados MB/s" "--pid MB/s" \
	"in-proc MB/s" "--pid x" "in-pr x"
for ((round = 1; round <= rounds; round++)); do
	say "round $round: a fresh cluster"
	tests/ceph/cluster.sh start "$cluster" 2>/dev/null ||
		die "the cluster did not start (tests/ceph/cluster.sh start)"
	eval "$(tests/ceph/cluster.sh env "$cluster")"
	export CEPH_CONF
	start_guest
	((split_cpus)) && pin_cluster_apart
	# Held for the throughput: its writers would take CPU from the
	# cluster.
	guest hold >/dev/null
	if ((round % 2)); then
		rb=$(rados_bench); p=$(save_pid "$round")
		ip=$(save_in_process "$round")
	else
		ip=$(save_in_process "$round"); p=$(save_pid "$round")
		rb=$(rados_bench)
	fi
	guest release >/dev/null
	if ((round % 2)); then
		save_stall file "$round"; save_stall rados "$round"
	else
		save_stall rados "$round"; save_stall file "$round"
	fi
	stop_guest
	tests/ceph/cluster.sh stop "$cluster" 2>/dev/null
	[ -n "$rb" ] && [ -n "$p" ] && [ -n "$ip" ] ||
		die "round $round gave no figure (rados '$rb', --pid '$p', in-process '$ip')"
	printf '%-6s %12s %12s %12s %8s %8s\n' "$round" "$rb" "$p" "$ip" \
		"$(awk -v a="$p" -v b="$rb" 'BEGIN { printf "%.2f", a / b }')" \
		"$(awk -v a="$ip" -v b="$rb" 'BEGIN { printf "%.2f", a / b }')"
done

echo
echo "fault stall: save --pid under the guest's 2 writers, --compress none, $where"
python3 - "$work/stall.json" <<'EOF'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
cols = (("elapsed_s", "elapsed s", 1), ("faults", "faults", 1),
        ("stall_us_p50", "p50 us", 1), ("stall_us_p99", "p99 us", 1),
        ("stall_us_max", "max ms", 1e-3), ("blackout_ms", "blackout ms", 1))
print("%-6s %-6s" % ("round", "into") + "".join("%12s" % c[1] for c in cols))
for r in rows:
    print("%-6s %-6s" % (r["round"], r["into"]) +
          "".join("%12.2f" % (r[k] * f) for k, _, f in cols))
med = {into: {k: statistics.median(r[k] for r in rows if r["into"] == into)
              for k, _, _ in cols} for into in ("file", "rados")}
for into in ("file", "rados"):
    print("%-13s" % ("median " + into) +
          "".join("%12.2f" % (med[into][k] * f) for k, _, f in cols))
print("%-13s" % "rados / file" +
      "".join("%11.2fx" % (med["rados"][k] / med["file"][k])
              if med["file"][k] else "%12s" % "-" for k, _, _ in cols))
EOF
