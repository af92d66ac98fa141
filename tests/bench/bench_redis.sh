#!/usr/bin/env bash
# bgsnap against Redis's own BGSAVE on a real Redis under a write load,
# in one command:
#
#   tests/bench/bench_redis.sh [--sizes 1G,4G] [--seconds 10] [--dir /var/tmp]
#                              [--out DIR] [--verify load|all] [--json]
#                              [--quiet] [--keep] [--save-args 'ARGS']
#
# For each size it starts Debian's redis-server on 127.0.0.1 (a free port,
# --save '' --appendonly no, a directory of its own), fills it with keys
# key:%012d of 1000 random bytes until INFO's used_memory reaches the size,
# and runs these phases, in this order, with a probe sending one SET every
# 10 ms throughout:
#   idle          the probe alone for --seconds/2, then BGSAVE, then bgsnap
#   load+bgsnap   redis-benchmark -t set -r KEYS -d 1000 -P 16 -c 50, and
#                 'bgsnap save --pid <redis-server> --json' 1 s into it; the
#                 load ends 1 s after the save
#   load+BGSAVE   the same with BGSAVE, after every key got a fresh random
#                 value again (the load writes redis-benchmark's 'xxx...'):
#                 both saves under load start from the same data
#   load          the load alone, for --seconds
#
# Figures, side by side:
#   elapsed       from the command to its end: BGSAVE until INFO says
#                 rdb_bgsave_in_progress:0 (polled every 100 ms), bgsnap
#                 until it exits
#   pause         BGSAVE: fork, latest_fork_usec; bgsnap: its blackout_ms
#   extra memory  BGSAVE: the child's private dirty memory, the largest of
#                 /proc/CHILD/smaps_rollup once a second and Redis's own
#                 rdb_last_cow_size; bgsnap: its peak RSS (/usr/bin/time)
#   load          redis-benchmark runs of about 1 s back to back; the runs
#                 that overlap the save, merged: SET/s, p99 (errs high by
#                 at most 0.1 ms, 1 ms above 2 ms), max
#   probe         p50, p99, max of the replies to SETs sent during the save
#                 (no save: the whole load phase, or the idle lead)
#   stall         bgsnap's write-fault stalls: stall_us_p50/p99/max, faults
# A picture per size, OUT/bench_redis_SIZE.svg, draws the probe's reply
# time against the seconds since the save started, under load and idle,
# BGSAVE and bgsnap in two colours, where each save started and ended;
# each condition twice: over both saves, and over bgsnap's save only.
# After its phase, bgsnap's snapshot taken under load is checked with
# 'bgsnap verify' (--verify all: the idle one too; each cost 4-6 s a GiB
# here). Any phase that fails or gives no figure fails the run (exit 1).
#
# Options: --sizes LIST (K, M, G suffixes); --seconds S (the load-alone
# phase; the idle lead is half); --dir DIR for Redis's directory and the
# snapshots (removed at the end unless --keep); --out DIR for the pictures
# and the probe's traces (default build/bench-redis); --json prints one
# JSON document instead of the table; --quiet no progress on stderr;
# --bgsnap PATH and --probe PATH use these binaries instead of building.
# --save-args 'ARGS' adds options to every 'bgsnap save' (e.g. '--threads 1').
# Missing packages (redis-server redis-tools time) are installed with
# apt-get when run as root; otherwise the command is printed (exit 1).
# Exit 4: this machine cannot save ('bgsnap caps').
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
top=$PWD

sizes=1G,4G
seconds=10
dir=/var/tmp
out=
json=0
quiet=0
keep=0
verify=load
bgsnap=
probe=
save_args=
cmdline="tests/bench/bench_redis.sh $*"
while (($#)); do
	case "$1" in
	--sizes) sizes=$2; shift ;;
	--seconds) seconds=$2; shift ;;
	--dir) dir=$2; shift ;;
	--out) out=$2; shift ;;
	--json) json=1 ;;
	--quiet) quiet=1 ;;
	--keep) keep=1 ;;
	--verify) verify=$2; shift ;;
	--bgsnap) bgsnap=$2; shift ;;
	--probe) probe=$2; shift ;;
	--save-args) save_args=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "bench_redis: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

die() {
	echo "bench_redis: error: $*" >&2
	exit 1
}

say() {
	[ "$quiet" = 1 ] || echo "bench_redis: $*" >&2
}

# ---- what it needs -----------------------------------------------------------

[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds wants a whole number of seconds"
[[ $verify =~ ^(load|all)$ ]] || die "--verify wants load or all"

size_bytes() {
	local n=${1%[KkMmGg]} unit=${1: -1}
	[[ $n =~ ^[1-9][0-9]*$ ]] || return 1
	case "$unit" in
	[Kk]) echo $((n << 10)) ;;
	[Mm]) echo $((n << 20)) ;;
	[Gg]) echo $((n << 30)) ;;
	*) echo "$1" ;;
	esac
}
IFS=, read -r -a size_list <<<"$sizes"
for s in "${size_list[@]}"; do
	b=$(size_bytes "$s") || die "bad size '$s' (e.g. 64M, 1G)"
	((b >= 16 << 20)) || die "size '$s' is below 16M"
done

packages=(redis-server redis-tools time)
missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench_redis needs these packages: ${missing[*]}" >&2
		echo "install them, then run this again:" >&2
		echo "  sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null &&
			apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

if [ -z "$bgsnap" ] || [ -z "$probe" ]; then
	say "building bgsnap and bench_redis_probe"
	log=$(mktemp)
	if [ -f build/CMakeCache.txt ]; then
		cmake --build build -j 2 --target bgsnap_cli bench_redis_probe >"$log" 2>&1
	else
		.ci/bootstrap build >"$log" 2>&1
	fi || { cat "$log" >&2; rm -f "$log"; die "the build failed"; }
	rm -f "$log"
	bgsnap=${bgsnap:-$top/build/bgsnap}
	probe=${probe:-$top/build/tests/bench_redis_probe}
fi
[ -x "$bgsnap" ] || die "no bgsnap at '$bgsnap'"
[ -x "$probe" ] || die "no bench_redis_probe at '$probe'"
if ! "$bgsnap" caps >/dev/null 2>&1; then
	"$bgsnap" caps >&2 || true
	echo "bench_redis: SKIP: this machine cannot save (a MISS line above)" >&2
	exit 4
fi
out=${out:-$top/build/bench-redis}
mkdir -p "$out" "$dir"
work=$(mktemp -d "$dir/bench_redis.XXXXXX")

# ---- processes, stopped by PID on any exit --------------------------------------

redis_pid=
probe_pid=
load_pid=
save_pid=

stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# /usr/bin/time does not pass a TERM on to bgsnap: stop bgsnap by its PID.
stop_save() {
	local c
	[ -n "$save_pid" ] || return 0
	for c in $(cat "/proc/$save_pid/task/$save_pid/children" 2>/dev/null); do
		kill -TERM "$c" 2>/dev/null || true
	done
	stop_pid "$save_pid"
	save_pid=
}

stop_redis() {
	local i
	[ -n "$redis_pid" ] || return 0
	kill -TERM "$redis_pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$redis_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$redis_pid" 2>/dev/null || true
	wait "$redis_pid" 2>/dev/null || true
	redis_pid=
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$load_pid"
	stop_pid "$probe_pid"
	stop_save
	stop_redis
	if [ "$keep" = 1 ]; then
		echo "bench_redis: kept $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- small helpers ------------------------------------------------------------------

# The time now in microseconds since the epoch, the probe's clock.
now_us() {
	printf -v "$1" '%s' "${EPOCHREALTIME/./}"
}

us_to_ms() {
	printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

us_to_s() {
	printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000))
}

jget() {
	sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1
}

is_num() {
	[[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]
}

declare -A R # the results: R[SIZE.PHASE.FIELD]

put() {
	is_num "$3" || die "$1: no figure for $2 (got '$3')"
	R[$1.$2]=$3
}

rcli() {
	redis-cli -h 127.0.0.1 -p "$port" "$@"
}

info_field() {
	rcli info "$1" | tr -d '\r' | sed -n "s/^$2://p"
}

loadavg() {
	local a b c rest
	read -r a b c rest </proc/loadavg
	echo "$a $b $c"
}

# ---- Redis --------------------------------------------------------------------------

start_redis() {
	local try i
	for ((try = 0; try < 3; try++)); do
		port=$("$probe" port)
		redis-server --bind 127.0.0.1 --port "$port" --save '' \
			--appendonly no --dir "$work" --dbfilename dump.rdb \
			--logfile "$work/redis.log" --daemonize no \
			--protected-mode yes &
		redis_pid=$!
		for ((i = 0; i < 100; i++)); do
			[ "$(rcli ping 2>/dev/null)" = PONG ] && return 0
			kill -0 "$redis_pid" 2>/dev/null || break
			sleep 0.1
		done
		stop_redis
	done
	die "redis-server did not start: $(tail -n 3 "$work/redis.log" 2>/dev/null)"
}

# $1 size label, $2 fill number (a seed); fresh random values for every key.
refill() {
	"$probe" fill -p "$port" -n "${R[$1.keys]}" -s "$2" >"$work/fill.json" ||
		die "the refill failed"
	say "$1: fresh values for ${R[$1.keys]} keys in $(jget "$work/fill.json" seconds) s"
}

# ---- the probe and the load -----------------------------------------------------------

start_probe() {
	"$probe" probe -p "$port" -o "$1" >"$1.json" &
	probe_pid=$!
}

stop_probe() {
	kill -TERM "$probe_pid"
	wait "$probe_pid" || die "the probe failed: $(cat "$1.json")"
	probe_pid=
}

# $1 key prefix, $2 probe file, $3 $4 the window in us (optional).
probe_stats() {
	local args=("$2") f="$work/stats.json"
	[ -n "${3:-}" ] && args+=("$(us_to_ms "$3")" "$(us_to_ms "$4")")
	"$probe" stats "${args[@]}" >"$f" || die "$1: no probe samples"
	put "$1" probe_samples "$(jget "$f" samples)"
	put "$1" probe_p50_us "$(jget "$f" p50_us)"
	put "$1" probe_p99_us "$(jget "$f" p99_us)"
	put "$1" probe_max_us "$(jget "$f" max_us)"
}

# In the background: redis-benchmark runs of about a second, back to
# back, until $work/load.stop exists; each run's start and end in
# $work/load.runs.
load_loop() {
	local n=20000 i=0 rb= rps t0 t1
	trap '[ -n "$rb" ] && kill "$rb" 2>/dev/null; exit 143' TERM
	while [ ! -e "$work/load.stop" ]; do
		now_us t0
		redis-benchmark -h 127.0.0.1 -p "$port" -t set -r "$1" -d 1000 \
			-P 16 -c 50 -n "$n" >"$work/load.$i" 2>&1 &
		rb=$!
		wait "$rb" || exit 1
		rb=
		now_us t1
		echo "$i $t0 $t1" >>"$work/load.runs"
		rps=$(sed -n 's/.*throughput summary: \([0-9]*\).*/\1/p' "$work/load.$i")
		n=$((${rps:-0} > 10000 ? ${rps:-0} : 10000))
		i=$((i + 1))
	done
}

start_load() {
	rm -f "$work"/load.*
	load_loop "$1" &
	load_pid=$!
}

stop_load() {
	touch "$work/load.stop"
	wait "$load_pid" || die "redis-benchmark failed"
	load_pid=
}

# $1 key prefix, $2 $3 the window in us (all runs without one).
load_stats() {
	local files=() i t0 t1 f="$work/stats.json"
	while read -r i t0 t1; do
		if [ -z "${2:-}" ] || { ((t1 > $2)) && ((t0 < $3)); }; then
			files+=("$work/load.$i")
		fi
	done <"$work/load.runs"
	((${#files[@]})) || die "$1: no load run overlaps the save"
	"$probe" rbstats "${files[@]}" >"$f" || die "$1: no load figures"
	put "$1" load_runs "$(jget "$f" runs)"
	put "$1" load_requests "$(jget "$f" requests)"
	put "$1" load_ops_s "$(jget "$f" ops_s)"
	put "$1" load_p50_ms "$(jget "$f" p50_ms)"
	put "$1" load_p99_ms "$(jget "$f" p99_ms)"
	put "$1" load_max_ms "$(jget "$f" max_ms)"
}

# ---- the two methods --------------------------------------------------------------

PD=0
private_dirty() {
	local k v u
	PD=0
	{
		while read -r k v u; do
			if [ "$k" = Private_Dirty: ]; then PD=$((v * 1024)); fi
		done <"/proc/$1/smaps_rollup"
	} 2>/dev/null || true
}

# $1 key prefix. Sets T0 and T1, the save's window in us.
save_bgsave() {
	local reply child peak=0 cow i
	rm -f "$work/dump.rdb"
	now_us T0
	reply=$(rcli bgsave)
	[ "$reply" = "Background saving started" ] || die "$1: BGSAVE: $reply"
	child=$(cat "/proc/$redis_pid/task/$redis_pid/children")
	child=${child%% *}
	# smaps_rollup walks the child's page tables: once a second is enough,
	# as its private memory only grows
	for ((i = 0; ; i++)); do
		if [ -n "$child" ] && ((i % 10 == 0)); then
			private_dirty "$child"
			if ((PD > peak)); then peak=$PD; fi
		fi
		[ "$(info_field persistence rdb_bgsave_in_progress)" = 0 ] && break
		sleep 0.1
	done
	now_us T1
	reply=$(info_field persistence rdb_last_bgsave_status)
	[ "$reply" = ok ] || die "$1: BGSAVE failed: $(tail -n 3 "$work/redis.log")"
	cow=$(info_field persistence rdb_last_cow_size)
	put "$1" elapsed_s "$(us_to_s $((T1 - T0)))"
	put "$1" pause_ms "$(us_to_ms "$(info_field stats latest_fork_usec)")"
	put "$1" child_private_dirty_bytes "$peak"
	put "$1" rdb_last_cow_size_bytes "$cow"
	put "$1" extra_memory_bytes "$((peak > cow ? peak : cow))"
	put "$1" file_bytes "$(stat -c %s "$work/dump.rdb")"
	rm -f "$work/dump.rdb"
}

save_bgsnap() {
	local f="$work/$1.bgs" j="$work/$1.json" k
	now_us T0
	# shellcheck disable=SC2086 # --save-args is split into options
	/usr/bin/time -f %M -o "$work/$1.rss" "$bgsnap" save --pid "$redis_pid" \
		-o "$f" --json --quiet $save_args >"$j" 2>"$work/$1.err" &
	save_pid=$!
	wait "$save_pid" || die "$1: bgsnap save failed: $(cat "$work/$1.err")"
	save_pid=
	now_us T1
	put "$1" elapsed_s "$(us_to_s $((T1 - T0)))"
	put "$1" pause_ms "$(jget "$j" blackout_ms)"
	put "$1" peak_rss_bytes "$(($(tail -n 1 "$work/$1.rss") * 1024))"
	put "$1" extra_memory_bytes "${R[$1.peak_rss_bytes]}"
	for k in elapsed_s blackout_ms stall_us_p50 stall_us_p99 stall_us_max \
		faults pages_by_fault pages_total peak_buffer_bytes \
		compression_ratio; do
		put "$1" "bgsnap_$k" "$(jget "$j" "$k")"
	done
	put "$1" file_bytes "$(stat -c %s "$f")"
}

# After the phase, so that it does not weigh on the figures.
verify_snapshot() {
	local f="$work/$1.bgs" t0 t1
	if [ "$2" = 1 ]; then
		now_us t0
		"$bgsnap" verify "$f" >"$work/$1.verify" 2>&1 ||
			die "$1: the snapshot does not verify: $(cat "$work/$1.verify")"
		now_us t1
		put "$1" verify_s "$(us_to_s $((t1 - t0)))"
		say "$1: the snapshot verifies ($(sed 's/.*: ok: //' "$work/$1.verify"))"
	fi
	rm -f "$f"
}

# ---- the phases -------------------------------------------------------------------------

phase_load() {
	local p="$out/bench_redis_$1_load.probe"
	say "$1: load alone for $seconds s"
	start_probe "$p"
	start_load "${R[$1.keys]}"
	sleep "$seconds"
	stop_load
	stop_probe "$p"
	load_stats "$1.load"
	probe_stats "$1.load" "$p"
}

# $1 size label, $2 bgsave or bgsnap.
phase_load_save() {
	local k="$1.load_$2" p="$out/bench_redis_$1_load_$2.probe"
	start_probe "$p"
	start_load "${R[$1.keys]}"
	sleep 1
	say "$1: load + $2"
	"save_$2" "$k"
	sleep 1
	stop_load
	stop_probe "$p"
	if [ "$2" = bgsnap ]; then verify_snapshot "$k" 1; fi
	load_stats "$k" "$T0" "$T1"
	probe_stats "$k" "$p" "$T0" "$T1"
	R[$k.t0]=$T0
	R[$k.t1]=$T1
}

phase_idle() {
	local p="$out/bench_redis_$1_idle.probe" t0 k
	say "$1: idle, the probe alone, then BGSAVE, then bgsnap"
	now_us t0
	start_probe "$p"
	sleep $(((seconds + 1) / 2))
	for k in bgsave bgsnap; do
		"save_$k" "$1.idle_$k"
		R[$1.idle_$k.t0]=$T0
		R[$1.idle_$k.t1]=$T1
		sleep 1
	done
	stop_probe "$p"
	verify_snapshot "$1.idle_bgsnap" "$([ "$verify" = all ] && echo 1 || echo 0)"
	probe_stats "$1.idle" "$p" "$t0" "${R[$1.idle_bgsave.t0]}"
	for k in bgsave bgsnap; do
		probe_stats "$1.idle_$k" "$p" "${R[$1.idle_$k.t0]}" "${R[$1.idle_$k.t1]}"
	done
}

series() {
	echo "$1,$2,$(us_to_ms "${R[$3.t0]}"),$(us_to_ms "${R[$3.t1]}")"
}

# One panel a condition over the whole of both saves, and one over the
# length of bgsnap's save only (BGSAVE's is often many times longer).
picture() {
	local svg="$out/bench_redis_$1.svg" c args=() zoom
	for c in load idle; do
		local what="under load (redis-benchmark -t set -d 1000 -P 16 -c 50)"
		local fb="$out/bench_redis_$1_load_bgsave.probe"
		local fs="$out/bench_redis_$1_load_bgsnap.probe"
		if [ "$c" = idle ]; then
			what="idle server"
			fb="$out/bench_redis_$1_idle.probe"
			fs=$fb
		fi
		zoom=$(us_to_s $((R[$1.${c}_bgsnap.t1] - R[$1.${c}_bgsnap.t0] + 1000000)))
		args+=(-P "$what"
			-s "$(series BGSAVE "$fb" "$1.${c}_bgsave")"
			-s "$(series bgsnap "$fs" "$1.${c}_bgsnap")"
			-P "$what: the first ${zoom%????} s"
			-X "$zoom"
			-s "$(series BGSAVE "$fb" "$1.${c}_bgsave")"
			-s "$(series bgsnap "$fs" "$1.${c}_bgsnap")")
	done
	"$probe" svg -o "$svg" -b 1 -a 1 \
		-t "Redis at $1: the probe's reply time while BGSAVE and bgsnap save" \
		"${args[@]}" || die "$1: no picture"
	if command -v xmllint >/dev/null; then
		xmllint --noout "$svg" || die "$svg is not well-formed"
	else
		[ "$(tail -n 1 "$svg")" = "</svg>" ] || die "$svg is cut short"
	fi
	R[$1.svg]=$svg
}

run_size() {
	local s=$1
	R[$s.size_bytes]=$(size_bytes "$s")
	start_redis
	say "$s: redis-server pid $redis_pid on 127.0.0.1:$port; filling"
	"$probe" fill -p "$port" -t "${R[$s.size_bytes]}" -s 1 >"$work/fill.json" ||
		die "the fill failed"
	put "$s" keys "$(jget "$work/fill.json" keys)"
	put "$s" fill_s "$(jget "$work/fill.json" seconds)"
	put "$s" used_memory_bytes "$(info_field memory used_memory)"
	put "$s" rss_bytes "$(awk '/^VmRSS:/ { printf "%.0f", $2 * 1024 }' "/proc/$redis_pid/status")"
	say "$s: ${R[$s.keys]} keys in ${R[$s.fill_s]} s"
	phase_idle "$s"
	phase_load_save "$s" bgsnap
	refill "$s" 2
	phase_load_save "$s" bgsave
	phase_load "$s"
	picture "$s"
	stop_redis
}

# ---- the report -------------------------------------------------------------------------

# Every phase of every size has its figures, whatever went wrong on the
# way (a shell expansion error, say, does not stop a script).
check_results() {
	local s p k f
	local probe=(probe_samples probe_p50_us probe_p99_us probe_max_us)
	local load=(load_ops_s load_p99_ms load_max_ms)
	local save=(elapsed_s pause_ms extra_memory_bytes file_bytes)
	local snap=(bgsnap_stall_us_p50 bgsnap_stall_us_p99 bgsnap_stall_us_max)
	local -A need=(
		[load]="${load[*]} ${probe[*]}"
		[load_bgsave]="${save[*]} ${load[*]} ${probe[*]}"
		[load_bgsnap]="${save[*]} ${load[*]} ${probe[*]} ${snap[*]} verify_s"
		[idle]="${probe[*]}"
		[idle_bgsave]="${save[*]} ${probe[*]}"
		[idle_bgsnap]="${save[*]} ${probe[*]} ${snap[*]}"
	)
	for s in "${size_list[@]}"; do
		for f in keys used_memory_bytes rss_bytes; do
			is_num "${R[$s.$f]:-}" || die "$s: no $f"
		done
		[ -s "${R[$s.svg]:-}" ] || die "$s: no picture"
		for p in "${phases[@]}"; do
			for k in ${need[$p]}; do
				is_num "${R[$s.$p.$k]:-}" || die "$s: $p: no $k"
			done
		done
	done
}

phases=(load load_bgsave load_bgsnap idle idle_bgsave idle_bgsnap)
size_fields=(size_bytes keys used_memory_bytes rss_bytes fill_s)
phase_fields=(elapsed_s pause_ms extra_memory_bytes child_private_dirty_bytes
	rdb_last_cow_size_bytes peak_rss_bytes file_bytes load_runs
	load_requests load_ops_s load_p50_ms load_p99_ms load_max_ms
	probe_samples probe_p50_us probe_p99_us probe_max_us bgsnap_elapsed_s
	bgsnap_blackout_ms bgsnap_stall_us_p50 bgsnap_stall_us_p99
	bgsnap_stall_us_max bgsnap_faults bgsnap_pages_by_fault
	bgsnap_pages_total bgsnap_peak_buffer_bytes bgsnap_compression_ratio
	verify_s)

# $1 key prefix, then the fields: "key":value pairs of those present.
json_fields() {
	local p=$1 k sep=
	shift
	for k in "$@"; do
		[ -n "${R[$p.$k]+x}" ] || continue
		printf '%s"%s":%s' "$sep" "$k" "${R[$p.$k]}"
		sep=,
	done
}

report_json() {
	local s p sep= psep
	printf '{"command":"%s","redis_version":"%s","bgsnap_version":"%s",' \
		"$cmdline" "$redis_version" "$bgsnap_version"
	printf '"settings":{"sizes":"%s","seconds":%s,"dir":"%s"},' \
		"$sizes" "$seconds" "$dir"
	printf '"load_avg_start":[%s],"load_avg_end":[%s],"runtime_s":%s,' \
		"${load_start// /,}" "${load_end// /,}" "$runtime"
	printf '"sizes":['
	for s in "${size_list[@]}"; do
		printf '%s{"size":"%s",' "$sep" "$s"
		json_fields "$s" "${size_fields[@]}"
		printf ',"svg":"%s","phases":{' "${R[$s.svg]}"
		psep=
		for p in "${phases[@]}"; do
			printf '%s"%s":{' "$psep" "$p"
			json_fields "$s.$p" "${phase_fields[@]}"
			printf '}'
			psep=,
		done
		printf '}}'
		sep=,
	done
	printf ']}\n'
}

report_table() {
	local k
	printf 'bench_redis: redis-server %s, bgsnap %s: load average %s at the start, %s at the end; %s s\n' \
		"$redis_version" "$bgsnap_version" "$load_start" "$load_end" "$runtime"
	for k in "${!R[@]}"; do
		echo "$k ${R[$k]}"
	done | awk -v sizes="$sizes" "$report_awk"
}

report_awk=$(cat <<'EOF'
function sig(x) { return x >= 100 ? sprintf("%.0f", x) : x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x) }
function us(x) { return x == "" ? "-" : x >= 1e6 ? sig(x / 1e6) " s" : x >= 1e3 ? sig(x / 1e3) " ms" : sig(x) " us" }
function ms(x) { return x == "" ? "-" : us(x * 1e3) }
function sec(x) { return x == "" ? "-" : us(x * 1e6) }
function bytes(x) { return x == "" ? "-" : x >= 2^30 ? sig(x / 2^30) " GiB" : x >= 2^20 ? sig(x / 2^20) " MiB" : sig(x / 2^10) " KiB" }
function ops(x) { return x == "" ? "-" : sig(x / 1e3) " k/s" }
function num(x) { return x == "" ? "-" : sprintf("%d", x) }
function row(label, s, field, f,    i, line) {
	line = sprintf("%-16s", label)
	for (i = 1; i <= 6; i++)
		line = line sprintf("%12s", fmt(f, v[s "." ph[i] "." field]))
	print line
}
function fmt(f, x) {
	if (f == "us") return us(x); if (f == "ms") return ms(x)
	if (f == "s") return sec(x); if (f == "bytes") return bytes(x)
	if (f == "ops") return ops(x); return num(x)
}
{ v[$1] = $2 }
END {
	split("load load_bgsave load_bgsnap idle idle_bgsave idle_bgsnap", ph, " ")
	n = split(sizes, sz, ",")
	for (j = 1; j <= n; j++) {
		s = sz[j]
		printf "\n%s: %d keys of 1000 random bytes, used_memory %s (RSS %s), filled in %s\n", s,
			v[s ".keys"], bytes(v[s ".used_memory_bytes"]), bytes(v[s ".rss_bytes"]), sec(v[s ".fill_s"])
		printf "%-16s%36s%36s\n", "", "----------- under load -----------", "--------------- idle -------------"
		printf "%-16s%12s%12s%12s%12s%12s%12s\n", "", "no save", "BGSAVE", "bgsnap", "no save", "BGSAVE", "bgsnap"
		row("elapsed", s, "elapsed_s", "s")
		row("pause", s, "pause_ms", "ms")
		row("extra memory", s, "extra_memory_bytes", "bytes")
		row("load SET/s", s, "load_ops_s", "ops")
		row("load p99", s, "load_p99_ms", "ms")
		row("load max", s, "load_max_ms", "ms")
		row("probe p50", s, "probe_p50_us", "us")
		row("probe p99", s, "probe_p99_us", "us")
		row("probe max", s, "probe_max_us", "us")
		row("stall p50", s, "bgsnap_stall_us_p50", "us")
		row("stall p99", s, "bgsnap_stall_us_p99", "us")
		row("stall max", s, "bgsnap_stall_us_max", "us")
		row("write faults", s, "bgsnap_faults", "n")
		row("file", s, "file_bytes", "bytes")
		printf "picture: %s\n", v[s ".svg"]
		printf "bgsnap verify: the snapshot under load ok in %s", sec(v[s ".load_bgsnap.verify_s"])
		if (v[s ".idle_bgsnap.verify_s"] != "")
			printf ", the idle one ok in %s", sec(v[s ".idle_bgsnap.verify_s"])
		printf "\n"
	}
}
EOF
)

# ---- the run ------------------------------------------------------------------------

redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
bgsnap_version=$("$bgsnap" --version | sed 's/^bgsnap //')
load_start=$(loadavg)
now_us run_t0
say "redis-server $redis_version, load average $load_start; snapshots in $work"
for s in "${size_list[@]}"; do
	run_size "$s"
done
load_end=$(loadavg)
now_us run_t1
runtime=$(((run_t1 - run_t0) / 1000000))
check_results
if [ "$json" = 1 ]; then
	report_json
else
	report_table
fi
