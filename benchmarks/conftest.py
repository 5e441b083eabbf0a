"""Fixtures of the benchmarks (not part of the default test run; see README.md).

The OpenMP wait policy (PASSIVE unless exported) and ``data_dir`` come from ../conftest.py.
"""

from __future__ import annotations

import os

import pytest
import torch

THREADS = 2


def machine_info() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_1m_at_start": load[0], "torch": torch.__version__}


@pytest.fixture(scope="session")
def lm_bf16():
    from greater.lm import LM

    torch.set_num_threads(THREADS)
    return LM.load("smollm2-135m", dtype="bf16", device="cpu")


@pytest.fixture(scope="session")
def bool_task(data_dir):
    from greater.tasks import load_task

    return load_task("bbh/boolean_expressions", data_dir=data_dir)
