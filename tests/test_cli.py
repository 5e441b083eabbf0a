"""The `greater eval` command line, run in-process with the real stand-in and data."""

from __future__ import annotations

import json

import pytest

from greater.cli import main


def _eval_args(data_dir, *extra: str) -> list[str]:
    return ["eval", "--model", "smollm2-135m", "--task", "bbh/boolean_expressions",
            "--split", "dev", "--limit", "3", "--max-new-tokens", "48",
            "--data-dir", str(data_dir), *extra]


def test_eval_prints_accuracy_and_writes_json(data_dir, tmp_path, capsys):
    out = tmp_path / "results" / "eval.json"
    assert main(_eval_args(data_dir, "--out", str(out), "--dtype", "bf16")) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and f"wrote {out}" in printed
    data = json.loads(out.read_text())
    assert 0.0 <= data["accuracy"] <= 1.0
    assert len(data["records"]) == 3
    assert data["n_correct"] == sum(r["correct"] for r in data["records"])
    assert data["accuracy"] == pytest.approx(data["n_correct"] / 3)
    assert f"accuracy {data['accuracy']:.3f}" in printed
    assert data["model"] == "smollm2-135m" and data["split"] == "dev"
    assert data["config"]["max_new_tokens"] == 48


def _error_line(err: str) -> str:
    """The CLI's error line (stderr may also hold transformers' progress bars)."""
    lines = [line for line in err.splitlines() if line.startswith("greater: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--model", "no-such-model-xyz"], "no-such-model-xyz"),
    (["--task", "bbh/no_such_task"], "no_such_task"),
])
def test_unknown_model_or_task_exits_2(data_dir, capsys, args, needle):
    argv = _eval_args(data_dir)
    flag = args[0]
    argv[argv.index(flag) + 1] = args[1]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in _error_line(err)
    assert "Traceback" not in err


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_exits_2(data_dir, capsys, prompt):
    assert main(_eval_args(data_dir, "--prompt", prompt, "--dtype", "bf16")) == 2
    line = _error_line(capsys.readouterr().err)
    assert "prompt" in line and "empty" in line


def test_bad_limit_exits_2(data_dir, capsys):
    argv = _eval_args(data_dir, "--dtype", "bf16")
    argv[argv.index("--limit") + 1] = "0"
    assert main(argv) == 2
    assert "limit" in _error_line(capsys.readouterr().err)
