#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A throw-away one-node Ceph cluster for bgsnap's tests: one monitor, one
# OSD, no manager, everything under DIR, bound to 127.0.0.1 only, its
# daemons stopped by PID (never by name: other clusters may be running).
#
#   cluster.sh start DIR      make DIR (a former cluster's DIR is reused)
#                             and start a cluster in it
#   cluster.sh stop DIR       stop its daemons; DIR keeps only log/
#   cluster.sh kill-osd DIR   kill -9 the OSD
#   cluster.sh start-osd DIR  start the OSD again, wait until it is active
#   cluster.sh env DIR        NAME=value lines a test can source:
#       CEPH_CONF               DIR/ceph.conf (rados and librados read it)
#       BGSNAP_CEPH_DIR         DIR
#       BGSNAP_CEPH_POOL        bgsnap
#       BGSNAP_CEPH_ID          bgsnap (client.bgsnap: read and write)
#       BGSNAP_CEPH_KEYRING     its keyring
#       BGSNAP_CEPH_RO_ID       bgsnap-ro (client.bgsnap-ro: read only)
#       BGSNAP_CEPH_RO_KEYRING  its keyring
#
# Only 'env' writes to stdout. stderr has one line per step, and a failure
# one line 'cluster.sh: error: ...' naming the log to read. Exit 0, 1 on
# a failure, 2 on a usage error. A start (or start-osd) that takes more
# than 60 s (BGSNAP_CEPH_START_LIMIT) fails; a failed start stops what it
# started and keeps DIR/log.
#
# The OSD is bluestore on a sparse file of BGSNAP_CEPH_OSD_GIB GiB (4 by
# default; a bench that writes more asks for more) with a 128 MiB cache,
# so that data written before kill-osd is there after start-osd (memstore
# loses it). cephx is on; ceph.conf names DIR/<entity>.keyring, so
# 'rados --id bgsnap' needs no --keyring.
set -uo pipefail

POOL=bgsnap
PG_NUM=8
START_LIMIT=${BGSNAP_CEPH_START_LIMIT:-60}
OSD_GIB=${BGSNAP_CEPH_OSD_GIB:-4}

# A stale CEPH_CONF or CEPH_ARGS in the environment breaks mkfs.
unset CEPH_CONF CEPH_ARGS

say() {
	echo "cluster.sh: $*" >&2
}

die() {
	say "error: $*"
	[ "${STARTING:-0}" = 1 ] && start_failed
	exit 1
}

usage() {
	sed -n '6,19s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

# alive PID: PID runs and is not a zombie (PID 1 may reap orphans late).
alive() {
	local s
	[ -n "$1" ] || return 1
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# ours PIDFILE: the PID it names is alive and a daemon of this cluster
# (its command line names our ceph.conf), not a reused PID.
ours() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$D/ceph.conf"
}

# stop_pid PIDFILE: TERM, 10 s, then KILL; that PID only.
stop_pid() {
	local f=$1 pid
	if ours "$f"; then
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 100); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			say "$(basename "$f" .pid) (pid $pid) ignored TERM for 10 s: KILL"
			kill -KILL "$pid" 2>/dev/null
			for _ in $(seq 50); do
				alive "$pid" || break
				sleep 0.1
			done
		fi
		alive "$pid" && say "error: pid $pid survived KILL"
	fi
	rm -f "$f"
}

start_failed() {
	STARTING=0
	stop_pid "$D/run/osd.0.pid"
	stop_pid "$D/run/mon.a.pid"
	say "start failed: daemons stopped, logs kept in $D/log"
}

# left: the seconds the start has left, in LEFT; fails when none.
left() {
	LEFT=$((DEADLINE - SECONDS))
	((LEFT > 0))
}

# last_line FILE: the last non-empty line of a log, for a one-line error.
last_line() {
	grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1
}

ceph_() {
	left || die "start took more than $START_LIMIT s"
	timeout "$LEFT" ceph -c "$D/ceph.conf" --connect-timeout "$LEFT" "$@"
}

# free_port: a TCP port nobody listens on, outside the OSDs' 6800-7300.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 20000))
		[ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return 0; }
	done
	return 1
}

write_conf() {
	cat >"$D/ceph.conf" <<EOF
[global]
fsid = $1
mon host = [v2:127.0.0.1:$2]
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/\$name.keyring
run dir = $D/run
crash dir = $D/crash
log file = $D/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $D/log/cluster.log
pid file =
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
auth allow insecure global id reclaim = false
mon data avail warn = 1
mon data avail crit = 0
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99
osd failsafe full ratio = .99
# Maps committed after 0.1 s instead of 1 s: 2-3 s less to start.
paxos propose interval = 0.1
# No manager on purpose: no MGR_DOWN warning.
mon mgr mkfs grace = 31536000

[mon]
mon data = $D/mon.\$id
# No peer reports a dead OSD: the monitor marks it down after 15 s
# without beacons (default 900 s).
mon osd report timeout = 15

[osd]
osd data = $D/osd.\$id
osd objectstore = bluestore
# Here, not in [global], or the OSD binds 0.0.0.0.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd crush initial weight = 1
osd beacon report interval = 3
# A sparse file osd.0/block made by mkfs. 'bluestore block path' must
# stay unset: set to osd.0/block, mkfs makes it a link to itself (ELOOP).
bluestore block create = true
bluestore block size = $((OSD_GIB << 30))
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 1073741824
EOF
}

# new_key NAME CAPS...: DIR/NAME.keyring with a fresh key, added to the
# keyring the monitor's mkfs imports.
new_key() {
	local name=$1
	shift
	ceph-authtool --create-keyring "$D/$name.keyring" --gen-key -n "$name" \
		"$@" >/dev/null || die "ceph-authtool failed for $name"
	ceph-authtool "$D/mkfs.keyring" --import-keyring "$D/$name.keyring" \
		>/dev/null || die "ceph-authtool could not import $name"
}

make_keys() {
	ceph-authtool --create-keyring "$D/mkfs.keyring" --gen-key -n mon. \
		--cap mon 'allow *' >/dev/null || die "ceph-authtool failed"
	new_key client.admin --cap mon 'allow *' --cap osd 'allow *' \
		--cap mgr 'allow *'
	new_key osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
		--cap mgr 'allow profile osd'
	new_key client.bgsnap --cap mon 'allow r' \
		--cap osd "allow rw pool=$POOL"
	new_key client.bgsnap-ro --cap mon 'allow r' \
		--cap osd "allow r pool=$POOL"
}

# mon_leader: the monitor answers on its admin socket as the leader.
mon_leader() {
	timeout 5 ceph --admin-daemon "$D/run/ceph-mon.a.asok" mon_status \
		2>/dev/null | grep -q '"state": "leader"'
}

# start_mon: 0 once the monitor leads, 1 when it died (a port taken
# since free_port chose it: the caller tries another), else dies.
start_mon() {
	rm -rf "$D/mon.a"
	mkdir -p "$D/mon.a"
	monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" \
		"$D/monmap" >/dev/null || die "monmaptool failed"
	ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" \
		--keyring "$D/mkfs.keyring" >>"$D/log/mkfs.out" 2>&1 ||
		die "mon mkfs failed: $(last_line "$D/log/mkfs.out")"
	ceph-mon -f -c "$D/ceph.conf" -i a </dev/null \
		>>"$D/log/mon.a.out" 2>&1 &
	echo $! >"$D/run/mon.a.pid"
	while left; do
		ours "$D/run/mon.a.pid" || return 1
		mon_leader && return 0
		sleep 0.2
	done
	die "the monitor did not lead within $START_LIMIT s, see $D/log/mon.a.log"
}

# launch_osd: start the OSD, wait until the new process itself says it
# is active (the osdmap may still show the killed one up).
launch_osd() {
	local st
	ceph-osd -f -c "$D/ceph.conf" -i 0 </dev/null \
		>>"$D/log/osd.0.out" 2>&1 &
	echo $! >"$D/run/osd.0.pid"
	while left; do
		ours "$D/run/osd.0.pid" ||
			die "ceph-osd exited: $(last_line "$D/log/osd.0.log") (see $D/log/osd.0.log)"
		st=$(timeout 5 ceph --admin-daemon "$D/run/ceph-osd.0.asok" \
			status 2>/dev/null)
		[[ $st == *'"state": "active"'* ]] && return 0
		sleep 0.2
	done
	die "osd.0 not active within $START_LIMIT s, see $D/log/osd.0.log"
}

# prepare_dir: DIR absent, empty or a former cluster's (whose daemons
# are stopped); made anew, empty.
prepare_dir() {
	if [ -e "$D" ] && [ ! -e "$D/.ceph-cluster" ] &&
		[ -n "$(ls -A "$D" 2>/dev/null)" ]; then
		die "$D is neither empty nor a cluster's directory"
	fi
	if ours "$D/run/mon.a.pid" || ours "$D/run/osd.0.pid"; then
		say "a cluster still runs in $D: stopping it"
		stop_daemons
	fi
	rm -rf "$D"
	mkdir -p "$D"/{run,log,crash,osd.0} || die "cannot make $D"
	: >"$D/.ceph-cluster"
}

stop_daemons() {
	stop_pid "$D/run/osd.0.pid"
	stop_pid "$D/run/mon.a.pid"
}

cmd_start() {
	local t0=$SECONDS tries
	DEADLINE=$((SECONDS + START_LIMIT))
	for t in ceph-mon ceph-osd ceph ceph-authtool monmaptool rados; do
		command -v "$t" >/dev/null ||
			die "$t is not installed (apt-get install ceph-mon ceph-osd ceph-common)"
	done
	prepare_dir
	STARTING=1
	FSID=$(cat /proc/sys/kernel/random/uuid)
	make_keys
	for tries in 1 2 3; do
		PORT=$(free_port) || die "no free port on 127.0.0.1"
		write_conf "$FSID" "$PORT"
		start_mon && break
		say "the monitor died on port $PORT: $(last_line "$D/log/mon.a.log")"
		[ "$tries" = 3 ] && die "the monitor died 3 times, see $D/log/mon.a.log"
	done
	say "mon.a (pid $(cat "$D/run/mon.a.pid")) leads on 127.0.0.1:$PORT"

	# mkfs of the OSD needs no monitor: the fsid is in ceph.conf.
	local uuid
	uuid=$(cat /proc/sys/kernel/random/uuid)
	ceph-osd -c "$D/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" \
		>>"$D/log/mkfs.out" 2>&1 ||
		die "osd mkfs failed: $(last_line "$D/log/mkfs.out") (see $D/log/osd.0.log)"
	ceph_ osd new "$uuid" 0 >/dev/null 2>>"$D/log/ceph.err" ||
		die "osd new failed: $(last_line "$D/log/ceph.err")"
	launch_osd
	say "osd.0 (pid $(cat "$D/run/osd.0.pid")) active"

	ceph_ osd pool create "$POOL" "$PG_NUM" "$PG_NUM" >/dev/null \
		2>>"$D/log/ceph.err" ||
		die "pool create failed: $(last_line "$D/log/ceph.err")"
	ceph_ osd pool application enable "$POOL" rados >/dev/null \
		2>>"$D/log/ceph.err" ||
		die "pool application enable failed: $(last_line "$D/log/ceph.err")"
	# The first write waits for the pool's PGs to be active; it is made
	# with client.bgsnap's key, which checks that key too.
	echo probe >"$D/probe"
	left || die "start took more than $START_LIMIT s"
	timeout "$LEFT" rados -c "$D/ceph.conf" --id bgsnap -p "$POOL" \
		put probe "$D/probe" 2>>"$D/log/ceph.err" ||
		die "the first write failed: $(last_line "$D/log/ceph.err")"
	timeout 10 rados -c "$D/ceph.conf" --id bgsnap -p "$POOL" rm probe \
		2>>"$D/log/ceph.err" ||
		die "removing the probe failed: $(last_line "$D/log/ceph.err")"
	rm -f "$D/probe" "$D/monmap"
	STARTING=0
	say "pool $POOL written $((SECONDS - t0)) s after start"
}

cmd_stop() {
	[ -e "$D" ] || return 0
	[ -e "$D/.ceph-cluster" ] || die "$D is not a cluster's directory"
	stop_daemons
	# The stores go (the block file is 4 GiB sparse); the logs stay.
	find "$D" -mindepth 1 -maxdepth 1 ! -name log ! -name .ceph-cluster \
		-exec rm -rf {} +
}

cmd_kill_osd() {
	local pid
	ours "$D/run/osd.0.pid" || die "no OSD of $D runs"
	pid=$(cat "$D/run/osd.0.pid")
	kill -KILL "$pid"
	for _ in $(seq 50); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && die "osd.0 (pid $pid) survived KILL"
	rm -f "$D/run/osd.0.pid"
	say "osd.0 (pid $pid) killed"
}

cmd_start_osd() {
	[ -f "$D/ceph.conf" ] || die "$D has no cluster"
	ours "$D/run/osd.0.pid" && die "osd.0 of $D already runs"
	DEADLINE=$((SECONDS + START_LIMIT))
	local t0=$SECONDS
	launch_osd
	say "osd.0 (pid $(cat "$D/run/osd.0.pid")) active in $((SECONDS - t0)) s"
}

cmd_env() {
	[ -f "$D/ceph.conf" ] || die "$D has no cluster"
	printf 'CEPH_CONF=%q\n' "$D/ceph.conf"
	printf 'BGSNAP_CEPH_DIR=%q\n' "$D"
	printf 'BGSNAP_CEPH_POOL=%q\n' "$POOL"
	printf 'BGSNAP_CEPH_ID=bgsnap\n'
	printf 'BGSNAP_CEPH_KEYRING=%q\n' "$D/client.bgsnap.keyring"
	printf 'BGSNAP_CEPH_RO_ID=bgsnap-ro\n'
	printf 'BGSNAP_CEPH_RO_KEYRING=%q\n' "$D/client.bgsnap-ro.keyring"
}

[ $# -eq 2 ] || usage
case $OSD_GIB in
'' | *[!0-9]* | 0) say "error: BGSNAP_CEPH_OSD_GIB: '$OSD_GIB' is not a size in GiB"; exit 2 ;;
esac
# Daemons, logs and ceph.conf name DIR absolutely.
D=$(realpath -m -- "$2")
case "$1" in
start) cmd_start ;;
stop) cmd_stop ;;
kill-osd) cmd_kill_osd ;;
start-osd) cmd_start_osd ;;
env) cmd_env ;;
*) usage ;;
esac
