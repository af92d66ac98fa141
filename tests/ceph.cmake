# A throw-away one-node Ceph cluster (ceph/cluster.sh) for the tests
# labelled ceph: the fixture ceph_cluster starts it in the build tree
# before the first of them and stops it after the last (CMakeLists.txt
# makes every test labelled ceph require it). Without Ceph installed the
# setup and the tests skip (77), which fails in CI: .ci/bootstrap
# installs Ceph.
set(BGS_CEPH_DIR ${CMAKE_CURRENT_BINARY_DIR}/ceph-cluster)
set(BGS_CEPH_FIXTURE ${CMAKE_CURRENT_SOURCE_DIR}/ceph/ceph_fixture.sh)

# The start gives up after 60 s by itself.
add_test(NAME ceph_cluster_start
	COMMAND bash ${BGS_CEPH_FIXTURE} setup ${BGS_CEPH_DIR})
set_tests_properties(ceph_cluster_start PROPERTIES
	FIXTURES_SETUP ceph_cluster TIMEOUT 90 LABELS ceph
	SKIP_RETURN_CODE 77)
add_test(NAME ceph_cluster_stop
	COMMAND bash ${BGS_CEPH_FIXTURE} cleanup ${BGS_CEPH_DIR})
set_tests_properties(ceph_cluster_stop PROPERTIES
	FIXTURES_CLEANUP ceph_cluster TIMEOUT 60 LABELS ceph)

# Snapshots in the pool: 'bgsnap save/restore --pid', verify, export
# through rados://, damage, keys without write caps, names taken.
if(RADOS_INCLUDE_DIR)
	add_executable(test_pid_rados pid/test_pid_rados.c)
	target_link_libraries(test_pid_rados PRIVATE bgs_testcommon bgs_pidutil)
	add_test(NAME test_pid_rados
		COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ceph/with_cluster.sh
			${BGS_CEPH_DIR} $<TARGET_FILE:test_pid_rados>
			$<TARGET_FILE:bgsnap_cli>)
	set_tests_properties(test_pid_rados PROPERTIES
		TIMEOUT 300 LABELS "ceph;cli;pid" SKIP_RETURN_CODE 77)
	# A lazy restore from the pool through the library, and the OSD
	# killed under it.
	add_executable(test_rados_lazy integration/test_rados_lazy.c)
	target_link_libraries(test_rados_lazy PRIVATE bgs_testcommon)
	add_test(NAME test_rados_lazy
		COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ceph/with_cluster.sh
			${BGS_CEPH_DIR} $<TARGET_FILE:test_rados_lazy>)
	set_tests_properties(test_rados_lazy PROPERTIES
		TIMEOUT 300 LABELS "ceph;integration" SKIP_RETURN_CODE 77)
endif()

# Round trips with the read-write and the read-only key, and the data
# across a kill -9 and restart of the OSD.
add_test(NAME ceph_smoke
	COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ceph/test_ceph_smoke.sh
		${BGS_CEPH_DIR})
set_tests_properties(ceph_smoke PROPERTIES
	TIMEOUT 240 LABELS ceph SKIP_RETURN_CODE 77)
