# Incremental chains (issue 8, items 2 and 3): the snapshot-file API
# following parents, and the commands that use it (info, verify, export,
# flatten, save --parent, watch) end to end through the built binary.
bgs_add_test(test_chain_file chain/test_chain_file.c LABELS cli chain unit
	TIMEOUT 30)

# The commands end to end through the built binary, against 'bgsnap guest'
# processes (and a target of the test's own). Needs root (fails without);
# 77 only where the kernel lacks a required feature.
bgs_add_test(test_chain_cli chain/test_chain_cli.c LABELS cli chain
	TIMEOUT 180 ARGS $<TARGET_FILE:bgsnap_cli>)
target_include_directories(test_chain_cli PRIVATE pid)
target_link_libraries(test_chain_cli PRIVATE bgs_pidutil)
