"""GReaTer's walk (the research code's rules) as pure functions."""

from __future__ import annotations

import pytest

from greater.optimizer.walk import banned_token, next_position, period_shortcut


@pytest.mark.parametrize("position, initial_len, expected", [
    (7, 16, None),   # 7 < 8 = 0.5 * 16
    (8, 16, 1),      # at half the initial length: the first "." in the shortlist wins
    (3, 7, None),    # 3 < 3.5: the research code's 0.5 * L, not L // 2 = 3
    (4, 7, 1),
])
def test_period_shortcut_from_half_the_initial_length(position, initial_len, expected):
    assert period_shortcut([" think", ".", " step."], position, initial_len) == expected


def test_period_shortcut_needs_a_period_in_the_shortlist():
    assert period_shortcut([" think", " step", ","], 20, 16) is None


@pytest.mark.parametrize("position, prompt_len, chosen, limit, expected", [
    (8, 16, ".", 64, 9),     # a "." inside the prompt: no cut, the walk goes on
    (15, 16, ".", 64, 0),    # a "." as the last token: wrap
    (15, 16, " the", 64, 16),  # end of the prompt: next step grows it
    (63, 64, " the", 64, 0),   # the length limit: wrap
    (3, 16, " answer.", 64, 4),  # a token containing "." inside the prompt
])
def test_next_position(position, prompt_len, chosen, limit, expected):
    assert next_position(position, prompt_len, chosen, limit) == expected


def test_banned_token_is_the_previous_one_and_the_last_at_zero():
    prompt = [11, 12, 13]
    assert banned_token(prompt, 0) == 13
    assert banned_token(prompt, 2) == 12
    assert banned_token(prompt, 3) == 13  # a grow step: the last token
    assert banned_token([], 0) is None
