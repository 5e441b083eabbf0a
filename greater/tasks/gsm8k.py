"""GSM8K: grade-school maths word problems with an integer answer.

Data: ``<data_dir>/gsm8k/{train,test}.jsonl`` (openai/grade-school-math), else the hub's
``openai/gsm8k`` (config "main"). The gold is the number after ``#### `` on the answer's last line.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import Record, read_split_records, require_str
from greater.tasks.extractors import number_extractor
from greater.tasks.parsing import normalize_number
from greater.tasks.splits import head_split_task
from greater.tasks.task import Task

logger = logging.getLogger(__name__)

__all__ = ["GSM8K_EXTRACTOR", "gold_from_solution", "load_gsm8k"]

HUB_REPO = "openai/gsm8k"
HUB_CONFIG = "main"
GSM8K_EXTRACTOR = number_extractor("an integer")

_GOLD_RE = re.compile(r"####\s*(.+?)\s*$")


def gold_from_solution(solution: str, where: str) -> str:
    """The gold number of a GSM8K solution, commas removed (``"#### 1,080"`` -> ``"1080"``).

    Raises:
        TaskError: no ``####`` line, or what follows it is not a number (``where`` names the row).
    """
    match = _GOLD_RE.search(solution.strip())
    if match is None:
        raise TaskError(f"{where}: field 'answer' has no '#### <number>' final line")
    gold = match.group(1).replace(",", "")
    if normalize_number(gold) is None:
        raise TaskError(f"{where}: the value after '####' is not a number: {match.group(1)!r}")
    return gold


def _example(record: Record) -> Example:
    question = require_str(record, "question").strip()
    gold = gold_from_solution(require_str(record, "answer"), record.where)
    return Example(input=question, target=gold)


def load_gsm8k(data_dir: Path | None) -> Task:
    """Load GSM8K with its canonical splits (see :func:`greater.tasks.splits.head_split`).

    Raises:
        TaskError: missing or malformed data, or no data directory and no hub.
    """
    return head_split_task(
        "gsm8k", AnswerType.NUMBER, GSM8K_EXTRACTOR, _example,
        train=partial(read_split_records, "gsm8k", "train.jsonl", HUB_REPO, HUB_CONFIG, "train",
                      data_dir=data_dir),
        test=partial(read_split_records, "gsm8k", "test.jsonl", HUB_REPO, HUB_CONFIG, "test",
                      data_dir=data_dir),
    )
