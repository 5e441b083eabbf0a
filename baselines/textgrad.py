"""TextGrad (Yuksekgonul et al. 2024) for prompt optimisation.

The prompt is the variable. Each step scores it on a training minibatch; for every wrong reply
the optimiser LLM writes feedback on the prompt (the textual gradient of that example's loss);
the optimiser LLM then rewrites the prompt from the collected feedback. The rewrite is accepted
only if its accuracy on a dev subsample (``n_val`` examples) does not drop below the current
prompt's, TextGrad's validation rule; otherwise the current prompt is kept.

A step's ``train_accuracy`` is the minibatch accuracy of the prompt the step started from; its
``loss`` the corresponding error rate. Accepted prompts are the contenders, latest first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from greater.evaluate import accuracy
from greater.result import OptimizationResult
from greater.run_config import positive_int
from greater.tasks import Task

from baselines import prompts as P
from baselines.common import LLMOptimizerConfig, Run, Scorer, default_engine, step_record
from baselines.engines import ChatEngine


@dataclass(frozen=True)
class TextGradConfig(LLMOptimizerConfig):
    """Configuration of :func:`optimize` (TextGrad). Defaults follow the TextGrad paper.

    Attributes:
        steps: optimisation steps (12: three epochs of a small training set in the paper).
        minibatch_size: training examples per step (3).
        n_val: dev examples (the first ``n_val``) deciding whether a rewrite is accepted.
    """

    steps: int = 12
    minibatch_size: int = 3
    n_val: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "minibatch_size", "n_val"):
            positive_int(name, getattr(self, name))


def optimize(lm, task: Task, config: TextGradConfig | None = None, *,
             optimizer_llm: ChatEngine | None = None, progress: bool = True,
             checkpoint: str | os.PathLike | None = None,
             scorer: Scorer | None = None) -> OptimizationResult:
    """Run TextGrad-style prompt optimisation; the optimiser LLM defaults to ``lm`` itself."""
    cfg = config or TextGradConfig()
    engine = default_engine(lm, optimizer_llm)
    run = Run("textgrad", lm, task, cfg, engine=engine, scorer=scorer, checkpoint=checkpoint)
    val = task.dev[: cfg.n_val]
    if not val:
        raise ValueError(f"{task.name} has no dev examples to validate rewrites on")
    current = cfg.initial_prompt
    current_val = run.accuracy(current, val)
    run.remember(current, train_accuracy=None, step=0)
    for step in tqdm(range(1, cfg.steps + 1), desc=f"TextGrad {task.name}",
                     disable=not progress):
        t0 = time.perf_counter()
        details: dict = {"parse_failures": {"feedback": 0, "update": 0}, "feedback": [],
                         "proposal": None, "accepted": False, "val_accuracy": current_val}
        batch = run.rng.sample(run.train, min(cfg.minibatch_size, len(run.train)))
        records = run.score(current, batch)
        wrong = [r for r in records if not r.correct]
        details["n_wrong"] = len(wrong)
        feedback = []
        replies = run.ask([P.textgrad_feedback(current, r.input, r.response, r.gold, r.answer)
                           for r in wrong])
        for reply in replies:
            fb = P.parse_feedback(reply)
            if fb is None:
                details["parse_failures"]["feedback"] += 1
            else:
                feedback.append(fb)
        details["feedback"] = feedback
        if feedback:
            (reply,) = run.ask([P.textgrad_update(current, feedback)])
            proposal = next((p for p in P.parse_prompts(reply) if run.valid(p)), None)
            if proposal is None:
                details["parse_failures"]["update"] += 1
            elif proposal != current:
                proposal_val = run.accuracy(proposal, val)
                details.update(proposal=proposal, proposal_val_accuracy=proposal_val)
                if proposal_val >= current_val:
                    current, current_val = proposal, proposal_val
                    details.update(accepted=True, val_accuracy=current_val)
                    run.remember(current, train_accuracy=None, step=step)
        run.add_step(step_record(step, current, accuracy(records), t0, **details))
    return run.finish()
