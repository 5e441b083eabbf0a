"""Cells: a spec expanded into units of work, each keyed by a hash of its resolved config.

A comparison grid has one ``optimize`` cell per method x model x task x seed. An ablation has
one per swept value (one field varied at a time from the base config) x model x task x seed; a
base config reached by two sweeps is one cell with two labels. A transfer grid has the
``optimize`` cells of its source models plus one ``evaluate`` cell per pair: the source cell's
chosen prompt scored on the target model's test split.

The key hashes everything that determines the outcome: kind, method, model, dtype, task, seed,
every config field, the task data's digest and (``evaluate``) the source cell's key. Device and
batch-independent bookkeeping are left out, so the same cell run on another machine is found.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any, Iterable

from greater.store import CellRow
from greater.tasks import Task, load_task

from benchmarks.harness import registry
from benchmarks.harness.spec import GridSpec, SpecError, preset_for


@dataclass(frozen=True)
class Cell(CellRow):
    """One unit of work of a grid: the store's :class:`~greater.store.CellRow` (its identity)
    plus where it sits in the grid.

    For an ``evaluate`` cell, ``method`` and ``seed`` are the source cell's and ``config``
    holds the evaluation settings (``n_test``, ``max_new_tokens``, ``batch_size``).

    Attributes:
        labels: the cell's places in its grid (ablation axis and value; transfer role); an
            ablation's base config reached by two sweeps has two.
        preset: the preset the config was built from (recorded in the provenance; the config
            itself is what the key hashes).
    """

    labels: tuple[dict[str, Any], ...] = ({},)
    preset: str | None = None

    @property
    def title(self) -> str:
        """A short human name: ``greater smollm2-135m bbh/navigate seed 0``."""
        where = f"{self.model}" if self.kind == "optimize" else f"-> {self.model}"
        extra = " ".join(f"{lab['axis']}={lab['value']}" for lab in self.labels if "axis" in lab)
        return " ".join(p for p in (self.method, where, self.task, f"seed {self.seed}", extra) if p)

    def payload(self) -> dict[str, Any]:
        """What a worker needs to run the cell (JSON-able)."""
        return {"key": self.key, "kind": self.kind, "method": self.method, "model": self.model,
                "dtype": self.dtype, "task": self.task, "seed": self.seed,
                "config": dict(self.config), "source_key": self.source_key, "preset": self.preset}


def cell_key(kind: str, method: str, model: str, dtype: str, task: str, seed: int,
             config: dict[str, Any], data_digest: str, source_key: str | None = None) -> str:
    """sha256 hex of the canonical JSON of everything that determines a cell's outcome."""
    blob = json.dumps({"kind": kind, "method": method, "model": model, "dtype": dtype,
                       "task": task, "seed": seed, "config": config, "data_digest": data_digest,
                       "source_key": source_key}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _variants(spec: GridSpec) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(extra overrides, label)`` per variant of the base config."""
    if spec.kind != "ablation":
        return [({}, {})]
    return [({name: value}, {"axis": name, "value": value})
            for name, values in spec.sweep.items() for value in values]


def resolve_cells(spec: GridSpec, *, data_dir: str | os.PathLike | None = None,
                  tasks: dict[str, Task] | None = None) -> list[Cell]:
    """Expand ``spec`` into cells (optimisation cells first, then evaluation cells).

    Args:
        spec: a loaded spec.
        data_dir: where the task data lives (default ``$GREATER_DATA_DIR``).
        tasks: already loaded tasks by name (loaded here when missing).

    Raises:
        SpecError: a config that does not validate, naming the file, the cell and the reason.
    """
    tasks = dict(tasks or {})
    for name in spec.tasks:
        if name not in tasks:
            tasks[name] = load_task(name, data_dir=data_dir)
    cells: dict[str, Cell] = {}

    def add(cell: Cell) -> None:
        if cell.key in cells:  # the same config reached by two sweeps: one cell, both labels
            old = cells[cell.key]
            cells[cell.key] = replace(old, labels=old.labels + cell.labels)
        else:
            cells[cell.key] = cell

    sources: dict[tuple[str, str, str, int], list[Cell]] = {}
    for method in spec.methods:
        for model in spec.models:
            for task_name in spec.tasks:
                digest = tasks[task_name].data_digest
                for seed in spec.seeds:
                    for extra, label in _variants(spec):
                        config = _config(spec, method, model, task_name, seed, extra)
                        key = cell_key("optimize", method, model, spec.dtype, task_name, seed,
                                       config, digest)
                        if spec.kind == "transfer":
                            label = {"role": "source"}
                        cell = Cell(key=key, kind="optimize", method=method, model=model,
                                    dtype=spec.dtype, task=task_name, seed=seed, config=config,
                                    data_digest=digest, labels=(label,),
                                    preset=preset_for(spec, task_name))
                        add(cell)
                        sources.setdefault((method, model, task_name, seed), []).append(cell)
    for source_model, target_model in spec.pairs:
        for (method, model, task_name, seed), found in sources.items():
            if model != source_model:
                continue
            for src in found:
                config = {k: src.config[k] for k in ("n_test", "max_new_tokens", "batch_size")}
                key = cell_key("evaluate", method, target_model, spec.dtype, task_name, seed,
                               config, src.data_digest, src.key)
                add(Cell(key=key, kind="evaluate", method=method, model=target_model,
                         dtype=spec.dtype, task=task_name, seed=seed, config=config,
                         data_digest=src.data_digest, source_key=src.key,
                         labels=({"role": "target", "source_model": source_model},)))
    return list(cells.values())


def _config(spec: GridSpec, method: str, model: str, task: str, seed: int,
            extra: dict[str, Any]) -> dict[str, Any]:
    """The resolved config dict of one cell (defaults < preset < overrides < sweep < seed)."""
    names = registry.config_fields(method)
    overrides = {k: v for k, v in spec.defaults.items() if k in names}
    overrides.update(spec.overrides.get(method, {}))
    overrides.update(extra)
    overrides["seed"] = seed
    try:
        config = registry.build_config(method, preset_for(spec, task), overrides)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec.path}: cell {method} {model} {task} seed {seed}"
                        f"{' ' + str(extra) if extra else ''}: {exc}") from None
    return config.to_dict()


def filter_cells(cells: Iterable[Cell], only: str | None) -> list[Cell]:
    """Cells matching ``only``: comma-separated ``field=value`` terms (method, model, task,
    seed, kind), all of which must hold; ``None`` keeps every cell.

    Raises:
        ValueError: a term that is not ``field=value`` or names another field.
    """
    cells = list(cells)
    if not only:
        return cells
    allowed = ("method", "model", "task", "seed", "kind")
    terms = []
    for term in only.split(","):
        name, sep, value = term.strip().partition("=")
        if not sep or name not in allowed:
            raise ValueError(f"--only term {term!r} must be field=value with field one of "
                             f"{', '.join(allowed)}")
        terms.append((name, value))
    return [c for c in cells if all(str(getattr(c, n)) == v for n, v in terms)]
