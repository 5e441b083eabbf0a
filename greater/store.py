"""The results store: one SQLite file (WAL) holding every cell of every grid run into it.

A *cell* is one unit of work of a grid, keyed by a hash of its fully resolved config (see
``benchmarks/harness/cells.py``): an optimisation run (``kind="optimize"``) or the evaluation
of another cell's chosen prompt on a different model (``kind="evaluate"``, transfer grids).

Tables (schema version :data:`SCHEMA_VERSION`):

* ``meta``: ``schema_version`` and when the store was created.
* ``cells``: one row per cell: identity (method, model, dtype, task, seed, config JSON, data
  digest, source cell), ``status`` (pending / running / done / failed, with ``error`` and
  ``traceback``), the outcome (prompts, flexible and strict accuracies, the initial prompt's)
  and the full result JSON (without its history and test records, which have their own tables).
* ``grid_cells``: which grids hold which cell, with a JSON ``label`` (an ablation's axis and
  value, a transfer cell's role); a cell shared by two grids is stored and run once.
* ``steps``: one row per finished optimisation step (prompt, loss, train accuracy, cost).
* ``records``: per-example evaluation records of the chosen prompt (split ``test``).
* ``cost``: the cost counters of each finished cell.
* ``provenance``: models, dtype, device, versions, commit, data digest of each finished cell.
* ``replies``: cached replies keyed by (model, dtype, prompt, task, split, example,
  max_new_tokens), so transfer and re-evaluation reuse what was generated.

Only one process writes (the grid driver); every write is one transaction, so a killed writer
never leaves a half-written row. Readers (``greater grid status``, reports) may read at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import filelock

logger = logging.getLogger(__name__)

#: Version of the table layout; a store written by a newer version is refused.
SCHEMA_VERSION = 1
CELL_STATUSES = ("pending", "running", "done", "failed")
CELL_KINDS = ("optimize", "evaluate")
#: Seconds a statement waits for another connection's lock before giving up.
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('optimize', 'evaluate')),
    method TEXT NOT NULL, model TEXT NOT NULL, dtype TEXT NOT NULL, task TEXT NOT NULL,
    seed INTEGER NOT NULL, config TEXT NOT NULL, data_digest TEXT NOT NULL,
    source_key TEXT REFERENCES cells(key),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error TEXT, traceback TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, started REAL, finished REAL, worker TEXT,
    initial_prompt TEXT, best_prompt TEXT,
    dev_accuracy REAL, test_accuracy REAL, dev_accuracy_strict REAL, test_accuracy_strict REAL,
    initial_dev_accuracy REAL, initial_test_accuracy REAL, n_test INTEGER,
    warnings TEXT, result TEXT
);
CREATE TABLE IF NOT EXISTS grid_cells (
    grid TEXT NOT NULL, cell_key TEXT NOT NULL REFERENCES cells(key), label TEXT NOT NULL,
    PRIMARY KEY (grid, cell_key, label)
);
CREATE TABLE IF NOT EXISTS steps (
    cell_key TEXT NOT NULL REFERENCES cells(key), step INTEGER NOT NULL, prompt TEXT NOT NULL,
    loss REAL, train_accuracy REAL, seconds REAL, details TEXT, cost TEXT,
    PRIMARY KEY (cell_key, step)
);
CREATE TABLE IF NOT EXISTS records (
    cell_key TEXT NOT NULL REFERENCES cells(key), split TEXT NOT NULL, idx INTEGER NOT NULL,
    input TEXT NOT NULL, reasoning TEXT, response TEXT, answer TEXT, gold TEXT,
    correct INTEGER, strict_answer TEXT, strict_correct INTEGER, stopped_by TEXT,
    PRIMARY KEY (cell_key, split, idx)
);
CREATE TABLE IF NOT EXISTS cost (
    cell_key TEXT PRIMARY KEY REFERENCES cells(key),
    generated_tokens INTEGER, forward_passes INTEGER, forward_tokens INTEGER,
    backward_passes INTEGER, backward_tokens INTEGER, llm_calls INTEGER, wall_seconds REAL,
    phase_seconds TEXT
);
CREATE TABLE IF NOT EXISTS provenance (
    cell_key TEXT PRIMARY KEY REFERENCES cells(key),
    model TEXT, dtype TEXT, device TEXT, versions TEXT, git_commit TEXT, created TEXT,
    data_digest TEXT, preset TEXT, chat_date TEXT, full TEXT
);
CREATE TABLE IF NOT EXISTS replies (
    model TEXT NOT NULL, dtype TEXT NOT NULL, prompt TEXT NOT NULL, task TEXT NOT NULL,
    split TEXT NOT NULL, example TEXT NOT NULL, max_new_tokens INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (model, dtype, prompt, task, split, example, max_new_tokens)
);
"""

_COST_FIELDS = ("generated_tokens", "forward_passes", "forward_tokens", "backward_passes",
                "backward_tokens", "llm_calls", "wall_seconds")
_RECORD_FIELDS = ("input", "reasoning", "response", "answer", "gold", "correct",
                  "strict_answer", "strict_correct", "stopped_by")
_OUTCOME_FIELDS = ("initial_prompt", "best_prompt", "dev_accuracy", "test_accuracy",
                   "dev_accuracy_strict", "test_accuracy_strict", "initial_dev_accuracy",
                   "initial_test_accuracy")


class StoreError(Exception):
    """A results store that cannot be used (the message says why and what to do)."""


class StoreLockedError(StoreError):
    """Another process holds the store (a grid run, or a long write)."""


class StoreCorruptError(StoreError):
    """The file is not a readable SQLite results store."""


class StoreSchemaError(StoreError):
    """The store was written by a newer (or unknown) schema version."""


@dataclass(frozen=True)
class CellRow:
    """A cell as the grid driver registers it (its identity, before it runs).

    Attributes:
        key: the hash of the fully resolved config (64 hex digits).
        kind: ``"optimize"`` or ``"evaluate"``.
        method, model, dtype, task, seed: what runs.
        config: every field of the method's config (JSON-able).
        data_digest: sha256 of the task's examples as loaded.
        source_key: for ``"evaluate"`` cells, the optimisation cell whose prompt is evaluated.
    """

    key: str
    kind: str
    method: str
    model: str
    dtype: str
    task: str
    seed: int
    config: Mapping[str, Any]
    data_digest: str
    source_key: str | None = None


def example_digest(text: str) -> str:
    """The key of one example's input in the reply cache (sha256 hex of its text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class Store:
    """A results store file; see the module docstring for its tables.

    Args:
        path: the SQLite file (created with its folder when missing, unless ``readonly``).
        readonly: open for reading only; a missing file is an error.

    Raises:
        StoreCorruptError: the file is not a SQLite database or fails its integrity check.
        StoreSchemaError: the store was written by a newer schema version.
        StoreLockedError: another process kept the database locked past the busy timeout.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode={'ro' if readonly else 'rwc'}"
        with self._translate_errors():
            self.conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                        isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
            check = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreCorruptError(f"{self.path} failed SQLite's integrity check ({check}); "
                                        "move it aside and rerun the grid into a new store")
            self._check_schema(readonly)

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreLockedError(
                    f"{self.path} is locked by another process (waited {BUSY_TIMEOUT_S:.0f} s): "
                    f"wait for it to finish or stop it; {exc}") from exc
            raise StoreError(f"{self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(
                f"{self.path} is not a readable results store ({exc}); move it aside and "
                "rerun the grid into a new store") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._translate_errors():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _check_schema(self, readonly: bool) -> None:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreCorruptError(f"{self.path} is a SQLite file but not a results store "
                                        "(no meta table)")
            if readonly:
                raise StoreError(f"{self.path} is an empty file, not a results store")
            with self.transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)  # (executescript would commit mid-transaction)
                db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
                           (str(SCHEMA_VERSION), time.strftime("%Y-%m-%dT%H:%M:%S%z")))
            return
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None:
            raise StoreSchemaError(f"{self.path} has no readable schema_version")
        if version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"{self.path} was written by a newer greater (store schema {version}; this "
                f"version reads schema {SCHEMA_VERSION}); upgrade greater to read it")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query (for reports and tests)."""
        with self._translate_errors():
            return self.conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ cells
    def register(self, grid: str, cells: Iterable[tuple[CellRow, Mapping[str, Any]]]) -> None:
        """Add ``cells`` as pending unless already known, each with a label in ``grid`` (a cell
        may come several times with different labels)."""
        now = time.time()
        with self.transaction() as db:
            for cell, label in cells:
                db.execute(
                    "INSERT OR IGNORE INTO cells (key, kind, method, model, dtype, task, seed, "
                    "config, data_digest, source_key, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (cell.key, cell.kind, cell.method, cell.model, cell.dtype, cell.task,
                     cell.seed, _dumps(dict(cell.config)), cell.data_digest, cell.source_key, now))
                db.execute("INSERT OR IGNORE INTO grid_cells VALUES (?,?,?)",
                           (grid, cell.key, _dumps(dict(label))))

    def prune(self, grid: str, keep: Iterable[str], *, dry_run: bool = False) -> list[str]:
        """Drop from ``grid`` every cell whose key is not in ``keep`` (cells an earlier version
        of its spec made), and delete those no grid holds any more with their steps, records,
        cost and provenance. Cached replies stay (they are keyed by prompt, not by cell).
        Returns the keys dropped from the grid, sorted; ``dry_run`` changes nothing."""
        wanted = set(keep)
        members = {r["cell_key"] for r in self.query(
            "SELECT DISTINCT cell_key FROM grid_cells WHERE grid=?", (grid,))}
        dropped = sorted(members - wanted)
        if dry_run or not dropped:
            return dropped
        with self.transaction() as db:
            db.executemany("DELETE FROM grid_cells WHERE grid=? AND cell_key=?",
                           [(grid, k) for k in dropped])
            orphans = [k for k in dropped if db.execute(
                "SELECT 1 FROM grid_cells WHERE cell_key=? LIMIT 1", (k,)).fetchone() is None]
            for table, column in (("steps", "cell_key"), ("records", "cell_key"),
                                  ("cost", "cell_key"), ("provenance", "cell_key"),
                                  ("cells", "key")):
                db.executemany(f"DELETE FROM {table} WHERE {column}=?", [(k,) for k in orphans])
        return dropped

    def snapshot(self, dest: str | os.PathLike, *, slim: bool = False) -> Path:
        """Write a consistent one-file copy of the store to ``dest`` (replaced if there) and
        return its path. Safe while a grid writes the store: SQLite's online backup copies one
        committed state; the copy is in rollback-journal mode and vacuumed, so it is a single
        file to commit or send, and it opens as a store like any other.

        ``slim`` leaves out what no report reads, to keep a committed copy small: the reply
        cache (recomputed on demand) and the per-example reasoning and response texts (answers,
        gold answers and verdicts stay)."""
        dest = Path(dest)
        if dest.resolve() == self.path.resolve():
            raise StoreError(f"the snapshot of {self.path} cannot replace the store itself")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        tmp.unlink(missing_ok=True)
        with self._translate_errors():
            target = sqlite3.connect(tmp, isolation_level=None)
            try:
                self.conn.backup(target)
                if slim:
                    target.execute("DELETE FROM replies")
                    target.execute("UPDATE records SET reasoning = NULL, response = NULL")
                target.execute("PRAGMA journal_mode = DELETE")
                target.execute("VACUUM")
            finally:
                target.close()
        os.replace(tmp, dest)
        return dest

    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{cell key: status}`` for ``keys`` (all cells when None; unknown keys left out)."""
        rows = self.query("SELECT key, status FROM cells")
        wanted = None if keys is None else set(keys)
        return {r["key"]: r["status"] for r in rows if wanted is None or r["key"] in wanted}

    def cell(self, key: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM cells WHERE key=?", (key,))
        return rows[0] if rows else None

    def mark_running(self, key: str, worker: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET status='running', started=?, worker=?, "
                       "attempts=attempts+1, error=NULL, traceback=NULL WHERE key=?",
                       (time.time(), worker, key))

    def record_steps(self, key: str, history: Sequence[Mapping[str, Any]]) -> int:
        """Upsert finished steps of a cell (from its checkpoint or result); returns how many."""
        with self.transaction() as db:
            _upsert_steps(db, key, history)
        return len(history)

    def finish(self, key: str, result: Mapping[str, Any], *, split: str = "test") -> None:
        """Store a cell's finished result (``OptimizationResult.to_dict()`` or an evaluation
        result of the same shape): outcome, steps, records, cost, provenance, in one write."""
        records = result.get("test_records") or []
        outcome = [result.get(f) for f in _OUTCOME_FIELDS]
        rest = {k: v for k, v in result.items() if k not in ("history", "test_records")}
        cost = result["cost"]
        prov = result.get("provenance") or {}
        with self.transaction() as db:
            db.execute(
                "UPDATE cells SET status='done', finished=?, error=NULL, traceback=NULL, "
                + ", ".join(f"{f}=?" for f in _OUTCOME_FIELDS)
                + ", n_test=?, warnings=?, result=? WHERE key=?",
                (time.time(), *outcome, len(records), _dumps(result.get("warnings") or []),
                 _dumps(rest), key))
            history = result.get("history") or []
            db.execute("DELETE FROM steps WHERE cell_key=? AND step>?",
                       (key, max((h["step"] for h in history), default=-1)))
            _upsert_steps(db, key, history)
            db.execute("DELETE FROM records WHERE cell_key=?", (key,))
            for i, rec in enumerate(records):
                db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           (key, split, i, *[rec.get(f) for f in _RECORD_FIELDS]))
            db.execute("INSERT OR REPLACE INTO cost VALUES (?,?,?,?,?,?,?,?,?)",
                       (key, *[cost.get(f) for f in _COST_FIELDS],
                        _dumps(cost.get("phase_seconds") or {})))
            db.execute("INSERT OR REPLACE INTO provenance VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (key, prov.get("model"), prov.get("dtype"), prov.get("device"),
                        _dumps(prov.get("versions") or {}), prov.get("git_commit"),
                        prov.get("created"), prov.get("data_digest"), prov.get("preset"),
                        prov.get("chat_date"), _dumps(prov)))

    def fail(self, key: str, error: str, traceback: str) -> None:
        """Mark a cell failed with its error and traceback (the grid goes on)."""
        with self.transaction() as db:
            db.execute("UPDATE cells SET status='failed', finished=?, error=?, traceback=? "
                       "WHERE key=?", (time.time(), error, traceback, key))

    # ------------------------------------------------------------------ reply cache
    def cached_replies(self, *, model: str, dtype: str, prompt: str, task: str, split: str,
                       inputs: Sequence[str], max_new_tokens: int) -> dict[str, dict]:
        """``{example input: record dict}`` of the cached replies among ``inputs``."""
        wanted = {example_digest(text): text for text in inputs}
        rows = self.query(
            "SELECT example, record FROM replies WHERE model=? AND dtype=? AND prompt=? AND "
            "task=? AND split=? AND max_new_tokens=?",
            (model, dtype, prompt, task, split, max_new_tokens))
        return {wanted[r["example"]]: json.loads(r["record"]) for r in rows
                if r["example"] in wanted}

    def put_replies(self, *, model: str, dtype: str, prompt: str, task: str, split: str,
                    records: Sequence[Mapping[str, Any]], max_new_tokens: int) -> None:
        """Cache per-example records (each with its ``input``) under the reply key."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO replies VALUES (?,?,?,?,?,?,?,?)",
                [(model, dtype, prompt, task, split, example_digest(rec["input"]),
                  max_new_tokens, _dumps(dict(rec))) for rec in records])


def _upsert_steps(db: sqlite3.Connection, key: str,
                  history: Sequence[Mapping[str, Any]]) -> None:
    """Insert or replace step rows (one per ``StepRecord`` dict) of cell ``key``."""
    db.executemany(
        "INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?)",
        [(key, h["step"], h["prompt"], h.get("loss"), h.get("train_accuracy"), h.get("seconds"),
          _dumps(h.get("details") or {}), _dumps(h.get("cost"))) for h in history])


@contextmanager
def exclusive_writer(path: str | os.PathLike) -> Iterator[None]:
    """Hold the store's writer lock (``<store>.lock``) for a grid run.

    Raises:
        StoreLockedError: another grid run is writing this store.
    """
    lock = filelock.FileLock(f"{os.fspath(path)}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise StoreLockedError(f"another grid run is writing {path} (its lock {lock.lock_file} "
                               "is held); wait for it or use another --store") from None
    try:
        yield
    finally:
        lock.release()
