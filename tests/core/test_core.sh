# SPDX-License-Identifier: MIT
# 'bgsnap core' and 'bgsnap export --core' judged by tools bgsnap's authors
# did not write: gdb, gcore and elfutils' eu-stack, on core_target
# (core_target.c), a process with known values in a global, on the heap
# and on each thread's stack, its threads blocked in known functions.
#
#   test_core.sh BGSNAP CORE_TARGET MODE
#
# MODE gdb:     gdb shows the same threads, backtraces and values on
#               bgsnap's core as on gcore's core of the same stopped
#               process; eu-stack agrees; export --core gives the same
#               bytes; the core is 0600 and never written through a link.
# MODE writers: cores taken while two threads write a pair of globals (on
#               pages of their own) show the pair as one instant has it.
# MODE chain:   export --core of an incremental snapshot (pages from its
#               parent) taken while the writers run: one instant, later.
# MODE memory:  THP, memfd and hugetlbfs memory read back through gdb.
# MODE exit:    the process dies during the dump: one clear line, exit 1,
#               no core, no temporary file.
#
# Skips (77) only where this machine cannot save a process at all.
set -u

BGSNAP=$1
TARGET=$2
MODE=$3
T=$(mktemp -d "${TMPDIR:-/tmp}/bgsnap-core.XXXXXX")
TPID=
FAILS=0

NR_HUGE=/proc/sys/vm/nr_hugepages
FREE_HUGE=/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages
OLD_NR_HUGE=

cleanup() {
	[ -n "$TPID" ] && kill -9 "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
	[ -n "$OLD_NR_HUGE" ] && echo "$OLD_NR_HUGE" >"$NR_HUGE"
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

for tool in gdb gcore eu-stack; do
	command -v $tool >/dev/null ||
		{ echo "FAIL: $tool is missing (.ci/bootstrap installs it)" >&2; exit 1; }
done

# start_target ARGS...: core_target running, its pid in TPID; returns
# core_target's 77 when it cannot have what ARGS ask for.
start_target() {
	"$TARGET" "$@" >"$T/target.out" 2>"$T/target.err" &
	TPID=$!
	for _ in $(seq 1 600); do
		grep -q '^ready' "$T/target.out" && return 0
		if ! kill -0 "$TPID" 2>/dev/null; then
			wait "$TPID"
			local rc=$?
			TPID=
			return $rc
		fi
		sleep 0.05
	done
	echo "FAIL: core_target did not get ready" >&2
	exit 1
}

stop_target() {
	kill -9 "$TPID" 2>/dev/null
	wait "$TPID" 2>/dev/null
	TPID=
}

# take_core CORE [ARGS...]: bgsnap core of the target; 77 where saving a
# process is not possible here (exit 4: a capability is missing).
take_core() {
	local core=$1
	shift
	"$BGSNAP" core --pid "$TPID" -o "$core" --quiet "$@" 2>"$T/core.err"
	local rc=$?
	if [ $rc -eq 4 ]; then
		echo "SKIP: $(cat "$T/core.err")" >&2
		exit 77
	fi
	[ $rc -eq 0 ] || { fail "bgsnap core exited $rc: $(cat "$T/core.err")"; return 1; }
}

# gdb_run CORE OUT CMDS: gdb's answers to CMDS (a file) on CORE. Its
# warnings about the size of the xsave note are left out: gdb 13 expects
# the size Intel's layout gives the features XCR0 names, so it finds the
# kernel's own cores too large on AMX machines and too small on AMD Zen 4
# (AVX-512 without MPX, laid out without MPX's hole); bgsnap's note is
# the kernel's, as PTRACE_GETREGSET gives it. gcore writes gdb's size.
gdb_run() {
	gdb -batch -nx -x "$3" "$TARGET" "$1" 2>&1 |
		perl -0pe "s/warning: Unexpected size of section \`\.reg-xstate[^']*' in core file\.\n//g;
			s/warning: Section \`\.reg-xstate[^']*' in core file too small\.\n//g;
			s/\n\n+/\n/g" >"$2"
}

want() { # want FILE TEXT: FILE holds TEXT
	grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks '$2'"
}

cat >"$T/common.gdb" <<'EOF'
set pagination off
set print thread-events off
set confirm off
info threads
thread apply all bt
p/x core_global
p core_heap
EOF

# ---- gdb: bgsnap's core and gcore's, side by side ----------------------------

test_gdb() {
	start_target || exit 1
	take_core "$T/b.core" --snapshot "$T/s.bgs" || return
	gcore -o "$T/gcore" "$TPID" >"$T/gcore.out" 2>&1 ||
		{ fail "gcore failed: $(tail -1 "$T/gcore.out")"; return; }
	local g=$T/gcore.$TPID
	stop_target
	[ "$(stat -c %a "$T/b.core")" = 600 ] || fail "the core is not 0600"

	cp "$T/common.gdb" "$T/cmds.gdb"
	for t in 2 3 4; do
		printf 'thread %s\nframe function core_wait_here\np/x core_stack_value\n' \
			$t >>"$T/cmds.gdb"
	done
	gdb_run "$T/b.core" "$T/b.txt" "$T/cmds.gdb"
	gdb_run "$g" "$T/g.txt" "$T/cmds.gdb"
	diff -u "$T/g.txt" "$T/b.txt" >"$T/gdb.diff" ||
		fail "gdb on bgsnap's core differs from gdb on gcore's:
$(cat "$T/gdb.diff")"
	[ "$(grep -c 'LWP' "$T/b.txt")" -ge 8 ] || fail "gdb sees no 4 threads"
	want "$T/b.txt" "core_main_sleeps ()"
	for n in 1 2 3; do
		want "$T/b.txt" "core_wait_here (n=$n)"
		want "$T/b.txt" "= 0xabc000000000000$n"
	done
	want "$T/b.txt" "= 0x1122334455667788"
	want "$T/b.txt" '"core heap string"'

	# The same snapshot, made a core later: the same bytes.
	"$BGSNAP" export "$T/s.bgs" --core -o "$T/e.core" --quiet ||
		fail "export --core failed"
	cmp -s "$T/e.core" "$T/b.core" ||
		fail "export --core and core differ for the same snapshot"

	# eu-stack reads both cores the same way.
	eu-stack --core "$T/b.core" -e "$TARGET" >"$T/b.eu" 2>&1 ||
		fail "eu-stack failed on bgsnap's core: $(head -3 "$T/b.eu")"
	eu-stack --core "$g" -e "$TARGET" >"$T/g.eu" 2>&1
	diff -u "$T/g.eu" "$T/b.eu" >"$T/eu.diff" ||
		fail "eu-stack differs:
$(cat "$T/eu.diff")"
	[ "$(grep -c core_wait_here "$T/b.eu")" = 3 ] ||
		fail "eu-stack does not show three threads in core_wait_here"
	want "$T/b.eu" core_main_sleeps

	# Never through a symbolic link, never over a file without --force.
	echo victim >"$T/victim"
	ln -s "$T/victim" "$T/link.core"
	"$BGSNAP" export "$T/s.bgs" --core -o "$T/link.core" --force --quiet \
		2>"$T/link.err" && fail "a core was written through a link"
	[ "$(cat "$T/victim")" = victim ] || fail "the link's target changed"
	"$BGSNAP" export "$T/s.bgs" --core -o "$T/e.core" --quiet \
		2>"$T/exists.err" && fail "an existing core was replaced"
	want "$T/exists.err" "exists"
}

# ---- writers: one instant ---------------------------------------------------

cat >"$T/pair.gdb" <<'EOF'
set pagination off
p pair_a
p pair_b
p pair_lock.__data.__owner
thread apply all bt
p core_heap
EOF

test_writers() {
	start_target writers || exit 1
	for i in 1 2 3; do
		take_core "$T/w$i.core" || return
		check_pair "$T/w$i.core" "$T/w$i.txt"
	done
}

# ---- chain: a core from an incremental snapshot -------------------------------

# Check the pair in CORE (gdb's answers in OUT) as one instant has it;
# pair_a into PAIR.
check_pair() {
	local core=$1 out=$2 a b owner
	gdb_run "$core" "$out" "$T/pair.gdb"
	a=$(sed -n 's/^\$1 = //p' "$out")
	b=$(sed -n 's/^\$2 = //p' "$out")
	owner=$(sed -n 's/^\$3 = //p' "$out")
	echo "$(basename "$core"): pair_a=$a pair_b=$b lock owner=$owner"
	PAIR=$a
	if [ -z "$a" ] || [ -z "$b" ] || [ "$a" = 0 ]; then
		fail "$core: no pair read: $(head -5 "$out")"
	# Equal, or a writer between its two stores, holding the lock.
	elif [ "$a" != "$b" ] &&
		! { [ "$owner" != 0 ] && [ "$a" = $((b + 1)) ]; }; then
		fail "$core: pair_a=$a pair_b=$b (lock owner $owner): not one instant"
	fi
	[ "$(grep -c core_writer_loop "$out")" -ge 2 ] ||
		fail "$core: the writers are not in core_writer_loop"
}

# A full snapshot, then an incremental one of it while the writers run;
# the incremental one's core reads its unchanged pages from the parent.
test_chain() {
	local first
	start_target writers || exit 1
	"$BGSNAP" save --pid "$TPID" -o "$T/full.bgs" --quiet ||
		{ fail "save failed"; return; }
	"$BGSNAP" save --pid "$TPID" -o "$T/incr.bgs" --parent "$T/full.bgs" \
		--quiet || { fail "incremental save failed"; return; }
	stop_target
	"$BGSNAP" info "$T/incr.bgs" --json | grep -q '"incremental":true' ||
		fail "the second snapshot is not incremental"
	"$BGSNAP" export "$T/full.bgs" --core -o "$T/full.core" --quiet ||
		fail "export --core of the full snapshot failed"
	"$BGSNAP" export "$T/incr.bgs" --core -o "$T/incr.core" --quiet ||
		fail "export --core of the incremental snapshot failed"
	check_pair "$T/full.core" "$T/full.txt"
	first=$PAIR
	check_pair "$T/incr.core" "$T/incr.txt"
	[ -n "$first" ] && [ -n "$PAIR" ] && [ "$PAIR" -gt "$first" ] ||
		fail "the incremental core does not show a later pair"
	want "$T/incr.txt" '"core heap string"'
}

# ---- memory: THP, memfd, hugetlbfs ------------------------------------------

# One free 2 MiB huge page, reserved (as root) when there is none; the
# count is put back at the end, as tests/common's tu_hugetlb_reserve().
reserve_huge_page() {
	[ "$(cat $FREE_HUGE 2>/dev/null || echo 0)" -ge 1 ] && return
	[ "$(id -u)" = 0 ] && [ -w $NR_HUGE ] || return
	OLD_NR_HUGE=$(cat $NR_HUGE)
	echo $((OLD_NR_HUGE + 1)) >$NR_HUGE
}

test_memory() {
	local args="thp memfd hugetlb" rc
	reserve_huge_page
	start_target $args
	rc=$?
	if [ $rc -eq 77 ]; then
		echo "hugetlbfs: no huge page could be reserved here ($(cat "$T/target.err")); not covered"
		args="thp memfd"
		start_target $args || exit 1
	elif [ $rc -ne 0 ]; then
		echo "FAIL: core_target $args exited $rc" >&2
		exit 1
	fi
	take_core "$T/m.core" || return
	gcore -o "$T/gcore" "$TPID" >"$T/gcore.out" 2>&1 || fail "gcore failed"
	local g=$T/gcore.$TPID
	stop_target
	cat >"$T/mem.gdb" <<'EOF'
set pagination off
p core_thp + 4096 * 700
p core_memfd + 4096 * 200
p core_heap + 4096 * 100
EOF
	case $args in *hugetlb*) echo 'p core_hugetlb + 4096 * 300' >>"$T/mem.gdb" ;; esac
	gdb_run "$T/m.core" "$T/m.txt" "$T/mem.gdb"
	gdb_run "$g" "$T/g.txt" "$T/mem.gdb"
	# gcore's psinfo names the program without its arguments; bgsnap's,
	# as the kernel's, has the command line.
	want "$T/m.txt" "Core was generated by \`$TARGET $args'."
	sed -i '/^Core was generated by/d' "$T/m.txt" "$T/g.txt"
	diff -u "$T/g.txt" "$T/m.txt" >"$T/mem.diff" ||
		fail "gdb differs between gcore's core and bgsnap's:
$(cat "$T/mem.diff")"
	want "$T/m.txt" '"thp page 700"'
	want "$T/m.txt" '"memfd page 200"'
	want "$T/m.txt" '"heap page 100"'
	case $args in *hugetlb*) want "$T/m.txt" '"hugetlb page 300"' ;; esac
}

# ---- exit: the process dies during the dump ---------------------------------

# Stop bgsnap once the target's memory is write-protected (the blackout
# is over, pages are being copied), kill the target, let bgsnap go on.
test_exit() {
	for attempt in 1 2 3; do
		start_target big || exit 1
		local victim=$TPID
		"$BGSNAP" core --pid "$victim" -o "$T/x.core" --quiet \
			2>"$T/x.err" &
		local b=$! caught=0
		for _ in $(seq 1 2000); do
			if grep -q '^VmFlags:.* uw' "/proc/$victim/smaps" 2>/dev/null; then
				kill -STOP "$b"
				caught=1
				break
			fi
			kill -0 "$b" 2>/dev/null || break
		done
		if [ $caught = 1 ]; then
			kill -9 "$victim"
			kill -CONT "$b"
		fi
		wait "$b"
		local rc=$?
		stop_target
		if [ $caught = 0 ] || [ $rc = 0 ]; then
			echo "attempt $attempt: the dump ended before it was caught; again"
			rm -f "$T/x.core"
			continue
		fi
		[ $rc = 1 ] || fail "exit status $rc, not 1"
		[ "$(wc -l <"$T/x.err")" = 1 ] || fail "not one line: $(cat "$T/x.err")"
		want "$T/x.err" "process $victim exited during the save; no core was written"
		[ -e "$T/x.core" ] && fail "a core was left behind"
		[ -z "$(ls -A "$T" | grep '\.tmp$')" ] || fail "a temporary file was left"
		return
	done
	fail "every dump ended before it could be caught"
}

test_$MODE
rm -f "$T"/*.core "$T"/gcore.*
[ $FAILS -eq 0 ] || { echo "$FAILS check(s) failed" >&2; exit 1; }
echo "core $MODE: all checks passed"
