"""Dry-run cost bounds of a cell, from its config alone (no model is loaded).

For each cell: optimisation ``steps``, ``generations`` (task-model replies, an upper bound:
the scorer's cache makes real runs cheaper), ``llm_calls`` (optimiser-LLM requests) and
``tokens`` (a bound on generated tokens: each reply is at most ``max_new_tokens`` of
reasoning, each optimiser request at most ``optimizer_max_new_tokens``). Every method's final
choice scores ``n_contenders`` prompts on dev and the initial and chosen prompts on test.

Methods without a formula here get a generic bound (one scoring of the training set per step
and one optimiser request per training example per step) marked ``exact = False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from greater.tasks import Task

from benchmarks.harness import registry
from benchmarks.harness.cells import Cell


@dataclass(frozen=True)
class CostBound:
    """Upper bounds of one cell's work (see the module docstring)."""

    steps: int
    generations: int
    llm_calls: int
    tokens: int
    exact: bool = True


def _search_greater(c: dict[str, Any], n: int) -> tuple[int, int]:
    return c["steps"] * n * (1 + c["n_rescore"]), 0


def _search_gcg(c: dict[str, Any], n: int) -> tuple[int, int]:
    return 0, 0  # its search scores the answer loss by forward passes, no generation


def _search_zscot(c: dict[str, Any], n: int) -> tuple[int, int]:
    return 0, 0


def _search_ape(c: dict[str, Any], n: int) -> tuple[int, int]:
    calls = c["n_candidates"] + (c["resample_top"] * c["n_variants"] if c["resample"] else 0)
    if c["selection"] == "full":
        scored = (calls + 1) * n
    else:
        scored = c["bandit_rounds"] * c["bandit_prompts_per_round"] * c["bandit_samples_per_round"]
    return scored, calls


def _search_apo(c: dict[str, Any], n: int) -> tuple[int, int]:
    per_beam = c["n_gradients"] * (1 + c["gradients_per_error"] * (
        1 + c["steps_per_gradient"] * (1 + c["mc_samples_per_step"])))
    scored = c["beam_size"] * min(c["minibatch_size"], n) + (
        c["eval_rounds"] * c["eval_prompts_per_round"] * min(c["samples_per_eval"], n))
    return c["steps"] * scored, c["steps"] * c["beam_size"] * per_beam


def _search_textgrad(c: dict[str, Any], n: int) -> tuple[int, int]:
    per_step = min(c["minibatch_size"], n) + min(c["n_val"], n)
    return c["steps"] * per_step, c["steps"] * (min(c["minibatch_size"], n) + 1)


#: Per method: (config, n_train) -> (task-model generations, optimiser calls) of the search.
SEARCH_BOUNDS: dict[str, Callable[[dict[str, Any], int], tuple[int, int]]] = {
    "greater": _search_greater, "gcg": _search_gcg, "zscot": _search_zscot,
    "ape": _search_ape, "apo": _search_apo, "textgrad": _search_textgrad,
}


def _split_size(limit: int | None, split: list) -> int:
    return len(split) if limit is None else min(limit, len(split))


def estimate(cell: Cell, task: Task) -> CostBound:
    """Upper bounds of ``cell``'s work (``task``: the cell's task, for split sizes)."""
    c = cell.config
    n_test = _split_size(c["n_test"], task.test)
    if cell.kind == "evaluate":
        return CostBound(steps=0, generations=n_test, llm_calls=0,
                         tokens=n_test * c["max_new_tokens"])
    n_train = min(c["n_train"], len(task.train))
    steps = registry.n_steps(cell.method, c)
    bound = SEARCH_BOUNDS.get(cell.method)
    exact = bound is not None
    search, calls = bound(c, n_train) if bound else (steps * n_train, steps * n_train)
    final = c["n_contenders"] * _split_size(c["n_dev"], task.dev) + 2 * n_test
    generations = search + final
    tokens = generations * c["max_new_tokens"] + calls * c.get("optimizer_max_new_tokens", 0)
    return CostBound(steps=steps, generations=generations, llm_calls=calls, tokens=tokens,
                     exact=exact)
