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
from greater.evaluate import ExampleRecord

#: Version of the JSON layout; 2 added status, provenance, strict accuracies, initial-prompt
#: accuracies, test records, per-step cost, warnings and the resume section.
SCHEMA_VERSION = 2
STATUSES = ("partial", "done")


class SchemaError(ValueError):
    """A result file this version cannot read (newer schema, or not a result at all)."""


@dataclass
class StepRecord:
    """One optimisation step.

    ``details`` holds what is specific to a method (GReaTer: position, candidates, chosen token;
    APO: gradients and parse failures; ...), always JSON-serialisable. ``train_accuracy`` is
    always that of exactly ``prompt``, on the run's training examples (None: not measured).
    ``cost`` is what the step cost (filled in by the run lifecycle).
    """

    step: int
    prompt: str
    loss: float | None = None
    train_accuracy: float | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    cost: CostCounters | None = None


@dataclass
class PromptScore:
    """A prompt kept as a contender for the final choice, with what it scored where."""

    prompt: str
    train_accuracy: float | None = None
    dev_accuracy: float | None = None
    step: int | None = None


@dataclass
class OptimizationResult:
    """What an optimiser returns: the chosen prompt, how it scores, how it got there, its cost.

    Accuracies: ``*_accuracy`` is the flexible one (the answer after the extractor, else an
    answer stated in the reasoning: lm-evaluation-harness's "flexible-extract");
    ``*_accuracy_strict`` reads only what follows the extractor ("strict-match").
    ``initial_*`` are the initial prompt's, so a run that improved nothing shows it.
    ``status`` is "partial" in a checkpoint written between steps (``resume`` then holds what
    the run lifecycle needs to continue it) and "done" once the final choice is made.
    ``provenance`` says what produced the result (see :func:`greater.provenance.provenance`).
    ``warnings`` says where a method could do no work (all proposals unparsed, ...).
    """

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
    dev_accuracy_strict: float | None = None
    test_accuracy_strict: float | None = None
    initial_dev_accuracy: float | None = None
    initial_test_accuracy: float | None = None
    test_records: list[ExampleRecord] = field(default_factory=list)
    status: str = "done"
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    resume: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def partial(self) -> bool:
        return self.status == "partial"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimizationResult":
        if not isinstance(data, dict) or "method" not in data or "history" not in data:
            raise SchemaError("not an optimisation result (no 'method' or 'history')")
        version = data.get("schema_version", 1)
        if version > SCHEMA_VERSION:
            raise SchemaError(f"result written by a newer greater (schema {version}; this "
                              f"version reads up to {SCHEMA_VERSION}): upgrade greater")
        data = dict(data)
        data["history"] = [StepRecord(**{**h, "cost": CostCounters(**h["cost"])
                                         if h.get("cost") else None}) for h in data["history"]]
        data["contenders"] = [PromptScore(**c) for c in data["contenders"]]
        data["cost"] = CostCounters(**data["cost"])
        data["test_records"] = [ExampleRecord(**r) for r in data.get("test_records", [])]
        data["schema_version"] = SCHEMA_VERSION
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON, atomically (temp file in the same folder, then rename)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OptimizationResult":
        return cls.from_dict(read_json(path))


def read_json(path: str | os.PathLike) -> Any:
    """Parse the JSON file at ``path``; a clear :class:`SchemaError` if it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
                          "was it truncated?") from None


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
