#!/usr/bin/env bash
# A save into Ceph RADOS against the cluster's own write throughput, in one
# command, on the project's one-node test cluster (tests/ceph/cluster.sh):
#
#   tests/bench/bench_rados.sh [--size 2G] [--seconds 4] [--rounds 2]
#                              [--dir DIR]
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
# its ratio to the rados bench of its round. Needs root (the cluster's
# daemons, ptrace); ceph packages come from tests/ceph/ceph_lib.sh.
# Exit 1 on any failure.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
top=$PWD

size=2G
seconds=4
rounds=2
dir=/var/tmp
while (($#)); do
	case "$1" in
	--size) size=$2; shift ;;
	--seconds) seconds=$2; shift ;;
	--rounds) rounds=$2; shift ;;
	--dir) dir=$2; shift ;;
	-h|--help) sed -n '2,25s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench_rados: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

say() { echo "bench_rados: $*" >&2; }
die() { say "error: $*"; exit 1; }

size_bytes=$(numfmt --from=iec "$size" 2>/dev/null) ||
	die "--size: '$size' is not a size (512M, 2G)"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds: '$seconds' is not a number"
# Room for both saves and a bench at up to 1.5 GB/s, and 4 GiB to spare.
export BGSNAP_CEPH_OSD_GIB=$(((2 * size_bytes + seconds * 1500000000) / (1 << 30) + 4))

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
	rados --id "$BGSNAP_CEPH_ID" -p "$BGSNAP_CEPH_POOL" bench "$seconds" write \
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
	out=$("$bgsnap" save --pid "$guest_pid" \
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

printf '%-6s %12s %12s %12s %8s %8s\n' round "rados MB/s" "--pid MB/s" \
	"in-proc MB/s" "--pid x" "in-pr x"
for ((round = 1; round <= rounds; round++)); do
	say "round $round: a fresh cluster"
	tests/ceph/cluster.sh start "$cluster" 2>/dev/null ||
		die "the cluster did not start (tests/ceph/cluster.sh start)"
	eval "$(tests/ceph/cluster.sh env "$cluster")"
	export CEPH_CONF
	start_guest
	# Held all round: its writers would take CPU from the cluster.
	guest hold >/dev/null
	if ((round % 2)); then
		rb=$(rados_bench); p=$(save_pid "$round")
		ip=$(save_in_process "$round")
	else
		ip=$(save_in_process "$round"); p=$(save_pid "$round")
		rb=$(rados_bench)
	fi
	stop_guest
	tests/ceph/cluster.sh stop "$cluster" 2>/dev/null
	[ -n "$rb" ] && [ -n "$p" ] && [ -n "$ip" ] ||
		die "round $round gave no figure (rados '$rb', --pid '$p', in-process '$ip')"
	printf '%-6s %12s %12s %12s %8s %8s\n' "$round" "$rb" "$p" "$ip" \
		"$(awk -v a="$p" -v b="$rb" 'BEGIN { printf "%.2f", a / b }')" \
		"$(awk -v a="$ip" -v b="$rb" 'BEGIN { printf "%.2f", a / b }')"
done
