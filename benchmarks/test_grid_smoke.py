"""The grid chosen with ``--grid`` (default ``cpu-smoke``) through the harness, under
``pytest benchmarks/ --benchmark``: its store is ``benchmarks/results/<grid>.sqlite`` and its
wall time goes to the benchmark JSON beside it. Cells already done in that store are not rerun.
"""

from __future__ import annotations

from benchmarks.harness.runner import RESULTS_DIR, run_grid
from benchmarks.harness.spec import load_spec
from benchmarks.machine import machine_info
from greater import results


def test_grid_through_the_harness(benchmark, request, data_dir):
    spec = load_spec(request.config.getoption("grid"))
    store = RESULTS_DIR / f"{spec.name}.sqlite"
    report = benchmark.pedantic(run_grid, args=(spec, store),
                                kwargs={"data_dir": data_dir, "progress": False},
                                rounds=1, iterations=1)
    frame = results.load(store, grid=spec.name)
    benchmark.extra_info.update(machine_info())
    benchmark.extra_info.update({"grid": spec.name, "store": str(store), "cells": len(frame),
                                 "done_now": len(report.done), "already_done": len(report.skipped),
                                 "failed": len(report.failed)})
    columns = ["method", "model", "task", "seed", "status", "test_accuracy",
               "initial_test_accuracy", "n_steps", "generated_tokens", "wall_seconds"]
    print("\n" + frame[columns].to_string(index=False))
    assert not report.failed, frame.loc[frame["status"] == "failed", ["method", "task", "error"]]
    assert (frame["status"] == "done").all()
