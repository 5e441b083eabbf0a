"""Fixtures of the benchmarks (not part of the default test run; see README.md).

The machine is shared: with torch's default OpenMP wait policy, two threads competing with another
busy process slow down by up to ~60x (spin-waiting), so the policy defaults to PASSIVE here. It
must be set before torch is imported; export OMP_WAIT_POLICY to override.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THREADS = 2


def machine_info() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_1m_at_start": load[0], "torch": torch.__version__}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("GREATER_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "bbh").is_dir():
        pytest.fail(f"benchmark data not found at {path}; set GREATER_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def lm_bf16():
    from greater.lm import LM

    torch.set_num_threads(THREADS)
    return LM.load("smollm2-135m", dtype="bf16", device="cpu")


@pytest.fixture(scope="session")
def bool_task(data_dir):
    from greater.tasks import load_task

    return load_task("bbh/boolean_expressions", data_dir=data_dir)
