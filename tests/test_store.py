"""The results store: schema, writes, reply cache, and its refusals (newer schema, locked,
corrupt), plus ``greater.results`` reading it back. No model: the rows are built by hand."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

import greater.store as store_module
from greater import results
from greater.store import (SCHEMA_VERSION, CellRow, Store, StoreCorruptError, StoreLockedError,
                           StoreSchemaError, exclusive_writer)


def _cell(key: str = "k1", **kw) -> CellRow:
    base = dict(key=key, kind="optimize", method="greater", model="smollm2-135m", dtype="bf16",
                task="bbh/navigate", seed=0, config={"steps": 2, "top_k": 4}, data_digest="d" * 64)
    base.update(kw)
    return CellRow(**base)


def _record(text: str, correct: bool) -> dict:
    return {"input": text, "reasoning": "r", "response": "r ans", "answer": "Yes", "gold": "Yes",
            "correct": correct, "strict_answer": "Yes", "strict_correct": correct,
            "stopped_by": "answer"}


def _result(n_steps: int = 2) -> dict:
    return {"method": "greater", "model": "smollm2-135m", "task": "bbh/navigate",
            "initial_prompt": "p0", "best_prompt": "p2", "dev_accuracy": 0.5,
            "test_accuracy": 0.5, "dev_accuracy_strict": 0.5, "test_accuracy_strict": 0.5,
            "initial_dev_accuracy": 0.0, "initial_test_accuracy": 0.5,
            "history": [{"step": i, "prompt": f"p{i}", "loss": 1.0 / i, "train_accuracy": 0.5,
                         "seconds": 0.1, "details": {}, "cost": None}
                        for i in range(1, n_steps + 1)],
            "test_records": [_record("q1", True), _record("q2", False)],
            "cost": {"generated_tokens": 10, "forward_passes": 3, "forward_tokens": 30,
                     "backward_passes": 1, "backward_tokens": 9, "llm_calls": 0,
                     "wall_seconds": 1.5, "phase_seconds": {"gradient": 0.5}},
            "config": {"steps": 2}, "seed": 0, "status": "done", "warnings": [],
            "provenance": {"model": "smollm2-135m", "dtype": "bf16", "device": "cpu",
                           "versions": {"torch": "x"}, "data_digest": "d" * 64}}


def test_new_store_is_wal_with_current_schema(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        assert st.query("PRAGMA journal_mode")[0][0] == "wal"
        assert st.query("SELECT value FROM meta WHERE key='schema_version'")[0][0] == \
            str(SCHEMA_VERSION)
    with Store(path, readonly=True) as st:  # reopening keeps it
        assert st.statuses() == {}


def test_cell_lifecycle_writes_each_row_once(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.register("g", [(_cell(), {}), (_cell(), {})])  # registering twice is harmless
        st.register("g2", [(_cell(), {"axis": "top_k", "value": 4})])
        assert st.statuses() == {"k1": "pending"}
        st.mark_running("k1", worker="local")
        st.record_steps("k1", _result(1)["history"])
        st.record_steps("k1", _result(2)["history"])  # a later checkpoint: upsert, no duplicate
        assert [r[0] for r in st.query("SELECT step FROM steps ORDER BY step")] == [1, 2]
        st.finish("k1", _result(2))
        row = st.cell("k1")
        assert (row["status"], row["best_prompt"], row["n_test"], row["attempts"]) == \
            ("done", "p2", 2, 1)
        assert st.query("SELECT count(*) FROM records")[0][0] == 2
        assert st.query("SELECT generated_tokens FROM cost")[0][0] == 10
        assert st.query("SELECT device FROM provenance")[0][0] == "cpu"
        assert st.query("PRAGMA integrity_check")[0][0] == "ok"


def test_failed_cell_keeps_error_and_traceback(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.register("g", [(_cell(), {})])
        st.fail("k1", "ValueError: boom", "Traceback ...\nValueError: boom")
        row = st.cell("k1")
        assert (row["status"], row["error"]) == ("failed", "ValueError: boom")
        assert "Traceback" in row["traceback"]


def test_a_failed_write_leaves_no_half_row(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.register("g", [(_cell(), {})])
        broken = _result()
        broken["test_records"] = [{"input": None}]  # NOT NULL input: the insert fails
        with pytest.raises(store_module.StoreError):
            st.finish("k1", broken)
        assert st.cell("k1")["status"] == "pending"
        assert st.query("SELECT count(*) FROM steps")[0][0] == 0


def test_reply_cache_round_trip(tmp_path):
    key = dict(model="m", dtype="bf16", prompt="p", task="t", split="test", max_new_tokens=8)
    with Store(tmp_path / "s.sqlite") as st:
        st.put_replies(records=[_record("q1", True), _record("q2", False)], **key)
        got = st.cached_replies(inputs=["q2", "q3"], **key)
        assert list(got) == ["q2"] and got["q2"]["correct"] is False
        assert st.cached_replies(inputs=["q1"], **{**key, "max_new_tokens": 16}) == {}


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreSchemaError, match="newer"):
        Store(path)


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreCorruptError, match="not a readable results store"):
        Store(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreCorruptError, match="not a results store"):
        Store(other)


def test_locked_store_gives_a_clear_message(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Store(path) as st, pytest.raises(StoreLockedError, match="locked by another"):
            st.register("g", [(_cell(), {})])
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "s.sqlite"
    with exclusive_writer(path):
        with pytest.raises(StoreLockedError, match="another grid run"):
            with exclusive_writer(path):
                pass
    with exclusive_writer(path):  # released
        pass


def test_results_load_and_export(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.register("g", [(_cell("k1"), {}), (_cell("k2", method="ape"), {})])
        st.finish("k1", _result())
    frame = results.load(path)
    assert list(frame["key"]) == ["k1", "k2"]
    done = frame.set_index("key").loc["k1"]
    assert (done["status"], done["test_accuracy"], done["n_steps"], done["config.top_k"]) == \
        ("done", 0.5, 2, 4)
    assert frame.set_index("key").loc["k2", "status"] == "pending"
    for fmt, reader in (("csv", pd.read_csv), ("parquet", pd.read_parquet),
                        ("jsonl", lambda p: pd.read_json(p, lines=True))):
        out = results.export(path, tmp_path / f"cells.{fmt}", fmt)
        back = reader(out)
        assert list(back["key"]) == ["k1", "k2"]
        assert back["test_accuracy"].iloc[0] == 0.5
    steps = results.load_table(path, "steps")
    assert list(steps["step"]) == [1, 2]
    with pytest.raises(ValueError, match="valid formats"):
        results.export(path, tmp_path / "x", "xlsx")


def test_export_and_status_commands(tmp_path, capsys):
    from greater.cli import main

    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.register("cpu-smoke", [(_cell("k1"), {}), (_cell("k2", method="ape"), {})])
        st.finish("k1", _result())
        st.fail("k2", "RuntimeError: out of memory", "Traceback ...")
    assert main(["results", "export", "--store", str(path), "--format", "jsonl"]) == 0
    out = tmp_path / "s.cells.jsonl"
    assert out.is_file() and len(out.read_text().splitlines()) == 2
    assert main(["grid", "status", "cpu-smoke", "--store", str(path)]) == 0
    text = capsys.readouterr().out
    assert "1 done, 1 failed" in text and "out of memory" in text
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 500)
    assert main(["results", "export", "--store", str(tmp_path / "junk.sqlite")]) == 2
    assert "not a readable results store" in capsys.readouterr().err


def test_prune_drops_only_cells_the_spec_no_longer_makes(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.register("g", [(_cell("old"), {}), (_cell("new"), {}), (_cell("shared"), {})])
        st.register("other", [(_cell("shared"), {})])
        for key in ("old", "new", "shared"):
            st.finish(key, _result())
        st.put_replies(records=[_record("q1", True)], model="m", dtype="bf16", prompt="p",
                       task="t", split="test", max_new_tokens=8)
        assert st.prune("g", ["new"], dry_run=True) == ["old", "shared"]
        assert set(st.statuses()) == {"old", "new", "shared"}  # a dry run changes nothing
        assert st.prune("g", ["new"]) == ["old", "shared"]
        # "old" is gone with its rows; "shared" stays, held by the other grid
        assert set(st.statuses()) == {"new", "shared"}
        for table in ("steps", "records", "cost", "provenance"):
            keys = {r[0] for r in st.query(f"SELECT DISTINCT cell_key FROM {table}")}
            assert keys == {"new", "shared"}, table
        assert {tuple(r) for r in st.query("SELECT grid, cell_key FROM grid_cells")} == \
            {("g", "new"), ("other", "shared")}
        assert st.query("SELECT count(*) FROM replies")[0][0] == 1
        assert st.prune("g", ["new"]) == []


def test_prune_command_names_the_dropped_cells(tmp_path, capsys, data_dir):
    from greater.cli import main

    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.register("cpu-smoke", [(_cell("stale0123456789"), {})])
    args = ["grid", "prune", "cpu-smoke", "--store", str(path), "--data-dir", str(data_dir)]
    assert main(args + ["--dry-run"]) == 0
    assert "would drop stale0123456 greater bbh/navigate (pending)" in capsys.readouterr().out
    assert main(args) == 0
    assert "dropped 1 of its cells" in capsys.readouterr().out
    with Store(path, readonly=True) as st:
        assert st.statuses() == {}
    assert main(["grid", "prune", "cpu-smoke", "--store", str(tmp_path / "none.sqlite"),
                 "--data-dir", str(data_dir)]) == 2


def test_snapshot_is_one_consistent_file_while_a_writer_holds_the_store(tmp_path):
    from greater.cli import main

    live = tmp_path / "live.sqlite"
    with Store(live) as writer:  # stays open with uncheckpointed WAL pages, as in a grid run
        writer.register("g", [(_cell("k1"), {}), (_cell("k2"), {})])
        writer.finish("k1", _result())
        assert (tmp_path / "live.sqlite-wal").stat().st_size > 0
        out = tmp_path / "snap" / "copy.sqlite"
        assert main(["results", "snapshot", "--store", str(live), "--out", str(out)]) == 0
        assert sorted(p.name for p in out.parent.iterdir()) == ["copy.sqlite"]
        with Store(out, readonly=True) as copy:
            assert copy.statuses() == {"k1": "done", "k2": "pending"}
            assert copy.query("PRAGMA journal_mode")[0][0] == "delete"
            assert copy.query("SELECT count(*) FROM records")[0][0] == 2
        writer.finish("k2", _result())
        with Store(live, readonly=True) as db:
            db.snapshot(out)  # replaces the earlier copy
            with pytest.raises(store_module.StoreError, match="cannot replace the store"):
                db.snapshot(live)
    with Store(out, readonly=True) as copy:
        assert copy.statuses() == {"k1": "done", "k2": "done"}
    slim = tmp_path / "slim.sqlite"
    with Store(live) as db:
        db.put_replies(records=[_record("q1", True)], model="m", dtype="bf16", prompt="p",
                       task="t", split="test", max_new_tokens=8)
    assert main(["results", "snapshot", "--store", str(live), "--out", str(slim),
                 "--slim"]) == 0
    with Store(slim, readonly=True) as copy:  # what reports read stays; the cache and texts go
        assert copy.statuses() == {"k1": "done", "k2": "done"}
        assert copy.query("SELECT count(*) FROM replies")[0][0] == 0
        rows = copy.query("SELECT reasoning, response, answer, correct FROM records")
        assert len(rows) == 4 and all(r[0] is None and r[1] is None for r in rows)
        assert all(r[2] == "Yes" for r in rows)
