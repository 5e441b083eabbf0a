"""One place that turns a seed into deterministic randomness."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> random.Random:
    """Seed torch's global generator and return a private ``random.Random`` for the caller.

    Optimisers draw all their sampling (subsets, candidate swaps) from the returned generator,
    so a run is a function of its seed; seeding torch as well covers anything sampled there.
    Seed 0 is a seed like any other.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    torch.manual_seed(seed)
    return random.Random(seed)
