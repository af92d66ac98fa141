# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Sourced by the tests that run against the ceph_cluster fixture
# (tests/ceph.cmake) and by the fixture itself.

CEPH_CLUSTER=$(dirname "${BASH_SOURCE[0]}")/cluster.sh

# ceph_need_daemons: returns when Ceph's daemons and tools are installed;
# else skips the test (77), which fails it with BGSNAP_CI=1 as
# tu_skip_missing() does: CI installs them (.ci/bootstrap).
ceph_need_daemons() {
	local t
	for t in ceph-mon ceph-osd ceph rados; do
		command -v "$t" >/dev/null && continue
		echo "# SKIP: $t is not installed (.ci/bootstrap installs it)" >&2
		if [ "${BGSNAP_CI:-0}" = 1 ]; then
			echo "FAIL: BGSNAP_CI=1: a skip is a failure in CI" >&2
			exit 1
		fi
		exit 77
	done
}

# ceph_load_env DIR: exports what 'cluster.sh env DIR' prints (CEPH_CONF,
# BGSNAP_CEPH_POOL, the client ids and keyrings); exits 1 without a
# cluster in DIR.
ceph_load_env() {
	local lines
	lines=$("$CEPH_CLUSTER" env "$1") ||
		{ echo "FAIL: no cluster in $1 (did ceph_cluster_start pass?)" >&2; exit 1; }
	set -a
	eval "$lines"
	set +a
}
