"""Fixtures of the tests: the real default stand-in model (``data_dir`` is in ../conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch


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
