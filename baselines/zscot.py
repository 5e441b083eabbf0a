"""Zero-shot CoT: the paper's initial prompt, unoptimised (a reference point with its cost)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import RunConfig

from baselines.common import step_record


@dataclass(frozen=True)
class ZSCoTConfig(RunConfig):
    """Configuration of zero-shot CoT; see :class:`~greater.run_config.RunConfig`.

    Nothing is searched: ``n_train`` examples are scored once (the train accuracy recorded in
    the single history step), then the prompt is scored on dev and test. ``n_contenders`` is
    irrelevant (one prompt) and kept only for the shared interface; it must stay 1.
    """

    n_contenders: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_contenders != 1:
            raise ValueError("zero-shot CoT has exactly one contender; n_contenders must be 1")


@register_method("zscot", config=ZSCoTConfig,
                 summary="zero-shot CoT: the initial prompt, unoptimised (a reference point)")
class ZeroShotCoT(Method):
    """Zero-shot CoT: one step scores the initial prompt on the training examples."""

    def n_steps(self, config: RunConfig) -> int:
        return 1

    def step(self, run: Run, step: int) -> StepRecord:
        t0 = time.perf_counter()
        prompt = run.cfg.initial_prompt
        acc = run.accuracy(prompt)
        run.remember(prompt, train_accuracy=acc, step=0)
        return step_record(step, prompt, acc, t0)
