"""The model's replies to task examples under a prompt: reasoning, then extractor, then answer.

This is the one path by which every method (GReaTer, the baselines, evaluation) makes a model
answer a task, so all of them generate, parse and count cost identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from greater.lm import LM, Continuation
from greater.tasks import Example, Task

#: Bound on the answer generated after the extractor ("B", "42$", "Uncertain").
ANSWER_MAX_TOKENS = 12


@dataclass
class Response:
    """One reply. ``text`` is the whole reply the task's parser reads."""

    reasoning_ids: list[int]
    reasoning: str
    answer: str
    extractor: str
    stopped_by: str

    @property
    def text(self) -> str:
        return f"{self.reasoning} {self.extractor}{self.answer}"


@dataclass(frozen=True)
class PromptEdits:
    """Variants of one prompt that differ from ``position`` on, for shared-prefix generation.

    Variant ``v`` is ``base[:position] + tails[v]``; every tail has the same length.
    """

    base: tuple[int, ...]
    position: int
    tails: tuple[tuple[int, ...], ...]

    def variant(self, v: int) -> list[int]:
        return list(self.base[: self.position]) + list(self.tails[v])


def respond(
    lm: LM,
    task: Task,
    examples: Sequence[Example],
    prompt_ids: Sequence[int] | PromptEdits,
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: str | None = None,
) -> list[list[Response]]:
    """Greedy replies of ``lm`` to ``examples``; ``result[e][v]`` for prompt variant ``v``.

    With a plain prompt there is one variant. With :class:`PromptEdits`, each example's question
    and the shared prompt prefix are prefilled once and reused for every variant.
    """
    if not examples:
        return []
    extractor_ids = lm.extractor_ids(task.extractor)
    cont = Continuation(tuple(extractor_ids), ANSWER_MAX_TOKENS, task.answer_complete)
    tail = lm.tail_ids
    if isinstance(prompt_ids, PromptEdits):
        prefixes = [lm.head_ids(ex.input) + list(prompt_ids.base[: prompt_ids.position])
                    for ex in examples]
        suffixes = [list(t) + tail for t in prompt_ids.tails]
    else:
        prefixes = [lm.head_ids(ex.input) + list(prompt_ids) + tail for ex in examples]
        suffixes = None
    gens = lm.generate(prefixes, suffixes, max_new_tokens=max_new_tokens, continuation=cont,
                       batch_size=batch_size, progress=progress)
    n_var = len(suffixes) if suffixes is not None else 1
    out: list[list[Response]] = []
    for e in range(len(examples)):
        row = []
        for v in range(n_var):
            g = gens[e * n_var + v]
            row.append(Response(reasoning_ids=g.ids, reasoning=lm.decode(g.ids).strip(),
                                answer=lm.decode(g.continuation_ids), extractor=task.extractor,
                                stopped_by=g.stopped_by))
        out.append(row)
    return out
