"""Resume after SIGKILL (real smollm2-135m, fp32, CPU) and the fidelity of GReaTer's walk.

A child process runs a method with a checkpoint; the test kills it with SIGKILL once the
checkpoint holds ``KILL_AFTER`` finished steps, runs it again on the same checkpoint, and
compares the result with an uninterrupted run of the same config in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from greater.evaluate import accuracy, score_examples
from greater.methods import get_method
from greater.optimizer import GreaterConfig
from greater.presets import build_config
from greater.result import OptimizationResult
from greater.tasks import load_task

TASK = "bbh/boolean_expressions"
KILL_AFTER = 1

CONFIGS = {
    "greater": dict(steps=3, n_train=5, max_new_tokens=16, n_dev=2, n_test=2, n_contenders=2,
                    top_k=6, n_rescore=2, seed=1),
    "textgrad": dict(steps=3, n_train=6, max_new_tokens=16, n_dev=2, n_test=2, n_contenders=2,
                     minibatch_size=3, n_val=2, optimizer_max_new_tokens=24, seed=1),
}

CHILD = r"""
import json, sys, torch
from greater.lm import LM
from greater.methods import get_method
from greater.presets import build_config
from greater.tasks import load_task
torch.set_num_threads(1)
method, overrides, data_dir, checkpoint = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
lm = LM.load("smollm2-135m", dtype="fp32", device="cpu")
task = load_task("%s", data_dir)
get_method(method).optimize(lm, task, build_config(method, None, overrides), progress=False,
                            checkpoint=checkpoint)
""" % TASK


def _finished_steps(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["history"])
    except (OSError, ValueError, KeyError):
        return 0


def _comparable(result: OptimizationResult) -> dict:
    """Everything but timings, cost and creation time."""
    return {
        "best_prompt": result.best_prompt, "dev": result.dev_accuracy,
        "test": result.test_accuracy, "strict": (result.dev_accuracy_strict,
                                                 result.test_accuracy_strict),
        "history": [(h.step, h.prompt, h.loss, h.train_accuracy, h.details)
                    for h in result.history],
        "contenders": [(c.prompt, c.train_accuracy, c.dev_accuracy, c.step)
                       for c in result.contenders],
        "records": [r.response for r in result.test_records],
    }


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the child uses one thread too: identical fp32 arithmetic
    yield
    torch.set_num_threads(before)


@pytest.mark.model
@pytest.mark.parametrize("method", list(CONFIGS))
def test_sigkill_then_resume_equals_an_uninterrupted_run(method, lm32, data_dir, tmp_path,
                                                         one_thread):
    overrides = CONFIGS[method]
    checkpoint = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, method, json.dumps(overrides),
                              str(data_dir), str(checkpoint)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while _finished_steps(checkpoint) < KILL_AFTER and child.poll() is None:
            assert time.monotonic() < deadline, "the child made no step in 10 minutes"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    partial = OptimizationResult.load(checkpoint)
    assert partial.status == "partial", child.stderr.read().decode()[-2000:]
    done_before = len(partial.history)
    assert KILL_AFTER <= done_before < overrides["steps"]

    task = load_task(TASK, data_dir)
    spec = get_method(method)
    resumed = spec.optimize(lm32, task, build_config(method, None, overrides), progress=False,
                            checkpoint=checkpoint)
    whole = spec.optimize(lm32, task, build_config(method, None, overrides), progress=False)
    assert resumed.status == "done"
    assert _comparable(resumed) == _comparable(whole)
    # the finished steps were kept, not recomputed: the resumed run's cost includes theirs
    assert [h.seconds for h in resumed.history[:done_before]] == \
        [h.seconds for h in partial.history]


@pytest.mark.model
def test_walk_past_a_period_records_only_measured_accuracies(lm32, data_dir, one_thread):
    """A short initial prompt ending in "." with every candidate shortlisted: at the "." position
    (at or past half the initial length) the period is selected at once and the walk wraps.
    Every contender's train accuracy is a fresh evaluation of exactly its text, and every
    prompt in the history is the text the model was given."""
    task = load_task(TASK, data_dir)
    initial = "Think step by step."
    n = len(lm32.prompt_ids(initial))
    cfg = GreaterConfig(initial_prompt=initial, steps=n + 1, n_train=5, max_new_tokens=16,
                        top_k=4, min_candidates=2, n_rescore=64, n_dev=2, n_test=0,
                        n_contenders=2, seed=0)
    result = get_method("greater").optimize(lm32, task, cfg, progress=False)
    positions = [h.details["position"] for h in result.history]
    assert positions[: n + 1] == [*range(n), 0]  # the walk wrapped after the final "."
    last = result.history[n - 1].details
    assert last["selected_by"] == "period" and "." in last["chosen"]
    train = task.train[: cfg.n_train]
    measured = [c for c in result.contenders if c.train_accuracy is not None]
    assert len(measured) >= 2
    for c in measured:
        records = score_examples(lm32, task, train, lm32.prompt_ids(c.prompt),
                                 max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        assert accuracy(records) == c.train_accuracy, c.prompt
    for h in result.history:
        assert lm32.prompt_text(lm32.prompt_ids(h.prompt)) == h.prompt
