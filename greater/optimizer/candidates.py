"""Candidate proposal at one prompt position (the paper's step 2).

For each training example, the model's next-token distribution at position ``i`` (given the
question and the prompt up to ``i``) proposes its top-k tokens. Random groups of examples
intersect their top-k sets; the union of ``n_intersections`` such intersections is the
candidate set. If it is smaller than ``min_candidates``, k grows and the draw is repeated.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

import torch

_WORDISH = re.compile(r"^[A-Za-z ]*[A-Za-z][A-Za-z ]*$")


def token_is_allowed(text: str) -> bool:
    """The paper's filter: ASCII letters and spaces (at least one letter), or exactly "." ","."""
    return text in (".", ",") or bool(_WORDISH.match(text))


def allowed_token_mask(vocab: Sequence[str], special_ids: Sequence[int], mode: str) -> torch.Tensor:
    """``[V]`` bool mask of tokens an optimiser may place in a prompt."""
    if mode == "ascii":
        mask = torch.tensor([token_is_allowed(t) for t in vocab], dtype=torch.bool)
    elif mode == "none":
        mask = torch.tensor([bool(t.strip()) or t == " " for t in vocab], dtype=torch.bool)
    else:
        raise ValueError(f"unknown token filter {mode!r}")
    if special_ids:
        mask[torch.tensor(list(special_ids), dtype=torch.long)] = False
    return mask


def propose_candidates(
    logprobs: torch.Tensor,
    allowed: torch.Tensor,
    *,
    top_k: int,
    n_intersections: int,
    intersection_size: int,
    min_candidates: int,
    top_k_growth: int,
    current: int,
    banned: int | None,
    rng: random.Random,
) -> list[int]:
    """Candidate token ids for one position, sorted ascending; ``current`` always included.

    Args:
        logprobs: ``[B, V]`` next-token log-probs at the position, one row per example.
        allowed: ``[V]`` bool mask of permitted tokens.
        current: the token now at the position (kept, so "no change" is always possible).
        banned: the token at the previous position (never proposed), or None.
        rng: the run's random generator (draws the groups of examples).
    """
    masked = logprobs.float().clone()
    masked[:, ~allowed.to(masked.device)] = float("-inf")
    if banned is not None:
        masked[:, banned] = float("-inf")
    n_examples = masked.shape[0]
    group = min(intersection_size, n_examples)
    n_allowed = int(allowed.sum()) - (1 if banned is not None and bool(allowed[banned]) else 0)
    k = top_k
    while True:
        kk = min(k, max(n_allowed, 1))
        tops = [set(row.tolist()) for row in masked.topk(kk, dim=-1).indices]
        union: set[int] = set()
        for _ in range(n_intersections):
            members = rng.sample(range(n_examples), group)
            union |= set.intersection(*(tops[m] for m in members))
        union = {t for t in union if bool(allowed[t]) and t != banned}
        if len(union) >= min_candidates or kk >= n_allowed:
            break
        k += top_k_growth
    union.add(current)
    return sorted(union)
