# ramstore tests, fuzz replay and micro-benchmark (issue 3).
