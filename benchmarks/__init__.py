"""The benchmark suite: the grid harness (:mod:`benchmarks.harness`), grid specs and timing suites."""
