"""Accuracy of a prompt on a task split, with a record per example."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from greater.cost import CostCounters
from greater.lm import LM
from greater.provenance import provenance
from greater.responses import Response, respond
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
    """One evaluated example.

    ``answer`` / ``correct`` are the flexible reading of the whole reply (the answer after the
    extractor, else one stated in the reasoning); ``strict_answer`` / ``strict_correct`` read
    only what the model wrote right after the extractor.
    """

    input: str
    reasoning: str
    response: str
    answer: str | None
    gold: str
    correct: bool
    stopped_by: str
    strict_answer: str | None = None
    strict_correct: bool = False


@dataclass
class EvaluationResult:
    """Accuracy of ``prompt`` on ``split`` of ``task`` for ``model``, with per-example records.

    ``accuracy`` is the flexible one, ``accuracy_strict`` the strict one (see
    :class:`ExampleRecord`).
    """

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
    accuracy_strict: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvaluationResult":
        data = dict(data)
        data["records"] = [ExampleRecord(**r) for r in data["records"]]
        data["cost"] = CostCounters(**data["cost"])
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON, atomically."""
        from greater.result import write_json_atomic

        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvaluationResult":
        from greater.result import read_json

        return cls.from_dict(read_json(path))


def score_examples(lm: LM, task: Task, examples: Sequence[Example], prompt_ids: Sequence[int], *,
                   max_new_tokens: int, batch_size: int,
                   progress: str | None = None) -> list[ExampleRecord]:
    """Reply to ``examples`` under ``prompt_ids`` and score each reply."""
    replies = respond(lm, task, examples, prompt_ids, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, progress=progress)
    return [record_reply(task, ex, reply) for ex, (reply,) in zip(examples, replies)]


def record_reply(task: Task, example: Example, reply: Response) -> ExampleRecord:
    """Score one reply both ways (flexible and strict)."""
    answer = task.extract_answer(reply.text, example)
    strict = task.extract_strict_answer(reply.answer, example)
    gold = task.gold_answer(example)
    return ExampleRecord(input=example.input, reasoning=reply.reasoning, response=reply.text,
                         answer=answer, gold=gold, correct=answer == gold,
                         stopped_by=reply.stopped_by, strict_answer=strict,
                         strict_correct=strict == gold)


def accuracy(records: Sequence[ExampleRecord], *, strict: bool = False) -> float:
    """Share of correct records (``strict``: by the strict reading); 0.0 for none."""
    if not records:
        return 0.0
    return sum(r.strict_correct if strict else r.correct for r in records) / len(records)


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
    config = {"split": split, "limit": limit, "max_new_tokens": max_new_tokens,
              "batch_size": batch_size}
    result = EvaluationResult(
        model=lm.name, task=task.name, split=split, prompt=prompt,
        accuracy=n_correct / len(records), n_examples=len(records), n_correct=n_correct,
        n_unparsed=sum(r.answer is None for r in records), records=records,
        cost=lm.meter.snapshot() - before, config=config,
        accuracy_strict=accuracy(records, strict=True),
        provenance=provenance(method=None, lm=lm, task=task, config={**config, "prompt": prompt},
                              seed=None),
    )
    logger.info("%s %s/%s: accuracy %.3f (%d/%d)", lm.name, task.name, split, result.accuracy,
                n_correct, len(records))
    return result
