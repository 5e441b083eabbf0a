"""The report's figures: matplotlib (Agg) and seaborn, written as PNG and SVG, byte-stable.

Same input, same bytes: the SVG hash salt is fixed, the SVG date and the PNG software stamp
are left out, and fonts are matplotlib's bundled DejaVu Sans. Each figure comes back as a
:class:`Figure` with alt text and a caption saying what was run.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.ticker import (FuncFormatter, LogLocator, MaxNLocator,  # noqa: E402
                               NullFormatter)
import seaborn as sns  # noqa: E402

from reports.data import COST_MEASURES, ReportData  # noqa: E402
from reports.tables import (COST_LABELS, AblationSection, ComparisonSection,  # noqa: E402
                            ComputeSection, TransferSection, slug, task_label)

logger = logging.getLogger(__name__)

#: rcParams every figure is drawn under (the first two make the SVG byte-stable).
STYLE = {"svg.hashsalt": "greater-report", "svg.fonttype": "path", "font.family": "DejaVu Sans",
         "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
         "savefig.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None}


@dataclass(frozen=True)
class Figure:
    """A written figure: ``png`` and ``svg`` are paths relative to the report folder."""

    id: str
    title: str
    caption: str
    alt: str
    png: str
    svg: str


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def method_colours(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per method, by its place in the sorted list of all methods shown."""
    names = sorted(set(methods))
    return dict(zip(names, sns.color_palette("colorblind", max(len(names), 1))))


def _legend_right(axes) -> None:
    """One legend for a row of panels, right of the last one (so it hides no point), with
    every method that any panel draws."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    labels = sorted(seen)
    axes[-1].legend([seen[k] for k in labels], labels, loc="center left",
                    bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)


def _save(fig, out: Path, stem: str) -> tuple[str, str]:
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    fig.savefig(png, format="png", metadata=PNG_METADATA, bbox_inches="tight")
    fig.savefig(svg, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    plt.close(fig)
    return f"figures/{png.name}", f"figures/{svg.name}"


def comparison_figure(section: ComparisonSection, out: Path, colours: dict) -> Figure:
    """Grouped bars: flexible accuracy per task (and the BBH average) per method, with CIs."""
    columns = list(dict.fromkeys(name for _, name, _ in section.intervals))
    methods = sorted({m for m, _, _ in section.intervals})
    with _style():
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) * max(len(methods), 2) / 3),
                                        3.6))
        width = 0.8 / max(len(methods), 1)
        for i, method in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for j, col in enumerate(columns):
                iv = section.intervals.get((method, col, "flexible"))
                if iv is None:
                    continue
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(100 * iv.estimate)
                lo.append(100 * (iv.estimate - iv.low))
                hi.append(100 * (iv.high - iv.estimate))
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=method,
                   color=colours[method], error_kw={"elinewidth": 0.8})
        ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
        ax.set_ylabel("test accuracy, flexible (%)")
        ax.set_ylim(0, 105)
        ax.legend(ncol=min(len(methods), 6), fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, 1.18), frameon=False)
        stem = slug("comparison", section.grid, section.model)
        png, svg = _save(fig, out, stem)
    best = max(((iv.estimate, m, c) for (m, c, r), iv in section.intervals.items()
                if r == "flexible"), default=None)
    alt = (f"Bar chart of flexible test accuracy for {', '.join(methods)} on "
           f"{', '.join(columns)} with {section.model}; error bars are 95% bootstrap intervals."
           + (f" Highest bar: {best[1]} on {best[2]} at {100 * best[0]:.1f}%." if best else ""))
    return Figure(stem, f"Comparison on {section.model} ({section.grid})",
                  f"Flexible test accuracy of every method of grid {section.grid} on "
                  f"{section.model}, per task and averaged over the BBH tasks run; bars show "
                  "95% bootstrap intervals over test examples and seeds.", alt, png, svg)


def curves_figure(data: ReportData, grid: str, model: str, out: Path,
                  colours: dict) -> Figure | None:
    """Train accuracy and loss against step, and train accuracy against cumulative cost; each
    line a method, averaged over the grid's tasks and seeds at each step."""
    keys = data.outcomes[(data.outcomes["grid"] == grid) & (data.outcomes["model"] == model)
                         & (data.outcomes["kind"] == "optimize")]
    steps = data.steps.merge(keys[["key", "method", "task"]].drop_duplicates("key"), on="key")
    if not len(steps):
        return None
    mean = steps.groupby(["method", "step"], sort=True).mean(numeric_only=True).reset_index()
    panels = [("step", "train_accuracy", "train accuracy vs step"),
              ("step", "loss", "loss vs step (each method's own loss)"),
              ("cum_generated_tokens", "train_accuracy", "train accuracy vs generated tokens"),
              ("cum_wall_seconds", "train_accuracy", "train accuracy vs wall seconds")]
    with _style():
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
        for ax, (x, y, title) in zip(axes, panels):
            for method, group in mean.groupby("method", sort=True):
                group = group.dropna(subset=[y])
                if len(group):
                    ax.plot(group[x], group[y], marker="o", ms=3, label=method,
                            color=colours[method])
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(x.removeprefix("cum_").replace("_", " "))
            if x == "step":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_right(axes)
        stem = slug("curves", grid, model)
        png, svg = _save(fig, out, stem)
    methods = sorted(mean["method"].unique())
    return Figure(stem, f"Optimisation curves on {model} ({grid})",
                  f"Per-step train accuracy and loss of {', '.join(methods)} in grid {grid} on "
                  f"{model}, averaged over its {steps['task'].nunique()} tasks and seeds at each "
                  "step; the right panels put train accuracy against the cumulative cost of the "
                  "steps. Losses are each method's own objective and are not comparable across "
                  "methods.",
                  f"Four line charts for {', '.join(methods)}: train accuracy against step, loss "
                  "against step, train accuracy against cumulative generated tokens and against "
                  f"cumulative wall seconds, up to step {int(mean['step'].max())}.", png, svg)


def short_number(value: float) -> str:
    """A tick label short enough not to run into its neighbours: 950, 12.5k, 3M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:g}"


def compute_figure(section: ComputeSection, out: Path, colours: dict) -> Figure:
    """Accuracy against each cost measure, one point per method, the Pareto front drawn."""
    frame = section.points
    with _style():
        fig, axes = plt.subplots(1, len(COST_MEASURES), figsize=(13, 3.2), sharey=True)
        for ax, measure in zip(axes, COST_MEASURES):
            for p in frame.itertuples():
                on = getattr(p, f"pareto_{measure}")
                ax.errorbar(getattr(p, measure), 100 * p.accuracy,
                            yerr=[[100 * (p.accuracy - p.low)], [100 * (p.high - p.accuracy)]],
                            fmt="o" if on else "o", mfc=colours[p.method] if on else "white",
                            color=colours[p.method], capsize=2, label=p.method, ms=6)
            front = frame[frame[f"pareto_{measure}"]].sort_values(measure)
            ax.step(front[measure], 100 * front["accuracy"], where="post", color="black",
                    lw=0.8, ls="--")
            if (frame[measure] > 0).all():
                ax.set_xscale("log")
                if frame[measure].max() < 10 * frame[measure].min():
                    # within a decade the 1-2-5 ticks would leave at most one: three plain ones
                    ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
                else:  # ticks at 1, 2, 5 x 10^k
                    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:  # a method with none of this cost (no LLM calls) sits at zero
                ax.set_xscale("symlog", linthresh=1.0)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short_number(v)))
            ax.set_xlabel(f"{COST_LABELS[measure]} per cell")
        axes[0].set_ylabel("test accuracy, flexible (%)")
        _legend_right(axes)
        stem = slug("compute", section.grid, section.model)
        png, svg = _save(fig, out, stem)
    front = sorted(frame.loc[frame["pareto_wall_seconds"], "method"])
    return Figure(stem, f"Compute-matched comparison on {section.model} ({section.grid})",
                  "Flexible test accuracy averaged over the grid's tasks (95% bootstrap "
                  "interval) against the mean cost of one cell, per method; filled markers and "
                  "the dashed line are the Pareto front (nothing cheaper scores as well). Axes "
                  "are logarithmic (symmetric-log where a method spends none, e.g. no LLM calls, "
                  "so it sits at zero).",
                  f"Four scatter plots of accuracy against generated tokens, forward plus "
                  f"backward token positions, LLM calls and wall seconds for "
                  f"{', '.join(frame['method'])}; on the wall-seconds Pareto front: "
                  f"{', '.join(front) or 'none'}.", png, svg)


def ablation_figure(section: AblationSection, out: Path) -> Figure | None:
    """Accuracy against each swept field, the mean over tasks with its interval, and each
    task as a faint line."""
    points = section.points
    if not len(points):
        return None
    axes_names = sorted(points["axis"].unique())
    with _style():
        fig, axes = plt.subplots(1, len(axes_names), figsize=(4.2 * len(axes_names), 3.2),
                                 sharey=True, squeeze=False)
        for ax, axis in zip(axes[0], axes_names):
            sub = points[points["axis"] == axis]
            values = list(dict.fromkeys(sub["value"]))
            pos = {json_value: i for i, json_value in enumerate(map(str, values))}
            for task, group in sub.groupby("task", sort=True):
                xs = [pos[str(v)] for v in group["value"]]
                if task == "mean":
                    ax.errorbar(xs, 100 * group["estimate"],
                                yerr=[100 * (group["estimate"] - group["low"]),
                                      100 * (group["high"] - group["estimate"])],
                                color="black", marker="o", capsize=3, label="mean over tasks")
                else:
                    ax.plot(xs, 100 * group["estimate"], marker=".", alpha=0.5,
                            label=task_label(task))
            ax.set_xticks(range(len(values)), [str(v) for v in values])
            ax.set_xlabel(axis)
        axes[0][0].set_ylabel("test accuracy, flexible (%)")
        axes[0][0].legend(fontsize=7, frameon=False)
        stem = slug("ablation", section.grid, section.model)
        png, svg = _save(fig, out, stem)
    return Figure(stem, f"GReaTer ablation on {section.model} ({section.grid})",
                  f"Flexible test accuracy of GReaTer on {section.model} as one field varies "
                  f"({', '.join(axes_names)}), every other field at the base config; black: mean "
                  "over tasks with its 95% bootstrap interval, faint lines: each task.",
                  f"{len(axes_names)} line charts of accuracy against "
                  f"{', '.join(axes_names)}.", png, svg)


def transfer_figure(section: TransferSection, out: Path) -> Figure | None:
    """One source x target heatmap of average accuracy per method."""
    matrix = section.matrix
    if not len(matrix):
        return None
    methods = sorted(matrix["method"].unique())
    with _style():
        fig, axes = plt.subplots(1, len(methods), figsize=(4.0 * len(methods), 3.4),
                                 squeeze=False)
        for ax, method in zip(axes[0], methods):
            grid = (matrix[matrix["method"] == method]
                    .pivot(index="source", columns="target", values="estimate") * 100)
            sns.heatmap(grid, ax=ax, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis",
                        cbar=ax is axes[0][-1], square=True)
            ax.set_title(method, fontsize=9)
            ax.set_xlabel("evaluated on")
            ax.set_ylabel("optimised on")
        stem = slug("transfer", section.grid)
        png, svg = _save(fig, out, stem)
    return Figure(stem, f"Transfer ({section.grid})",
                  f"Average flexible test accuracy (%) of prompts optimised on the row's model and "
                  f"evaluated on the column's model, grid {section.grid}; the diagonal is the "
                  "source run's own test accuracy.",
                  f"Heatmaps for {', '.join(methods)}: source model by target model, "
                  "cells annotated with accuracy in percent.", png, svg)


def all_methods(data: ReportData) -> list[str]:
    return sorted(data.outcomes["method"].unique()) if len(data.outcomes) else []

