"""The Ray executor against a real local Ray instance (``ray.init(num_cpus=2)``): a 4-cell grid
on the smollm2-135m stand-in gives the same rows as the local process executor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.harness.runner import run_grid
from benchmarks.harness.spec import load_spec
from greater import results

from test_runner import tiny_spec

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[1]
COMPARED = ["key", "kind", "method", "model", "task", "seed", "status", "best_prompt",
            "dev_accuracy", "test_accuracy", "test_accuracy_strict", "n_steps", "n_test"]


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.fspath(REPO),
                                       "OMP_WAIT_POLICY": "PASSIVE"}})
    yield ray
    ray.shutdown()


def test_ray_rows_equal_local_rows(tmp_path, data_dir, local_ray):
    spec = load_spec(tiny_spec(tmp_path, """
        kind = "comparison"
        methods = ["greater", "zscot"]
        tasks = ["bbh/boolean_expressions", "bbh/navigate"]
        models = ["smollm2-135m"]
    """, steps=1))
    local = run_grid(spec, tmp_path / "local.sqlite", data_dir=data_dir, progress=False)
    remote = run_grid(spec, tmp_path / "ray.sqlite", executor="ray", data_dir=data_dir,
                      progress=False)
    assert len(local.done) == len(remote.done) == 4 and not local.failed and not remote.failed
    a = results.load(tmp_path / "local.sqlite")[COMPARED].sort_values("key")
    b = results.load(tmp_path / "ray.sqlite")[COMPARED].sort_values("key")
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))
    steps = [results.load_table(tmp_path / f"{n}.sqlite", "steps")
             .sort_values(["cell_key", "step"])[["cell_key", "step", "prompt", "loss"]]
             .reset_index(drop=True) for n in ("local", "ray")]
    assert steps[0].equals(steps[1])
