# The core writer over snapshots made directly (layout, notes, hostile
# "bgsnap.core" attachments).
bgs_add_test(test_snap_core unit/test_snap_core.c LABELS unit core TIMEOUT 60)

# Core files ('bgsnap core', 'export --core') read by gdb, gcore and
# elfutils' eu-stack, against core_target. Root on the real kernel, else 77.
add_executable(core_target core/core_target.c)
# gdb must see the target's frames and locals as written. Never
# sanitized: gcore cannot dump a process with ASan's shadow mappings
# (gdb then finds no core in its file), and the comparison needs gcore.
target_compile_options(core_target PRIVATE -g -O1 -fno-omit-frame-pointer)
if(BGSNAP_SANITIZE)
	target_compile_options(core_target PRIVATE -fno-sanitize=all)
	target_link_options(core_target PRIVATE -fno-sanitize=all)
endif()
target_link_libraries(core_target PRIVATE Threads::Threads)

foreach(_m gdb writers chain memory exit)
	add_test(NAME core_${_m}
		COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/core/test_core.sh
			$<TARGET_FILE:bgsnap_cli> $<TARGET_FILE:core_target> ${_m})
	set_tests_properties(core_${_m} PROPERTIES
		TIMEOUT 240 LABELS "cli;pid;core" SKIP_RETURN_CODE 77)
endforeach()
