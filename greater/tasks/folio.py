"""FOLIO: first-order-logic reasoning; is a conclusion True, False or Uncertain given premises?

Data: ``<data_dir>/folio/folio-{train,validation}.jsonl`` (Yale-LILY/FOLIO v0.0), else the hub's
``yale-nlp/FOLIO`` (whose premises are one newline-separated string). "Unknown" (v0.0 train) and
"Uncertain" are the same label; the canonical form is "Uncertain".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import Record, load_hub_split, read_jsonl, require_str, require_str_list
from greater.tasks.extractors import label_extractor, parser_for
from greater.tasks.splits import head_split
from greater.tasks.task import Task

logger = logging.getLogger(__name__)

__all__ = ["FOLIO_EXTRACTOR", "FOLIO_QUESTION", "folio_input", "load_folio"]

HUB_REPO = "yale-nlp/FOLIO"
FOLIO_EXTRACTOR = label_extractor(AnswerType.THREE_WAY)
FOLIO_QUESTION = "Based only on the premises, is the conclusion True, False, or Uncertain?"
_LABELS = {"true": "True", "false": "False", "uncertain": "Uncertain", "unknown": "Uncertain"}


def folio_input(premises: Sequence[str], conclusion: str) -> str:
    """The question text: numbered premises, the conclusion, and the True/False/Uncertain ask."""
    lines = ["Premises:"]
    lines += [f"{index}. {premise}" for index, premise in enumerate(premises, start=1)]
    lines += [f"Conclusion: {conclusion.strip()}", f"Question: {FOLIO_QUESTION}"]
    return "\n".join(lines)


def _example(record: Record) -> Example:
    premises = require_str_list(record, "premises")
    conclusion = require_str(record, "conclusion")
    label = require_str(record, "label")
    target = _LABELS.get(label.strip().lower())
    if target is None:
        raise TaskError(
            f"{record.where}: label {label!r} is not one of True, False, Uncertain, Unknown"
        )
    return Example(input=folio_input(premises, conclusion), target=target)


def _records(split: str, data_dir: Path | None) -> tuple[list[Record], str]:
    if data_dir is not None:
        path = data_dir / "folio" / f"folio-{split}.jsonl"
        return read_jsonl(path), str(path)
    return load_hub_split(HUB_REPO, None, split), f"hub {HUB_REPO} {split}"


def load_folio(data_dir: Path | None) -> Task:
    """Load FOLIO with its canonical splits (train[0:100], train[100:200], validation).

    Raises:
        TaskError: missing or malformed data, or no data directory and no hub.
    """
    train_records, train_source = _records("train", data_dir)
    train_examples = [_example(record) for record in train_records]
    test_records, test_source = _records("validation", data_dir)
    test_examples = [_example(record) for record in test_records]
    train, dev, test = head_split(train_examples, test_examples, train_source)
    logger.info("folio: %d/%d/%d examples (train/dev/test) from %s and %s",
                len(train), len(dev), len(test), train_source, test_source)
    return Task(
        name="folio",
        answer_type=AnswerType.THREE_WAY,
        train=train,
        dev=dev,
        test=test,
        extractor=FOLIO_EXTRACTOR,
        parser=parser_for(AnswerType.THREE_WAY),
    )
