# ramstore tests, fuzz replay and micro-benchmark (issue 3).
target_sources(bgs_testcommon PRIVATE common/rs_testutil.c)

bgs_add_test(test_rs_format unit/test_rs_format.c LABELS unit)
bgs_add_test(test_rs_writer unit/test_rs_writer.c LABELS unit)
bgs_add_test(test_rs_roundtrip unit/test_rs_roundtrip.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_corrupt unit/test_rs_corrupt.c LABELS unit TIMEOUT 120)
bgs_add_test(test_rs_faults unit/test_rs_faults.c LABELS unit TIMEOUT 120)

# The micro-benchmark: run by hand, not a test (see its header for usage).
add_executable(bench_ramstore bench/bench_ramstore.c)
target_link_libraries(bench_ramstore PRIVATE bgs_testcommon PkgConfig::LZ4)
