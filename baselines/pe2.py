"""PE2 (Ye et al. 2023, "Prompt Engineering a Prompt Engineer"): a meta-prompt with a detailed
two-step task description, a specification of the context the prompt is used in and a
step-by-step reasoning template over a batch of failures; beam search over prompts.

Each step, every prompt of the beam is scored on the training examples; ``n_expansions``
times a batch of ``failures_per_batch`` of its failures (a seeded draw) goes into the
meta-prompt (:data:`baselines.prompts.PE2_META`) and the optimiser reasons over each failure
before writing a new prompt. The beam and the new prompts are scored on the training examples
and the best ``beam_size`` form the next beam (incumbents first on ties).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import step_record


@dataclass(frozen=True)
class PE2Config(LLMOptimizerConfig):
    """Configuration of :class:`PE2`. Defaults follow the PE2 paper's search setup (Ye et al.
    2023, §4: beam search of a few steps, a batch of two failures per meta-prompt).

    Attributes:
        steps: search steps (PE2: 3).
        beam_size: prompts kept per step (4).
        n_expansions: new prompts asked per beam prompt per step, each from its own batch of
            failures (4).
        failures_per_batch: failures shown per meta-prompt (PE2's batch size: 2).
    """

    steps: int = 3
    beam_size: int = 4
    n_expansions: int = 4
    failures_per_batch: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "beam_size", "n_expansions", "failures_per_batch"):
            positive_int(name, getattr(self, name))


@register_method("pe2", config=PE2Config, uses_optimizer_llm=True,
                 summary="PE2: a reasoned meta-prompt over failures, beam search over prompts")
class PE2(Method):
    """PE2. State: the beam, ``[prompt, train accuracy]`` best first."""

    def start(self, run: Run) -> None:
        prompt = run.cfg.initial_prompt
        acc = run.accuracy(prompt)
        run.state["beam"] = [[prompt, acc]]
        run.remember(prompt, train_accuracy=acc, step=0)

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, PE2Config)
        t0 = time.perf_counter()
        beam = [prompt for prompt, _ in run.state["beam"]]
        messages, n_failures = [], []
        for prompt in beam:
            failures = [(r.input, r.response, r.gold) for r in run.score(prompt, run.train)
                        if not r.correct]
            n_failures.append(len(failures))
            for _ in range(cfg.n_expansions if failures else 0):
                batch = run.rng.sample(failures, min(cfg.failures_per_batch, len(failures)))
                messages.append(P.pe2_meta(prompt, batch, run.task.extractor))
        replies = run.ask(messages)
        new, parse_failures = [], 0
        for reply in replies:
            prompt = P.parse_final_prompt(reply)
            if prompt is None or not run.valid(prompt):
                parse_failures += 1
            elif prompt not in beam and prompt not in new:
                new.append(prompt)
        if not messages:
            run.warn(f"step {step}: no beam prompt failed on a training example; nothing to "
                     "learn from, the beam is kept")
        elif len(replies) == parse_failures:
            run.warn(f"step {step}: none of the {len(replies)} replies of the optimiser LLM held "
                     "a usable prompt; the beam is kept")
        pool = [[prompt, run.accuracy(prompt)] for prompt in beam + new]
        for prompt, acc in pool:
            run.remember(prompt, train_accuracy=acc, step=step)
        run.state["beam"] = sorted(pool, key=lambda entry: -entry[1])[: cfg.beam_size]
        best, best_acc = run.state["beam"][0]
        return step_record(step, best, best_acc, t0, beam=[p for p, _ in run.state["beam"]],
                           beam_failures=n_failures, n_proposed=len(replies), n_new=len(new),
                           new=[{"prompt": p, "train_accuracy": a} for p, a in pool[len(beam):]],
                           parse_failures=parse_failures)
