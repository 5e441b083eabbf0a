"""The benchmark suite: the grid harness (:mod:`benchmarks.harness`), specs, timing suites."""
