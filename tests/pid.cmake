# 'bgsnap save/restore --pid' end to end through the built binary, against
# 'bgsnap guest' processes. Needs root (fails without); 77 only where the
# kernel lacks a required feature.
add_library(bgs_pidutil STATIC pid/pid_util.c)
target_link_libraries(bgs_pidutil PUBLIC bgs_testcommon m)

function(bgs_add_pid_test name)
	cmake_parse_arguments(T "" "TIMEOUT" "LABELS" ${ARGN})
	bgs_add_test(${name} pid/${name}.c TIMEOUT ${T_TIMEOUT}
		LABELS cli pid ${T_LABELS} ARGS $<TARGET_FILE:bgsnap_cli>)
	target_link_libraries(${name} PRIVATE bgs_pidutil)
endfunction()

bgs_add_pid_test(test_pid_save TIMEOUT 300)
bgs_add_pid_test(test_pid_restore TIMEOUT 300)
# 'bgsnap demo --json' (issue 13, item 3).
bgs_add_pid_test(test_pid_demo TIMEOUT 240)
# kill -9 of bgsnap at random points of a save: 10 trials here; the stress
# run (not in the default suite: 'ctest -C stress -L stress') makes 60.
bgs_add_pid_test(test_pid_kill TIMEOUT 240)
add_test(NAME test_pid_kill_stress
	COMMAND test_pid_kill $<TARGET_FILE:bgsnap_cli> CONFIGURATIONS stress)
set_tests_properties(test_pid_kill_stress PROPERTIES
	TIMEOUT 1200 SKIP_RETURN_CODE 77 LABELS "cli;pid;stress"
	ENVIRONMENT BGSNAP_KILL_TRIALS=60)
