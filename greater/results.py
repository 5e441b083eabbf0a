"""Read a results store into pandas, and export it (``greater results export``).

>>> import greater.results
>>> cells = greater.results.load("benchmarks/results/cpu-smoke.sqlite")   # doctest: +SKIP
>>> cells.pivot_table(index="task", columns="method", values="test_accuracy")  # doctest: +SKIP

:func:`load` gives one row per cell: its identity (key, kind, method, model, dtype, task, seed,
data digest, source cell), the grids holding it and its labels there, status and error, the
outcome (prompts, flexible and strict accuracies, the initial prompt's), the number of stored
steps, every cost counter, and each config field as a ``config.<field>`` column.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from greater.store import Store

EXPORT_FORMATS = ("csv", "jsonl", "parquet")
#: Tables :func:`load_table` reads as they are stored.
TABLES = ("cells", "steps", "records", "grid_cells", "provenance")

_CELL_COLUMNS = (
    "key", "kind", "method", "model", "dtype", "task", "seed", "data_digest", "source_key",
    "status", "error", "attempts", "started", "finished", "initial_prompt", "best_prompt",
    "dev_accuracy", "test_accuracy", "dev_accuracy_strict", "test_accuracy_strict",
    "initial_dev_accuracy", "initial_test_accuracy", "n_test", "config")
_COST_COLUMNS = ("generated_tokens", "forward_passes", "forward_tokens", "backward_passes",
                 "backward_tokens", "llm_calls", "wall_seconds")


def load(store: str | os.PathLike, *, grid: str | None = None) -> pd.DataFrame:
    """One row per cell of ``store`` (only ``grid``'s cells when given); see the module doc."""
    with Store(store, readonly=True) as db:
        sql = (f"SELECT {', '.join('c.' + c for c in _CELL_COLUMNS)}, "
               f"{', '.join('k.' + c for c in _COST_COLUMNS)}, "
               "(SELECT count(*) FROM steps s WHERE s.cell_key = c.key) AS n_steps "
               "FROM cells c LEFT JOIN cost k ON k.cell_key = c.key")
        params: tuple = ()
        if grid is not None:
            sql += " WHERE c.key IN (SELECT cell_key FROM grid_cells WHERE grid = ?)"
            params = (grid,)
        rows = [dict(r) for r in db.query(sql + " ORDER BY c.created, c.key", params)]
        members: dict[str, tuple[list[str], list[dict]]] = {}
        for r in db.query("SELECT grid, cell_key, label FROM grid_cells ORDER BY grid"):
            grids, labels = members.setdefault(r["cell_key"], ([], []))
            if r["grid"] not in grids:
                grids.append(r["grid"])
            label = json.loads(r["label"])
            if label and (grid is None or r["grid"] == grid):
                labels.append(label)
    for row in rows:
        config = json.loads(row.pop("config"))
        grids, labels = members.get(row["key"], ([], []))
        row["grids"] = ",".join(grids)
        row["labels"] = json.dumps(labels, sort_keys=True)
        row.update({f"config.{name}": value for name, value in sorted(config.items())})
    return pd.DataFrame(rows)


def load_table(store: str | os.PathLike, table: str) -> pd.DataFrame:
    """A stored table as it is (``cells`` here is :func:`load`'s one-row-per-cell view)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; valid tables: {', '.join(TABLES)}")
    if table == "cells":
        return load(store)
    with Store(store, readonly=True) as db:
        return pd.DataFrame([dict(r) for r in db.query(f"SELECT * FROM {table}")])


def export(store: str | os.PathLike, out: str | os.PathLike, fmt: str, *,
           table: str = "cells") -> Path:
    """Write ``table`` of ``store`` to ``out`` as csv, jsonl or parquet; returns ``out``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(EXPORT_FORMATS)}")
    frame = load_table(store, table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    elif fmt == "jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
