"""GReaTer's walk over prompt positions, as pure functions (the research code's rules).

* Positions are visited left to right; at the end of the prompt a placeholder is appended (the
  prompt grows), up to ``max_prompt_tokens``, where the walk wraps to 0.
* At a position at or past half the initial length (``position >= 0.5 * initial_len``), a
  shortlisted candidate whose text contains "." is selected at once, without re-scoring.
* The prompt is never cut. The walk wraps to 0 after a "." only when that "." is the prompt's
  last token.
* The token banned at position ``i`` is the one before it; at position 0 it is the prompt's last
  token.
"""

from __future__ import annotations

from typing import Sequence


def is_period(token_text: str) -> bool:
    """Whether a token's text contains a full stop (ends a sentence of the prompt)."""
    return "." in token_text


def period_shortcut(shortlist_texts: Sequence[str], position: int, initial_len: int) -> int | None:
    """Index into the shortlist of the candidate selected at once, or None.

    At ``position >= 0.5 * initial_len`` the first shortlisted candidate (most negative gradient
    first) containing "." wins without re-scoring.
    """
    if position < 0.5 * initial_len:
        return None
    return next((k for k, text in enumerate(shortlist_texts) if is_period(text)), None)


def next_position(position: int, prompt_len: int, chosen_text: str, max_prompt_tokens: int) -> int:
    """The position edited after ``position`` of a prompt of ``prompt_len`` tokens.

    Wraps to 0 when the chosen token contains "." and is the prompt's last token, or when the
    next position would reach ``max_prompt_tokens``; otherwise moves one to the right (to
    ``prompt_len`` at the end, where the next step appends a placeholder).
    """
    if is_period(chosen_text) and position == prompt_len - 1:
        return 0
    nxt = position + 1
    return 0 if nxt >= max_prompt_tokens else nxt


def banned_token(prompt: Sequence[int], position: int) -> int | None:
    """The token that may not be placed at ``position``: the previous one (at 0: the last)."""
    if not prompt:
        return None
    return prompt[position - 1] if position > 0 else prompt[-1]
