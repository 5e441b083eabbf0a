"""Honest statistics for accuracies: bootstrap intervals over examples and seeds, and paired
tests of two methods on the same test examples.

An accuracy here is an average over *strata* (tasks: the BBH average weighs each task
equally; a single task is one stratum). Each stratum is a 0/1 array of shape
``(n_seeds, n_examples)``: whether each seed's chosen prompt got each test example right; the
seeds of a stratum share the same examples (the harness evaluates the first ``n_test`` of the
test split). The point estimate is the mean over strata of the stratum's mean.

The bootstrap resamples, within each stratum independently, the examples and (when there are
several) the seeds, with replacement, and takes percentile intervals. A paired bootstrap draws
the *same* resampled examples and seeds for both methods, so it measures the difference on the
same test examples. McNemar's exact test counts the discordant pairs (one method right, the
other wrong) over every stratum, seed and example. Every random draw comes from a generator
seeded by :func:`stable_seed` of what is being estimated, so a report is reproducible and
adding a method does not move another's interval.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Bootstrap replicates behind every interval and paired p-value.
N_BOOTSTRAP = 2000
#: Replicates drawn at once (memory: methods x chunk x seeds x examples floats).
_CHUNK = 250
#: Two-sided level of every interval (95%) and test.
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A point estimate with its ``1 - ALPHA`` percentile bootstrap interval (fractions)."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest:
    """Method A against method B on the same examples.

    Attributes:
        diff: A's accuracy minus B's, with its paired bootstrap interval.
        p_bootstrap: two-sided paired bootstrap p-value of "no difference".
        a_only, b_only: discordant pairs (A right and B wrong; B right and A wrong).
        n_pairs: (seed, example) pairs compared.
        p_mcnemar: McNemar's exact two-sided p-value on the discordant pairs.
    """

    diff: Interval
    p_bootstrap: float
    a_only: int
    b_only: int
    n_pairs: int
    p_mcnemar: float

    def verdict(self, alpha: float = ALPHA) -> str:
        """``win`` / ``loss`` when McNemar rejects at ``alpha`` (by the sign of the
        difference), else ``tie``."""
        if self.p_mcnemar < alpha and self.diff.estimate != 0:
            return "win" if self.diff.estimate > 0 else "loss"
        return "tie"


def stable_seed(*parts: object) -> int:
    """A generator seed from what is estimated (stable across runs and Python processes)."""
    return zlib.crc32("|".join(map(str, parts)).encode("utf-8"))


def point_estimate(strata: Sequence[np.ndarray]) -> float:
    """Mean over strata of each ``(n_seeds, n_examples)`` stratum's mean."""
    return float(np.mean([np.asarray(s, dtype=float).mean() for s in strata]))


def _replicates(strata: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the stratified mean, shape ``(n_boot, m)``, for strata of shape
    ``(m, n_seeds, n_examples)`` (``m`` methods resampled together)."""
    total = None
    for stratum in strata:
        values = np.asarray(stratum, dtype=np.float64)
        _, s, n = values.shape
        seeds = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), int)
        examples = rng.integers(0, n, size=(n_boot, n))
        means = np.empty((n_boot, values.shape[0]))
        for start in range(0, n_boot, _CHUNK):  # bounded memory on large test sets
            part = slice(start, start + _CHUNK)
            # picked[m, b, i, j] = values[m, seeds[b, i], examples[b, j]]
            picked = values[:, seeds[part, :, None], examples[part, None, :]]
            means[part] = picked.mean(axis=(2, 3)).T
        total = means if total is None else total + means
    return total / len(strata)


def _percentiles(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_interval(strata: Sequence[np.ndarray], *, seed: int, n_boot: int = N_BOOTSTRAP,
                       alpha: float = ALPHA) -> Interval:
    """Point estimate and percentile interval of a stratified accuracy.

    Args:
        strata: one 0/1 array of shape ``(n_seeds, n_examples)`` per task.
        seed: the generator seed (use :func:`stable_seed`).
    """
    if not strata:
        raise ValueError("no strata to estimate from")
    reps = _replicates([np.asarray(s)[None] for s in strata], n_boot,
                       np.random.default_rng(seed))[:, 0]
    return Interval(point_estimate(strata), *_percentiles(reps, alpha))


def paired_test(strata_a: Sequence[np.ndarray], strata_b: Sequence[np.ndarray], *, seed: int,
                n_boot: int = N_BOOTSTRAP, alpha: float = ALPHA) -> PairedTest:
    """Paired bootstrap and McNemar's exact test of A against B on the same examples.

    Args:
        strata_a, strata_b: per task, aligned 0/1 arrays of the same shape
            ``(n_seeds, n_examples)`` (row i, column j: the same seed and test example).
        seed: the generator seed (use :func:`stable_seed`).

    Raises:
        ValueError: strata that are not aligned.
    """
    if len(strata_a) != len(strata_b) or not strata_a:
        raise ValueError("paired strata must be non-empty and as many for both methods")
    pairs = []
    for a, b in zip(strata_a, strata_b):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"paired strata of different shapes {a.shape} and {b.shape}")
        pairs.append(np.stack([a, b]))
    reps = _replicates(pairs, n_boot, np.random.default_rng(seed))
    diffs = reps[:, 0] - reps[:, 1]
    estimate = point_estimate(strata_a) - point_estimate(strata_b)
    p_boot = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    a_only = int(sum(((p[0] == 1) & (p[1] == 0)).sum() for p in pairs))
    b_only = int(sum(((p[0] == 0) & (p[1] == 1)).sum() for p in pairs))
    return PairedTest(diff=Interval(estimate, *_percentiles(diffs, alpha)), p_bootstrap=p_boot,
                      a_only=a_only, b_only=b_only, n_pairs=int(sum(p[0].size for p in pairs)),
                      p_mcnemar=mcnemar_exact(a_only, b_only))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """McNemar's exact two-sided p-value: a binomial(n = a_only + b_only, 1/2) test."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2 ** n)
