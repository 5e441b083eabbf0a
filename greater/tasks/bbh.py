"""BIG-Bench Hard: the 27 tasks, their answer types and extractors, and loading.

Data: ``<data_dir>/bbh/<task>.json`` (suzgunmirac/BIG-Bench-Hard), else the hub's
``lukaemon/bbh`` (config = task, split "test"). Answer types were read off the real targets.
"""

from __future__ import annotations

import logging
from pathlib import Path

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import Record, load_hub_split, read_json_examples, require_str
from greater.tasks.extractors import (
    choice_extractor,
    free_text_extractor,
    label_extractor,
    number_extractor,
    parser_for,
)
from greater.tasks.parsing import AnswerParser, normalize_number
from greater.tasks.splits import bbh_split
from greater.tasks.task import Task

logger = logging.getLogger(__name__)

__all__ = [
    "BBH_TASK_TYPES",
    "BBH_OPTION_LETTERS",
    "BBH_PAPER_TASK_IDS",
    "bbh_extractor",
    "load_bbh",
]

HUB_REPO = "lukaemon/bbh"

_MC = AnswerType.MULTIPLE_CHOICE
BBH_TASK_TYPES: dict[str, AnswerType] = {
    "boolean_expressions": AnswerType.TRUE_FALSE,
    "causal_judgement": AnswerType.YES_NO,
    "date_understanding": _MC,
    "disambiguation_qa": _MC,
    "dyck_languages": AnswerType.FREE_TEXT,
    "formal_fallacies": AnswerType.VALID_INVALID,
    "geometric_shapes": _MC,
    "hyperbaton": _MC,
    "logical_deduction_five_objects": _MC,
    "logical_deduction_seven_objects": _MC,
    "logical_deduction_three_objects": _MC,
    "movie_recommendation": _MC,
    "multistep_arithmetic_two": AnswerType.NUMBER,
    "navigate": AnswerType.YES_NO,
    "object_counting": AnswerType.NUMBER,
    "penguins_in_a_table": _MC,
    "reasoning_about_colored_objects": _MC,
    "ruin_names": _MC,
    "salient_translation_error_detection": _MC,
    "snarks": _MC,
    "sports_understanding": AnswerType.YES_NO,  # targets "yes"/"no"; canonical "Yes"/"No"
    "temporal_sequences": _MC,
    "tracking_shuffled_objects_five_objects": _MC,
    "tracking_shuffled_objects_seven_objects": _MC,
    "tracking_shuffled_objects_three_objects": _MC,
    "web_of_lies": AnswerType.YES_NO,
    "word_sorting": AnswerType.FREE_TEXT,
}

# Every option letter that occurs in a task's questions (read off the data; parsing accepts
# these when the question itself is not known).
BBH_OPTION_LETTERS: dict[str, str] = {
    "date_understanding": "ABCDEF",
    "disambiguation_qa": "ABCD",
    "geometric_shapes": "ABCDEFGHIJK",
    "hyperbaton": "AB",
    "logical_deduction_five_objects": "ABCDE",
    "logical_deduction_seven_objects": "ABCDEFG",
    "logical_deduction_three_objects": "ABC",
    "movie_recommendation": "ABCDE",
    "penguins_in_a_table": "ABCDE",
    "reasoning_about_colored_objects": "ABCDEFGHIJKLMNOPQR",
    "ruin_names": "ABCDEFGHIJK",
    "salient_translation_error_detection": "ABCDEF",
    "snarks": "AB",
    "temporal_sequences": "ABCD",
    "tracking_shuffled_objects_five_objects": "ABCDE",
    "tracking_shuffled_objects_seven_objects": "ABCDEFG",
    "tracking_shuffled_objects_three_objects": "ABC",
}
# Letters named in the extractor where they differ from the above: ruin_names has 4 options in
# 247 of 250 questions (the others are items whose options were split at commas).
_EXTRACTOR_LETTERS = {"ruin_names": "ABCD"}

_NUMBER_KINDS = {
    "object_counting": "a positive integer",
    "multistep_arithmetic_two": "an integer, possibly negative",
}
_FREE_TEXT = {
    # task: (parser normaliser, placeholder, description)
    "word_sorting": ("words", "WORDS", "are the sorted words separated by single spaces"),
    "dyck_languages": (
        "brackets", "BRACKETS", "are the closing brackets separated by single spaces",
    ),
}

# Answers written as the question's own words ("The sentence is plausible.").
_SYNONYMS: dict[str, tuple[tuple[str, str], ...]] = {
    "sports_understanding": ((r"not\s+plausible|implausible", "No"), (r"plausible", "Yes")),
}

BBH_PAPER_TASK_IDS: tuple[str, ...] = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "movie_recommendation", "multistep_arithmetic_two", "navigate", "object_counting",
    "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects_five_objects", "web_of_lies",
)


def bbh_extractor(task: str) -> str:
    """The extractor text of a BBH task (see :mod:`greater.tasks.extractors`)."""
    answer_type = BBH_TASK_TYPES[task]
    if answer_type is AnswerType.MULTIPLE_CHOICE:
        return choice_extractor(_EXTRACTOR_LETTERS.get(task, BBH_OPTION_LETTERS[task]))
    if answer_type is AnswerType.NUMBER:
        return number_extractor(_NUMBER_KINDS[task])
    if answer_type is AnswerType.FREE_TEXT:
        _, placeholder, description = _FREE_TEXT[task]
        return free_text_extractor(placeholder, description)
    return label_extractor(answer_type)


def _parser(task: str, extra_answers: tuple[str, ...]) -> AnswerParser:
    answer_type = BBH_TASK_TYPES[task]
    return parser_for(
        answer_type,
        letters=BBH_OPTION_LETTERS.get(task, ""),
        extra_answers=extra_answers,
        free_text=_FREE_TEXT[task][0] if task in _FREE_TEXT else "whitespace",
        synonyms=_SYNONYMS.get(task, ()),
    )


def _read_records(task: str, data_dir: Path | None) -> tuple[list[Record], str]:
    if data_dir is not None:
        path = data_dir / "bbh" / f"{task}.json"
        return read_json_examples(path), str(path)
    return load_hub_split(HUB_REPO, task, "test"), f"hub {HUB_REPO} ({task})"


def _check_target(task: str, parser: AnswerParser, record: Record, target: str) -> bool:
    """Validate a target against the task's answer type; True if it is a non-letter MC target."""
    answer_type = BBH_TASK_TYPES[task]
    gold = parser.canonical_gold(target)
    if answer_type is AnswerType.MULTIPLE_CHOICE:
        if len(gold) == 1:
            return False
        logger.info("%s: target %r is not an option letter; it counts only when written verbatim",
                       record.where, target)
        return True
    if answer_type is AnswerType.NUMBER:
        if normalize_number(target) is None:
            raise TaskError(f"{record.where}: target {target!r} is not a number")
    elif answer_type is not AnswerType.FREE_TEXT:
        labels = getattr(parser, "labels", ())
        if gold not in labels:
            raise TaskError(f"{record.where}: target {target!r} is not one of {', '.join(labels)}")
    elif not gold:
        raise TaskError(f"{record.where}: target {target!r} is empty after normalisation")
    return False


def load_bbh(task: str, data_dir: Path | None) -> Task:
    """Load BBH task ``task`` (bare name, e.g. "navigate") with its canonical splits.

    Raises:
        TaskError: unknown task, missing or malformed data, or no data directory and no hub.
    """
    if task not in BBH_TASK_TYPES:
        raise TaskError(f"unknown BBH task {task!r}")
    records, source = _read_records(task, data_dir)
    probe = _parser(task, ())
    examples: list[Example] = []
    extra: list[str] = []
    for record in records:
        example = Example(input=require_str(record, "input"), target=require_str(record, "target"))
        if _check_target(task, probe, record, example.target):
            extra.append(probe.canonical_gold(example.target))
        examples.append(example)
    train, dev, test = bbh_split(examples, source)
    logger.info("bbh/%s: %d/%d/%d examples (train/dev/test) from %s",
                task, len(train), len(dev), len(test), source)
    return Task(
        name=f"bbh/{task}",
        answer_type=BBH_TASK_TYPES[task],
        train=train,
        dev=dev,
        test=test,
        extractor=bbh_extractor(task),
        parser=_parser(task, tuple(extra)),
    )
