"""A small synthetic results store for the report tests, written through the store's own API
(no model runs): a comparison grid (5 methods, 4 tasks, 2 models, 2 seeds, one failed cell),
an ablation grid (top_k, perplexity_weight, use_reasoning) and a transfer grid (2 models).

Accuracies are drawn from fixed per-method rates with a fixed generator, so the numbers are
plausible and differ between methods, but nothing in the tests relies on their values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from greater.store import CellRow, Store

COMPARISON_GRID = "cmp"
ABLATION_GRID = "abl"
TRANSFER_GRID = "xfer"
METHODS = ("greater", "apo", "textgrad", "zscot", "gcg")
TASKS = ("bbh/navigate", "bbh/hyperbaton", "gsm8k", "folio")
MODELS = ("smollm2-135m", "meta-llama/Meta-Llama-3-8B-Instruct")
SEEDS = (0, 1)
N_TEST = 24
RATES = {"greater": 0.7, "apo": 0.55, "textgrad": 0.5, "zscot": 0.45, "gcg": 0.3}
COSTS = {"greater": (4000, 90000, 30000, 0, 300.0), "apo": (9000, 60000, 0, 40, 400.0),
         "textgrad": (7000, 50000, 0, 30, 250.0), "zscot": (500, 5000, 0, 0, 10.0),
         "gcg": (800, 120000, 60000, 0, 500.0)}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _records(task: str, rate: float, rng: np.random.Generator, order: np.ndarray) -> list[dict]:
    records = []
    for i in order:  # the same inputs in another order: pairing must go by input, not position
        correct = bool(rng.random() < rate)
        strict = correct and bool(rng.random() < 0.85)
        records.append({"input": f"{task} question {i}", "reasoning": "…", "response": "… A",
                        "answer": "A" if correct else "B", "gold": "A", "correct": correct,
                        "strict_answer": "A" if strict else None, "strict_correct": strict,
                        "stopped_by": "answer"})
    return records


def _result(method: str, model: str, task: str, seed: int, rate: float,
            rng: np.random.Generator, *, steps: int = 3) -> dict:
    order = rng.permutation(N_TEST) if method == "apo" else np.arange(N_TEST)
    records = _records(task, rate, rng, order)
    gen, fwd, bwd, calls, wall = COSTS[method]
    history = [{"step": s, "prompt": f"{method} prompt {s}",
                "loss": None if method in ("zscot", "apo") else round(2.0 / s, 4),
                "train_accuracy": round(min(1.0, rate * (0.7 + 0.1 * s)), 4), "seconds": 1.0,
                "details": {}, "cost": {"generated_tokens": gen // steps,
                                        "forward_passes": 3, "forward_tokens": fwd // steps,
                                        "backward_passes": 1, "backward_tokens": bwd // steps,
                                        "llm_calls": calls // steps, "wall_seconds": wall / steps,
                                        "phase_seconds": {}}}
               for s in range(1, steps + 1)]
    n = len(records)
    return {"method": method, "model": model, "task": task, "initial_prompt": "p0",
            "best_prompt": f"{method} prompt {steps}", "dev_accuracy": rate,
            "test_accuracy": sum(r["correct"] for r in records) / n,
            "dev_accuracy_strict": rate * 0.8,
            "test_accuracy_strict": sum(r["strict_correct"] for r in records) / n,
            "initial_dev_accuracy": 0.4, "initial_test_accuracy": 0.4, "history": history,
            "test_records": records,
            "cost": {"generated_tokens": gen + seed, "forward_passes": 10, "forward_tokens": fwd,
                     "backward_passes": 2, "backward_tokens": bwd, "llm_calls": calls,
                     "wall_seconds": wall, "phase_seconds": {"reasoning": wall / 2}},
            "config": {"steps": steps}, "seed": seed, "status": "done", "warnings": [],
            "provenance": {"model": model, "dtype": "bfloat16", "device": "cpu",
                           "versions": {"python": "3.11.7", "torch": "2.13.0"},
                           "git_commit": "0123abcd", "created": "2026-01-01T00:00:00+00:00",
                           "data_digest": _key("data", task), "preset": None,
                           "chat_date": "26 Jul 2024"}}


def _cell(kind: str, method: str, model: str, task: str, seed: int, config: dict,
          source_key: str | None = None) -> CellRow:
    return CellRow(key=_key(kind, method, model, task, seed, config, source_key), kind=kind,
                   method=method, model=model, dtype="bf16", task=task, seed=seed, config=config,
                   data_digest=_key("data", task), source_key=source_key)


def build_store(path: str | Path) -> Path:
    """Write the synthetic store to ``path`` and return it."""
    path = Path(path)
    rng = np.random.default_rng(1234)
    with Store(path) as store:
        # comparison: every method x task x model x seed, one apo cell failed
        for model in MODELS:
            for method in METHODS:
                for task in TASKS:
                    for seed in SEEDS:
                        cell = _cell("optimize", method, model, task, seed, {"steps": 3})
                        store.register(COMPARISON_GRID, [(cell, {})])
                        store.mark_running(cell.key, "local")
                        shift = 0.05 if task == "gsm8k" else 0.0
                        store.finish(cell.key, _result(method, model, task, seed,
                                                       RATES[method] + shift, rng))
        bad = _cell("optimize", "apo", MODELS[0], "bbh/navigate", 7, {"steps": 3})
        store.register(COMPARISON_GRID, [(bad, {})])
        store.fail(bad.key, "RuntimeError: out of memory", "Traceback ...")
        # ablation: one field at a time from the base config (top_k 10, lambda 0.2, reasoning)
        base = {"top_k": 10, "perplexity_weight": 0.2, "use_reasoning": True}
        sweep = {"top_k": [2, 10], "perplexity_weight": [0.0, 0.2], "use_reasoning": [True, False]}
        for task in TASKS[:2]:
            for axis, values in sweep.items():
                for value in values:
                    config = {**base, axis: value}
                    cell = _cell("optimize", "greater", MODELS[0], task, 0, config)
                    known = store.statuses([cell.key])
                    store.register(ABLATION_GRID, [(cell, {"axis": axis, "value": value})])
                    if known.get(cell.key) == "done":
                        continue
                    rate = 0.5 + 0.02 * config["top_k"] - 0.1 * (not config["use_reasoning"])
                    store.mark_running(cell.key, "local")
                    store.finish(cell.key, _result("greater", MODELS[0], task, 0, rate, rng))
        # transfer: greater and apo optimised on each of two models, evaluated on the other
        pair = ("smollm2-135m", "gemma3-270m")
        for method in ("greater", "apo"):
            for source, target in (pair, pair[::-1]):
                for task in TASKS[:2]:
                    src = _cell("optimize", method, source, task, 0, {"steps": 2})
                    store.register(TRANSFER_GRID, [(src, {"role": "source"})])
                    if store.statuses([src.key]).get(src.key) != "done":
                        store.mark_running(src.key, "local")
                        store.finish(src.key, _result(method, source, task, 0, RATES[method],
                                                      rng, steps=2))
                    ev = _cell("evaluate", method, target, task, 0, {"n_test": N_TEST}, src.key)
                    store.register(TRANSFER_GRID, [(ev, {"role": "target",
                                                         "source_model": source})])
                    store.mark_running(ev.key, "local")
                    result = _result(method, target, task, 0, RATES[method] - 0.1, rng,
                                     steps=0)
                    store.finish(ev.key, result)
    return path
