"""One GCG step on the CPU: smollm2-135m in the CPU's default dtype (bf16 with native bf16, else
fp32), 2 threads, BBH boolean_expressions, 8 training examples, search width BENCH_GCG_WIDTH
(default 128; the paper's 512 took 510 s a step before prefix sharing), top_k 256. The step's
gradient and candidate-evaluation phases are recorded.
"""

from __future__ import annotations

import os
import time

from benchmarks.machine import machine_info

WIDTH = int(os.environ.get("BENCH_GCG_WIDTH", "128"))


def test_gcg_step(benchmark, lm_default, bool_task):
    from baselines.gcg import GCGConfig
    from greater.methods import get_method

    optimize = get_method("gcg").optimize

    cfg = GCGConfig(steps=1, n_train=8, search_width=WIDTH, n_dev=1, n_test=0,
                    n_contenders=1, seed=0)
    before = lm_default.meter.snapshot()
    t0 = time.perf_counter()
    result = benchmark.pedantic(optimize, args=(lm_default, bool_task, cfg),
                                kwargs={"progress": False}, rounds=1, iterations=1)
    cost = lm_default.meter.snapshot() - before
    extra = benchmark.extra_info
    extra.update(machine_info(lm_default))
    extra.update({"search_width": WIDTH, "n_train": 8,
                  "n_swaps": result.history[0].details.get("n_swaps"),
                  "seconds_step": round(result.history[0].seconds, 2),
                  "seconds_run": round(time.perf_counter() - t0, 2),
                  "phases": {k: round(v, 2) for k, v in cost.phase_seconds.items()},
                  "forward_tokens": cost.forward_tokens})
    print(f"\nGCG step, width {WIDTH}: {result.history[0].seconds:.1f} s; {extra['phases']}; "
          f"{cost.forward_tokens} forward tokens")
