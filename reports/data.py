"""A results store as tidy frames for the report (read-only; never runs a model).

:func:`load_report_data` reads the store through :mod:`greater.results` and returns a
:class:`ReportData`:

* ``outcomes``: one row per (grid, finished cell, label): identity, the grid's kind, the
  label's ablation axis/value or transfer role, flexible and strict test accuracy, every cost
  counter and ``fwd_bwd_tokens`` (forward + backward token positions).
* ``records``: one row per test example of each finished cell: ``key``, ``idx``, ``input``,
  ``correct`` and ``strict_correct`` as 0/1 integers.
* ``steps``: one row per optimisation step: loss, train accuracy, the step's cost and the
  cumulative cost up to and including it (``cum_<counter>``).
* ``failed``: cells that failed or have not finished, with their error.
* ``provenance``: the provenance row of each finished cell.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from greater import results
from greater.store import Store, StoreError

logger = logging.getLogger(__name__)

GRID_KINDS = ("comparison", "ablation", "transfer")
#: Cost counters a report plots against (``fwd_bwd_tokens`` is derived).
COST_MEASURES = ("generated_tokens", "fwd_bwd_tokens", "llm_calls", "wall_seconds")
#: The columns of :func:`greater.results.load` a report reads (for an empty store).
_EMPTY_CELL_COLUMNS = ("key", "kind", "method", "model", "dtype", "task", "seed", "data_digest",
                       "source_key", "status", "error", "finished", "n_test", "test_accuracy",
                       "test_accuracy_strict", "generated_tokens", "forward_tokens",
                       "backward_tokens", "llm_calls", "wall_seconds")
_STEP_COST_FIELDS = ("generated_tokens", "forward_tokens", "backward_tokens", "llm_calls",
                     "wall_seconds")


@dataclass(frozen=True)
class GridInfo:
    """A grid held by the store: its name, its kind (from its cells' labels) and its cells."""

    name: str
    kind: str
    keys: tuple[str, ...]


@dataclass
class ReportData:
    """Everything a report shows, as frames (see the module docstring for their columns)."""

    store: Path
    grids: list[GridInfo]
    outcomes: pd.DataFrame
    records: pd.DataFrame
    steps: pd.DataFrame
    failed: pd.DataFrame
    provenance: pd.DataFrame
    cells: pd.DataFrame = field(repr=False)

    def grid_outcomes(self, grid: str) -> pd.DataFrame:
        return self.outcomes[self.outcomes["grid"] == grid]


def grid_kind(labels: list[dict]) -> str:
    """``ablation`` if any label names an axis, ``transfer`` if any names a role, else
    ``comparison`` (the harness labels cells this way; the store keeps no spec)."""
    if any("axis" in lab for lab in labels):
        return "ablation"
    if any("role" in lab for lab in labels):
        return "transfer"
    return "comparison"


def load_report_data(store: str | os.PathLike, grid: str | None = None) -> ReportData:
    """Read ``store`` (only ``grid`` when given) into a :class:`ReportData`.

    Raises:
        StoreError: the store cannot be read, or holds no grid named ``grid`` (the message
            lists the grids it holds).
    """
    store = Path(store)
    members = results.load_table(store, "grid_cells")
    names = sorted(members["grid"].unique()) if len(members) else []
    if grid is not None and grid not in names:
        from difflib import get_close_matches

        near = get_close_matches(grid, names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise StoreError(f"{store} holds no grid {grid!r}{hint} (grids: "
                         f"{', '.join(names) or 'none'})")
    wanted = [grid] if grid is not None else names
    members = members[members["grid"].isin(wanted)] if len(members) else members
    cells = results.load(store)
    if not len(cells):  # an empty store: no columns either
        cells = pd.DataFrame(columns=list(_EMPTY_CELL_COLUMNS))
    grids, label_rows = [], []
    for name in wanted:
        rows = members[members["grid"] == name]
        labels = [json.loads(text) for text in rows["label"]]
        grids.append(GridInfo(name, grid_kind(labels), tuple(sorted(set(rows["cell_key"])))))
        for key, label in zip(rows["cell_key"], labels):
            label_rows.append({"grid": name, "kind_of_grid": grids[-1].kind, "key": key,
                               "axis": label.get("axis"), "value": label.get("value"),
                               "role": label.get("role"),
                               "source_model": label.get("source_model")})
    labels = pd.DataFrame(label_rows, columns=["grid", "kind_of_grid", "key", "axis", "value",
                                               "role", "source_model"])
    done = cells[cells["status"] == "done"].copy()
    done["fwd_bwd_tokens"] = done["forward_tokens"].fillna(0) + done["backward_tokens"].fillna(0)
    outcomes = labels.merge(done, on="key", how="inner").sort_values(
        ["grid", "model", "method", "task", "seed", "key"], kind="stable").reset_index(drop=True)
    keys = set(outcomes["key"])
    failed = labels.merge(cells[cells["status"] != "done"], on="key", how="inner")
    failed = failed[["grid", "key", "method", "model", "task", "seed", "status", "error"]]
    return ReportData(store=store, grids=grids, outcomes=outcomes,
                      records=_records(store, keys), steps=_steps(store, keys), failed=failed,
                      provenance=_provenance(store, keys), cells=cells)


def _records(store: Path, keys: set[str]) -> pd.DataFrame:
    with Store(store, readonly=True) as db:
        rows = db.query("SELECT cell_key AS key, idx, input, correct, strict_correct FROM records "
                        "WHERE split='test' ORDER BY cell_key, idx")
    frame = pd.DataFrame([dict(r) for r in rows],
                         columns=["key", "idx", "input", "correct", "strict_correct"])
    frame = frame[frame["key"].isin(keys)].copy()
    for col in ("correct", "strict_correct"):
        frame[col] = frame[col].fillna(0).astype(int)
    return frame.reset_index(drop=True)


def _steps(store: Path, keys: set[str]) -> pd.DataFrame:
    steps = results.load_table(store, "steps")
    if not len(steps):
        return pd.DataFrame(columns=["key", "step", "loss", "train_accuracy"])
    steps = steps[steps["cell_key"].isin(keys)].rename(columns={"cell_key": "key"})
    steps = steps.sort_values(["key", "step"], kind="stable").reset_index(drop=True)
    costs = [json.loads(c) if isinstance(c, str) and c != "null" else {} for c in steps["cost"]]
    for name in _STEP_COST_FIELDS:
        steps[name] = [float((c or {}).get(name) or 0) for c in costs]
    steps["fwd_bwd_tokens"] = steps["forward_tokens"] + steps["backward_tokens"]
    for name in (*_STEP_COST_FIELDS, "fwd_bwd_tokens"):
        steps[f"cum_{name}"] = steps.groupby("key")[name].cumsum()
    return steps.drop(columns=["details", "cost", "prompt"])


def _provenance(store: Path, keys: set[str]) -> pd.DataFrame:
    prov = results.load_table(store, "provenance")
    if not len(prov):
        return pd.DataFrame(columns=["key", "model", "dtype", "device", "versions", "git_commit",
                                     "created", "data_digest", "preset", "chat_date", "full"])
    prov = prov[prov["cell_key"].isin(keys)].rename(columns={"cell_key": "key"})
    return prov.sort_values("key", kind="stable").reset_index(drop=True)
