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


BENCHMARKS = REPO / "benchmarks"
RESULTS = BENCHMARKS / "results"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("greater benchmarks")
    group.addoption("--benchmark", action="store_true", default=False,
                    help="run the benchmarks under benchmarks/ (skipped without it): the grid "
                    "through the harness and the pytest-benchmark timing suites")
    group.addoption("--grid", default="cpu-smoke",
                    help="the grid spec the benchmark run executes (default: cpu-smoke)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """With --benchmark and no --benchmark-json, save the timings beside the grid's store."""
    if config.getoption("benchmark") and config.pluginmanager.hasplugin("benchmark") and \
            config.getoption("benchmark_json", None) is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = RESULTS / f"{config.getoption('grid')}.benchmark.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip everything under benchmarks/ unless --benchmark is given."""
    if config.getoption("benchmark"):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `pytest benchmarks/ --benchmark`")
    for item in items:
        if BENCHMARKS in Path(item.fspath).parents:
            item.add_marker(skip)
