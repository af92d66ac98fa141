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

# The commands end to end through the built binary, on snapshots made by
# cli_mksnap (a live save: root; 77 only where the kernel cannot).
foreach(_t info verify export)
	add_test(NAME cli_${_t}
		COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_${_t}.sh
			$<TARGET_FILE:bgsnap_cli> $<TARGET_FILE:cli_mksnap>)
	set_tests_properties(cli_${_t} PROPERTIES
		TIMEOUT 120 LABELS cli SKIP_RETURN_CODE 77)
endforeach()

# Installing: cmake --install into a fresh prefix, then a program built
# against it with find_package(bgsnap) and with pkg-config.
add_test(NAME cli_install
	COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_install.sh
		${PROJECT_BINARY_DIR} ${CMAKE_C_COMPILER} ${CMAKE_INSTALL_LIBDIR}
		${CMAKE_INSTALL_MANDIR} ${BGSNAP_SANITIZE})
set_tests_properties(cli_install PROPERTIES TIMEOUT 120 LABELS install)

# bgsnap run for real by an unprivileged user (uid 65534) on its own
# process: refused without /dev/userfaultfd, saved with one of its own.
# Root sets it up (a device node in a mount namespace of the test).
# And root saving that process while another process of uid 65534 (the
# thief) tries to take what root hands it.
add_executable(cli_thief cli/thief.c common/tu_thief.c)
target_include_directories(cli_thief PRIVATE common)
add_test(NAME cli_nonroot
	COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_nonroot.sh
		$<TARGET_FILE:bgsnap_cli> $<TARGET_FILE:cli_thief>)
set_tests_properties(cli_nonroot PROPERTIES TIMEOUT 60 LABELS cli)
