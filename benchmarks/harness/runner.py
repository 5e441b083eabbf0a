"""The grid driver and its executors.

The driver expands a spec into cells, registers them in the store, submits every cell not yet
done to an executor (worker processes, or Ray tasks), and writes each outcome to the store as it
arrives: it is the only writer. While cells run it copies the finished steps from their
checkpoint files into the store, so ``greater grid status`` shows progress and a killed grid
keeps them. Optimisation cells run before the evaluation cells of a transfer grid, which need
their prompts.

Executors (no scheduler of our own):

* ``local``: a :class:`concurrent.futures.ProcessPoolExecutor` (spawn), ``workers`` processes,
  each with ``cpu_count // workers`` torch threads; a worker keeps its model between cells.
* ``ray``: each cell a Ray task (``num_cpus`` = the threads; a hub model asks for one GPU),
  on the cluster at ``address`` or on a local instance. Checkpoints are files, so the workers
  must see the store's folder (one machine, or a shared file system).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from greater.models import resolve_model
from greater.store import Store, exclusive_writer
from greater.tasks import Task, load_task
from tqdm import tqdm

from benchmarks.harness.cells import Cell, filter_cells, resolve_cells
from benchmarks.harness.spec import GridSpec
from benchmarks.harness.worker import init_worker, run_cell

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
#: The checkout holding ``benchmarks/`` (Ray workers put it on their path).
REPO = Path(__file__).resolve().parents[2]
#: Where grid stores go by default (git-ignored but for results committed on purpose).
RESULTS_DIR = REPO / "benchmarks" / "results"
#: Seconds between checks of running cells' checkpoints.
POLL_SECONDS = 2.0


def default_store(spec: GridSpec) -> Path:
    """``benchmarks/results/<grid>.sqlite`` of this checkout."""
    return RESULTS_DIR / f"{spec.name}.sqlite"


def checkpoint_path(store_path: Path, key: str) -> Path:
    """Where a running cell checkpoints: ``<store>.checkpoints/<cell key>.json``."""
    return store_path.with_name(store_path.name + ".checkpoints") / f"{key}.json"


@dataclass
class GridReport:
    """What a grid run did: cell keys by outcome."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done before this run
    blocked: list[str] = field(default_factory=list)  # evaluate cells whose source is not done
    seconds: float = 0.0


def load_grid(spec: GridSpec, *, data_dir: str | os.PathLike | None,
              only: str | None = None) -> tuple[list[Cell], dict[str, Task]]:
    """The spec's cells (filtered by ``only``) and its loaded tasks."""
    tasks = {name: load_task(name, data_dir=data_dir) for name in spec.tasks}
    return filter_cells(resolve_cells(spec, data_dir=data_dir, tasks=tasks), only), tasks


class _Local:
    """Worker processes (spawn); each returns its cell's outcome."""

    def __init__(self, workers: int, threads: int) -> None:
        self.pool = cf.ProcessPoolExecutor(max_workers=workers,
                                           mp_context=multiprocessing.get_context("spawn"),
                                           initializer=init_worker, initargs=(threads,))

    def submit(self, cell: Cell, payload: dict, **kwargs: Any) -> cf.Future:
        return self.pool.submit(run_cell, payload, **kwargs)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    """Each cell a Ray task; the futures come from ``ObjectRef.future()``."""

    def __init__(self, address: str | None, threads: int) -> None:
        import ray

        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:  # workers import the harness from this checkout
            ray.init(address=address, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.fspath(REPO)}})
        self.threads = threads

        def ray_cell(payload: dict, threads: int, **kwargs: Any) -> dict:
            init_worker(threads)
            return run_cell(payload, **kwargs)

        self.remote = ray.remote(ray_cell)

    def submit(self, cell: Cell, payload: dict, **kwargs: Any) -> cf.Future:
        gpus = 1 if resolve_model(cell.model).kind == "hub" else 0
        ref = self.remote.options(num_cpus=self.threads, num_gpus=gpus).remote(
            payload, self.threads, **kwargs)
        return ref.future()

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def run_grid(spec: GridSpec, store_path: str | os.PathLike, *, executor: str = "local",
             workers: int = 1, address: str | None = None, only: str | None = None,
             data_dir: str | os.PathLike | None = None, progress: bool = True,
             on_outcome: Callable[[Cell, dict], None] | None = None) -> GridReport:
    """Run every cell of ``spec`` not yet done into the store at ``store_path``.

    Args:
        spec: a loaded spec.
        store_path: the SQLite results store (created when missing).
        executor: ``"local"`` or ``"ray"``.
        workers: cells in flight at once (``local``: worker processes; ``ray``: tasks
            submitted at a time, each placed by Ray's resource scheduling).
        address: the Ray cluster (``ray`` only; None starts a local instance).
        only: a :func:`~benchmarks.harness.cells.filter_cells` filter.
        data_dir: the task data folder.
        progress: show a bar over cells with an ETA.
        on_outcome: called with each cell and its outcome after it is stored.

    Raises:
        SpecError: a cell whose config does not validate (before anything runs).
        StoreLockedError: another grid run writes this store.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if address is not None and executor != "ray":
        raise ValueError("--address is for --executor ray")
    t0 = time.perf_counter()
    store_path = Path(store_path)
    every_cell, tasks = load_grid(spec, data_dir=data_dir)
    cells = filter_cells(every_cell, only)
    data = None if data_dir is None else os.fspath(Path(data_dir).resolve())
    threads = max(1, (os.cpu_count() or 1) // workers)
    report = GridReport()
    with exclusive_writer(store_path), Store(store_path) as store:
        # The whole grid is registered (``only`` limits what runs now), so the store, its
        # status and its reports know how much of the grid is done.
        store.register(spec.name, ((c, lab) for c in every_cell for lab in c.labels))
        status = store.statuses(c.key for c in cells)
        report.skipped = [c.key for c in cells if status.get(c.key) == "done"]
        todo = [c for c in cells if status.get(c.key) != "done"]
        if not todo:
            return report
        pool = _Local(workers, threads) if executor == "local" else _Ray(address, threads)
        bar = tqdm(total=len(cells), initial=len(report.skipped), desc=f"grid {spec.name}",
                   unit="cell", disable=not progress)
        try:
            for phase in ("optimize", "evaluate"):
                batch = [c for c in todo if c.kind == phase]
                _run_phase(batch, store, store_path, pool, workers, tasks, data, report, bar,
                           on_outcome)
        finally:
            bar.close()
            pool.close()
    report.seconds = time.perf_counter() - t0
    return report


def _run_phase(cells: list[Cell], store: Store, store_path: Path, pool, workers: int,
               tasks: dict[str, Task], data_dir: str | None, report: GridReport, bar: tqdm,
               on_outcome: Callable[[Cell, dict], None] | None) -> None:
    """Run ``cells`` with at most ``workers`` in flight, so ``running`` in the store means
    running (a cell is marked when it is handed to a worker)."""
    queue = list(reversed(cells))
    running: dict[cf.Future, Cell] = {}
    seen_steps: dict[str, int] = {}
    while queue or running:
        while queue and len(running) < workers:
            cell = queue.pop()
            submitted = _submit(cell, store, store_path, pool, tasks, data_dir)
            if submitted is None:
                report.blocked.append(cell.key)
                logger.warning("%s: its source cell is not done; skipped", cell.title)
            else:
                running[submitted] = cell
        if not running:
            continue
        finished, _ = cf.wait(running, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
        for future in finished:
            cell = running.pop(future)
            outcome = _outcome(future, cell)
            _store_outcome(store, cell, outcome, store_path)
            (report.done if outcome["ok"] else report.failed).append(cell.key)
            bar.update()
            if on_outcome is not None:
                on_outcome(cell, outcome)
        for cell in running.values():
            _copy_checkpoint_steps(store, store_path, cell, seen_steps)


def _submit(cell: Cell, store: Store, store_path: Path, pool, tasks: dict[str, Task],
            data_dir: str | None) -> cf.Future | None:
    """Hand ``cell`` to a worker (None: an evaluate cell whose source is not done)."""
    kwargs: dict[str, Any] = {"data_dir": data_dir, "checkpoint": None}
    payload = cell.payload()
    if cell.kind == "optimize":
        ckpt = checkpoint_path(store_path, cell.key)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        kwargs["checkpoint"] = os.fspath(ckpt)
    else:
        source = store.cell(cell.source_key) if cell.source_key else None
        if source is None or source["status"] != "done":
            return None
        payload["prompt"] = source["best_prompt"]
        task = tasks[cell.task]
        n = cell.config["n_test"]
        inputs = [ex.input for ex in (task.test if n is None else task.test[:n])]
        kwargs["cached"] = store.cached_replies(
            model=cell.model, dtype=cell.dtype, prompt=payload["prompt"], task=cell.task,
            split="test", inputs=inputs, max_new_tokens=cell.config["max_new_tokens"])
    store.mark_running(cell.key, worker=type(pool).__name__.strip("_").lower())
    return pool.submit(cell, payload, **kwargs)


def _outcome(future: cf.Future, cell: Cell) -> dict:
    """The worker's outcome, or a failure when the worker itself died."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a dead worker fails its cell, the grid goes on
        return {"key": cell.key, "ok": False, "error": f"worker died: {type(exc).__name__}: {exc}",
                "traceback": repr(exc)}


def _store_outcome(store: Store, cell: Cell, outcome: dict, store_path: Path) -> None:
    if not outcome["ok"]:
        logger.warning("%s failed: %s", cell.title, outcome["error"])
        store.fail(cell.key, outcome["error"], outcome["traceback"])
        return
    result = outcome["result"]
    store.finish(cell.key, result)
    records = result.get("test_records") or []
    if records:
        store.put_replies(model=cell.model, dtype=cell.dtype, prompt=result["best_prompt"],
                          task=cell.task, split="test", records=records,
                          max_new_tokens=cell.config["max_new_tokens"])
    checkpoint_path(store_path, cell.key).unlink(missing_ok=True)


def _copy_checkpoint_steps(store: Store, store_path: Path, cell: Cell,
                           seen: dict[str, int]) -> None:
    """Copy a running cell's finished steps from its checkpoint into the store."""
    path = checkpoint_path(store_path, cell.key)
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return
    if seen.get(cell.key) == stamp:
        return
    try:
        history = json.loads(path.read_text()).get("history") or []
    except (OSError, ValueError):
        return  # checkpoints are written atomically; a vanished file is read next time
    seen[cell.key] = stamp
    store.record_steps(cell.key, history)
