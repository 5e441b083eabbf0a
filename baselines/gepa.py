"""GEPA-style reflective prompt evolution (Agrawal et al. 2025, "GEPA: Reflective Prompt
Evolution Can Outperform Reinforcement Learning").

A pool of candidate prompts, each scored on every example of the Pareto set (here the training
examples, as DSPy's GEPA does when no separate validation set is given). One iteration:

1. pick a parent by per-example Pareto-front selection (:func:`pareto_front`, then a seeded
   draw weighted by how many examples' fronts the candidate is on);
2. take the next minibatch of ``minibatch_size`` training examples (epoch-shuffled: every
   example once per epoch);
3. run the parent on it; if it is right on all of them and ``skip_perfect`` is set, stop here;
4. show the optimiser the execution traces (question, the model's reasoning, its answer, the
   gold answer, the verdict) and ask for a new prompt (:data:`baselines.prompts.GEPA_REFLECT`);
5. run the new prompt on the same minibatch; only if it gets strictly more right than the
   parent is it scored on the whole Pareto set and added to the pool.

The budget is ``max_metric_calls``: every (prompt, example) scoring the algorithm asks for is
one metric call, the initial prompt's Pareto-set scoring included, whether or not the run's
cache serves a repeat (GEPA counts rollouts the same way). Iterations run while calls remain;
the last one may overshoot by at most one iteration's calls. The budget is spread evenly over
``steps`` history steps (the checkpoint granularity): step ``k`` iterates until
``ceil(k / steps * max_metric_calls)`` calls are spent. GEPA's optional merge of two lineages
is not implemented: it recombines the modules of two candidates of a compound system, and a
candidate here is one instruction (one module), so a merge could only return one of its parents.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Sequence

from greater.methods import register_method
from greater.result import PromptScore, StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import step_record


@dataclass(frozen=True)
class GEPAConfig(LLMOptimizerConfig):
    """Configuration of :class:`GEPA`. Defaults follow the GEPA paper (Agrawal et al. 2025).

    Attributes:
        max_metric_calls: the budget, in (prompt, example) scorings (GEPA sets it per
            benchmark, in the thousands of rollouts; 2000 here).
        minibatch_size: training examples per reflection (GEPA: 3).
        skip_perfect: no reflection when the parent is right on the whole minibatch (GEPA: on).
        steps: history steps the budget is spread over; a checkpoint is written after each.
    """

    max_metric_calls: int = 2000
    minibatch_size: int = 3
    skip_perfect: bool = True
    steps: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_metric_calls", "minibatch_size", "steps"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.skip_perfect, bool):
            raise ValueError(f"skip_perfect must be true or false, got {self.skip_perfect!r}")


def pareto_front(scores: Sequence[Sequence[float]]) -> dict[int, int]:
    """Candidates on the per-example Pareto front, each with how many examples' fronts hold it.

    ``scores[k][i]`` is candidate ``k``'s score on example ``i``. The front of example ``i``
    holds every candidate with the best score there. A candidate is dominated when each front
    that holds it also holds another surviving candidate; dominated candidates are removed one
    at a time, the weakest first (lowest total score; the later candidate on ties), so every
    front keeps at least one candidate.
    """
    if not scores:
        raise ValueError("the pool is empty")
    fronts = []
    for i in range(len(scores[0])):
        best = max(s[i] for s in scores)
        fronts.append({k for k, s in enumerate(scores) if s[i] == best})
    alive = set().union(*fronts)
    removed = True
    while removed:
        removed = False
        for k in sorted(alive, key=lambda k: (sum(scores[k]), -k)):
            others = alive - {k}
            if all(front & others for front in fronts if k in front):
                alive.discard(k)
                removed = True
                break
    return {k: sum(k in front for front in fronts) for k in sorted(alive)}


def select_parent(scores: Sequence[Sequence[float]], rng: random.Random) -> int:
    """A candidate drawn from the Pareto front, weighted by its number of fronts."""
    front = pareto_front(scores)
    return rng.choices(list(front), weights=list(front.values()))[0]


def next_minibatch(state: dict, n_examples: int, size: int, rng: random.Random) -> list[int]:
    """The next ``size`` example indices of a seeded shuffle, reshuffled at each new epoch
    (``state["order"]`` / ``state["cursor"]`` keep the position)."""
    size = min(size, n_examples)
    if not state.get("order") or state["cursor"] + size > n_examples:
        order = list(range(n_examples))
        rng.shuffle(order)
        state["order"], state["cursor"] = order, 0
    start = state["cursor"]
    state["cursor"] = start + size
    return sorted(state["order"][start:start + size])


def _budget_at(cfg: GEPAConfig, step: int) -> int:
    return math.ceil(step * cfg.max_metric_calls / cfg.steps)


@register_method("gepa", config=GEPAConfig, uses_optimizer_llm=True,
                 summary="GEPA-style: reflective mutation from traces, Pareto-front parents, "
                         "a budget in metric calls")
class GEPA(Method):
    """GEPA-style evolution. State: the pool (prompts, per-example Pareto-set scores, parents),
    the metric calls spent and the minibatch sampler's position."""

    def start(self, run: Run) -> None:
        prompt = run.cfg.initial_prompt
        correct = [float(c) for c in run.correct(prompt, run.train)]
        run.state.update(pool=[prompt], scores=[correct], parents=[None],
                         metric_calls=len(run.train), order=[], cursor=0)
        run.remember(prompt, train_accuracy=sum(correct) / len(correct), step=0)

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, GEPAConfig)
        t0 = time.perf_counter()
        st = run.state
        target = _budget_at(cfg, step)
        iterations: list[dict] = []
        failures = 0
        while st["metric_calls"] < target:
            it = self._iterate(run, cfg, step)
            it["metric_calls"] = st["metric_calls"]
            failures += it.get("parse_failed", False)
            iterations.append(it)
        asked = sum("child" in it or "parse_failed" in it for it in iterations)
        if asked and failures == asked:
            run.warn(f"step {step}: none of the {asked} reflections of the optimiser LLM held a "
                     "usable prompt")
        if step == 1 and len(run.train) >= cfg.max_metric_calls:
            run.warn(f"the budget of {cfg.max_metric_calls} metric calls was spent scoring the "
                     f"initial prompt on the {len(run.train)} training examples")
        best = self.ranked(run)[0]
        return step_record(step, best.prompt, best.train_accuracy, t0, iterations=iterations,
                           metric_calls=st["metric_calls"], budget=cfg.max_metric_calls,
                           pool_size=len(st["pool"]), parse_failures=failures)

    def _iterate(self, run: Run, cfg: GEPAConfig, step: int) -> dict:
        """One proposal: parent, minibatch, reflection, and the new prompt's acceptance."""
        st = run.state
        parent = select_parent(st["scores"], run.rng)
        idx = next_minibatch(st, len(run.train), cfg.minibatch_size, run.rng)
        batch = [run.train[i] for i in idx]
        prompt = st["pool"][parent]
        records = run.score(prompt, batch)
        st["metric_calls"] += len(batch)
        parent_score = sum(r.correct for r in records)
        it: dict = {"parent": parent, "minibatch": idx, "parent_score": parent_score}
        if cfg.skip_perfect and parent_score == len(batch):
            it["skipped"] = "perfect"
            return it
        (reply,) = run.ask([P.gepa_reflect(prompt, [(r.input, r.response, r.answer, r.gold,
                                                     r.correct) for r in records])])
        child = P.parse_final_prompt(reply)
        if child is None or not run.valid(child):
            it["parse_failed"] = True
            return it
        it["child"] = child
        if child in st["pool"]:
            it["skipped"] = "already in the pool"
            return it
        child_score = sum(run.correct(child, batch))
        st["metric_calls"] += len(batch)
        it.update(child_score=child_score, accepted=child_score > parent_score)
        if it["accepted"]:
            correct = [float(c) for c in run.correct(child, run.train)]
            st["metric_calls"] += len(run.train)
            st["pool"].append(child)
            st["scores"].append(correct)
            st["parents"].append(parent)
            run.remember(child, train_accuracy=sum(correct) / len(correct), step=step)
        return it

    def ranked(self, run: Run) -> list[PromptScore]:
        """The pool by mean Pareto-set score (the earlier candidate first on ties)."""
        pool, scores = run.state["pool"], run.state["scores"]
        order = sorted(range(len(pool)), key=lambda k: -sum(scores[k]))
        return [run.contenders[pool[k]] for k in order]
