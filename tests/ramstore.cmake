# ramstore tests, fuzz replay and micro-benchmark (issue 3).
target_sources(bgs_testcommon PRIVATE common/rs_testutil.c)

bgs_add_test(test_rs_format unit/test_rs_format.c LABELS unit)
bgs_add_test(test_rs_writer unit/test_rs_writer.c LABELS unit)
bgs_add_test(test_rs_roundtrip unit/test_rs_roundtrip.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_corrupt unit/test_rs_corrupt.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_faults unit/test_rs_faults.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_overflow unit/test_rs_overflow.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_wqueue unit/test_rs_wqueue.c LABELS unit TIMEOUT 120)

# The micro-benchmark: run by hand, not a test (see its header for usage).
add_executable(bench_ramstore bench/bench_ramstore.c)
target_link_libraries(bench_ramstore PRIVATE bgs_testcommon PkgConfig::LZ4)

# Fuzzing (tests/fuzz): the replay driver runs the committed corpus through
# the target in every build; the libFuzzer binary itself needs clang and
# compiles its own copy of the store, which accepts any checksum so that
# mutations reach the checks behind them (BGS_RS_FUZZING).
bgs_add_test(rs_fuzz_replay fuzz/fuzz_replay.c LABELS fuzz
	ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/reader)
target_sources(rs_fuzz_replay PRIVATE fuzz/fuzz_reader.c)
add_executable(rs_gen_corpus fuzz/gen_corpus.c)
target_link_libraries(rs_gen_corpus PRIVATE bgs_testcommon)

if(BGSNAP_FUZZ)
	if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
		message(FATAL_ERROR "BGSNAP_FUZZ needs clang (preset fuzz)")
	endif()
	add_executable(fuzz_reader fuzz/fuzz_reader.c ${BGS_RAMSTORE_SOURCES})
	target_include_directories(fuzz_reader PRIVATE
		${PROJECT_SOURCE_DIR}/ramstore)
	target_compile_definitions(fuzz_reader PRIVATE BGS_RS_FUZZING)
	target_compile_options(fuzz_reader PRIVATE -fsanitize=fuzzer)
	target_link_options(fuzz_reader PRIVATE -fsanitize=fuzzer)
	target_link_libraries(fuzz_reader PRIVATE
		PkgConfig::URING PkgConfig::LZ4 PkgConfig::XXHASH)
	# .ci/bootstrap runs build-fuzz/tests/fuzz_* on corpus/<name>
	set_target_properties(fuzz_reader PROPERTIES
		RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endif()
