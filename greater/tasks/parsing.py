"""Answer parsers: from a small model's whole reply to a canonical answer string.

A reply is the model's reasoning, then (usually) the extractor text ending in ``is $``, then the
model's answer. :func:`extract` finds the answer in three stages:

1. The extractor's format instruction (``(use exact format: '$A' or '$B')``) is masked, so its
   example answers are never taken for the model's answer.
2. Answer markers (``answer is``, ``final answer:``, ``the correct option is``, ``\\boxed{``, ...,
   which includes the extractor's own ``final answer ... is $``) are tried from the LAST to the
   first; the answer is the first one found in the line that follows the marker. A marker followed
   by ``not`` is skipped ("the answer is not A").
3. Failing that, a type-specific pattern over the whole reply, last match wins (e.g. the last
   ``(C)`` for multiple choice, the last number, the last standalone "Yes"/"No").

Each :class:`AnswerParser` knows one answer type: its canonical form, how to read an answer from
the text after a marker, its whole-text fallback, and when a generated answer is complete.
"""

from __future__ import annotations

import logging
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from greater.tasks.base import AnswerType

logger = logging.getLogger(__name__)

__all__ = [
    "AnswerParser",
    "MultipleChoiceParser",
    "NumberParser",
    "LabelParser",
    "FreeTextParser",
    "extract",
    "normalize_number",
    "parse_options",
    "normalize_word_list",
    "normalize_brackets",
    "normalize_whitespace",
]

# The format instruction inside an extractor, e.g. "(use exact format: '$A' or '$B')".
_INSTRUCTION_RE = re.compile(
    r"\(\s*use\s+exact(?:ly)?(?:\s+this)?\s+format\s*:[^()]*\)", re.IGNORECASE
)

# Phrases after which the model states its answer.
_MARKER_RE = re.compile(
    r"\\boxed\s*\{"
    r"|\b(?:(?:final|correct|right|best|true)\s+)?(?:answer|option|choice)\b"
    r"(?:\s+(?:to\s+(?:the|this)\s+question|here|then|therefore))?"
    r"[\s*_]*(?:is|was|:|=|would\s+be|should\s+be|will\s+be|must\s+be)(?![A-Za-z])[\s*_:]*",
    re.IGNORECASE,
)
_NEGATED_RE = re.compile(r"\s*(?:not\b|n't\b)", re.IGNORECASE)
_SEGMENT_CHARS = 300

# Characters that merely decorate an answer: markdown, LaTeX dollars, quotes, brackets.
_DECOR = r"(?:\s|[*_`\"'“”‘’$\[{(:=>#]|\\boxed\s*\{|\\text(?:bf)?\s*\{|\\mathrm\s*\{)*"


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def normalize_number(text: str) -> str | None:
    """Canonical string of a number: ``"1,234"`` -> ``"1234"``, ``"3.0"`` -> ``"3"``,
    ``"2.50"`` -> ``"2.5"``, ``"−5"`` -> ``"-5"``; None if ``text`` is not a number."""
    cleaned = text.strip().replace(",", "").replace("\u2212", "-")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def normalize_word_list(text: str) -> str:
    """Canonical word list (word_sorting): lower case, commas as separators, stray punctuation
    around words dropped, single spaces."""
    words = []
    for raw in text.lower().replace(",", " ").split():
        word = raw.strip(".;:\"*`[]{}()")
        if word:
            words.append(word)
    return " ".join(words)


def normalize_brackets(text: str) -> str:
    """Canonical bracket sequence (dyck_languages): the bracket characters, space separated."""
    return " ".join(ch for ch in text if ch in "()[]{}<>")


_OPTION_LINE_RE = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.MULTILINE)


def parse_options(question: str) -> dict[str, str]:
    """The ``(A) text`` option lines of a question, as ``{"A": "text", ...}`` (may be empty)."""
    _, sep, tail = question.partition("Options:")
    block = tail if sep else question
    return {m.group(1): m.group(2) for m in _OPTION_LINE_RE.finditer(block)}


class AnswerParser(ABC):
    """Reads one answer type. Subclasses define the canonical form and the patterns."""

    answer_type: AnswerType

    @abstractmethod
    def canonical_gold(self, target: str) -> str:
        """Canonical form of a gold target as stored in an :class:`Example`."""

    def answer_text(self, gold: str) -> str:
        """The text the model should write right after the extractor (teacher forcing)."""
        return gold

    def options_for(self, question: str) -> Mapping[str, str] | None:
        """Per-question context for parsing (multiple choice: the options); None otherwise."""
        return None

    @abstractmethod
    def parse_segment(self, segment: str, options: Mapping[str, str] | None) -> str | None:
        """The answer in the text that follows an answer marker, or None."""

    @abstractmethod
    def parse_fallback(self, text: str, options: Mapping[str, str] | None) -> str | None:
        """The answer found anywhere in the reply (last match), when no marker yields one."""

    @abstractmethod
    def head_complete(self, generated: str) -> bool:
        """True when ``generated`` starts with an answer that further text cannot change."""

    def complete(self, generated: str) -> bool:
        """Whether the text generated after the extractor already holds a complete answer.

        True when (a) the answer at the start of ``generated`` is followed by a character that
        cannot extend it (see :meth:`head_complete`), or (b) a newline or a closing ``$`` follows
        some non-blank text: the answer slot the extractor opened is then closed. Otherwise False,
        so the caller keeps generating (up to its own token cap).
        """
        content = re.search(r"[^\s$*_`\"']", generated)
        if content is None:
            return False
        if re.search(r"[\n$]", generated[content.end():]):
            return True
        return self.head_complete(generated)


def extract(
    response: str, parser: AnswerParser, options: Mapping[str, str] | None = None
) -> str | None:
    """The canonical answer in a model's whole reply, or None (see the module docstring)."""
    if not response or not response.strip():
        return None
    text = _INSTRUCTION_RE.sub(" ", response)
    markers = list(_MARKER_RE.finditer(text))
    for index in range(len(markers) - 1, -1, -1):
        start = markers[index].end()
        stop = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        segment = _first_line(text[start:max(start, stop)])
        if _NEGATED_RE.match(segment):
            continue
        answer = parser.parse_segment(segment, options)
        if answer is not None:
            logger.debug("answer %r after marker %r", answer, markers[index].group(0))
            return answer
    answer = parser.parse_fallback(text, options)
    logger.debug("answer %r from the whole-text fallback", answer)
    return answer


def strict_extract(
    after_extractor: str, parser: AnswerParser, options: Mapping[str, str] | None = None
) -> str | None:
    """The canonical answer at the head of the text generated after the extractor, or None.

    No fall-back to the rest of the reply: the strict ("strict-match") reading.
    """
    if not after_extractor or not after_extractor.strip():
        return None
    return parser.parse_segment(_first_line(after_extractor), options)


def _first_line(text: str) -> str:
    """Leading blank lines plus the first non-blank line, capped in length."""
    match = re.match(r"\s*[^\n]*", text)
    return (match.group(0) if match else text)[:_SEGMENT_CHARS]


# ---------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------

_MC_HEAD_RE = re.compile(
    r"(?P<pre>" + _DECOR + r")"
    r"(?P<word>(?:the\s+)?(?:option|choice|letter)\s*:?\s*)?"
    r"(?P<pre2>[\s*_$`\"'(\[]*)"
    r"(?P<letter>[A-Za-z])(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# Letters written so that they can only be an option: "(B)", "$B$", "**B**", "option B", \boxed{B}.
_MC_STRONG_RE = re.compile(
    r"\(([A-Za-z])\)"
    r"|\$\s*([A-Za-z])\s*\$"
    r"|\*\*\s*\(?([A-Za-z])\)?\s*\*\*"
    r"|\b(?:[Oo]ption|[Cc]hoice|OPTION|CHOICE)\s+\(?([A-Z])\)?(?![A-Za-z0-9])"
    r"|\\boxed\s*\{\s*\(?([A-Za-z])\)?\s*\}"
)
# "B is correct", "C is the right answer" (whole-text fallback only).
_MC_VERDICT_RE = re.compile(r"(?<![A-Za-z'])([A-R])\s+is\s+(?:the\s+)?(?:correct|right|best)\b")
# Words that may follow a bare "A"/"I" answer ("A because ..."); any other lower-case word means
# the letter is the article / pronoun ("A bird", "I think").
_CONNECTIVES = frozenset(
    "because since as is was and or which that with so from for in on given hence therefore "
    "according".split()
)
_ALL_LETTERS = "ABCDEFGHIJKLMNOPQR"


class MultipleChoiceParser(AnswerParser):
    """Option letters. Canonical answer: the upper-case letter, e.g. ``"B"``.

    Only letters that are options count: those of the question when it is known (passed as
    ``options``), else the task's letters. ``extra_answers`` are gold targets that are not letters
    (three BBH items whose options were split at commas, e.g. "Monsters, Inc"); they count when
    written verbatim.
    """

    answer_type = AnswerType.MULTIPLE_CHOICE

    def __init__(self, letters: str = _ALL_LETTERS, extra_answers: Sequence[str] = ()) -> None:
        self.letters = letters
        # Longest first, so that a longer gold text wins over a prefix of it.
        self.extra_answers = tuple(sorted(set(extra_answers), key=len, reverse=True))

    def canonical_gold(self, target: str) -> str:
        match = re.fullmatch(r"\s*\(?([A-Za-z])\)?\s*", target)
        if match:
            return match.group(1).upper()
        return normalize_whitespace(target)

    def options_for(self, question: str) -> Mapping[str, str] | None:
        return parse_options(question) or None

    def _valid(self, options: Mapping[str, str] | None) -> str:
        return "".join(options) if options else self.letters

    def _extra_at_head(self, segment: str) -> str | None:
        head = re.sub(r"^" + _DECOR, "", segment).lower()
        for extra in self.extra_answers:
            low = extra.lower()
            if head.startswith(low) and not head[len(low):len(low) + 1].isalnum():
                return extra
        return None

    def _head_letter(self, segment: str, valid: str) -> tuple[str, int] | None:
        match = _MC_HEAD_RE.match(segment)
        if not match:
            return None
        letter = match.group("letter")
        after = segment[match.end():]
        decorations = (match.group("pre") or "") + (match.group("pre2") or "")
        formatted = bool(
            re.search(r"[^\s:=]", decorations) or match.group("word") or after[:1] in (")", "$")
        )
        if letter.islower() and not formatted:
            return None  # "a", "i" as words
        if letter in "AI" and not formatted:
            follower = re.match(r"\s+([a-z]+)", after)
            if follower and follower.group(1) not in _CONNECTIVES:
                return None  # "A bird", "I think"
        letter = letter.upper()
        if letter not in valid:
            return None
        return letter, match.end()

    def _option_text(self, segment: str, options: Mapping[str, str]) -> str | None:
        low = normalize_whitespace(segment).lower()
        best: tuple[int, int, str] | None = None
        for letter, text in options.items():
            needle = normalize_whitespace(text).lower().rstrip(".")
            if not needle:
                continue
            found = re.search(r"(?<![a-z0-9])" + re.escape(needle) + r"(?![a-z0-9])", low)
            if found:
                key = (found.start(), -len(needle), letter)
                if best is None or key < best:
                    best = key
        return best[2] if best else None

    def parse_segment(self, segment: str, options: Mapping[str, str] | None) -> str | None:
        extra = self._extra_at_head(segment)
        if extra is not None:
            return extra
        valid = self._valid(options)
        head = self._head_letter(segment, valid)
        if head is not None:
            return head[0]
        for match in _MC_STRONG_RE.finditer(segment):
            letter = next(g for g in match.groups() if g).upper()
            if letter in valid:
                return letter
        if options:
            return self._option_text(segment, options)
        return None

    def parse_fallback(self, text: str, options: Mapping[str, str] | None) -> str | None:
        valid = self._valid(options)
        found: tuple[int, str] | None = None
        for pattern in (_MC_STRONG_RE, _MC_VERDICT_RE):
            for match in pattern.finditer(text):
                letter = next(g for g in match.groups() if g).upper()
                if letter in valid and (found is None or match.start() > found[0]):
                    found = (match.start(), letter)
        return found[1] if found else None

    def head_complete(self, generated: str) -> bool:
        # The extractor ends in "$", so the generated text reads as formatted ("$B").
        segment = "$" + generated
        extra = self._extra_at_head(segment)
        if extra is not None:
            rest = re.sub(r"^" + _DECOR, "", segment)[len(extra):]
            return bool(rest) and not rest[0].isalnum()
        head = self._head_letter(segment, string.ascii_uppercase)
        if head is None:
            return False
        rest = segment[head[1]:]
        return bool(rest) and not rest[0].isalnum()


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

_NUMBER = r"(?<![\w.])[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)"
_NUMBER_RE = re.compile(_NUMBER)
_OPERATOR_RE = re.compile(r"\s*[-+*/×x÷^]\s*[-\u2212]?\(?\s*\d")
_EQUALS_RE = re.compile(r"=\s*[*_$\\{(\s]*(" + _NUMBER + ")")
_FRACTION_RE = re.compile(r"/(\d+)(?!\d|[.,]\d|/)")
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def _divide(numerator: str, denominator: str) -> str | None:
    top, bottom = normalize_number(numerator), normalize_number(denominator)
    if top is None or bottom is None or Decimal(bottom) == 0:
        return None
    return normalize_number(str(Decimal(top) / Decimal(bottom)))


class NumberParser(AnswerParser):
    """Numbers. Canonical answer: :func:`normalize_number` (``"1234"``, ``"-5"``, ``"2.5"``).

    After a marker the first number counts, unless it starts a calculation ("5 + 3 = 8"), whose
    result after the last ``=`` on that line counts; a bare fraction "1/2" counts as its value.
    Number words up to twenty are read when no digits follow the marker.
    """

    answer_type = AnswerType.NUMBER

    def canonical_gold(self, target: str) -> str:
        value = normalize_number(target)
        return value if value is not None else normalize_whitespace(target)

    def parse_segment(self, segment: str, options: Mapping[str, str] | None) -> str | None:
        match = _NUMBER_RE.search(segment)
        if match is None:
            word = _NUMBER_WORD_RE.search(segment)
            return _NUMBER_WORDS[word.group(1).lower()] if word else None
        rest = segment[match.end():]
        if _OPERATOR_RE.match(rest):
            results = list(_EQUALS_RE.finditer(rest.split("\n")[0]))
            if results:
                return normalize_number(results[-1].group(1))
            fraction = _FRACTION_RE.match(rest)
            if fraction:  # "1/2" -> "0.5"
                return _divide(match.group(0), fraction.group(1))
        return normalize_number(match.group(0))

    def parse_fallback(self, text: str, options: Mapping[str, str] | None) -> str | None:
        last = None
        for match in _NUMBER_RE.finditer(text):
            last = match
        return normalize_number(last.group(0)) if last else None

    def head_complete(self, generated: str) -> bool:
        match = re.match(r"(?:\s|[*_`\"'$]|\\boxed\s*\{)*(" + _NUMBER + ")", generated)
        if not match:
            return False
        rest = generated[match.end():]
        if not rest:
            return False  # more digits may follow
        if rest[0] in ".,":
            return len(rest) > 1 and not rest[1].isdigit()  # "12." may become "12.5"
        after = rest.lstrip(" \t")
        if not after:
            return False
        return not re.match(r"[-+*/×x÷^=\d]", after)  # "5 + 3 = 8": the result is still to come


# ---------------------------------------------------------------------------------------------
# Closed label sets: Yes/No, True/False, valid/invalid, True/False/Uncertain
# ---------------------------------------------------------------------------------------------


class LabelParser(AnswerParser):
    """A closed set of label words, matched case-insensitively as whole words.

    Args:
        answer_type: the type this parser serves.
        vocabulary: ``(regex, canonical)`` pairs, e.g. ``(r"not\\s+valid", "invalid")``; earlier
            pairs win when two match at the same place.
        fallback_vocabulary: case-sensitive patterns for the whole-text fallback (default:
            ``vocabulary``, any case); stricter for yes/no, where "no" is a common English word.
    """

    def __init__(
        self,
        answer_type: AnswerType,
        vocabulary: Sequence[tuple[str, str]],
        fallback_vocabulary: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.answer_type = answer_type
        self.labels = tuple(dict.fromkeys(canonical for _, canonical in vocabulary))
        self._canon = [canonical for _, canonical in vocabulary]
        self._re = self._compile(vocabulary, re.IGNORECASE)
        if fallback_vocabulary is None:  # same words, any case
            fallback, flags = vocabulary, re.IGNORECASE
        else:  # written case-sensitively
            fallback, flags = fallback_vocabulary, 0
        self._fallback_canon = [canonical for _, canonical in fallback]
        self._fallback_re = self._compile(fallback, flags)
        self._head_re = re.compile(
            r"(?:\s|[*_`\"'$(\[{:]|\\boxed\s*\{|\\text(?:bf)?\s*\{)*"
            r"(?:" + "|".join(f"(?:{pattern})" for pattern, _ in vocabulary) + r")",
            re.IGNORECASE,
        )

    @staticmethod
    def _compile(vocabulary: Sequence[tuple[str, str]], flags: int) -> re.Pattern[str]:
        body = "|".join(f"({pattern})" for pattern, _ in vocabulary)
        return re.compile(r"(?<![A-Za-z])(?:" + body + r")(?![A-Za-z])", flags)

    @staticmethod
    def _canonical(match: re.Match[str], canon: Sequence[str]) -> str:
        index = next(i for i, group in enumerate(match.groups()) if group is not None)
        return canon[index]

    def canonical_gold(self, target: str) -> str:
        match = self._re.fullmatch(target.strip())
        return self._canonical(match, self._canon) if match else normalize_whitespace(target)

    def parse_segment(self, segment: str, options: Mapping[str, str] | None) -> str | None:
        match = self._re.search(segment)
        return self._canonical(match, self._canon) if match else None

    def parse_fallback(self, text: str, options: Mapping[str, str] | None) -> str | None:
        last = None
        for match in self._fallback_re.finditer(text):
            last = match
        return self._canonical(last, self._fallback_canon) if last else None

    def head_complete(self, generated: str) -> bool:
        match = self._head_re.match(generated)
        if not match:
            return False
        rest = generated[match.end():]
        return bool(rest) and not rest[0].isalnum()  # "No" may still become "None"


def yes_no_parser(synonyms: Sequence[tuple[str, str]] = ()) -> LabelParser:
    """Yes/No (any case). The fallback only takes "Yes"/"No" capitalised, or lower case right
    before punctuation, since "no" is common inside sentences ("there is no way").

    Args:
        synonyms: extra ``(regex, "Yes"|"No")`` pairs read anywhere (any case), e.g. "plausible"
            for a task that asks whether a sentence is plausible.
    """
    extra = [(f"(?i:{pattern})", canonical) for pattern, canonical in synonyms]
    return LabelParser(
        AnswerType.YES_NO,
        [("yes", "Yes"), ("no", "No"), *synonyms],
        fallback_vocabulary=[
            ("Yes|YES", "Yes"),
            ("No|NO", "No"),
            (r"yes(?=\s*(?:[.!,;:$*)\"'\]]|$))", "Yes"),
            (r"no(?=\s*(?:[.!,;:$*)\"'\]]|$))", "No"),
            *extra,
        ],
    )


def true_false_parser() -> LabelParser:
    """True/False (any case)."""
    return LabelParser(AnswerType.TRUE_FALSE, [("true", "True"), ("false", "False")])


def valid_invalid_parser() -> LabelParser:
    """valid/invalid (any case); "not valid" reads as invalid."""
    return LabelParser(
        AnswerType.VALID_INVALID,
        [
            (r"not\s+(?:deductively\s+)?valid", "invalid"),
            ("invalid", "invalid"),
            ("valid", "valid"),
        ],
    )


def three_way_parser() -> LabelParser:
    """FOLIO: True/False/Uncertain; "Unknown", "undetermined", "cannot be determined" read as
    Uncertain."""
    return LabelParser(
        AnswerType.THREE_WAY,
        [
            ("true", "True"),
            ("false", "False"),
            ("uncertain", "Uncertain"),
            ("unknown", "Uncertain"),
            ("undetermined|indeterminate", "Uncertain"),
            (r"cannot\s+be\s+determined|can\s*not\s+be\s+determined", "Uncertain"),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Free text
# ---------------------------------------------------------------------------------------------


class FreeTextParser(AnswerParser):
    """Free text (word lists, bracket sequences), compared after ``normalizer``.

    After a marker the answer runs to a closing ``$`` or the end of the line; there is no
    whole-text fallback (any sentence could pass for free text), so without a marker: None.
    """

    answer_type = AnswerType.FREE_TEXT

    def __init__(self, normalizer: Callable[[str], str] = normalize_whitespace) -> None:
        self.normalizer = normalizer

    def canonical_gold(self, target: str) -> str:
        return self.normalizer(target)

    def parse_segment(self, segment: str, options: Mapping[str, str] | None) -> str | None:
        body = re.sub(r"^(?:\s|[*_`\"'$:])*", "", segment)
        body = re.split(r"\$|\n", body, maxsplit=1)[0]
        body = body.strip().rstrip("*`\"'").strip()
        answer = self.normalizer(body)
        return answer or None

    def parse_fallback(self, text: str, options: Mapping[str, str] | None) -> str | None:
        return None

    def head_complete(self, generated: str) -> bool:
        return False  # only a closing "$" or a newline ends free text (see complete())
