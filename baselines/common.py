"""What the baselines share beyond the core's run lifecycle: the UCB bandit (APE, APO), the
step record of an LLM-driven method, and collecting valid prompts from optimiser replies.

The lifecycle itself (training examples, scoring, optimiser LLM, contenders, checkpoints,
resume, final choice) is the core's :mod:`greater.run`; a baseline is a
:class:`~greater.run.Method` registered with :func:`~greater.methods.register_method`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any, Callable, Sequence

from greater.result import StepRecord
from greater.run import Run
from greater.tasks import Example

from baselines import prompts as P

logger = logging.getLogger(__name__)


def first_valid_prompts(run: Run, replies: Sequence[str]) -> tuple[list[str], int]:
    """The first valid instruction of each reply (de-duplicated), and how many had none."""
    found, failures = [], 0
    for reply in replies:
        prompt = next((p for p in P.parse_prompts(reply) if run.valid(p)), None)
        if prompt is None:
            failures += 1
        else:
            found.append(prompt)
    return list(dict.fromkeys(found)), failures


def valid_prompts(run: Run, reply: str, limit: int) -> list[str]:
    """Up to ``limit`` valid instructions found in one reply."""
    return [p for p in P.parse_prompts(reply) if run.valid(p)][:limit]


class UCBBandit:
    """UCB1 over prompts (APE's and ProTeGi's bandit selection).

    ``score(prompt, examples)`` gives one reward per example (correctness, or APE's answer
    log-probability); an arm's mean is the mean reward of the examples it has seen. Each round the ``arms_per_round`` prompts with the highest upper confidence bound
    ``mean + c * sqrt(ln t / n)`` (unplayed arms first) are scored on ``samples_per_round``
    training examples they have not seen yet; an arm that has seen every example is exact and
    no longer played.
    """

    def __init__(self, arms: Sequence[str], examples: Sequence[Example],
                 score: Callable[[str, Sequence[Example]], Sequence[float]],
                 rng: random.Random, *, c: float) -> None:
        self.arms = list(dict.fromkeys(arms))
        self.examples = list(examples)
        self.score = score
        self.rng = rng
        self.c = c
        self.total = {a: 0.0 for a in self.arms}
        self.seen: dict[str, set[int]] = {a: set() for a in self.arms}
        self.t = 0

    def n(self, arm: str) -> int:
        return len(self.seen[arm])

    def mean(self, arm: str) -> float:
        return self.total[arm] / self.n(arm) if self.n(arm) else 0.0

    def ucb(self, arm: str) -> float:
        if not self.n(arm):
            return math.inf
        return self.mean(arm) + self.c * math.sqrt(math.log(max(self.t, 1)) / self.n(arm))

    def run(self, rounds: int, arms_per_round: int, samples_per_round: int) -> int:
        """Play ``rounds`` rounds; returns how many (arm, example) scores were drawn."""
        drawn = 0
        for _ in range(rounds):
            live = [a for a in self.arms if self.n(a) < len(self.examples)]
            if not live:
                break
            self.t += 1
            order = sorted(range(len(live)), key=lambda i: (-self.ucb(live[i]), i))
            for arm in [live[i] for i in order[:arms_per_round]]:
                unseen = [i for i in range(len(self.examples)) if i not in self.seen[arm]]
                pick = sorted(self.rng.sample(unseen, min(samples_per_round, len(unseen))))
                rewards = self.score(arm, [self.examples[i] for i in pick])
                self.total[arm] += sum(float(r) for r in rewards)
                self.seen[arm].update(pick)
                drawn += len(pick)
        return drawn

    def ranked(self) -> list[str]:
        """Arms by mean reward, unplayed ones last (ties: more evidence, then original order)."""
        return sorted(self.arms, key=lambda a: (not self.n(a), -self.mean(a), -self.n(a),
                                                self.arms.index(a)))


def step_record(step: int, prompt: str, train_accuracy: float | None, t0: float,
                **details: Any) -> StepRecord:
    """A step of an LLM baseline; its loss is the training error rate (1 - accuracy)."""
    loss = None if train_accuracy is None else 1.0 - train_accuracy
    return StepRecord(step=step, prompt=prompt, loss=loss, train_accuracy=train_accuracy,
                      seconds=time.perf_counter() - t0, details=details)
