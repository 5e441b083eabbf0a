"""What runs inside a worker process: one cell, from its payload to a JSON-able outcome.

Workers never touch the store: :func:`run_cell` returns ``{"key", "ok": True, "result"}`` or
``{"key", "ok": False, "error", "traceback"}`` and the driver writes it. An optimisation cell
checkpoints after every step to the path the driver gives it, so a killed worker's cell resumes
from its last finished step (the core's resume) when the grid runs again.
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import asdict
from typing import Any

logger = logging.getLogger(__name__)

#: Loaded models of this worker process, by (model, dtype): consecutive cells reuse them.
_MODELS: dict[tuple[str, str], Any] = {}


def init_worker(threads: int) -> None:
    """Set up a worker process: die with the driver (Linux), passive OpenMP, ``threads``.

    A worker outliving a SIGKILLed driver would keep writing the checkpoint of its cell while
    the rerun resumes the same cell; PR_SET_PDEATHSIG makes the kernel kill it instead.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if hasattr(os, "sched_getaffinity"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            logger.warning("cannot tie the worker's life to the driver (no libc.so.6)")
    import torch

    torch.set_num_threads(threads)


def _model(name: str, dtype: str):
    from greater.lm import LM

    if (name, dtype) not in _MODELS:
        _MODELS.clear()  # one model per worker at a time: memory, not speed, is the limit
        _MODELS[(name, dtype)] = LM.load(name, dtype=dtype)
    return _MODELS[(name, dtype)]


def run_cell(payload: dict[str, Any], *, checkpoint: str | None,
             data_dir: str | None, cached: dict[str, dict] | None = None) -> dict[str, Any]:
    """Run one cell and return its outcome (never raises for an error of the cell itself).

    Args:
        payload: :meth:`Cell.payload`, plus ``prompt`` for an ``evaluate`` cell.
        checkpoint: the file an ``optimize`` cell checkpoints to and resumes from.
        data_dir: the task data folder (None: ``$GREATER_DATA_DIR``).
        cached: ``evaluate`` cells: cached records by example input (reply cache hits).
    """
    try:
        from greater.tasks import load_task

        task = load_task(payload["task"], data_dir=data_dir)
        lm = _model(payload["model"], payload["dtype"])
        if payload["kind"] == "optimize":
            result = _optimize(payload, lm, task, checkpoint)
        else:
            result = _evaluate(payload, lm, task, cached or {})
        return {"key": payload["key"], "ok": True, "result": result}
    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded, the grid goes on
        return {"key": payload["key"], "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def _optimize(payload: dict[str, Any], lm, task, checkpoint: str | None) -> dict[str, Any]:
    from benchmarks.harness import registry

    config = registry.build_config(payload["method"], None, dict(payload["config"]))
    result = registry.optimize(payload["method"], lm, task, config, checkpoint=checkpoint,
                               preset=payload["preset"])
    return result.to_dict()


def _evaluate(payload: dict[str, Any], lm, task, cached: dict[str, dict]) -> dict[str, Any]:
    """The source prompt on this model's test split, generating only what is not cached."""
    from greater.evaluate import score_examples
    from greater.provenance import provenance

    cfg = payload["config"]
    prompt = payload["prompt"]
    examples = task.test if cfg["n_test"] is None else task.test[: cfg["n_test"]]
    before = lm.meter.snapshot()
    missing = [ex for ex in examples if ex.input not in cached]
    fresh = score_examples(lm, task, missing, lm.prompt_ids(prompt),
                           max_new_tokens=cfg["max_new_tokens"],
                           batch_size=cfg["batch_size"]) if missing else []
    by_input = dict(cached)
    by_input.update({ex.input: asdict(rec) for ex, rec in zip(missing, fresh)})
    records = [by_input[ex.input] for ex in examples]
    n = max(len(records), 1)
    return {"method": payload["method"], "model": lm.name, "task": task.name,
            "initial_prompt": prompt, "best_prompt": prompt,
            "test_accuracy": sum(r["correct"] for r in records) / n,
            "test_accuracy_strict": sum(bool(r.get("strict_correct")) for r in records) / n,
            "test_records": records, "cost": (lm.meter.snapshot() - before).to_dict(),
            "config": cfg, "seed": payload["seed"], "n_cached": len(examples) - len(missing),
            "provenance": provenance(method=payload["method"], lm=lm, task=task, config=cfg,
                                     seed=payload["seed"], preset=payload["preset"],
                                     extra={"evaluated_prompt_from": payload["source_key"]})}
