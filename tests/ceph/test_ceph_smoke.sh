#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ceph_cluster fixture works as the tests that use it expect:
#
#   test_ceph_smoke.sh DIR      (DIR: the fixture's cluster)
#
# - client.bgsnap puts a 4 MiB object and gets the same bytes back;
# - client.bgsnap-ro reads it, and its put is refused: EPERM, which rados
#   prints as "Operation not permitted";
# - after kill-osd (kill -9) and start-osd, the object written before the
#   kill reads back the same (bluestore) and new writes succeed.
#
# Skips (77) only where Ceph is not installed (a failure in CI).
set -u
# shellcheck source=ceph_lib.sh
. "$(dirname "$0")/ceph_lib.sh"
ceph_need_daemons
ceph_load_env "$1"

T=$(mktemp -d "${TMPDIR:-/tmp}/bgsnap-ceph.XXXXXX")
OSD_KILLED=0
FAILS=0

cleanup() {
	# A test after this one must find the OSD up.
	[ $OSD_KILLED = 1 ] && bash "$CEPH_CLUSTER" start-osd "$BGSNAP_CEPH_DIR"
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

# rados_ ID ARGS...: rados as client.ID on the pool. An op fails after
# 30 s instead of waiting for the OSD forever; the whole command after 60.
rados_() {
	local id=$1
	shift
	timeout 60 rados --id "$id" --rados-osd-op-timeout 30 \
		-p "$BGSNAP_CEPH_POOL" "$@"
}

head -c $((4 << 20)) /dev/urandom >"$T/obj"

rados_ bgsnap put smoke-4m "$T/obj" 2>"$T/put.err" ||
	fail "put as client.bgsnap: $(cat "$T/put.err")"
rados_ bgsnap get smoke-4m "$T/got" 2>"$T/get.err" ||
	fail "get as client.bgsnap: $(cat "$T/get.err")"
cmp -s "$T/obj" "$T/got" || fail "the 4 MiB object came back different"

rados_ bgsnap-ro get smoke-4m "$T/got-ro" 2>"$T/get-ro.err" ||
	fail "get as client.bgsnap-ro: $(cat "$T/get-ro.err")"
cmp -s "$T/obj" "$T/got-ro" || fail "client.bgsnap-ro read other bytes"
if rados_ bgsnap-ro put smoke-ro "$T/obj" 2>"$T/put-ro.err"; then
	fail "client.bgsnap-ro could write"
elif ! grep -q 'Operation not permitted' "$T/put-ro.err"; then
	fail "client.bgsnap-ro's put failed, but not for permission: $(cat "$T/put-ro.err")"
fi

bash "$CEPH_CLUSTER" kill-osd "$BGSNAP_CEPH_DIR" || fail "kill-osd failed"
OSD_KILLED=1
bash "$CEPH_CLUSTER" start-osd "$BGSNAP_CEPH_DIR" || fail "start-osd failed"
OSD_KILLED=0
rm -f "$T/got"
rados_ bgsnap get smoke-4m "$T/got" 2>"$T/get.err" ||
	fail "get after the OSD's restart: $(cat "$T/get.err")"
cmp -s "$T/obj" "$T/got" || fail "the object changed across the OSD's restart"
rados_ bgsnap put smoke-after "$T/obj" 2>"$T/put.err" ||
	fail "put after the OSD's restart: $(cat "$T/put.err")"

rados_ bgsnap rm smoke-4m 2>/dev/null
rados_ bgsnap rm smoke-after 2>/dev/null
[ $FAILS -eq 0 ] || { echo "$FAILS check(s) failed" >&2; exit 1; }
echo "ceph smoke: all checks passed"
