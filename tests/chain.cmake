# Incremental chains (issue 8, items 2 and 3): the snapshot-file API
# following parents, and the commands that use it (info, verify, export,
# flatten, save --parent, watch) end to end through the built binary.
bgs_add_test(test_chain_file chain/test_chain_file.c LABELS cli chain unit
	TIMEOUT 30)
