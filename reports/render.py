"""Render a report: the store's tables and figures through jinja2 into ``index.html`` and
``report.md`` (templates in ``reports/templates/``).

>>> from reports.render import write_report
>>> write_report("benchmarks/results/cpu-smoke.sqlite", "out/cpu-smoke")  # doctest: +SKIP

The same store gives the same files but for the generation time stamp (one line in each
page, matched by :data:`TIMESTAMP`): intervals use fixed seeds, figures are byte-stable.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib

from greater.versions import library_versions
from reports import figures as figs
from reports import tables as tabs
from reports.data import ReportData, load_report_data
from reports.paper import PaperNumbers, paper_numbers

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
#: The only text that differs between two renderings of the same store.
TIMESTAMP = re.compile(r"generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
OUTPUTS = ("index.html", "report.md")
#: Cell texts set flush right (numbers, intervals, p-values, the en dash of a missing value).
NUMERIC = re.compile(r"^(?:[-+<]?\d|–$)")


@dataclass
class Section:
    """One part of the page: a heading (``level`` 2: a part such as Comparison; 3: one grid
    and model in it), a paragraph, tables and figures."""

    id: str
    title: str
    intro: str
    tables: list[tabs.Table] = field(default_factory=list)
    figures: list[figs.Figure] = field(default_factory=list)
    level: int = 3


def _stamp(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "unknown"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_sections(data: ReportData, out: Path, paper: PaperNumbers) -> list[Section]:
    """Compute every table and draw every figure of ``data`` (figures go to ``out/figures``)."""
    colours = figs.method_colours(figs.all_methods(data))
    comparison, paired, compute, curves = [], [], [], []
    ablation, transfer = [], []
    for info in data.grids:
        outcomes = data.grid_outcomes(info.name)
        models = sorted(outcomes["model"].unique())
        if info.kind == "comparison":
            for model in models:
                sec = tabs.comparison_section(data, info.name, model, paper)
                comparison.append(Section(
                    tabs.slug("sec-comparison", info.name, model),
                    f"{info.name} on {model}", _comparison_intro(sec, outcomes, paper),
                    [sec.summary, sec.detail["flexible"], sec.detail["strict"]],
                    [figs.comparison_figure(sec, out, colours)]))
                if sec.paired is not None:
                    paired.append(Section(tabs.slug("sec-paired", info.name, model),
                                          f"{info.name} on {model}", "", [sec.paired]))
                comp = tabs.compute_section(data, info.name, model)
                compute.append(Section(tabs.slug("sec-compute", info.name, model),
                                       f"{info.name} on {model}", "", [comp.table],
                                       [figs.compute_figure(comp, out, colours)]))
        if info.kind == "ablation":
            for model in models:
                sec = tabs.ablation_section(data, info.name, model)
                figure = figs.ablation_figure(sec, out)
                ablation.append(Section(tabs.slug("sec-ablation", info.name, model),
                                        f"{info.name} on {model}", "", [sec.table],
                                        [figure] if figure else []))
        if info.kind == "transfer":
            sec = tabs.transfer_section(data, info.name, paper)
            figure = figs.transfer_figure(sec, out)
            transfer.append(Section(tabs.slug("sec-transfer", info.name), info.name, "",
                                    [sec.table, sec.paper_table], [figure] if figure else []))
        if info.kind in ("comparison", "ablation", "transfer"):
            for model in models:
                figure = figs.curves_figure(data, info.name, model, out, colours)
                if figure is not None:
                    curves.append(Section(tabs.slug("sec-curves", info.name, model),
                                          f"{info.name} on {model}", "", [], [figure]))
    groups = [
        ("comparison", "Comparison", "Test accuracy of every method per task, the BBH average "
         "over the BBH tasks run, GSM8K and FOLIO, with the paper's reported numbers beside "
         "ours. Flexible reads the answer after the extractor, else one stated in the "
         "reasoning; strict reads only what follows the extractor.", comparison),
        ("paired", "GReaTer against the best baseline", "Paired tests on the same test "
         "examples: a paired bootstrap of the accuracy difference and McNemar's exact test on "
         "the examples where exactly one of the two is right.", paired),
        ("compute", "Compute-matched comparison", "Accuracy against what it cost, counted by "
         "the same meter for every method: generated tokens, forward and backward token "
         "positions, optimiser-LLM calls and wall seconds. No other prompt-optimisation toolkit "
         "measures the cost of every method with one meter and reports accuracy against it; "
         "here a method that wins only by spending more shows it.", compute),
        ("curves", "Optimisation curves", "Train accuracy and loss per optimisation step, "
         "against step and against cumulative cost.", curves),
        ("ablation", "Ablation", "GReaTer's candidate width top_k, perplexity weight λ "
         "(perplexity_weight) and the gradient with or without reasoning (use_reasoning), one "
         "field varied at a time.", ablation),
        ("transfer", "Transfer", "Prompts optimised on one model and evaluated on another.",
         transfer),
    ]
    sections = []
    for sid, title, intro, parts in groups:
        if parts:
            sections.append(Section(sid, title, intro, level=2))
            sections.extend(parts)
    failed = tabs.failed_table(data)
    sections.append(Section("provenance", "Provenance", "What produced these numbers, from "
                            "the provenance the store keeps for every finished cell.",
                            tabs.provenance_tables(data) + ([failed] if failed else []),
                            level=2))
    return sections


def _comparison_intro(sec: tabs.ComparisonSection, outcomes, paper: PaperNumbers) -> str:
    sub = outcomes[(outcomes["model"] == sec.model) & (outcomes["kind"] == "optimize")]
    seeds = sorted(sub["seed"].unique())
    n_test = sorted(sub["n_test"].dropna().astype(int).unique())
    return (f"{sub['method'].nunique()} methods × {sub['task'].nunique()} tasks × "
            f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} on {sec.model}"
            f"{'' if sec.is_paper_model else ' (a stand-in, not one of the paper' + chr(39) + 's models)'}"
            f", {'/'.join(map(str, n_test))} test examples per task.")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html.j2"]),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["md"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    env.tests["numeric"] = lambda text: bool(NUMERIC.match(str(text)))
    return env


def write_report(store: str | os.PathLike, out: str | os.PathLike, *, grid: str | None = None,
                 now: dt.datetime | None = None) -> Path:
    """Read ``store`` and write ``out/index.html``, ``out/report.md`` and ``out/figures/``.

    Args:
        store: a results store written by the harness.
        out: the report folder (created; stale figures in it are removed).
        grid: only this grid of the store (default: every grid it holds).
        now: the generation time shown on the page (default: the current time).

    Returns:
        The path of ``index.html``.

    Raises:
        StoreError: the store cannot be read or holds no such grid.
    """
    out = Path(out)
    data = load_report_data(store, grid)
    paper = paper_numbers()
    figure_dir = out / "figures"
    if figure_dir.is_dir():
        for stale in sorted(figure_dir.glob("*.png")) + sorted(figure_dir.glob("*.svg")):
            stale.unlink()
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(data, out, paper)
    models = sorted(data.outcomes["model"].unique()) if len(data.outcomes) else []
    stand_ins = [m for m in models if m not in paper.models]
    versions = library_versions()
    context = {
        "title": f"greater report: {', '.join(g.name for g in data.grids) or 'empty store'}",
        "store": data.store.name,
        "grids": data.grids,
        "models": models,
        "stand_ins": stand_ins,
        "paper_models": [paper.models[m] for m in sorted(paper.models)],
        "sections": sections,
        "n_done": int((data.cells["status"] == "done").sum()) if len(data.cells) else 0,
        "n_cells": len(data.cells),
        "data_as_of": _stamp(data.cells["finished"].max() if len(data.cells) else None),
        "generated": f"generated {(now or dt.datetime.now(dt.timezone.utc)).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "tools": f"greater {versions.get('greater', '?')}, matplotlib {matplotlib.__version__}",
        "paper_source": paper.source,
    }
    env = _environment()
    for name in OUTPUTS:
        text = env.get_template(f"{name}.j2").render(**context)
        (out / name).write_text(text, encoding="utf-8")
    logger.info("wrote %s (%d sections)", out / "index.html", len(sections))
    return out / "index.html"
