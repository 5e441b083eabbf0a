"""TextGrad (Yuksekgonul et al. 2024) for prompt optimisation.

The prompt is the variable. Each step scores it on a training minibatch; for every wrong reply
the optimiser LLM writes feedback on the prompt (the textual gradient of that example's loss);
the optimiser LLM then rewrites the prompt from the collected feedback. The rewrite is accepted
only if its accuracy on a dev subsample (``n_val`` examples) does not drop below the current
prompt's, TextGrad's validation rule; otherwise the current prompt is kept.

A step's ``train_accuracy`` is the minibatch accuracy of its prompt when the step kept the
prompt it started from, and None when it accepted a rewrite (the rewrite was measured on dev,
not on the minibatch); ``details["minibatch_accuracy"]`` is always that of the prompt the step
started from. Accepted prompts are the contenders, latest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.evaluate import accuracy
from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import step_record


@dataclass(frozen=True)
class TextGradConfig(LLMOptimizerConfig):
    """Configuration of :class:`TextGrad`. Defaults follow the TextGrad paper.

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


@register_method("textgrad", config=TextGradConfig, uses_optimizer_llm=True,
                 summary="TextGrad-style: LLM feedback on errors, rewrite accepted if dev holds")
class TextGrad(Method):
    """TextGrad-style optimisation. State: the current prompt and its validation accuracy."""

    def start(self, run: Run) -> None:
        cfg = run.cfg
        assert isinstance(cfg, TextGradConfig)
        val = run.task.dev[: cfg.n_val]
        if not val:
            raise ValueError(f"{run.task.name} has no dev examples to validate rewrites on")
        run.state.update(current=cfg.initial_prompt,
                         current_val=run.accuracy(cfg.initial_prompt, val), asked=0)
        run.remember(cfg.initial_prompt, train_accuracy=None, step=0)

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, TextGradConfig)
        st = run.state
        val = run.task.dev[: cfg.n_val]
        t0 = time.perf_counter()
        current, current_val = st["current"], st["current_val"]
        start_prompt = current
        details: dict = {"parse_failures": {"feedback": 0, "update": 0}, "feedback": [],
                         "proposal": None, "accepted": False, "val_accuracy": current_val}
        batch = run.rng.sample(run.train, min(cfg.minibatch_size, len(run.train)))
        records = run.score(current, batch)
        wrong = [r for r in records if not r.correct]
        details["n_wrong"] = len(wrong)
        feedback = []
        replies = run.ask([P.textgrad_feedback(current, r.input, r.response, r.gold, r.answer)
                           for r in wrong])
        st["asked"] += len(replies)
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
        st.update(current=current, current_val=current_val)
        if step == self.n_steps(cfg) and st["asked"] == 0:
            run.warn("the optimiser LLM was never asked: the task model made no error on the "
                     "training minibatches, so there was nothing to give feedback on")
        start_accuracy = accuracy(records)
        details["minibatch_accuracy"] = start_accuracy
        return step_record(step, current, start_accuracy if current == start_prompt else None, t0,
                           **details)
