"""The grid runner with the local executor, on the real smollm2-135m stand-in at tiny sizes:
a finished cell is never recomputed, a failed cell is recorded and the grid goes on, transfer
reuses cached replies, and a SIGKILLed run resumes from its last finished step."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.harness.runner import checkpoint_path, run_grid
from benchmarks.harness.spec import load_spec
from greater import results

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[1]

TINY = """
seeds = [0]
dtype = "bf16"
[defaults]
n_train = 2
n_contenders = 1
n_dev = 2
n_test = 2
max_new_tokens = 8
batch_size = 2
"""
GREATER = """
[overrides.greater]
steps = {steps}
top_k = 4
n_intersections = 1
intersection_size = 2
min_candidates = 2
n_rescore = 0
"""


def tiny_spec(tmp_path: Path, head: str, *, steps: int = 1, name: str = "tiny",
              tail: str = "") -> Path:
    """A spec file: ``head`` (top-level keys), the tiny sizes, then ``tail`` (more tables)."""
    path = tmp_path / f"{name}.toml"
    body = textwrap.dedent(head) + TINY + textwrap.dedent(tail)
    if '"greater"' in head:
        body += GREATER.format(steps=steps)
    path.write_text(body)
    return path


def test_done_cells_are_skipped_and_failures_recorded(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the missing hub model fails fast, offline
    spec = load_spec(tiny_spec(tmp_path, """
        kind = "comparison"
        methods = ["zscot"]
        tasks = ["bbh/navigate"]
        models = ["smollm2-135m", "no-such-org/no-such-model"]
    """))
    store = tmp_path / "s.sqlite"
    first = run_grid(spec, store, data_dir=data_dir, progress=False)
    assert len(first.done) == 1 and len(first.failed) == 1
    frame = results.load(store).set_index("model")
    assert frame.loc["smollm2-135m", "status"] == "done"
    failed = frame.loc["no-such-org/no-such-model"]
    assert failed["status"] == "failed" and failed["error"]
    with sqlite3.connect(store) as db:
        assert "Traceback" in db.execute("SELECT traceback FROM cells WHERE status='failed'"
                                         ).fetchone()[0]
    second = run_grid(spec, store, data_dir=data_dir, progress=False,
                      only="model=smollm2-135m")
    assert second.skipped == first.done and not second.done  # never recomputed
    assert results.load(store).set_index("model").loc["smollm2-135m", "attempts"] == 1


def test_transfer_reuses_cached_replies(tmp_path, data_dir):
    spec = load_spec(tiny_spec(tmp_path, """
        kind = "transfer"
        methods = ["zscot"]
        tasks = ["bbh/navigate"]
    """, tail="""
        [transfer]
        pairs = [["smollm2-135m", "smollm2-135m"]]
    """))
    store = tmp_path / "s.sqlite"
    report = run_grid(spec, store, data_dir=data_dir, progress=False)
    assert len(report.done) == 2 and not report.failed
    frame = results.load(store).set_index("kind")
    source, target = frame.loc["optimize"], frame.loc["evaluate"]
    assert target["source_key"] == source["key"]
    assert target["best_prompt"] == source["best_prompt"]
    # the same model, prompt and examples: every reply comes from the cache, none generated
    assert target["generated_tokens"] == 0
    assert target["test_accuracy"] == source["test_accuracy"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PDEATHSIG")
def test_sigkill_mid_grid_then_rerun_resumes(tmp_path, data_dir):
    spec_path = tiny_spec(tmp_path, """
        kind = "comparison"
        methods = ["greater"]
        tasks = ["bbh/boolean_expressions", "bbh/navigate"]
        models = ["smollm2-135m"]
    """, steps=4)
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")])}
    driver = subprocess.Popen(
        [sys.executable, "-m", "greater.cli", "grid", "run", str(spec_path), "--store",
         str(store), "--data-dir", str(data_dir)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_key, kept = None, []
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.3)
            if not store.exists():
                continue
            try:
                with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                    rows = db.execute(
                        "SELECT c.key, s.step, s.prompt, s.seconds FROM cells c JOIN steps s "
                        "ON s.cell_key=c.key WHERE c.status='running' ORDER BY s.step").fetchall()
            except sqlite3.OperationalError:
                continue
            if rows:  # a cell is running and has finished at least one step: kill now
                workers = _children(driver.pid)
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait()
                killed_key = rows[0][0]
                kept = [r[1:] for r in rows if r[0] == killed_key]
                break
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert killed_key is not None, "the grid finished (or stalled) before it could be killed"
    end = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "a worker outlived its killed driver"
    checkpoint = json.loads(checkpoint_path(store, killed_key).read_text())
    assert checkpoint["status"] == "partial" and len(checkpoint["history"]) >= len(kept)

    report = run_grid(load_spec(spec_path), store, data_dir=data_dir, progress=False)
    assert not report.failed
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = [r[0] for r in db.execute("SELECT status FROM cells")]
        assert statuses == ["done", "done"]
        for table, cols in (("cells", "key"), ("steps", "cell_key, step")):
            total, distinct = db.execute(
                f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {table})) "
                f"FROM {table}").fetchone()
            assert total == distinct
        after = db.execute("SELECT step, prompt, seconds FROM steps WHERE cell_key=? "
                           "ORDER BY step", (killed_key,)).fetchall()
        attempts = db.execute("SELECT attempts FROM cells WHERE key=?", (killed_key,)).fetchone()
    assert [r[0] for r in after] == [1, 2, 3, 4]
    # the finished steps were resumed, not recomputed: same prompts, same recorded durations
    assert after[: len(kept)] == kept
    assert attempts[0] == 2
    assert not checkpoint_path(store, killed_key).exists()


def test_only_runs_a_part_but_registers_the_whole_grid(tmp_path, data_dir):
    spec = load_spec(tiny_spec(tmp_path, """
        kind = "comparison"
        methods = ["zscot"]
        tasks = ["bbh/navigate", "bbh/boolean_expressions"]
        models = ["smollm2-135m"]
    """))
    store = tmp_path / "s.sqlite"
    report = run_grid(spec, store, data_dir=data_dir, progress=False, only="task=bbh/navigate")
    assert len(report.done) == 1 and not report.failed
    frame = results.load(store).set_index("task")
    assert frame.loc["bbh/navigate", "status"] == "done"
    assert frame.loc["bbh/boolean_expressions", "status"] == "pending"  # known, not run
