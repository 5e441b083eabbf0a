"""Cost accounting shared by every optimiser: one meter, the same counters for all methods.

A :class:`CostMeter` is attached to each :class:`~greater.lm.LM` (and to each optimiser-LLM
engine). Every forward pass, backward pass, generated token and LLM call made through them is
counted here, and ``with meter.phase("reasoning"):`` attributes wall time to a named phase, so
compute-matched comparisons across methods need no per-method bookkeeping.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator


@dataclass
class CostCounters:
    """A snapshot of accumulated cost.

    ``forward_tokens`` / ``backward_tokens`` count token positions passed through the model
    (batch padding included, since the hardware pays for it); ``llm_calls`` counts requests to a
    chat engine (one per prompt sent); ``phase_seconds`` is wall time per named phase.
    """

    generated_tokens: int = 0
    forward_passes: int = 0
    forward_tokens: int = 0
    backward_passes: int = 0
    backward_tokens: int = 0
    llm_calls: int = 0
    wall_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __sub__(self, other: "CostCounters") -> "CostCounters":
        phases = {
            k: self.phase_seconds.get(k, 0.0) - other.phase_seconds.get(k, 0.0)
            for k in self.phase_seconds
        }
        return CostCounters(
            generated_tokens=self.generated_tokens - other.generated_tokens,
            forward_passes=self.forward_passes - other.forward_passes,
            forward_tokens=self.forward_tokens - other.forward_tokens,
            backward_passes=self.backward_passes - other.backward_passes,
            backward_tokens=self.backward_tokens - other.backward_tokens,
            llm_calls=self.llm_calls - other.llm_calls,
            wall_seconds=self.wall_seconds - other.wall_seconds,
            phase_seconds={k: v for k, v in phases.items() if v > 0},
        )

    def __add__(self, other: "CostCounters") -> "CostCounters":
        phases = dict(self.phase_seconds)
        for k, v in other.phase_seconds.items():
            phases[k] = phases.get(k, 0.0) + v
        return CostCounters(
            generated_tokens=self.generated_tokens + other.generated_tokens,
            forward_passes=self.forward_passes + other.forward_passes,
            forward_tokens=self.forward_tokens + other.forward_tokens,
            backward_passes=self.backward_passes + other.backward_passes,
            backward_tokens=self.backward_tokens + other.backward_tokens,
            llm_calls=self.llm_calls + other.llm_calls,
            wall_seconds=self.wall_seconds + other.wall_seconds,
            phase_seconds=phases,
        )


class CostMeter:
    """Mutable accumulator behind :class:`CostCounters`; wall time runs from construction."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.generated_tokens = 0
        self.forward_passes = 0
        self.forward_tokens = 0
        self.backward_passes = 0
        self.backward_tokens = 0
        self.llm_calls = 0
        self._phases: dict[str, float] = defaultdict(float)
        self._active: list[str] = []

    def add_forward(self, tokens: int, passes: int = 1) -> None:
        self.forward_passes += passes
        self.forward_tokens += tokens

    def add_backward(self, tokens: int, passes: int = 1) -> None:
        self.backward_passes += passes
        self.backward_tokens += tokens

    def add_generated(self, tokens: int) -> None:
        self.generated_tokens += tokens

    def add_llm_calls(self, calls: int = 1) -> None:
        self.llm_calls += calls

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the wall time of the block to ``name``.

        Nested phases are charged only to the outermost one, so the per-phase times add up to
        at most the total wall time.
        """
        if self._active:
            yield
            return
        self._active.append(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._phases[name] += time.perf_counter() - t0
            self._active.pop()

    def snapshot(self) -> CostCounters:
        return CostCounters(
            generated_tokens=self.generated_tokens,
            forward_passes=self.forward_passes,
            forward_tokens=self.forward_tokens,
            backward_passes=self.backward_passes,
            backward_tokens=self.backward_tokens,
            llm_calls=self.llm_calls,
            wall_seconds=time.perf_counter() - self._start,
            phase_seconds=dict(self._phases),
        )
