#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ceph_cluster fixture's setup and cleanup tests (tests/ceph.cmake):
#
#   ceph_fixture.sh setup DIR     start a cluster in DIR (77 without Ceph)
#   ceph_fixture.sh cleanup DIR   stop it; DIR keeps its logs
set -u
# shellcheck source=ceph_lib.sh
. "$(dirname "$0")/ceph_lib.sh"

case "${1:-}" in
setup)
	ceph_need_daemons
	exec bash "$CEPH_CLUSTER" start "$2"
	;;
cleanup)
	# Needs no Ceph tool: with no cluster in DIR there is nothing to do.
	exec bash "$CEPH_CLUSTER" stop "$2"
	;;
*)
	echo "usage: ceph_fixture.sh setup|cleanup DIR" >&2
	exit 2
	;;
esac
