"""What tests/ and benchmarks/ share: the OpenMP wait policy and the real data directory."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while waiting slow torch down 20-60x when another process holds a
# core (seen on shared 2-core machines); passive waiting costs nothing when the CPU is free.
# Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data: $GREATER_DATA_DIR, else ../shared/data beside the repository."""
    path = Path(os.environ.get("GREATER_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "bbh").is_dir():
        pytest.fail(f"benchmark data not found at {path}; set GREATER_DATA_DIR")
    return path
