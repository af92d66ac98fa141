# ramstore tests, fuzz replay and micro-benchmark (issue 3).
target_sources(bgs_testcommon PRIVATE common/rs_testutil.c)

bgs_add_test(test_rs_roundtrip unit/test_rs_roundtrip.c LABELS unit TIMEOUT 120)
