# Target access (freeze/thaw, injection, mappings, memory): issue 6, items 1-3.
target_sources(bgs_testcommon PRIVATE common/tu_target.c)

bgs_add_test(test_target unit/test_target.c TIMEOUT 60 LABELS unit)
target_link_libraries(test_target PRIVATE m)
bgs_add_test(test_target_inject unit/test_target_inject.c TIMEOUT 120
	LABELS unit)
target_link_libraries(test_target_inject PRIVATE m)
bgs_add_test(test_target_maps unit/test_target_maps.c TIMEOUT 60
	LABELS unit RESOURCE_LOCK hugetlb)
target_link_libraries(test_target_maps PRIVATE m rt)
