# The bgsnap command (issue 6): its helpers, the snapshot-file API, and the
# commands end to end through the built binary.
bgs_add_test(test_cli_util cli/test_cli_util.c LABELS cli unit TIMEOUT 30)
# The helpers are the command's own code, compiled in directly.
target_sources(test_cli_util PRIVATE ${PROJECT_SOURCE_DIR}/cli/cli_util.c)
target_link_libraries(test_cli_util PRIVATE m)

# Makes snapshots with known content through the public API (shared
# library, as any program would).
add_executable(cli_mksnap cli/mksnap.c)
target_link_libraries(cli_mksnap PRIVATE bgsnap)

# The public snapshot-file API, over files made by the store's writer.
bgs_add_test(test_snap_file cli/test_snap_file.c LABELS cli unit TIMEOUT 30)
