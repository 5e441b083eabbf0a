"""OPRO (Yang et al. 2023, "Large Language Models as Optimizers"): the optimiser LLM reads the
trajectory of instructions scored so far and proposes better ones.

Each step builds one meta-prompt: the ``max_trajectory`` best instructions scored so far, in
ascending order of training accuracy (the best last, shown as 0-100 as in the paper), and
``n_exemplars`` training problems with their answers (a fresh seeded draw every step). The
optimiser samples ``n_candidates`` replies to it; every new instruction is scored on the
training examples and joins the trajectory. The best instruction scored so far is the step's
prompt; every scored instruction is a contender.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import first_valid_prompts, step_record


@dataclass(frozen=True)
class OPROConfig(LLMOptimizerConfig):
    """Configuration of :class:`OPRO`. Defaults follow the OPRO paper (Yang et al. 2023, §4-5).

    Attributes:
        steps: optimisation steps (OPRO: up to 200).
        n_candidates: instructions sampled per step from the same meta-prompt (8).
        max_trajectory: best scored instructions shown in the meta-prompt (20).
        n_exemplars: training problems shown per step (3).
        optimizer_temperature: sampling temperature of the candidates (1.0); must be > 0, or
            the candidates of a step would all be the same reply.
    """

    steps: int = 200
    n_candidates: int = 8
    max_trajectory: int = 20
    n_exemplars: int = 3
    optimizer_temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "n_candidates", "max_trajectory", "n_exemplars"):
            positive_int(name, getattr(self, name))
        if self.optimizer_temperature <= 0:
            raise ValueError("OPRO samples several candidates from one meta-prompt; "
                             f"optimizer_temperature must be > 0, got {self.optimizer_temperature}")


def trajectory(scored: list[list], limit: int) -> list[tuple[str, float]]:
    """The ``limit`` best of ``scored`` (``[prompt, accuracy, step]`` in the order they were
    scored) in ascending order of accuracy; among equals the later-scored comes later, and the
    earliest-scored are the first dropped."""
    ranked = sorted(scored, key=lambda entry: entry[1])  # stable: ties keep scoring order
    return [(prompt, acc) for prompt, acc, _ in ranked[-limit:]]


@register_method("opro", config=OPROConfig, uses_optimizer_llm=True,
                 summary="OPRO: the optimiser LLM reads the scored trajectory and proposes more")
class OPRO(Method):
    """OPRO. State: every instruction scored, ``[prompt, train accuracy, step]`` in order."""

    def start(self, run: Run) -> None:
        prompt = run.cfg.initial_prompt
        acc = run.accuracy(prompt)
        run.state["scored"] = [[prompt, acc, 0]]
        run.remember(prompt, train_accuracy=acc, step=0)

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, OPROConfig)
        t0 = time.perf_counter()
        scored = run.state["scored"]
        shown = trajectory(scored, cfg.max_trajectory)
        exemplars = run.rng.sample(run.train, min(cfg.n_exemplars, len(run.train)))
        message = P.opro_meta(shown, [(ex.input, ex.target) for ex in exemplars])
        replies = run.ask([message] * cfg.n_candidates, temperature=cfg.optimizer_temperature)
        proposals, failures = first_valid_prompts(run, replies)
        if not proposals:
            run.warn(f"step {step}: none of the {len(replies)} candidates of the optimiser LLM "
                     "held a usable instruction")
        known = {entry[0] for entry in scored}
        new = [p for p in proposals if p not in known]
        candidates = []
        for prompt in new:
            acc = run.accuracy(prompt)
            scored.append([prompt, acc, step])
            run.remember(prompt, train_accuracy=acc, step=step)
            candidates.append({"prompt": prompt, "train_accuracy": acc})
        best, best_acc, _ = max(reversed(scored), key=lambda entry: entry[1])  # latest on ties
        return step_record(step, best, best_acc, t0, trajectory=[p for p, _ in shown],
                           candidates=candidates, n_proposed=len(replies),
                           n_valid=len(proposals), n_repeated=len(proposals) - len(new),
                           parse_failures=failures)
