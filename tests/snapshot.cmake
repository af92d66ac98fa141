# The engine: integration tests on the real kernel.
bgs_add_test(test_save integration/test_save.c TIMEOUT 300
	LABELS integration RESOURCE_LOCK hugetlb)
target_link_libraries(test_save PRIVATE PkgConfig::URING)
bgs_add_test(test_hazards integration/test_hazards.c TIMEOUT 120
	LABELS integration RESOURCE_LOCK ksm)
bgs_add_test(test_restore integration/test_restore.c TIMEOUT 300
	LABELS integration RESOURCE_LOCK hugetlb)
bgs_add_test(test_track integration/test_track.c TIMEOUT 300
	LABELS integration RESOURCE_LOCK swap)
# Saves while the owner moves, unmaps and discards its memory
# (BGSNAP_STRESS_SECONDS long; minutes by hand).
bgs_add_test(test_stress_events stress/test_stress_events.c TIMEOUT 120
	LABELS stress)
# Reading the owner's memory in place: faults come back, others chain.
bgs_add_test(test_guard unit/test_guard.c TIMEOUT 60 LABELS unit)
# The public structs' sizes, seen from older and newer applications.
bgs_add_test(test_abi integration/test_abi.c TIMEOUT 60 LABELS integration)
