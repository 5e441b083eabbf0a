"""`greater optimize` for every method: same JSON schema, config flags applied, bad flags refused."""

from __future__ import annotations

import json

import pytest

from greater.cli import main
from greater.result import OptimizationResult

TINY = ["--model", "smollm2-135m", "--task", "bbh/boolean_expressions", "--n-train", "5",
        "--max-new-tokens", "24", "--n-dev", "2", "--n-test", "2", "--batch-size", "8"]


@pytest.mark.parametrize("method,extra", [
    ("greater", ["--steps", "1", "--top-k", "4", "--n-rescore", "1"]),
    ("zscot", []),
    ("apo", ["--steps", "1", "--set", "beam_size=1", "--set", "minibatch_size=5",
             "--set", "n_gradients=1", "--set", "eval_rounds=1", "--set", "samples_per_eval=2",
             "--set", "optimizer_max_new_tokens=24"]),
])
def test_optimize_writes_the_common_schema(method, extra, data_dir, tmp_path, capsys):
    out = tmp_path / f"{method}.json"
    code = main(["optimize", "--method", method, *TINY, *extra, "--data-dir", str(data_dir),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    result = OptimizationResult.from_dict(data)
    assert result.method == method
    assert result.best_prompt and 0.0 <= result.dev_accuracy <= 1.0
    assert result.config["n_train"] == 5 and result.config["max_new_tokens"] == 24
    if method != "zscot":
        assert len(result.history) == 1
    assert result.cost.generated_tokens > 0
    assert "best prompt" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["--method", "zscot", "--steps", "2"], "--steps does not apply to --method zscot"),
    (["--method", "greater", "--set", "nonsense=1"], "FIELD=VALUE"),
    (["--method", "greater", "--set", "n_rescore=many"], "not a valid int"),
    (["--method", "greater", "--n-rescore", "-1"], "--n-rescore must be >= 0"),
    (["--method", "gcg", "--optimizer-base-url", "http://127.0.0.1:9", "--optimizer-model",
      "m"], "uses no optimiser LLM"),
])
def test_bad_optimize_flags_exit_2(args, needle, data_dir, capsys):
    code = main(["optimize", *TINY, *args, "--data-dir", str(data_dir)])
    assert code == 2
    assert needle in capsys.readouterr().err
