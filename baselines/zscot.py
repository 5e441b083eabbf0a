"""Zero-shot CoT: the paper's initial prompt, unoptimised (a reference point with its cost)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from greater.result import OptimizationResult
from greater.tasks import Task

from baselines.common import BaseConfig, Run, Scorer, step_record
from baselines.engines import ChatEngine


@dataclass(frozen=True)
class ZSCoTConfig(BaseConfig):
    """Configuration of :func:`optimize` (zero-shot CoT); see :class:`BaseConfig`.

    Nothing is searched: ``n_train`` examples are scored once (the train accuracy recorded in
    the single history step), then the prompt is scored on dev and test. ``n_contenders`` is
    irrelevant (one prompt) and kept only for the shared interface; it must stay 1.
    """

    n_contenders: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_contenders != 1:
            raise ValueError("zero-shot CoT has exactly one contender; n_contenders must be 1")


def optimize(lm, task: Task, config: ZSCoTConfig | None = None, *,
             optimizer_llm: ChatEngine | None = None, progress: bool = True,
             checkpoint: str | os.PathLike | None = None,
             scorer: Scorer | None = None) -> OptimizationResult:
    """Score ``config.initial_prompt`` on train, dev and test. ``optimizer_llm`` must be None."""
    cfg = config or ZSCoTConfig()
    if optimizer_llm is not None:
        raise ValueError("zero-shot CoT uses no optimiser LLM; pass optimizer_llm=None")
    run = Run("zscot", lm, task, cfg, scorer=scorer, checkpoint=checkpoint)
    t0 = time.perf_counter()
    acc = run.accuracy(cfg.initial_prompt)
    run.remember(cfg.initial_prompt, train_accuracy=acc, step=0)
    run.add_step(step_record(0, cfg.initial_prompt, acc, t0))
    return run.finish()
