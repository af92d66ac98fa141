#!/bin/bash
# SPDX-License-Identifier: MIT
# bgsnap run for real by an unprivileged user (uid 65534) on a process of
# that user. Without access to /dev/userfaultfd (and with
# vm.unprivileged_userfaultfd=0) the save is refused, naming the cause, and
# the process runs on untouched. With a /dev/userfaultfd of its own (the
# real device node, made for the test and bind-mounted over
# /dev/userfaultfd in a mount namespace of the test, so nothing of the
# machine changes) the save takes the non-root path and the file verifies.
# Either way the process keeps exactly the descriptors it had. Then root
# saves it while a second process of uid 65534 (thief, $2) loops
# pidfd_getfd over every thread's descriptors: it must take ordinary ones,
# and never the /dev/userfaultfd descriptor or a uffd. Setting all that up
# needs root: without it the test fails, it is no skip.
set -u
BGSNAP=$1
THIEF=$2
SAVES=30
ID=65534
FAILS=0
fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}
if [ "$(id -u)" != 0 ]; then
	echo "FAIL: this test needs root to set up the unprivileged run" \
		"(mknod, a mount namespace); run the suite as root" >&2
	exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/bgsnap-nonroot.XXXXXX")
chmod 0711 "$T"
mkdir "$T/out"
chown "$ID:$ID" "$T/out"
P=
thief=
trap 'kill $P $thief 2>/dev/null; rm -rf "$T"' EXIT
as_user() {
	setpriv --reuid=$ID --regid=$ID --clear-groups --inh-caps=-all "$@"
}
fds() {
	ls "/proc/$P/fd" | wc -l
}

# The target: a process of uid 65534 whose memory the kernel keeps
# writing (dd's read() into its buffer), with mappings that stay put.
setpriv --reuid=$ID --regid=$ID --clear-groups --inh-caps=-all \
	dd if=/dev/zero of=/dev/null bs=1M 2>/dev/null &
P=$!
for _ in $(seq 100); do
	[ "$(stat -c %u "/proc/$P" 2>/dev/null)" = $ID ] && break
	sleep 0.05
done
[ "$(stat -c %u "/proc/$P" 2>/dev/null)" = $ID ] || {
	echo "FAIL: no target process of uid $ID" >&2
	exit 1
}
fds0=$(fds)

unpriv=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo 0)
as_user "$BGSNAP" save --pid "$P" -o "$T/out/a.bgs" 2>"$T/a.err"
rc=$?
if [ "$unpriv" = 1 ]; then
	[ $rc -eq 0 ] || fail "save with vm.unprivileged_userfaultfd=1:" \
		"exit $rc: $(cat "$T/a.err")"
else
	[ $rc -ne 0 ] || fail "save without /dev/userfaultfd access succeeded"
	grep -q "/dev/userfaultfd cannot be opened" "$T/a.err" ||
		fail "refusal does not name the cause: $(cat "$T/a.err")"
	[ -e "$T/out/a.bgs" ] && fail "a refused save left a file"
fi
kill -0 "$P" || fail "the target died"
[ "$(fds)" = "$fds0" ] || fail "the target has $(fds) descriptors, had $fds0"

# A /dev/userfaultfd for uid 65534 only, in a mount namespace of ours.
read -r ma mi < <(stat -c '%t %T' /dev/userfaultfd)
mknod "$T/uffd" c $((16#$ma)) $((16#$mi))
chown "$ID:$ID" "$T/uffd"
chmod 0600 "$T/uffd"
unshare -m sh -c 'mount --bind "$1" /dev/userfaultfd && shift &&
	exec setpriv --reuid='$ID' --regid='$ID' --clear-groups \
		--inh-caps=-all "$@"' sh "$T/uffd" \
	"$BGSNAP" save --pid "$P" -o "$T/out/b.bgs" >"$T/b.out" 2>"$T/b.err"
rc=$?
[ $rc -eq 0 ] || fail "save with a /dev/userfaultfd of its own: exit $rc:" \
	"$(cat "$T/b.err")"
if [ $rc -eq 0 ]; then
	"$BGSNAP" verify "$T/out/b.bgs" >"$T/v.out" 2>&1 ||
		fail "verify: $(cat "$T/v.out")"
	[ "$(stat -c '%u %a' "$T/out/b.bgs")" = "$ID 600" ] ||
		fail "file is $(stat -c '%U %a' "$T/out/b.bgs"), not $ID 600"
fi
kill -0 "$P" || fail "the target died"
[ "$(fds)" = "$fds0" ] || fail "the target has $(fds) descriptors, had $fds0"

# Root saves it with the thief at work.
setpriv --reuid=$ID --regid=$ID --clear-groups --inh-caps=-all \
	"$THIEF" "$P" >"$T/thief.out" &
thief=$!
sleep 0.2
for i in $(seq $SAVES); do
	"$BGSNAP" save --pid "$P" -o "$T/root-$i.bgs" >/dev/null 2>"$T/r.err" ||
		fail "root's save $i: $(cat "$T/r.err")"
	rm -f "$T/root-$i.bgs"
done
kill -TERM $thief
wait $thief || fail "thief exited $?"
read -r _ plain _ uffd _ dev <"$T/thief.out"
echo "# $SAVES saves by root, the thief took: $(cat "$T/thief.out")"
[ "${plain:-0}" -gt 0 ] || fail "the thief took nothing at all: it proves nothing"
[ "${uffd:-1}" = 0 ] || fail "the thief took $uffd uffds"
[ "${dev:-1}" = 0 ] || fail "the thief took $dev /dev/userfaultfd descriptors"
kill -0 "$P" || fail "the target died"
[ "$(fds)" = "$fds0" ] || fail "the target has $(fds) descriptors, had $fds0"

[ $FAILS -eq 0 ] || exit 1
echo "ok: uid $ID refused with the cause, then saved with a" \
	"/dev/userfaultfd of its own; root saved it $SAVES times and the" \
	"thief took nothing of root's; the target kept its $fds0 descriptors"
