"""The final choice every method makes: best contenders compared on dev, the winner on test."""

from __future__ import annotations

from typing import Callable, Sequence

from greater.cost import CostMeter
from greater.evaluate import ExampleRecord, accuracy
from greater.result import PromptScore
from greater.tasks import Example, Task

#: (prompt text, examples) -> one scored record per example, in order.
Scorer = Callable[[str, Sequence[Example]], list[ExampleRecord]]


def choose_final(task: Task, ranked: Sequence[PromptScore], scorer: Scorer, meter: CostMeter, *,
                 n_contenders: int, n_dev: int | None,
                 n_test: int | None) -> tuple[PromptScore, float | None]:
    """Score the first ``n_contenders`` of ``ranked`` on dev; return the winner and its test
    accuracy (None when ``n_test`` is 0).

    Each contender's ``dev_accuracy`` is filled in. Ties on dev go to the higher-ranked prompt.
    ``n_dev`` / ``n_test`` take the first examples of the split (None: all of it).
    """
    if not ranked:
        raise ValueError("no contenders to choose from")
    dev = task.dev[:n_dev] if n_dev is not None else task.dev
    best: PromptScore | None = None
    with meter.phase("dev"):
        for c in ranked[:n_contenders]:
            c.dev_accuracy = accuracy(scorer(c.prompt, dev))
            if best is None or c.dev_accuracy > (best.dev_accuracy or 0.0):
                best = c
    assert best is not None
    test = task.test[:n_test] if n_test is not None else task.test
    test_acc = None
    if test:
        with meter.phase("test"):
            test_acc = accuracy(scorer(best.prompt, test))
    return best, test_acc
