"""Extractor texts (the paper's p_extract) and the matching answer parsers, per answer type.

The extractor is appended after the model's reasoning; the answer follows its final ``$``
immediately, with no space (``... is $B``, ``... is $Yes``, ``... is $42``), so that the answer's
first token is the same whatever was generated before. The wording follows the paper's research
code; the one change is that yes/no-style formats read ``'$Yes'`` rather than ``'$ Yes'``.
"""

from __future__ import annotations

from greater.tasks.base import AnswerType
from greater.tasks.parsing import (
    AnswerParser,
    FreeTextParser,
    MultipleChoiceParser,
    NumberParser,
    normalize_brackets,
    normalize_word_list,
    three_way_parser,
    true_false_parser,
    valid_invalid_parser,
    yes_no_parser,
)

__all__ = [
    "EXTRACTOR_PREFIX",
    "choice_extractor",
    "label_extractor",
    "number_extractor",
    "free_text_extractor",
    "default_extractor",
    "parser_for",
]

EXTRACTOR_PREFIX = "Therefore, the final answer"

# Above this many options the list in the extractor is shortened: '$A' or '$B' or ... or '$K'.
_MAX_LISTED_LETTERS = 7

_LABELS: dict[AnswerType, tuple[str, ...]] = {
    AnswerType.YES_NO: ("Yes", "No"),
    AnswerType.TRUE_FALSE: ("True", "False"),
    AnswerType.VALID_INVALID: ("valid", "invalid"),
    AnswerType.THREE_WAY: ("True", "False", "Uncertain"),
}


def _exact_format(items: list[str]) -> str:
    return f"{EXTRACTOR_PREFIX} (use exact format: {' or '.join(items)}) is $"


def choice_extractor(letters: str) -> str:
    """``Therefore, the final answer (use exact format: '$A' or '$B' or '$C') is $``."""
    quoted = [f"'${letter}'" for letter in letters]
    if len(quoted) > _MAX_LISTED_LETTERS:
        quoted = quoted[:2] + ["..."] + quoted[-1:]
    return _exact_format(quoted)


def label_extractor(answer_type: AnswerType) -> str:
    """``Therefore, the final answer (use exact format: '$Yes' or '$No') is $`` and likewise."""
    return _exact_format([f"'${label}'" for label in _LABELS[answer_type]])


def number_extractor(kind: str = "an integer") -> str:
    """``Therefore, the final answer (use exactly this format: $NUMBER$, where NUMBER is
    <kind>) is $``; ``kind`` e.g. "a positive integer"."""
    return f"{EXTRACTOR_PREFIX} (use exactly this format: $NUMBER$, where NUMBER is {kind}) is $"


def free_text_extractor(placeholder: str, description: str) -> str:
    """``Therefore, the final answer (use exactly this format: $WORDS$, where WORDS are ...)
    is $`` for ``placeholder`` "WORDS" and ``description`` "are ..."."""
    return (
        f"{EXTRACTOR_PREFIX} (use exactly this format: ${placeholder}$, "
        f"where {placeholder} {description}) is $"
    )


def default_extractor(answer_type: AnswerType) -> str:
    """A generic extractor for an answer type (tasks built outside the registry)."""
    if answer_type is AnswerType.MULTIPLE_CHOICE:
        return choice_extractor("ABCD")
    if answer_type is AnswerType.NUMBER:
        return number_extractor("an integer")
    if answer_type is AnswerType.FREE_TEXT:
        return free_text_extractor("ANSWER", "is the answer")
    return label_extractor(answer_type)


def parser_for(answer_type: AnswerType, *, letters: str = "", extra_answers: tuple[str, ...] = (),
               free_text: str = "whitespace",
               synonyms: tuple[tuple[str, str], ...] = ()) -> AnswerParser:
    """The parser for an answer type.

    Args:
        letters: multiple choice: the task's option letters.
        extra_answers: multiple choice: gold targets that are not letters.
        free_text: free text: "words" (word lists), "brackets" (bracket sequences) or
            "whitespace" (whitespace-normalised text).
        synonyms: yes/no: extra ``(regex, "Yes"|"No")`` pairs (see :func:`yes_no_parser`).
    """
    if answer_type is AnswerType.MULTIPLE_CHOICE:
        return MultipleChoiceParser(letters or "ABCDEFGHIJKLMNOPQR", extra_answers)
    if answer_type is AnswerType.NUMBER:
        return NumberParser()
    if answer_type is AnswerType.YES_NO:
        return yes_no_parser(synonyms)
    if answer_type is AnswerType.TRUE_FALSE:
        return true_false_parser()
    if answer_type is AnswerType.VALID_INVALID:
        return valid_invalid_parser()
    if answer_type is AnswerType.THREE_WAY:
        return three_way_parser()
    if free_text == "words":
        return FreeTextParser(normalize_word_list)
    if free_text == "brackets":
        return FreeTextParser(normalize_brackets)
    return FreeTextParser()
