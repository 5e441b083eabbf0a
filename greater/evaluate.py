"""Accuracy of a prompt on a task split, with a record per example."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from greater.cost import CostCounters
from greater.lm import LM
from greater.responses import respond
from greater.tasks import Example, Task
from greater.versions import library_versions

logger = logging.getLogger(__name__)

#: The paper's initial prompt (zero-shot CoT); the model reads "... Use proper logical ...".
ZERO_SHOT_COT_PROMPT = (
    "proper logical reasoning and think step by step. Finally give the actual correct answer."
)
DEFAULT_MAX_NEW_TOKENS = 512


@dataclass
class ExampleRecord:
    """One evaluated example."""

    input: str
    reasoning: str
    response: str
    answer: str | None
    gold: str
    correct: bool
    stopped_by: str


@dataclass
class EvaluationResult:
    """Accuracy of ``prompt`` on ``split`` of ``task`` for ``model``, with per-example records."""

    model: str
    task: str
    split: str
    prompt: str
    accuracy: float
    n_examples: int
    n_correct: int
    n_unparsed: int
    records: list[ExampleRecord]
    cost: CostCounters
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_examples(lm: LM, task: Task, examples: Sequence[Example], prompt_ids: Sequence[int], *,
                   max_new_tokens: int, batch_size: int,
                   progress: str | None = None) -> list[ExampleRecord]:
    """Reply to ``examples`` under ``prompt_ids`` and score each reply."""
    replies = respond(lm, task, examples, prompt_ids, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, progress=progress)
    records = []
    for ex, (reply,) in zip(examples, replies):
        answer = task.extract_answer(reply.text, ex)
        gold = task.gold_answer(ex)
        records.append(ExampleRecord(input=ex.input, reasoning=reply.reasoning, response=reply.text,
                                     answer=answer, gold=gold, correct=answer == gold,
                                     stopped_by=reply.stopped_by))
    return records


def accuracy(records: Sequence[ExampleRecord]) -> float:
    return sum(r.correct for r in records) / len(records) if records else 0.0


def evaluate(lm: LM, task: Task, *, prompt: str = ZERO_SHOT_COT_PROMPT, split: str = "dev",
             limit: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
             batch_size: int = 16, progress: bool = True) -> EvaluationResult:
    """Evaluate ``prompt`` on ``split`` of ``task`` (the first ``limit`` examples if given)."""
    examples = task.split(split)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        examples = examples[:limit]
    if not examples:
        raise ValueError(f"split {split!r} of {task.name} has no examples")
    before = lm.meter.snapshot()
    records = score_examples(lm, task, examples, lm.prompt_ids(prompt),
                             max_new_tokens=max_new_tokens, batch_size=batch_size,
                             progress=f"eval {task.name}/{split}" if progress else None)
    n_correct = sum(r.correct for r in records)
    result = EvaluationResult(
        model=lm.name, task=task.name, split=split, prompt=prompt,
        accuracy=n_correct / len(records), n_examples=len(records), n_correct=n_correct,
        n_unparsed=sum(r.answer is None for r in records), records=records,
        cost=lm.meter.snapshot() - before,
        config={"limit": limit, "max_new_tokens": max_new_tokens, "batch_size": batch_size},
    )
    logger.info("%s %s/%s: accuracy %.3f (%d/%d)", lm.name, task.name, split, result.accuracy,
                n_correct, len(records))
    return result
