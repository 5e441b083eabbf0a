"""The report's tables, computed from :class:`~reports.data.ReportData` (accuracies in %).

Every number comes from stored rows: a cell's accuracy is the mean of its per-example test
records (which is the ``test_accuracy`` the store holds for it), a method's accuracy on a task
the mean over its seeds, and the BBH average the mean over the BBH tasks it ran (each task
weighs the same). Intervals and paired tests are those of :mod:`reports.stats`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from reports.data import COST_MEASURES, ReportData
from reports.paper import PaperNumbers
from reports.stats import Interval, PairedTest, bootstrap_interval, paired_test, stable_seed

logger = logging.getLogger(__name__)

#: The method every paired test puts against the best baseline.
FOCUS_METHOD = "greater"
#: Accuracy readings: the column of the store, and how the page names it.
READINGS = {"flexible": "correct", "strict": "strict_correct"}
COST_LABELS = {"generated_tokens": "generated tokens", "fwd_bwd_tokens": "fwd+bwd token positions",
               "llm_calls": "LLM calls", "wall_seconds": "wall seconds"}


@dataclass(frozen=True)
class TableCell:
    """One cell of a rendered table: its text, a CSS class (``best``, ``win``, ``loss``,
    ``na``, ``label``) and a tooltip."""

    text: str
    cls: str = ""
    title: str = ""


@dataclass
class Table:
    """A table as both templates render it."""

    id: str
    caption: str
    header: list[str]
    rows: list[list[TableCell]]
    note: str = ""
    #: Optional first header row: ``(label, columns spanned)`` pairs covering ``header``.
    groups: list[tuple[str, int]] = field(default_factory=list)

    def flat_header(self) -> list[str]:
        """``header`` with each group's label prefixed (for Markdown, which has one row)."""
        if not self.groups:
            return list(self.header)
        labels = [label for label, span in self.groups for _ in range(span)]
        return [f"{g} {h}".strip() for g, h in zip(labels, self.header)]


@dataclass(frozen=True)
class Column:
    """A comparison column: one task, or an average over tasks (the BBH average)."""

    name: str
    tasks: tuple[str, ...]


@dataclass
class Scores:
    """Per-example 0/1 results of the finished cells of one grid and model, by method and task:
    ``{(method, task): {seed: pd.Series(correct, index=example input)}}`` per reading."""

    by_reading: dict[str, dict[tuple[str, str], dict[int, pd.Series]]] = field(default_factory=dict)

    def methods(self) -> list[str]:
        return sorted({m for m, _ in next(iter(self.by_reading.values()), {})})

    def has(self, method: str, tasks: Iterable[str]) -> bool:
        runs = self.by_reading["flexible"]
        return all((method, t) in runs and runs[(method, t)] for t in tasks)

    def strata(self, method: str, tasks: Sequence[str], reading: str) -> list[np.ndarray]:
        """One ``(n_seeds, n_examples)`` array per task (examples every seed has)."""
        out = []
        for task in tasks:
            seeds = self.by_reading[reading][(method, task)]
            common = _common_index([seeds[s] for s in sorted(seeds)])
            out.append(np.stack([seeds[s].loc[common].to_numpy() for s in sorted(seeds)]))
        return out

    def paired_strata(self, a: str, b: str, tasks: Sequence[str],
                      reading: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Aligned strata of ``a`` and ``b``: the seeds both ran, the examples all of them
        scored (matched by the example's input text, so the pairs are the same examples)."""
        out_a, out_b = [], []
        for task in tasks:
            runs_a = self.by_reading[reading][(a, task)]
            runs_b = self.by_reading[reading][(b, task)]
            seeds = sorted(set(runs_a) & set(runs_b))
            if not seeds:
                raise ValueError(f"{a} and {b} share no seed on {task}")
            common = _common_index([runs_a[s] for s in seeds] + [runs_b[s] for s in seeds])
            out_a.append(np.stack([runs_a[s].loc[common].to_numpy() for s in seeds]))
            out_b.append(np.stack([runs_b[s].loc[common].to_numpy() for s in seeds]))
        return out_a, out_b


def _common_index(series: Sequence[pd.Series]) -> list[str]:
    """Inputs present in every series, in the first one's order."""
    shared = set(series[0].index)
    for s in series[1:]:
        shared &= set(s.index)
    return [i for i in series[0].index if i in shared]


def scores_for(data: ReportData, outcomes: pd.DataFrame) -> Scores:
    """The per-example results of the cells in ``outcomes`` (one grid, one model)."""
    scores = Scores({reading: {} for reading in READINGS})
    records = data.records[data.records["key"].isin(set(outcomes["key"]))]
    by_key = {key: frame.drop_duplicates("input").set_index("input")
              for key, frame in records.groupby("key", sort=True)}
    for row in outcomes.drop_duplicates("key").itertuples():
        if row.key not in by_key:
            continue
        for reading, column in READINGS.items():
            scores.by_reading[reading].setdefault((row.method, row.task), {})[int(row.seed)] = \
                by_key[row.key][column]
    return scores


# ---------------------------------------------------------------------------- formatting
def pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{100 * value:.1f}"


def interval_text(iv: Interval | None) -> str:
    """``62.5 [40.0, 85.0]`` (percent), or an en dash when there is nothing to show."""
    if iv is None:
        return "–"
    return f"{pct(iv.estimate)} [{pct(iv.low)}, {pct(iv.high)}]"


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def slug(*parts: str) -> str:
    """An HTML id / file stem from ``parts`` (lower case, ``[a-z0-9-]``)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def model_label(model: str, paper: PaperNumbers) -> str:
    return paper.model_name(model)


def task_label(task: str) -> str:
    return {"gsm8k": "GSM8K", "folio": "FOLIO"}.get(task, task.removeprefix("bbh/"))


# ---------------------------------------------------------------------------- comparison
def comparison_columns(tasks: Iterable[str]) -> tuple[list[Column], list[Column]]:
    """(summary columns: BBH average, GSM8K, FOLIO as run; detail columns: every task)."""
    order = {"gsm8k": 1, "folio": 2}  # the paper's order: BBH, GSM8K, FOLIO, then the rest
    tasks = sorted(set(tasks), key=lambda t: (0 if t.startswith("bbh/") else order.get(t, 3), t))
    bbh = tuple(t for t in tasks if t.startswith("bbh/"))
    summary = []
    if bbh:
        summary.append(Column(f"BBH avg ({len(bbh)} task{'s' if len(bbh) > 1 else ''})", bbh))
    summary += [Column(task_label(t), (t,)) for t in tasks if not t.startswith("bbh/")]
    detail = [Column(task_label(t), (t,)) for t in tasks]
    return summary, detail


def _paper_key(column: Column) -> str | None:
    if all(t.startswith("bbh/") for t in column.tasks):
        return "bbh"
    return column.tasks[0] if column.tasks[0] in ("gsm8k", "folio") else None


@dataclass
class ComparisonSection:
    """The comparison of one grid on one model."""

    grid: str
    model: str
    model_label: str
    is_paper_model: bool
    summary: Table
    detail: dict[str, Table]
    paired: Table | None
    intervals: dict[tuple[str, str, str], Interval]  # (method, column, reading) -> interval
    tests: dict[tuple[str, str], tuple[str, PairedTest]]  # (column, reading) -> (baseline, test)


def comparison_section(data: ReportData, grid: str, model: str,
                       paper: PaperNumbers) -> ComparisonSection:
    """Tables of one comparison grid on one model: summary (BBH average, GSM8K, FOLIO; both
    readings; paper beside), per-task detail, and GReaTer against the best baseline."""
    outcomes = data.outcomes[(data.outcomes["grid"] == grid) & (data.outcomes["model"] == model)
                             & (data.outcomes["kind"] == "optimize")]
    scores = scores_for(data, outcomes)
    methods = scores.methods()
    summary_cols, detail_cols = comparison_columns(outcomes["task"])
    columns = summary_cols + [c for c in detail_cols if c not in summary_cols]
    intervals: dict[tuple[str, str, str], Interval] = {}
    for method in methods:
        for col in columns:
            if not scores.has(method, col.tasks):
                continue
            for reading in READINGS:
                intervals[(method, col.name, reading)] = bootstrap_interval(
                    scores.strata(method, col.tasks, reading),
                    seed=stable_seed(grid, model, method, col.name, reading))
    tests = _paired_tests(scores, methods, columns, grid, model, intervals)
    paper_model = model in paper.comparison
    mid = slug("comparison", grid, model)
    summary = _summary_table(mid, grid, model, methods, summary_cols, intervals, paper,
                             paper_model)
    detail = {reading: _detail_table(f"{mid}-{reading}", reading, methods, detail_cols,
                                     intervals) for reading in READINGS}
    paired = _paired_table(f"paired-{slug(grid, model)}", columns, tests, intervals) \
        if tests else None
    return ComparisonSection(grid, model, model_label(model, paper), paper_model, summary,
                             detail, paired, intervals, tests)


def _best(methods: Sequence[str], col: str, reading: str,
          intervals: dict[tuple[str, str, str], Interval]) -> set[str]:
    values = {m: intervals[(m, col, reading)].estimate for m in methods
              if (m, col, reading) in intervals}
    top = max(values.values(), default=None)
    return {m for m, v in values.items() if v == top}


def _summary_table(table_id: str, grid: str, model: str, methods: Sequence[str],
                   columns: Sequence[Column], intervals, paper: PaperNumbers,
                   paper_model: bool) -> Table:
    if paper_model:
        paper_head = f"paper ({paper.model_name(model)})"
        paper_note = f"Paper: reported for this model ({paper.source})."
    else:
        names = " / ".join(paper.models[m] for m in sorted(paper.comparison))
        paper_head = f"paper: {names} †"
        paper_note = (f"† The paper's numbers for its own models ({names}); this grid ran "
                      f"{model}, a stand-in that is not one of the paper's models: compare the "
                      f"methods with each other here, not with these numbers. "
                      f"Source: {paper.source}.")
    header = ["method"]
    for col in columns:
        header += ["flexible", "strict", paper_head]
    rows = []
    for method in methods:
        row = [TableCell(method, "label")]
        for col in columns:
            for reading in READINGS:
                iv = intervals.get((method, col.name, reading))
                best = method in _best(methods, col.name, reading, intervals)
                row.append(TableCell(interval_text(iv), ("best" if best else "") if iv else "na",
                                     f"{method}, {col.name}, {reading} accuracy % [95% CI]"))
            row.append(_paper_cell(paper, model, method, col, paper_model))
        rows.append(row)
    caption = (f"Test accuracy (%) on {model} in grid {grid}, with 95% bootstrap intervals over "
               "test examples (and seeds where there are several); best per column in bold.")
    return Table(table_id, caption, header, rows, paper_note,
                 groups=[("", 1)] + [(col.name, 3) for col in columns])


def _paper_cell(paper: PaperNumbers, model: str, method: str, col: Column,
                paper_model: bool) -> TableCell:
    key = _paper_key(col)
    if key is None:
        return TableCell("–", "na paper")
    models = [model] if paper_model else sorted(paper.comparison)
    values = [paper.comparison[m].get(method, {}).get(key) for m in models]
    if all(v is None for v in values):
        return TableCell("–", "na paper")
    return TableCell(" / ".join("–" if v is None else f"{v:.1f}" for v in values), "paper",
                     "reported in the paper" + ("" if paper_model else " for its models"))


def _detail_table(table_id: str, reading: str, methods, columns: Sequence[Column],
                  intervals) -> Table:
    rows = []
    for method in methods:
        row = [TableCell(method, "label")]
        for col in columns:
            iv = intervals.get((method, col.name, reading))
            best = method in _best(methods, col.name, reading, intervals)
            row.append(TableCell(interval_text(iv), ("best" if best else "") if iv else "na"))
        rows.append(row)
    return Table(table_id, f"Per task, {reading} accuracy (%) [95% CI]",
                 ["method"] + [c.name for c in columns], rows)


def _paired_tests(scores: Scores, methods, columns, grid, model, intervals):
    tests = {}
    if FOCUS_METHOD not in methods:
        return tests
    baselines = [m for m in methods if m != FOCUS_METHOD]
    for col in columns:
        for reading in READINGS:
            if (FOCUS_METHOD, col.name, reading) not in intervals:
                continue
            best = sorted(_best(baselines, col.name, reading, intervals))
            if not best:
                continue
            a, b = scores.paired_strata(FOCUS_METHOD, best[0], col.tasks, reading)
            tests[(col.name, reading)] = (best[0], paired_test(
                a, b, seed=stable_seed(grid, model, "paired", col.name, reading)))
    return tests


def _paired_table(table_id: str, columns, tests, intervals) -> Table:
    rows = []
    for col in columns:
        for reading in READINGS:
            if (col.name, reading) not in tests:
                continue
            baseline, test = tests[(col.name, reading)]
            verdict = test.verdict()
            rows.append([
                TableCell(col.name, "label"), TableCell(reading),
                TableCell(interval_text(intervals[(FOCUS_METHOD, col.name, reading)])),
                TableCell(f"{baseline} {interval_text(intervals[(baseline, col.name, reading)])}"),
                TableCell(f"{100 * test.diff.estimate:+.1f} [{100 * test.diff.low:+.1f}, "
                          f"{100 * test.diff.high:+.1f}]"),
                TableCell(p_text(test.p_bootstrap)),
                TableCell(f"{test.a_only} / {test.b_only} of {test.n_pairs}"),
                TableCell(p_text(test.p_mcnemar)),
                TableCell(verdict, verdict)])
    return Table(table_id, f"{FOCUS_METHOD} against the best baseline of each column, on the "
                 "same test examples (paired by seed and example input)",
                 ["column", "reading", f"{FOCUS_METHOD} %", "best baseline %", "Δ points [95% CI]",
                  "paired bootstrap p", f"discordant: only {FOCUS_METHOD} / only baseline",
                  "McNemar exact p", "verdict"], rows,
                 "Verdict: win or loss when McNemar's exact test rejects equal accuracy at 0.05, "
                 "else tie. The best baseline is the one with the highest point estimate in the "
                 "column (ties: first by name).")


# ---------------------------------------------------------------------------- ablation
@dataclass
class AblationSection:
    grid: str
    model: str
    table: Table
    points: pd.DataFrame  # axis, value, task ("mean" for the average), estimate, low, high


def _axis_order(values: Iterable) -> list:
    return sorted(set(values), key=lambda v: (isinstance(v, bool), v))


def ablation_section(data: ReportData, grid: str, model: str) -> AblationSection:
    """Accuracy against each swept field (top_k, perplexity_weight, use_reasoning)."""
    outcomes = data.outcomes[(data.outcomes["grid"] == grid) & (data.outcomes["model"] == model)]
    tasks = sorted(outcomes["task"].unique())
    rows, points = [], []
    for axis in sorted(outcomes["axis"].dropna().unique()):
        sub = outcomes[outcomes["axis"] == axis]
        for value in _axis_order(sub["value"]):
            variant = sub[sub["value"] == value]
            scores = scores_for(data, variant.assign(method="greater"))
            row = [TableCell(axis, "label"), TableCell(json.dumps(value))]
            for task in tasks + ["mean"]:
                run = tasks if task == "mean" else [task]
                iv = None
                if scores.has("greater", run):
                    iv = bootstrap_interval(scores.strata("greater", run, "flexible"),
                                            seed=stable_seed(grid, model, axis, value, task))
                    points.append({"axis": axis, "value": value, "task": task,
                                   "estimate": iv.estimate, "low": iv.low, "high": iv.high})
                row.append(TableCell(interval_text(iv), "" if iv else "na"))
            rows.append(row)
    table = Table(slug("ablation", grid, model),
                  f"GReaTer ablation on {model} (grid {grid}): flexible test accuracy (%) [95% CI] "
                  "as one field varies from the base config",
                  ["field", "value"] + [task_label(t) for t in tasks] + ["mean over tasks"], rows)
    return AblationSection(grid, model, table, pd.DataFrame(
        points, columns=["axis", "value", "task", "estimate", "low", "high"]))


# ---------------------------------------------------------------------------- transfer
@dataclass
class TransferSection:
    grid: str
    table: Table
    paper_table: Table
    matrix: pd.DataFrame  # method, source, target, estimate, low, high


def transfer_section(data: ReportData, grid: str, paper: PaperNumbers) -> TransferSection:
    """Prompts optimised on a source model, scored on each target (the diagonal is the
    source cell's own test accuracy), averaged over the grid's tasks."""
    outcomes = data.grid_outcomes(grid)
    sources = outcomes[outcomes["role"] == "source"].assign(source=lambda f: f["model"])
    targets = outcomes[outcomes["role"] == "target"].assign(source=lambda f: f["source_model"])
    both = pd.concat([sources, targets], ignore_index=True)
    tasks = sorted(both["task"].unique())
    rows, cells = [], []
    for (method, source, target), group in both.groupby(["method", "source", "model"], sort=True):
        scores = scores_for(data, group)
        row = [TableCell(method, "label"), TableCell(source), TableCell(target)]
        iv = None
        if scores.has(method, tasks):
            iv = bootstrap_interval(scores.strata(method, tasks, "flexible"),
                                    seed=stable_seed(grid, method, source, target))
            cells.append({"method": method, "source": source, "target": target,
                          "estimate": iv.estimate, "low": iv.low, "high": iv.high})
        row.append(TableCell(interval_text(iv), "" if iv else "na"))
        for task in tasks:
            sub = group[group["task"] == task]
            row.append(TableCell(pct(sub["test_accuracy"].mean()) if len(sub) else "–"))
        reported = paper.transfer.get((source, target), {}).get(method) if source != target \
            else None
        row.append(TableCell("–" if reported is None else f"{reported:.1f}",
                             "paper" if reported is not None else "na paper"))
        rows.append(row)
    table = Table(slug("transfer", grid), f"Transfer (grid {grid}): flexible test accuracy (%) "
                  f"of the prompt optimised on the source model, averaged over {len(tasks)} "
                  "tasks [95% CI], and per task; source = target is the source run itself",
                  ["method", "optimised on", "evaluated on", "average", *map(task_label, tasks),
                   "paper"], rows,
                  "The paper column is filled only for the paper's own model pairs.")
    paper_rows = []
    for (source, target), values in sorted(paper.transfer.items()):
        for method, value in sorted(values.items()):
            paper_rows.append([TableCell(method, "label"), TableCell(paper.model_name(source)),
                               TableCell(paper.model_name(target)), TableCell(f"{value:.1f}",
                                                                              "paper")])
    paper_table = Table(slug("transfer-paper", grid), "The paper's transfer results (average "
                        "accuracy % over its five transfer tasks)",
                        ["method", "optimised on", "evaluated on", "paper"], paper_rows,
                        f"Source: {paper.source}. apo-gpt4 is APO with GPT-4 as the optimiser.")
    return TransferSection(grid, table, paper_table, pd.DataFrame(
        cells, columns=["method", "source", "target", "estimate", "low", "high"]))


# ---------------------------------------------------------------------------- compute-matched
@dataclass
class ComputeSection:
    grid: str
    model: str
    table: Table
    points: pd.DataFrame  # method, accuracy, low, high, one column per cost measure, pareto_<m>


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """Whether each point is on the front: no other point costs no more and scores no less,
    with one of the two strictly better."""
    flags = []
    for i, (c, a) in enumerate(zip(cost, accuracy)):
        flags.append(not any((c2 <= c and a2 >= a and (c2 < c or a2 > a))
                             for j, (c2, a2) in enumerate(zip(cost, accuracy)) if j != i))
    return flags


def compute_section(data: ReportData, grid: str, model: str) -> ComputeSection:
    """Each method's accuracy over all the grid's tasks against its mean cost per cell."""
    outcomes = data.outcomes[(data.outcomes["grid"] == grid) & (data.outcomes["model"] == model)
                             & (data.outcomes["kind"] == "optimize")].drop_duplicates("key")
    scores = scores_for(data, outcomes)
    tasks = sorted(outcomes["task"].unique())
    points = []
    for method in scores.methods():
        if not scores.has(method, tasks):
            continue
        iv = bootstrap_interval(scores.strata(method, tasks, "flexible"),
                                seed=stable_seed(grid, model, method, "all tasks"))
        cost = outcomes[outcomes["method"] == method][list(COST_MEASURES)].astype(float).mean()
        points.append({"method": method, "accuracy": iv.estimate, "low": iv.low,
                       "high": iv.high, **cost.to_dict()})
    frame = pd.DataFrame(points, columns=["method", "accuracy", "low", "high", *COST_MEASURES])
    for measure in COST_MEASURES:
        frame[f"pareto_{measure}"] = pareto_front(frame[measure].tolist(),
                                                  frame["accuracy"].tolist())
    rows = []
    for p in frame.itertuples():
        fronts = [COST_LABELS[m] for m in COST_MEASURES if getattr(p, f"pareto_{m}")]
        rows.append([TableCell(p.method, "label"),
                     TableCell(interval_text(Interval(p.accuracy, p.low, p.high))),
                     TableCell(f"{p.generated_tokens:,.0f}"), TableCell(f"{p.fwd_bwd_tokens:,.0f}"),
                     TableCell(f"{p.llm_calls:,.0f}"), TableCell(f"{p.wall_seconds:,.1f}"),
                     TableCell(", ".join(fronts) or "–", "best" if fronts else "")])
    table = Table(slug("compute", grid, model),
                  f"Compute-matched comparison on {model} (grid {grid}): flexible accuracy (%) "
                  f"averaged over {len(tasks)} tasks [95% CI] against the mean cost of one cell "
                  "(everything the run metered: optimisation, prompt selection and test evaluation)",
                  ["method", "accuracy", "generated tokens", "fwd+bwd token positions",
                   "LLM calls", "wall seconds", "on the Pareto front of"], rows)
    return ComputeSection(grid, model, table, frame)


# ---------------------------------------------------------------------------- provenance
def provenance_tables(data: ReportData) -> list[Table]:
    """What produced the numbers: per model and grid, and the grids as the store holds them."""
    prov = data.provenance.merge(data.outcomes[["key", "grid"]].drop_duplicates(), on="key")
    rows = []
    for (grid, model), group in prov.groupby(["grid", "model"], sort=True):
        versions: dict[str, set[str]] = {}
        for text in group["versions"]:
            for name, version in sorted(json.loads(text or "{}").items()):
                versions.setdefault(name, set()).add(str(version))
        rows.append([TableCell(grid, "label"), TableCell(model), _joined(group["dtype"]),
                     _joined(group["device"]), _joined(group["preset"].fillna("none")),
                     TableCell("; ".join(f"{n} {', '.join(sorted(v))}"
                                         for n, v in sorted(versions.items()))),
                     _joined(group["git_commit"].fillna("unknown")),
                     _joined(group["chat_date"].fillna("–"))])
    runs = Table("provenance-runs", "Models, dtype, device, library versions and commit of the "
                 "finished cells", ["grid", "model", "dtype", "device", "preset", "versions",
                                    "commit", "chat date"], rows)
    digests = (data.outcomes[["grid", "task", "data_digest"]].drop_duplicates()
               .sort_values(["grid", "task", "data_digest"]))
    data_table = Table("provenance-data", "Data digests (sha256 of each task's examples as "
                       "loaded)", ["grid", "task", "data digest"],
                       [[TableCell(r.grid, "label"), TableCell(r.task),
                         TableCell(r.data_digest, "mono")] for r in digests.itertuples()])
    return [runs, data_table, grid_spec_table(data)]


def _joined(values: pd.Series) -> TableCell:
    return TableCell(", ".join(sorted({str(v) for v in values})))


def grid_spec_table(data: ReportData) -> Table:
    """Each grid as the store holds it: kind, methods, models, tasks, seeds, cell counts and
    the config fields every cell of a method shares."""
    rows = []
    for info in data.grids:
        cells = data.cells[data.cells["key"].isin(info.keys)]
        config_cols = [c for c in cells.columns if c.startswith("config.")]
        for (method, kind), group in cells.groupby(["method", "kind"], sort=True):
            shared = {c.removeprefix("config."): group[c].iloc[0] for c in config_cols
                      if group[c].notna().all() and group[c].astype(str).nunique() == 1}
            counts = group["status"].value_counts()
            rows.append([TableCell(info.name, "label"), TableCell(info.kind),
                         TableCell(method if kind == "optimize" else f"{method} ({kind})"),
                         TableCell(_joined(group["model"]).text, "small"),
                         TableCell(", ".join(sorted(group["task"].unique())), "small"),
                         _joined(group["seed"]),
                         TableCell(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))),
                         TableCell(", ".join(f"{k}={_value(v)}" for k, v in sorted(shared.items())),
                                   "mono small")])
    return Table("provenance-grids", "Grid specs as stored: what each grid ran, and the config "
                 "fields shared by all cells of a method (swept fields vary, so are left out; "
                 "evaluate rows are the transfer cells scoring a prompt on another model)",
                 ["grid", "kind", "method", "models", "tasks", "seeds", "cells", "config"], rows)


def _value(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def failed_table(data: ReportData) -> Table | None:
    """Cells that failed or never finished (they count in no table)."""
    if not len(data.failed):
        return None
    rows = [[TableCell(r.grid, "label"), TableCell(r.method), TableCell(r.model),
             TableCell(r.task), TableCell(str(r.seed)), TableCell(r.status, "loss"),
             TableCell(str(r.error or ""), "small")]
            for r in data.failed.sort_values(["grid", "method", "task", "seed"]).itertuples()]
    return Table("failed-cells", "Cells that failed or have not finished (left out of every "
                 "table above)", ["grid", "method", "model", "task", "seed", "status", "error"],
                 rows)
