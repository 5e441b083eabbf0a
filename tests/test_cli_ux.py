"""What a person at the command line sees: help with defaults, `greater list`, errors in the
flags' words (one line, exit 2, before any model loads), warnings of methods that could do no
work, the run summary, and Ctrl-C.

Runs that need a model use the session's real stand-in (smollm2-135m, bf16) instead of loading
a fresh copy per command; everything else about the command is real.
"""

from __future__ import annotations

import json
import socket

import pytest

from greater import cli
from greater.cli import build_parser, main
from greater.cost import CostMeter
from greater.engines import EngineError
from greater.methods import get_method, method_names

TINY = ["--task", "bbh/boolean_expressions", "--n-train", "3", "--max-new-tokens", "16",
        "--n-dev", "2", "--batch-size", "8"]


def _error_line(err: str) -> str:
    """The one error line (stderr may also hold progress bars and log lines)."""
    lines = [line for line in err.splitlines() if line.startswith("greater: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command loads the task model."""
    def refuse(args):
        raise AssertionError("the task model was loaded")

    monkeypatch.setattr(cli, "_load_lm", refuse)


@pytest.fixture
def shared_lm(monkeypatch, lm16):
    monkeypatch.setattr(cli, "_load_lm", lambda args: lm16)
    return lm16


class UnparseableEngine:
    """An optimiser LLM whose replies hold no instruction at all."""

    name = "unparseable"

    def __init__(self) -> None:
        self.meter = CostMeter()
        self.calls = 0

    def complete(self, messages, *, max_new_tokens, temperature, seed):
        self.calls += 1
        return ["I am sorry, I cannot help with that."] * len(messages)


class FailingEngine(UnparseableEngine):
    def complete(self, messages, *, max_new_tokens, temperature, seed):
        raise EngineError("http://127.0.0.1:1/v1: no reply after 4 attempts")


# ------------------------------------------------------------------------------ help, list
def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_shows_defaults_examples_and_version(capsys):
    top = _help(capsys)
    assert "examples:" in top and "greater optimize" in top
    assert "``" not in top and ":mod:" not in top
    opt = " ".join(_help(capsys, "optimize").split())  # help wraps at the terminal width
    for needle in ("--n-train N_TRAIN", "(default: 50)", "greater 100", "(default: greater)",
                   "(default: smollm2-135m)", "(default: OPENAI_API_KEY)"):
        assert needle in opt, needle
    assert "canonical split" in _help(capsys, "eval")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("greater ")


def test_list_methods_names_each_methods_flags(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    blocks = {}
    for line in out.splitlines()[1:]:
        if not line.startswith("      "):
            name = line.strip().split(":")[0]
            blocks[name] = ""
        else:
            blocks[name] += line
    assert sorted(blocks) == method_names()
    assert "--no-reasoning" in blocks["greater"] and "--no-reasoning" not in blocks["ape"]
    assert "n_candidates=" in blocks["ape"]  # a field only --set reaches, with its default
    assert "--top-k" in blocks["gcg"] and "--top-k" not in blocks["zscot"]


@pytest.mark.parametrize("what,needles", [
    ("tasks", ["bbh/navigate", "gsm8k", "folio", "bbh-paper"]),
    ("models", ["smollm2-135m (default)", "gemma3-270m", "llama-3-8b"]),
    ("presets", ["paper-bbh", "paper-gsm8k", "paper-folio"]),
])
def test_list_names_everything(what, needles, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    for needle in needles:
        assert needle in out


# ------------------------------------------------------------------- errors in flag words
@pytest.mark.parametrize("args,needles", [
    (["--n-train", "4"], ["--n-train (4)", "--set intersection_size"]),
    (["--method", "ape", "--no-reasoning"], ["--no-reasoning does not apply to --method ape",
                                             "greater"]),
    (["--task", "bbh-paper"], ["group of 21 tasks", "--task bbh/<name>"]),
    (["--steps", "0"], ["--steps must be"]),
    (["--method", "zscot", "--steps", "2"], ["--steps does not apply"]),
    (["--optimizer-model", "gpt-4o"], ["--optimizer-model needs --optimizer-base-url"]),
])
def test_errors_name_the_flags_and_come_before_the_model(args, needles, data_dir, no_model,
                                                         capsys):
    argv = ["optimize", "--data-dir", str(data_dir), "--task", "bbh/navigate", *args]
    assert main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    for needle in needles:
        assert needle in line, line
    assert "n_train" not in line and "use_reasoning" not in line


def test_debug_shows_the_traceback(data_dir, no_model):
    with pytest.raises(ValueError, match="intersection_size"):
        main(["optimize", "--data-dir", str(data_dir), "--n-train", "4", "--debug"])


def test_preset_is_not_overridden_by_a_default_nobody_typed():
    from greater.optimizer.cli_args import build_config

    args = build_parser().parse_args(["optimize", "--preset", "paper-bbh", "--steps", "2"])
    cfg = build_config("greater", args)
    assert (cfg.max_new_tokens, cfg.top_k, cfg.steps) == (1024, 40, 2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_fast_before_the_model_loads(data_dir, no_model, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("GREATER_TEST_KEY", "not-a-secret")
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code = main(["optimize", "--method", "textgrad", *TINY, "--data-dir", str(data_dir),
                 "--optimizer-base-url", url, "--optimizer-model", "m",
                 "--optimizer-key-env", "GREATER_TEST_KEY"])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert "cannot reach" in line and url in line


# ------------------------------------------------------------------------ runs (real model)
def test_method_that_did_no_work_warns_in_summary_and_result(data_dir, shared_lm, tmp_path,
                                                            capsys, monkeypatch):
    engine = UnparseableEngine()
    monkeypatch.setattr("greater.optimizer.cli_args.optimizer_engine", lambda args, uses: engine)
    out = tmp_path / "ape.json"
    code = main(["optimize", "--method", "ape", *TINY, "--set", "n_candidates=3",
                 "--n-test", "0", "--data-dir", str(data_dir), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert engine.calls == 1
    result = json.loads(out.read_text())
    assert result["status"] == "done"
    assert any("none of the 3 proposals" in w for w in result["warnings"])
    assert "warning: none of the 3 proposals" in captured.out
    assert "best prompt:    the initial prompt" in captured.out
    # the summary shows the initial prompt's dev accuracy beside the best's, and no "None"
    assert "None" not in captured.out
    assert "test accuracy" in captured.out and "skipped (--n-test 0)" in captured.out
    dev_line = next(line for line in captured.out.splitlines() if line.startswith("dev accuracy"))
    assert dev_line.count(f"{result['initial_dev_accuracy']:.3f}") >= 1
    assert "dev 1/1" in captured.err  # the dev scoring has a progress bar


def test_engine_error_mid_run_is_one_line_and_names_the_partial_result(data_dir, shared_lm,
                                                                       tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr("greater.optimizer.cli_args.optimizer_engine",
                        lambda args, uses: FailingEngine())
    out = tmp_path / "ape.json"
    code = main(["optimize", "--method", "ape", *TINY, "--set", "n_candidates=2",
                 "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert "no reply after 4 attempts" in line and "no step had finished" in line


def test_interrupted_run_says_where_its_partial_result_is(data_dir, shared_lm, tmp_path, capsys,
                                                          monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("greater.run.choose_final", interrupt)  # after the last step
    out = tmp_path / "zscot.json"
    code = main(["optimize", "--method", "zscot", *TINY, "--data-dir", str(data_dir),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    saved = json.loads(out.read_text())
    assert saved["status"] == "partial" and len(saved["history"]) == 1
    assert f"the partial result after step 1 is in {out}" in err
    assert "resume" in err


def test_interrupted_before_any_step_says_nothing_was_written(data_dir, shared_lm, tmp_path,
                                                              capsys, monkeypatch):
    def interrupt(self, run, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(get_method("zscot").strategy, "step", interrupt)
    out = tmp_path / "zscot.json"
    assert main(["optimize", "--method", "zscot", *TINY, "--data-dir", str(data_dir),
                 "--out", str(out)]) == 130
    assert f"no step had finished, so {out} was not written" in capsys.readouterr().err
    assert not out.exists()


def test_config_messages_are_reworded_in_flags_once():
    from greater.optimizer.cli_args import in_flag_words

    message = "intersection_size (5) cannot exceed n_train (4); steps must be >= 1"
    worded = in_flag_words(message)
    assert worded == ("--set intersection_size (5) cannot exceed --n-train (4); steps must "
                      "be >= 1")
    assert in_flag_words(worded) == worded
    assert in_flag_words("/runs/n_train/x.json: n_train is 60") == \
        "/runs/n_train/x.json: --n-train is 60"
