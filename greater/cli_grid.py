"""``greater grid run|status|prune`` and ``greater results export|snapshot``: the harness from
the command line.

The grid specs and the harness live in the repository's ``benchmarks/`` folder; these commands
run from a source checkout (``pip install -e .`` installs ``benchmarks.harness`` with it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_grid_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``grid`` and ``results`` subcommands to the ``greater`` parser."""
    grid = sub.add_parser("grid", help="run benchmark grids into a results store")
    gsub = grid.add_subparsers(dest="grid_command", required=True)
    run = gsub.add_parser("run", help="run every cell of a grid not yet done")
    run.add_argument("spec", help="grid name (benchmarks/grids/NAME.toml) or a .toml path")
    run.add_argument("--store", type=Path, default=None,
                     help="results store (default: benchmarks/results/<grid>.sqlite)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="worker processes here, or Ray tasks (default: local)")
    run.add_argument("--address", default=None, help="Ray cluster address (default: a local "
                     "Ray instance)")
    run.add_argument("--workers", type=int, default=1, help="cells in flight at once: worker processes (local) or Ray "
                     "tasks submitted at a time (ray); default 1")
    run.add_argument("--only", default=None, help="run only cells matching field=value[,...] "
                     "(fields: method, model, task, seed, kind)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate the spec and list its cells with their cost bounds")
    run.add_argument("--data-dir", default=os.environ.get("GREATER_DATA_DIR"),
                     help="benchmark data folder (default: $GREATER_DATA_DIR)")
    run.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    status = gsub.add_parser("status", help="cells of a grid by status")
    status.add_argument("spec", help="grid name or .toml path")
    status.add_argument("--store", type=Path, default=None, help="results store")
    prune = gsub.add_parser("prune", help="drop the cells an earlier version of the spec made "
                            "(after its budgets changed), so reports show only current cells")
    prune.add_argument("spec", help="grid name or .toml path")
    prune.add_argument("--store", type=Path, default=None, help="results store")
    prune.add_argument("--data-dir", default=os.environ.get("GREATER_DATA_DIR"),
                       help="benchmark data folder (default: $GREATER_DATA_DIR)")
    prune.add_argument("--dry-run", action="store_true", help="list the cells, drop nothing")

    results = sub.add_parser("results", help="read a results store")
    rsub = results.add_subparsers(dest="results_command", required=True)
    exp = rsub.add_parser("export", help="write a store's cells (or another table) to a file")
    exp.add_argument("--store", type=Path, required=True, help="results store")
    exp.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    exp.add_argument("--table", default="cells",
                     help="cells (one row per cell), steps, records, grid_cells or provenance")
    exp.add_argument("--out", type=Path, default=None,
                     help="output file (default: the store's path with the table and format)")
    snap = rsub.add_parser("snapshot", help="a consistent one-file copy of a store, safe while a "
                           "grid writes it (to commit or send a run in progress)")
    snap.add_argument("--store", type=Path, required=True, help="results store")
    snap.add_argument("--out", type=Path, required=True, help="the copy (replaced if there)")
    snap.add_argument("--slim", action="store_true", help="leave out what no report reads: the "
                      "reply cache and the per-example reasoning and response texts")


def grid_command_handler(command: str):
    """The handler of ``command`` ("grid" or "results"), or None for other commands."""
    return {"grid": _cmd_grid, "results": _cmd_results}.get(command)


def _cmd_grid(args) -> int:
    from greater.store import StoreError

    from benchmarks.harness.spec import load_spec

    try:
        spec = load_spec(args.spec)
        if args.grid_command == "status":
            return _status(spec, args)
        if args.grid_command == "prune":
            return _prune(spec, args)
        if args.dry_run:
            return _dry_run(spec, args)
        return _run(spec, args)
    except StoreError as exc:
        print(f"greater: error: {exc}", file=sys.stderr)
        return 2


def _store_path(spec, args) -> Path:
    from benchmarks.harness.runner import default_store

    return args.store if args.store is not None else default_store(spec)


def _dry_run(spec, args) -> int:
    from benchmarks.harness.estimate import estimate
    from benchmarks.harness.runner import load_grid

    cells, tasks = load_grid(spec, data_dir=args.data_dir, only=args.only)
    totals = [0, 0, 0, 0]
    print(f"grid {spec.name} ({spec.kind}): {len(cells)} cells -- {spec.description}")
    print(f"{'key':12}  {'cell':70} {'steps':>6} {'gens':>8} {'llm':>6} {'tokens<=':>12}")
    for cell in cells:
        bound = estimate(cell, tasks[cell.task])
        for i, v in enumerate((bound.steps, bound.generations, bound.llm_calls, bound.tokens)):
            totals[i] += v
        mark = "" if bound.exact else "  (generic bound)"
        print(f"{cell.key[:12]}  {cell.title[:70]:70} {bound.steps:6d} {bound.generations:8d} "
              f"{bound.llm_calls:6d} {bound.tokens:12d}{mark}")
    print(f"total: {totals[0]} steps, {totals[1]} task-model generations, {totals[2]} "
          f"optimiser calls, at most {totals[3]} generated tokens")
    return 0


def _run(spec, args) -> int:
    from benchmarks.harness.runner import run_grid

    store = _store_path(spec, args)
    report = run_grid(spec, store, executor=args.executor, workers=args.workers,
                      address=args.address, only=args.only, data_dir=args.data_dir)
    print(f"grid {spec.name}: {len(report.done)} done, {len(report.failed)} failed, "
          f"{len(report.skipped)} already done, {len(report.blocked)} blocked "
          f"in {report.seconds:.0f} s; store {store}")
    return 1 if report.failed or report.blocked else 0


def _status(spec, args) -> int:
    from greater.store import Store

    store = _store_path(spec, args)
    with Store(store, readonly=True) as db:
        rows = db.query(
            "SELECT c.status, c.method, c.model, c.task, c.seed, c.error, c.key, "
            "(SELECT count(*) FROM steps s WHERE s.cell_key=c.key) AS steps FROM cells c "
            "JOIN (SELECT DISTINCT cell_key FROM grid_cells WHERE grid=?) g ON g.cell_key=c.key "
            "ORDER BY c.created, c.key", (spec.name,))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        line = (f"{r['status']:8} {r['key'][:12]} {r['method']:10} {r['model']:22} {r['task']:40} "
                f"seed {r['seed']} steps {r['steps']}")
        print(line + (f"  error: {r['error']}" if r["error"] else ""))
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cells yet"
    print(f"grid {spec.name} in {store}: {summary}")
    return 0


def _prune(spec, args) -> int:
    from greater.store import Store, exclusive_writer

    from benchmarks.harness.runner import load_grid

    store = _store_path(spec, args)
    if not store.exists():
        print(f"greater: error: no store at {store}", file=sys.stderr)
        return 2
    cells, _ = load_grid(spec, data_dir=args.data_dir, only=None)
    with exclusive_writer(store), Store(store) as db:
        stale = {r["key"]: r for r in db.query("SELECT key, method, task, status FROM cells")}
        dropped = db.prune(spec.name, (c.key for c in cells), dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    for key in dropped:
        r = stale[key]
        print(f"{verb} {key[:12]} {r['method']} {r['task']} ({r['status']})")
    print(f"grid {spec.name}: {verb} {len(dropped)} of its cells no longer in the spec; "
          f"store {store}")
    return 0


def _cmd_results(args) -> int:
    from greater.results import export
    from greater.store import Store, StoreError

    try:
        if args.results_command == "snapshot":
            with Store(args.store, readonly=True) as db:
                out = db.snapshot(args.out, slim=args.slim)
        else:
            out = args.out or args.store.with_name(
                f"{args.store.stem}.{args.table}.{args.format}")
            export(args.store, out, args.format, table=args.table)
    except StoreError as exc:
        print(f"greater: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
