# 'bgsnap bench' (issues 7 and 8) at a tiny size, so that it cannot rot:
# every method runs and succeeds, the floors are measured, the --json
# document has its stable keys (CMake's JSON reader sorts them: their
# set is checked, not their order), no file is left behind, and usage
# errors are one line. The figures themselves are not judged: on a
# shared machine the load decides them. Skipped where this machine
# cannot save (exit 4).
set(_bench_check ${CMAKE_CURRENT_BINARY_DIR}/bench_smoke.cmake)
file(WRITE ${_bench_check} [=[
# Run as: cmake -DBGSNAP=... -DDIR=... -P bench_smoke.cmake
function(expect_keys json what)
	string(JSON n LENGTH "${json}")
	set(got "")
	math(EXPR last "${n} - 1")
	foreach(i RANGE ${last})
		string(JSON k MEMBER "${json}" ${i})
		list(APPEND got ${k})
	endforeach()
	set(want ${ARGN})
	list(SORT got)
	list(SORT want)
	if(NOT "${got}" STREQUAL "${want}")
		message(FATAL_ERROR "${what}: the keys changed: ${got}")
	endif()
endfunction()

execute_process(COMMAND ${BGSNAP} bench --size 3 RESULT_VARIABLE rc
	OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "^bgsnap: error: bench: [^\n]*\n$")
	message(FATAL_ERROR "a bad size: exit ${rc}, '${err}'")
endif()
execute_process(COMMAND ${BGSNAP} bench --methods uffd,nope RESULT_VARIABLE rc
	OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "'nope' is not a method")
	message(FATAL_ERROR "a bad method: exit ${rc}, '${err}'")
endif()

file(MAKE_DIRECTORY ${DIR})
execute_process(COMMAND ${BGSNAP} bench --size 64M --repeat 1 --incr-gap 1s
		--dir ${DIR} --json --quiet
	RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 4)
	message("SKIP: this machine cannot save: ${err}")
	return()
endif()
if(NOT rc EQUAL 0)
	message(FATAL_ERROR "bench exited ${rc}: ${err}")
endif()
file(GLOB left ${DIR}/*)
if(left)
	message(FATAL_ERROR "files left behind: ${left}")
endif()

expect_keys("${out}" "the document" version command settings load_avg_start
	load_avg_end runtime_s sizes targets)
string(JSON size GET "${out}" sizes 0)
expect_keys("${size}" "a size" size_bytes floors methods targets)
string(JSON floors GET "${size}" floors)
foreach(k write_protect_ms fault_p50_us fault_same_cpu_p50_us lz4_gib_s
	disk_gib_s)
	string(JSON v GET "${floors}" ${k})
	if(v STREQUAL "null" OR v LESS_EQUAL 0)
		message(FATAL_ERROR "floor ${k} is ${v}")
	endif()
endforeach()
set(figs blackout_ms pause_ms arm_ms reprotected_pages elapsed_s
	throughput_gib_s writers_before_ops_s writers_during_ops_s
	writers_ratio lat_p50_us lat_p99_us lat_max_us extra_memory_bytes
	file_bytes faults stall_p99_us peak_buffer_bytes pages_written
	parent_elapsed_s parent_file_bytes rollback_ms rollback_pages
	noise_ms start_window_ms worst_due_ms pause_at_ms cpu_saver_s
	cpu_writers_s cpu_main_s cpu_copy_s cpu_compress_s cpu_checksum_s
	cpu_unprotect_s cpu_copier_s cpu_fault_thread_s cpu_workers_s
	load_avg_1m
	cpu_stages_s_per_gib)
string(JSON methods GET "${size}" methods)
expect_keys("${methods}" "the methods" uffd uffd-1phase uffd-pid fork stw
	uffd-incr rollback)
foreach(m uffd uffd-1phase uffd-pid fork stw uffd-incr rollback)
	string(JSON fm GET "${methods}" ${m})
	expect_keys("${fm}" "method ${m}" ok ${figs} runs)
	string(JSON ok GET "${fm}" ok)
	if(NOT ok)
		message(FATAL_ERROR "method ${m} failed")
	endif()
	if(m STREQUAL "rollback")
		set(need rollback_ms rollback_pages)
	else()
		set(need blackout_ms elapsed_s file_bytes writers_ratio)
	endif()
	foreach(k ${need})
		string(JSON v GET "${fm}" ${k})
		if(v STREQUAL "null" OR v LESS_EQUAL 0)
			message(FATAL_ERROR "method ${m}: ${k} is ${v}")
		endif()
	endforeach()
	# The saving threads' CPU by stage: where bgsnap saves, compress costs
	# something and no stage is negative; copy costs something where the
	# pages are read out of another process (uffd-pid), and nothing where
	# they are compressed where they lie, with no fault to copy and no
	# verify (stw, in the guest's own process).
	string(JSON st GET "${fm}" cpu_stages_s_per_gib)
	if(m MATCHES "^uffd$|^uffd-pid$|^stw$")
		expect_keys("${st}" "method ${m}: stages" copy compress checksum
			unprotect write other)
		foreach(k copy compress checksum unprotect write other)
			string(JSON v GET "${st}" ${k})
			if(v STREQUAL "null" OR v LESS 0)
				message(FATAL_ERROR "method ${m}: ${k} is ${v}")
			endif()
		endforeach()
		string(JSON v GET "${st}" compress)
		if(v LESS_EQUAL 0)
			message(FATAL_ERROR "method ${m}: compress is ${v}")
		endif()
		string(JSON v GET "${st}" copy)
		if(m STREQUAL "uffd-pid" AND v LESS_EQUAL 0)
			message(FATAL_ERROR "method ${m}: copy is ${v}")
		elseif(m STREQUAL "stw" AND NOT v EQUAL 0)
			message(FATAL_ERROR "method stw: copy is ${v}, not 0: "
				"the pages were copied, not read where they lie")
		endif()
	endif()
endforeach()
string(JSON t GET "${size}" targets 0)
expect_keys("${t}" "a target" id text unit value limit ratio met note)
]=])
add_test(NAME bench_smoke
	COMMAND ${CMAKE_COMMAND} -DBGSNAP=$<TARGET_FILE:bgsnap_cli>
		-DDIR=${CMAKE_CURRENT_BINARY_DIR}/bench-smoke
		-P ${_bench_check})
set_tests_properties(bench_smoke PROPERTIES TIMEOUT 60 LABELS bench
	SKIP_REGULAR_EXPRESSION "SKIP: ")

# Restore against its floors (issue 5); the smoke run at a tiny size checks
# that every restore it times is right (each is compared with its source).
add_executable(bench_restore bench/bench_restore.c)
target_link_libraries(bench_restore PRIVATE bgs_testcommon PkgConfig::LZ4
	PkgConfig::XXHASH)
add_test(NAME bench_restore_smoke
	COMMAND bench_restore -s 16 -l 16,32 -r 1 -d /tmp)
set_tests_properties(bench_restore_smoke PROPERTIES TIMEOUT 60 LABELS bench)

# What memory costs the first time it is written, against again (run by
# hand: tests/bench/bench_first_touch.c).
add_executable(bench_first_touch bench/bench_first_touch.c)
target_link_libraries(bench_first_touch PRIVATE bgs_testcommon)

# What an unprotect costs by its size (run by hand:
# tests/bench/bench_unprotect.c).
add_executable(bench_unprotect bench/bench_unprotect.c)
target_link_libraries(bench_unprotect PRIVATE bgs_testcommon)

# The Redis benchmark's client (issue 11): fill, probe, and the figures
# and the picture of tests/bench/bench_redis.sh.
add_executable(bench_redis_probe bench/bench_redis_probe.c)
target_link_libraries(bench_redis_probe PRIVATE m)

# The Redis benchmark (issue 11) at a tiny size, so that it cannot rot:
# the script itself fails (exit 1) when a phase fails or gives no figure,
# when the picture is not well-formed or a snapshot does not verify; here
# its --json document must parse and carry every phase. As root it
# installs Redis with apt-get. Skipped where this machine cannot save
# (exit 4).
set(_redis_check ${CMAKE_CURRENT_BINARY_DIR}/bench_redis_smoke.cmake)
file(WRITE ${_redis_check} [=[
# Run as: cmake -DSCRIPT=... -DBGSNAP=... -DPROBE=... -DOUT=... -P ...
execute_process(COMMAND ${SCRIPT} --sizes 64M --seconds 2 --verify all --json --quiet
		--bgsnap ${BGSNAP} --probe ${PROBE} --out ${OUT}
	RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 4)
	message("SKIP: this machine cannot save: ${err}")
	return()
endif()
if(NOT rc EQUAL 0)
	message(FATAL_ERROR "bench_redis.sh exited ${rc}: ${err}")
endif()
string(JSON size GET "${out}" sizes 0)
string(JSON svg GET "${size}" svg)
if(NOT EXISTS "${svg}")
	message(FATAL_ERROR "no picture at ${svg}")
endif()
foreach(p load load_bgsave load_bgsnap idle idle_bgsave idle_bgsnap)
	string(JSON v GET "${size}" phases ${p} probe_max_us)
	if(NOT v GREATER 0)
		message(FATAL_ERROR "phase ${p}: probe_max_us is ${v}")
	endif()
endforeach()
foreach(p load_bgsave load_bgsnap idle_bgsave idle_bgsnap)
	string(JSON v GET "${size}" phases ${p} elapsed_s)
	if(NOT v GREATER 0)
		message(FATAL_ERROR "phase ${p}: elapsed_s is ${v}")
	endif()
endforeach()
]=])
add_test(NAME bench_redis_smoke
	COMMAND ${CMAKE_COMMAND}
		-DSCRIPT=${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_redis.sh
		-DBGSNAP=$<TARGET_FILE:bgsnap_cli>
		-DPROBE=$<TARGET_FILE:bench_redis_probe>
		-DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench-redis-smoke
		-P ${_redis_check})
set_tests_properties(bench_redis_smoke PROPERTIES TIMEOUT 300 LABELS bench
	SKIP_REGULAR_EXPRESSION "SKIP: ")
