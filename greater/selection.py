"""The final choice every method makes: best contenders compared on dev, the winner on test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from greater.cost import CostMeter
from greater.evaluate import ExampleRecord, accuracy
from greater.result import PromptScore
from greater.tasks import Example, Task

#: (prompt text, examples) -> one scored record per example, in order. A scorer with a true
#: ``takes_label`` attribute is also given a progress-bar label as third argument.
Scorer = Callable[..., list[ExampleRecord]]


@dataclass
class FinalChoice:
    """The winner of the final choice and how it (and the initial prompt) scored.

    Flexible accuracies are on ``best`` (``best.dev_accuracy``) and ``test_accuracy``; the
    strict ones beside them. Test fields are None when the test is skipped (``n_test = 0``).
    """

    best: PromptScore
    dev_accuracy_strict: float | None
    test_accuracy: float | None
    test_accuracy_strict: float | None
    initial_dev_accuracy: float | None
    initial_test_accuracy: float | None
    test_records: list[ExampleRecord] = field(default_factory=list)


def _score(scorer: Scorer, prompt: str, examples: Sequence[Example], label: str
           ) -> list[ExampleRecord]:
    if getattr(scorer, "takes_label", False):
        return scorer(prompt, examples, label)
    return scorer(prompt, examples)


def choose_final(task: Task, ranked: Sequence[PromptScore], scorer: Scorer, meter: CostMeter, *,
                 initial_prompt: str, n_contenders: int, n_dev: int | None,
                 n_test: int | None) -> FinalChoice:
    """Score the first ``n_contenders`` of ``ranked`` on dev; the winner on test.

    Each contender's ``dev_accuracy`` (flexible) is filled in; ties on dev go to the
    higher-ranked prompt. The initial prompt is scored on dev (and on test when it is not the
    winner) for comparison. ``n_dev`` / ``n_test`` take the first examples of the split (None:
    all of it; ``n_test = 0`` skips the test).
    """
    if not ranked:
        raise ValueError("no contenders to choose from")
    dev = task.dev[:n_dev] if n_dev is not None else task.dev
    best: PromptScore | None = None
    best_records: list[ExampleRecord] = []
    with meter.phase("dev"):
        for k, c in enumerate(ranked[:n_contenders]):
            records = _score(scorer, c.prompt, dev, f"dev {k + 1}/{min(n_contenders, len(ranked))}")
            c.dev_accuracy = accuracy(records)
            if best is None or c.dev_accuracy > (best.dev_accuracy or 0.0):
                best, best_records = c, records
        initial_dev = accuracy(_score(scorer, initial_prompt, dev, "dev (initial prompt)"))
    assert best is not None
    test = task.test[:n_test] if n_test is not None else task.test
    test_records: list[ExampleRecord] = []
    initial_test = None
    if test:
        with meter.phase("test"):
            test_records = _score(scorer, best.prompt, test, "test")
            initial_test = accuracy(test_records) if best.prompt == initial_prompt else \
                accuracy(_score(scorer, initial_prompt, test, "test (initial prompt)"))
    return FinalChoice(
        best=best, dev_accuracy_strict=accuracy(best_records, strict=True),
        test_accuracy=accuracy(test_records) if test else None,
        test_accuracy_strict=accuracy(test_records, strict=True) if test else None,
        initial_dev_accuracy=initial_dev, initial_test_accuracy=initial_test,
        test_records=test_records)
