"""Core value types of the task layer: answer types, examples and the task error."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AnswerType", "Example", "TaskError"]


class TaskError(ValueError):
    """A task cannot be loaded or used: unknown name, missing or malformed data, bad split.

    The message is meant for the user as is (it names the file, line and what to do).
    """


class AnswerType(enum.Enum):
    """The shape of a task's gold answer; decides the extractor text and the answer parser."""

    MULTIPLE_CHOICE = "multiple_choice"  # an option letter: "(B)" in the data, "B" canonical
    YES_NO = "yes_no"  # "Yes"/"No" (BBH also uses "yes"/"no")
    TRUE_FALSE = "true_false"  # "True"/"False"
    VALID_INVALID = "valid_invalid"  # "valid"/"invalid"
    NUMBER = "number"  # an integer (or decimal) number
    THREE_WAY = "three_way"  # FOLIO: "True"/"False"/"Uncertain"
    FREE_TEXT = "free_text"  # word lists, bracket sequences


@dataclass(frozen=True)
class Example:
    """One benchmark item.

    Attributes:
        input: the full question text shown to the model.
        target: the gold answer as stored in the data (BBH verbatim, e.g. ``"(B)"``; GSM8K the
            number after ``####`` without commas; FOLIO the label with "Unknown" as "Uncertain").
    """

    input: str
    target: str
