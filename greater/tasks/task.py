"""The :class:`Task`: canonical splits of one benchmark plus its answer extraction and scoring."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.extractors import default_extractor, parser_for
from greater.tasks.parsing import AnswerParser, extract, strict_extract

__all__ = ["Task", "SPLITS"]

SPLITS = ("train", "dev", "test")
_SPLIT_ALIASES = {"val": "dev", "validation": "dev", "valid": "dev"}


@dataclass
class Task:
    """One benchmark task with its canonical train/dev/test splits.

    Attributes:
        name: the registry name, e.g. ``"bbh/navigate"``, ``"gsm8k"``, ``"folio"``.
        answer_type: the shape of the gold answers.
        train, dev, test: the canonical splits, in file order.
        extractor: the text appended after the model's reasoning (p_extract); it ends in ``$``
            and the answer (:meth:`answer_text`) follows it immediately. Default: a generic
            extractor for ``answer_type``.
        parser: reads answers of ``answer_type`` (internal; use the methods below). Default:
            the generic parser for ``answer_type``.
    """

    name: str
    answer_type: AnswerType
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    extractor: str = ""
    parser: AnswerParser | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.extractor:
            self.extractor = default_extractor(self.answer_type)
        if self.parser is None:
            self.parser = parser_for(self.answer_type)
        if self.parser.answer_type is not self.answer_type:
            raise TaskError(f"task {self.name}: parser for {self.parser.answer_type.name} "
                            f"does not match answer type {self.answer_type.name}")

    @property
    def _parser(self) -> AnswerParser:
        assert self.parser is not None  # set in __post_init__
        return self.parser

    def split(self, name: str) -> list[Example]:
        """The examples of split ``name`` ("train", "dev" or "test"; "val"/"validation" = dev)."""
        key = _SPLIT_ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in SPLITS:
            raise TaskError(
                f"unknown split {name!r} for task {self.name}; valid splits: {', '.join(SPLITS)}"
            )
        return getattr(self, key)

    @cached_property
    def data_digest(self) -> str:
        """sha256 (hex) of the task's examples as loaded, split by split, in order.

        The same data read from files or from the hub gives the same digest; any change to an
        example, a split boundary or the order changes it. Recorded in every result.
        """
        payload = {name: [[ex.input, ex.target] for ex in getattr(self, name)] for name in SPLITS}
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def extract_strict_answer(self, after_extractor: str, example: Example | None = None
                              ) -> str | None:
        """The answer read only from the text generated right after the extractor ("strict").

        This is what the research code's re-scoring checks: an empty or unparseable slot is
        wrong even when the reasoning named the gold answer (cf. :meth:`extract_answer`).
        """
        options = self._parser.options_for(example.input) if example is not None else None
        return strict_extract(after_extractor, self._parser, options)

    @property
    def examples(self) -> list[Example]:
        """All examples, train then dev then test."""
        return [*self.train, *self.dev, *self.test]

    def extract_answer(self, response: str, example: Example | None = None) -> str | None:
        """The canonical answer in the model's whole reply, or None when there is none.

        ``response`` is the reasoning, usually the extractor and the model's answer. With
        ``example`` given, multiple choice counts only that question's option letters and also
        reads an option written as its text ("The answer is blue"); without it, the task's letters.
        """
        options = self._parser.options_for(example.input) if example is not None else None
        return extract(response, self._parser, options)

    def gold_answer(self, example: Example) -> str:
        """Canonical gold answer (same form as :meth:`extract_answer`'s result), e.g. "B",
        "1234", "Yes", "True", "valid", "Uncertain", or whitespace-normalised free text."""
        return self._parser.canonical_gold(example.target)

    def answer_text(self, example: Example) -> str:
        """The exact text the model should write right after :attr:`extractor` (for the loss).

        ``extract_answer(reasoning + " " + extractor + answer_text(example))`` equals
        ``gold_answer(example)``.
        """
        return self._parser.answer_text(self.gold_answer(example))

    def is_correct(self, response: str, example: Example) -> bool:
        """Whether the answer in ``response`` is the gold answer of ``example``."""
        answer = self.extract_answer(response, example)
        return answer is not None and answer == self.gold_answer(example)

    def answer_complete(self, generated_after_extractor: str) -> bool:
        """True once the text generated after the extractor holds a complete answer.

        Used to stop generation early. Conservative: True only when another token cannot change
        the answer read at the start of the slot, i.e. the answer is followed by a character that
        cannot continue it ("B)" / "B." / "B " for a letter, "42$" / "42 apples" / "42.\\n" for a
        number, "Yes." for a label), or when a newline or closing ``$`` follows some non-blank
        text. Not complete: "B", "42", "42." (may become 42.5), "42 " (may become "42 + 1 = 43"),
        "Ye", "Yes" (may become "Yesterday"), free text before its ``$``/newline, a blank slot.
        """
        return self._parser.complete(generated_after_extractor)
