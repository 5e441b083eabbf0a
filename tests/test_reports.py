"""``greater report``: the pages a results store renders to, checked against the store.

The store is synthetic (tests/report_store.py writes it through the store's own API; no model
runs). Every number checked here is recomputed independently from ``greater.results.load`` or
from the stored per-example records, never from the report's own code.
"""

from __future__ import annotations

import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from greater import cli, results
from greater.store import StoreError
from report_store import (ABLATION_GRID, COMPARISON_GRID, METHODS, MODELS, TRANSFER_GRID,
                          build_store)
from reports import stats
from reports.render import TIMESTAMP, write_report

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "reports" / "cpu-smoke"
NUMBER = r"-?\d+\.\d"


class _Tables(HTMLParser):
    """Rows of cell texts of every ``<table id=...>`` in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs)["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: Path) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tables


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The synthetic store and its report (rendered once for the module)."""
    root = tmp_path_factory.mktemp("report")
    store = build_store(root / "store.sqlite")
    index = write_report(store, root / "out")
    return store, index


def _task_means(cells, method: str, task: str, column: str) -> float:
    rows = cells[(cells["method"] == method) & (cells["task"] == task)
                 & (cells["status"] == "done")]
    assert len(rows), (method, task)
    return rows.groupby("seed")[column].mean().mean()


@pytest.mark.parametrize("model", MODELS)
def test_comparison_table_matches_the_store(rendered, model):
    store, index = rendered
    cells = results.load(store, grid=COMPARISON_GRID)
    cells = cells[cells["model"] == model]
    table = _tables(index)[f"comparison-{COMPARISON_GRID}-{_slug(model)}"]
    groups, header, body = table[0], table[1], table[2:]
    assert groups[1:] == ["BBH avg (2 tasks)", "GSM8K", "FOLIO"]
    assert header[1:4] == ["flexible", "strict", header[3]] and header[3].startswith("paper")
    assert sorted(r[0] for r in body) == sorted(METHODS)
    bbh = sorted(t for t in cells["task"].unique() if t.startswith("bbh/"))
    for row in body:
        method = row[0]
        for offset, tasks in ((1, bbh), (4, ["gsm8k"]), (7, ["folio"])):
            for shift, column in ((0, "test_accuracy"), (1, "test_accuracy_strict")):
                expected = np.mean([_task_means(cells, method, t, column) for t in tasks])
                shown = row[offset + shift]
                estimate, low, high = map(float, re.findall(NUMBER, shown))
                assert estimate == pytest.approx(round(100 * expected, 1), abs=0.051), \
                    (method, tasks, column, shown)
                assert low <= estimate <= high, shown
    if model == "meta-llama/Meta-Llama-3-8B-Instruct":  # a paper model: its reported numbers
        greater = next(r for r in body if r[0] == "greater")
        assert (greater[3], greater[6], greater[9]) == ("68.7", "82.6", "62.6")


def test_every_interval_on_the_page_contains_its_estimate(rendered):
    _, index = rendered
    seen = 0
    for table in _tables(index).values():
        for row in table:
            for text in row:
                match = re.fullmatch(rf"(?:\w+ )?({NUMBER}) \[({NUMBER}), ({NUMBER})\]", text)
                if match:
                    estimate, low, high = map(float, match.groups())
                    assert low <= estimate <= high, text
                    seen += 1
    assert seen > 100


def _correct_by_input(store: Path, model: str, method: str, task: str) -> dict[tuple, int]:
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT c.seed, r.input, r.correct FROM records r JOIN cells c ON c.key = r.cell_key "
            "JOIN grid_cells g ON g.cell_key = c.key WHERE g.grid=? AND c.model=? AND "
            "c.method=? AND c.task=? AND c.status='done'",
            (COMPARISON_GRID, model, method, task)).fetchall()
    return {(seed, text): int(correct) for seed, text, correct in rows}


def test_paired_test_pairs_the_same_examples(rendered):
    store, index = rendered
    model = MODELS[0]
    table = _tables(index)[f"paired-{COMPARISON_GRID}-{_slug(model)}"]
    cells = results.load(store, grid=COMPARISON_GRID)
    cells = cells[cells["model"] == model]
    checked = 0
    for row in table[1:]:
        column, reading, _, baseline_text, _, _, discordant, p_text, verdict = row
        if reading != "flexible" or column not in ("GSM8K", "FOLIO"):
            continue
        task = column.lower()
        means = {m: _task_means(cells, m, task, "test_accuracy") for m in METHODS}
        best = max((m for m in METHODS if m != "greater"), key=lambda m: (means[m], -ord(m[0])))
        assert baseline_text.split()[0] == best
        mine = _correct_by_input(store, model, "greater", task)
        theirs = _correct_by_input(store, model, best, task)
        assert set(mine) == set(theirs)  # apo's records are stored in another order
        only_mine = sum(mine[k] and not theirs[k] for k in mine)
        only_theirs = sum(theirs[k] and not mine[k] for k in mine)
        assert discordant == f"{only_mine} / {only_theirs} of {len(mine)}"
        assert float(p_text.lstrip("<")) == pytest.approx(
            stats.mcnemar_exact(only_mine, only_theirs), abs=5e-4)
        assert verdict in ("win", "tie", "loss")
        checked += 1
    assert checked == 2


def test_ablation_and_transfer_tables_match_the_store(rendered):
    store, index = rendered
    tables = _tables(index)
    abl = results.load(store, grid=ABLATION_GRID)
    body = tables[f"ablation-{ABLATION_GRID}-{_slug(MODELS[0])}"][1:]
    assert {(r[0], r[1]) for r in body} == {
        ("top_k", "2"), ("top_k", "10"), ("perplexity_weight", "0.0"),
        ("perplexity_weight", "0.2"), ("use_reasoning", "true"), ("use_reasoning", "false")}
    row = next(r for r in body if r[:2] == ["top_k", "2"])
    expected = abl[abl["config.top_k"] == 2]["test_accuracy"].mean()  # mean over its 2 tasks
    assert float(re.findall(NUMBER, row[-1])[0]) == pytest.approx(round(100 * expected, 1),
                                                                   abs=0.051)
    xfer = results.load(store, grid=TRANSFER_GRID)
    body = tables[f"transfer-{TRANSFER_GRID}"][1:]
    row = next(r for r in body if r[:3] == ["greater", "smollm2-135m", "gemma3-270m"])
    evaluated = xfer[(xfer["kind"] == "evaluate") & (xfer["method"] == "greater")
                     & (xfer["model"] == "gemma3-270m")]
    sources = set(results.load(store)[lambda f: f["model"] == "smollm2-135m"]["key"])
    evaluated = evaluated[evaluated["source_key"].isin(sources)]
    assert len(evaluated) == 2
    assert float(re.findall(NUMBER, row[3])[0]) == pytest.approx(
        round(100 * evaluated["test_accuracy"].mean(), 1), abs=0.051)


def test_page_says_what_was_run(rendered):
    _, index = rendered
    page = index.read_text(encoding="utf-8")
    assert "Stand-ins are not the paper's models" in page
    assert "No other prompt-optimisation toolkit" in page
    assert "RuntimeError: out of memory" in page  # the failed cell is listed, not hidden
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    for img in re.findall(r'<img src="([^"]+)" alt="([^"]+)"', page):
        assert (index.parent / img[0]).is_file() and len(img[1]) > 40
    figures = sorted(p.name for p in (index.parent / "figures").iterdir())
    for stem in ("comparison", "compute", "curves", "ablation", "transfer"):
        assert any(f.startswith(stem) and f.endswith(".png") for f in figures), stem
        assert any(f.startswith(stem) and f.endswith(".svg") for f in figures), stem
    md = (index.parent / "report.md").read_text(encoding="utf-8")
    assert "| greater |" in md and "Provenance" in md


def _snapshot(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix in (".html", ".md"):
                data = TIMESTAMP.sub("generated <time>", data.decode("utf-8")).encode("utf-8")
            files[path.relative_to(folder).as_posix()] = data
    return files


def test_regenerating_gives_identical_files(rendered, tmp_path):
    store, index = rendered
    again = write_report(store, tmp_path / "again")
    first, second = _snapshot(index.parent), _snapshot(again.parent)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    raw = index.read_text(encoding="utf-8")
    assert len(TIMESTAMP.findall(raw)) == 1  # the one line that may differ


def test_report_command_and_its_errors(rendered, tmp_path, capsys):
    store, _ = rendered
    out = tmp_path / "cli"
    assert cli.main(["report", "--store", str(store), "--out", str(out),
                     "--grid", ABLATION_GRID]) == 0
    tables = _tables(out / "index.html")
    assert any(t.startswith("ablation-") for t in tables)
    assert not any(t.startswith("comparison-") for t in tables)
    assert cli.main(["report", "--store", str(store), "--out", str(out), "--grid", "cpm"]) == 2
    assert "did you mean 'cmp'" in capsys.readouterr().err
    assert cli.main(["report", "--store", str(tmp_path / "none.sqlite"), "--out",
                     str(out)]) == 2
    assert "no results store" in capsys.readouterr().err


def test_statistics_on_known_cases():
    assert stats.mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(0, 0) == 1.0
    ones = [np.ones((1, 10))]
    assert stats.bootstrap_interval(ones, seed=1) == stats.Interval(1.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    a = [(rng.random((2, 30)) < 0.6).astype(int)]
    same = stats.paired_test(a, a, seed=2)
    assert (same.diff.estimate, same.p_bootstrap, same.a_only, same.b_only) == (0.0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="shapes"):
        stats.paired_test(a, [np.ones((2, 29))], seed=2)
    assert stats.stable_seed("g", "m") == stats.stable_seed("g", "m") != stats.stable_seed("m")


#: Committed reports and their stores: ``greater report`` on the store gives the report.
COMMITTED_REPORTS = [(COMMITTED, "cpu-smoke.sqlite"),
                     (REPO / "reports" / "cpu-reproduction", "cpu-reproduction.sqlite")]


@pytest.mark.parametrize("folder, store_name", COMMITTED_REPORTS,
                         ids=[f.name for f, _ in COMMITTED_REPORTS])
def test_committed_report_regenerates(tmp_path, folder, store_name):
    """``greater report`` on a committed store gives the committed report, file for file."""
    store = folder / store_name
    assert store.is_file(), f"{store} is missing"
    copy = tmp_path / store_name  # the store is read-only here; keep the checkout clean
    copy.write_bytes(store.read_bytes())
    out = write_report(copy, tmp_path / "out").parent
    committed = {k: v for k, v in _snapshot(folder).items() if ".sqlite" not in k}
    fresh = _snapshot(out)
    assert fresh.keys() == committed.keys()
    page = (folder / "index.html").read_text(encoding="utf-8")
    same_matplotlib = f"matplotlib {matplotlib.__version__}" in page
    for name in committed:
        if name.startswith("figures/") and not same_matplotlib:
            continue  # another matplotlib draws other bytes; the tables must still match
        if name.endswith((".html", ".md")) and not same_matplotlib:
            pattern = re.compile(r"matplotlib [\w.]+")
            assert pattern.sub("", fresh[name].decode()) == pattern.sub(
                "", committed[name].decode()), name
            continue
        assert fresh[name] == committed[name], name


def test_grid_kinds_and_shared_ablation_cells(rendered):
    from reports.data import load_report_data

    store, _ = rendered
    data = load_report_data(store)
    assert {g.name: g.kind for g in data.grids} == {
        ABLATION_GRID: "ablation", COMPARISON_GRID: "comparison", TRANSFER_GRID: "transfer"}
    base = data.outcomes[(data.outcomes["grid"] == ABLATION_GRID)
                         & (data.outcomes["config.top_k"] == 10)
                         & (data.outcomes["config.perplexity_weight"] == 0.2)
                         & (data.outcomes["config.use_reasoning"] == True)]  # noqa: E712
    assert set(base["axis"]) == {"top_k", "perplexity_weight", "use_reasoning"}
    assert sorted(set(base["task"])) == ["bbh/hyperbaton", "bbh/navigate"]


def test_a_store_with_nothing_finished_still_renders(tmp_path):
    from greater.store import CellRow, Store

    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    page = write_report(empty, tmp_path / "empty").read_text(encoding="utf-8")
    assert "0 of 0 cells done" in page
    pending = tmp_path / "pending.sqlite"
    with Store(pending) as store:
        store.register("g", [(CellRow(key="k" * 64, kind="optimize", method="greater",
                                      model="smollm2-135m", dtype="bf16", task="bbh/navigate",
                                      seed=0, config={}, data_digest="d" * 64), {})])
    tables = _tables(write_report(pending, tmp_path / "pending"))
    assert tables["failed-cells"][1][:6] == ["g", "greater", "smollm2-135m", "bbh/navigate",
                                             "0", "pending"]
