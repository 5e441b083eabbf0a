"""Fixtures of the benchmarks (not part of the default test run; see README.md).

The OpenMP wait policy (PASSIVE unless exported), ``data_dir`` and the ``--benchmark`` /
``--grid`` options come from ../conftest.py; ``machine_info`` from :mod:`benchmarks.machine`.
"""

from __future__ import annotations

import pytest
import torch

THREADS = 2


@pytest.fixture(scope="session")
def lm_default():
    """smollm2-135m in the dtype this CPU gets by default (``dtype="auto"``): bf16 where it has
    native bf16 (AVX512-BF16/AMX), fp32 elsewhere, where bf16 matmuls are emulated and about 6x
    slower than fp32 ones (measured on an AVX2-only AMD EPYC). Results record it."""
    from greater.lm import LM

    torch.set_num_threads(THREADS)
    return LM.load("smollm2-135m", dtype="auto", device="cpu")


@pytest.fixture(scope="session")
def bool_task(data_dir):
    from greater.tasks import load_task

    return load_task("bbh/boolean_expressions", data_dir=data_dir)
