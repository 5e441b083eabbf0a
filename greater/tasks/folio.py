"""FOLIO: first-order-logic reasoning; is a conclusion True, False or Uncertain given premises?

Data: ``<data_dir>/folio/folio-{train,validation}.jsonl`` (Yale-LILY/FOLIO v0.0), else the hub's
``yale-nlp/FOLIO`` (whose premises are one newline-separated string). "Unknown" (v0.0 train) and
"Uncertain" are the same label; the canonical form is "Uncertain".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import Record, read_split_records, require_str, require_str_list
from greater.tasks.extractors import label_extractor
from greater.tasks.splits import head_split_task
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


def load_folio(data_dir: Path | None) -> Task:
    """Load FOLIO with its canonical splits (see :func:`greater.tasks.splits.head_split`).

    Raises:
        TaskError: missing or malformed data, or no data directory and no hub.
    """
    return head_split_task(
        "folio", AnswerType.THREE_WAY, FOLIO_EXTRACTOR, _example,
        train=partial(read_split_records, "folio", "folio-train.jsonl", HUB_REPO, None, "train",
                      data_dir=data_dir),
        test=partial(read_split_records, "folio", "folio-validation.jsonl", HUB_REPO, None, "validation",
                      data_dir=data_dir),
    )
