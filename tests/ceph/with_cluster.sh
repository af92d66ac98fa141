#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a test against the ceph_cluster fixture's cluster:
#
#   with_cluster.sh DIR PROGRAM [ARGS...]
#
# exports what 'cluster.sh env DIR' prints (CEPH_CONF, the pool, the
# client ids and keyrings), then runs PROGRAM. Skips (77) only where Ceph
# is not installed (a failure in CI).
set -u
# shellcheck source=ceph_lib.sh
. "$(dirname "$0")/ceph_lib.sh"
ceph_need_daemons
ceph_load_env "$1"
shift
export BGSNAP_CEPH_CLUSTER=$CEPH_CLUSTER # for kill-osd and start-osd
exec "$@"
