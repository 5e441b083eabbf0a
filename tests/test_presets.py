"""Presets: the research code's settings by name; explicit values win; the result records it."""

from __future__ import annotations

import json

import pytest

from greater.cli import main
from greater.optimizer import GreaterConfig
from greater.presets import PRESETS, build_config, get_preset


def test_paper_bbh_is_the_research_code_bbh_setting():
    cfg = build_config("greater", "paper-bbh")
    assert isinstance(cfg, GreaterConfig)
    assert (cfg.top_k, cfg.n_intersections, cfg.max_new_tokens, cfg.n_train, cfg.steps,
            cfg.n_rescore) == (40, 6, 1024, 50, 125, 3)
    default = GreaterConfig()
    assert default.steps != cfg.steps and default.top_k != cfg.top_k  # defaults stay CPU-sized


def test_explicit_values_override_the_preset_and_shared_fields_reach_baselines():
    cfg = build_config("greater", "paper-gsm8k", {"steps": 2, "top_k": 7})
    assert (cfg.steps, cfg.top_k, cfg.n_train, cfg.max_new_tokens) == (2, 7, 50, 1024)
    ape = build_config("ape", "paper-bbh")
    assert (ape.n_train, ape.max_new_tokens) == (50, 1024)  # same sizes for every method
    assert not hasattr(ape, "top_k")


def test_unknown_preset_and_field_are_clear_errors():
    with pytest.raises(ValueError, match="did you mean 'paper-bbh'"):
        get_preset("paper-bhh")
    with pytest.raises(ValueError, match="did you mean 'top_k'"):
        build_config("greater", None, {"topk": 3})
    assert set(PRESETS) == {"paper-bbh", "paper-gsm8k", "paper-folio"}


@pytest.mark.model
def test_cli_preset_runs_and_is_recorded(data_dir, tmp_path):
    out = tmp_path / "run.json"
    code = main(["optimize", "--preset", "paper-bbh", "--steps", "2", "--n-train", "5",
                 "--max-new-tokens", "8", "--n-dev", "1", "--n-test", "0", "--n-rescore", "1",
                 "--task", "bbh/boolean_expressions", "--data-dir", str(data_dir),
                 "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["provenance"]["preset"] == "paper-bbh"
    config = data["config"]
    assert (config["top_k"], config["n_intersections"], config["steps"], config["n_train"],
            config["max_new_tokens"]) == (40, 6, 2, 5, 8)
