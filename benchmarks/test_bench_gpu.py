"""The paper-scale GPU benchmark (benchmarks/gpu_bench.py) under pytest: skipped where there is
no CUDA or where the carried assets (tokenizer files, task data) are missing. See README.md for
the commands a session lent a GPU runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "gpu_assets"
RESULTS = Path(__file__).parent / "results"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
@pytest.mark.skipif(not (ASSETS / "smollm2" / "tokenizer.json").exists(),
                    reason="benchmarks/gpu_assets missing: see README.md (GPU benchmark)")
def test_paper_shapes_on_gpu(benchmark):
    import gpu_bench

    path = benchmark.pedantic(gpu_bench.run, args=(ASSETS, RESULTS, list(gpu_bench.SHAPES),
                                                   ["methods", "eval", "greater_step"]),
                              rounds=1, iterations=1)
    results = json.loads(path.read_text())
    benchmark.extra_info.update(results)
    methods = results["shapes"]["llama-3.2-1b"]["methods"]
    assert all(m.get("ok") for m in methods.values()), methods
