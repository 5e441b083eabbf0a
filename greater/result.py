"""The result contract shared by GReaTer and every baseline.

Every optimiser returns an :class:`OptimizationResult`, so runs of different methods can be
stored, compared and reported by the same code. JSON round-trips exactly (``to_dict`` /
``from_dict``); ``save`` writes atomically so an interrupted run never leaves a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from greater.cost import CostCounters

SCHEMA_VERSION = 1


@dataclass
class StepRecord:
    """One optimisation step.

    ``details`` holds what is specific to a method (GReaTer: position, candidates, chosen token;
    APO: gradients and parse failures; ...), always JSON-serialisable.
    """

    step: int
    prompt: str
    loss: float | None = None
    train_accuracy: float | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptScore:
    """A prompt kept as a contender for the final choice, with what it scored where."""

    prompt: str
    train_accuracy: float | None = None
    dev_accuracy: float | None = None
    step: int | None = None


@dataclass
class OptimizationResult:
    """What an optimiser returns: the chosen prompt, how it scores, how it got there, its cost."""

    method: str
    model: str
    task: str
    initial_prompt: str
    best_prompt: str
    dev_accuracy: float | None
    test_accuracy: float | None
    history: list[StepRecord]
    contenders: list[PromptScore]
    cost: CostCounters
    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimizationResult":
        data = dict(data)
        data["history"] = [StepRecord(**h) for h in data["history"]]
        data["contenders"] = [PromptScore(**c) for c in data["contenders"]]
        data["cost"] = CostCounters(**data["cost"])
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON, atomically (temp file in the same folder, then rename)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OptimizationResult":
        return cls.from_dict(json.loads(Path(path).read_text()))


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` without ever leaving a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
