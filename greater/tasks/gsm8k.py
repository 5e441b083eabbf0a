"""GSM8K: grade-school maths word problems with an integer answer.

Data: ``<data_dir>/gsm8k/{train,test}.jsonl`` (openai/grade-school-math), else the hub's
``openai/gsm8k`` (config "main"). The gold is the number after ``#### `` on the answer's last line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import Record, load_hub_split, read_jsonl, require_str
from greater.tasks.extractors import number_extractor, parser_for
from greater.tasks.parsing import normalize_number
from greater.tasks.splits import head_split
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


def _records(split: str, data_dir: Path | None) -> tuple[list[Record], str]:
    if data_dir is not None:
        path = data_dir / "gsm8k" / f"{split}.jsonl"
        return read_jsonl(path), str(path)
    return load_hub_split(HUB_REPO, HUB_CONFIG, split), f"hub {HUB_REPO} {split}"


def load_gsm8k(data_dir: Path | None) -> Task:
    """Load GSM8K with its canonical splits (train[0:100], train[100:200], test).

    Raises:
        TaskError: missing or malformed data, or no data directory and no hub.
    """
    train_records, train_source = _records("train", data_dir)
    train_examples = [_example(record) for record in train_records]
    test_records, test_source = _records("test", data_dir)
    test_examples = [_example(record) for record in test_records]
    train, dev, test = head_split(train_examples, test_examples, train_source)
    logger.info("gsm8k: %d/%d/%d examples (train/dev/test) from %s and %s",
                len(train), len(dev), len(test), train_source, test_source)
    return Task(
        name="gsm8k",
        answer_type=AnswerType.NUMBER,
        train=train,
        dev=dev,
        test=test,
        extractor=GSM8K_EXTRACTOR,
        parser=parser_for(AnswerType.NUMBER),
    )
