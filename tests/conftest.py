"""Shared fixtures: the real data directory and the real default stand-in model."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while waiting slow torch down 20-60x when another process holds a
# core (seen on shared 2-core machines); passive waiting costs nothing when the CPU is free.
# Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data: $GREATER_DATA_DIR, else ../shared/data beside the repository."""
    path = Path(os.environ.get("GREATER_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "bbh").is_dir():
        pytest.fail(f"benchmark data not found at {path}; set GREATER_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def lm32():
    """smollm2-135m in float32 (exact comparisons: gradients, determinism)."""
    from greater.lm import LM

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return LM.load("smollm2-135m", dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def lm16():
    """smollm2-135m in bfloat16, the default on this CPU (end-to-end runs)."""
    from greater.lm import LM

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return LM.load("smollm2-135m", dtype="bf16", device="cpu")
