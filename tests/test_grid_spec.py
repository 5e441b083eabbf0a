"""Grid specs, cells and their keys, dry-run bounds: every shipped spec, and bad input failing
before any cell runs with the file, the cell and the valid choices. No model is loaded."""

from __future__ import annotations

import textwrap

import pytest

from benchmarks.harness.cells import filter_cells, resolve_cells
from benchmarks.harness.estimate import estimate
from benchmarks.harness.spec import TRANSFER_TASKS, SpecError, grid_names, load_spec
from greater.cli import main

SHIPPED = ("cpu-smoke", "cpu-comparison", "cpu-ablation", "cpu-transfer", "paper-comparison",
           "paper-ablation", "paper-transfer")


def _spec(tmp_path, body: str, name: str = "g"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


BASE = """
kind = "comparison"
methods = ["greater"]
tasks = ["bbh/navigate"]
models = ["smollm2-135m"]
seeds = [0]
[defaults]
n_train = 5
steps = 2
"""


def test_every_grid_is_shipped():
    assert set(SHIPPED) <= set(grid_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_dry_run_lists_every_cell_with_its_bounds(name, data_dir, capsys):
    assert main(["grid", "run", name, "--dry-run", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    spec = load_spec(name)
    cells = resolve_cells(spec, data_dir=data_dir)
    assert f"{len(cells)} cells" in out
    assert all(c.key[:12] in out for c in cells)
    assert "total:" in out and "generated tokens" in out


def test_cpu_smoke_covers_every_registered_method(data_dir):
    from benchmarks.harness.registry import method_names

    cells = resolve_cells(load_spec("cpu-smoke"), data_dir=data_dir)
    assert {c.method for c in cells} == set(method_names())


def test_keys_follow_the_resolved_config(tmp_path, data_dir):
    one = resolve_cells(load_spec(_spec(tmp_path, BASE)), data_dir=data_dir)
    again = resolve_cells(load_spec(_spec(tmp_path, BASE)), data_dir=data_dir)
    assert [c.key for c in one] == [c.key for c in again]
    changed = resolve_cells(load_spec(_spec(tmp_path, BASE.replace("steps = 2", "steps = 3"))),
                            data_dir=data_dir)
    seeds = resolve_cells(load_spec(_spec(tmp_path, BASE.replace("seeds = [0]", "seeds = [0, 1]"))),
                          data_dir=data_dir)
    assert changed[0].key != one[0].key
    assert len({c.key for c in seeds}) == 2 and one[0].key in {c.key for c in seeds}
    assert one[0].config["steps"] == 2 and one[0].config["top_k"] == 10  # every field resolved
    assert len(one[0].data_digest) == 64


def test_ablation_sweeps_one_field_at_a_time_and_shares_the_base_cell(data_dir):
    spec = load_spec("cpu-ablation")
    cells = resolve_cells(spec, data_dir=data_dir)
    per_task = sum(len(v) for v in spec.sweep.values()) - (len(spec.sweep) - 1)
    assert len(cells) == per_task * len(spec.tasks)
    base = [c for c in cells if len(c.labels) == len(spec.sweep)]
    assert len(base) == len(spec.tasks)  # the base config, reached by every sweep
    for cell in cells:
        for label in cell.labels:
            assert cell.config[label["axis"]] == label["value"]


def test_transfer_evaluates_each_source_prompt_on_the_target(data_dir):
    spec = load_spec("cpu-transfer")
    assert spec.tasks == TRANSFER_TASKS
    cells = resolve_cells(spec, data_dir=data_dir)
    sources = {c.key: c for c in cells if c.kind == "optimize"}
    targets = [c for c in cells if c.kind == "evaluate"]
    assert len(sources) == len(spec.methods) * len(spec.tasks) * len(spec.models)
    assert len(targets) == len(sources)  # one pair per source model
    for cell in targets:
        src = sources[cell.source_key]
        assert (src.method, src.task, src.seed) == (cell.method, cell.task, cell.seed)
        assert (src.model, cell.model) in spec.pairs


def test_filter_cells(data_dir):
    cells = resolve_cells(load_spec("cpu-smoke"), data_dir=data_dir)
    picked = filter_cells(cells, "method=greater,task=bbh/navigate")
    assert [(c.method, c.task) for c in picked] == [("greater", "bbh/navigate")]
    with pytest.raises(ValueError, match="field=value"):
        filter_cells(cells, "colour=red")


def test_greater_bound(tmp_path, data_dir):
    (cell,) = resolve_cells(load_spec(_spec(tmp_path, BASE + "n_dev = 3\nn_test = 5\n")),
                            data_dir=data_dir)
    from greater.tasks import load_task

    bound = estimate(cell, load_task("bbh/navigate", data_dir=data_dir))
    c = cell.config
    assert bound.steps == 2
    assert bound.generations == 2 * 5 * (1 + c["n_rescore"]) + c["n_contenders"] * 3 + 2 * 5
    assert bound.tokens == bound.generations * c["max_new_tokens"]


@pytest.mark.parametrize("edit, message", [
    (("methods = [\"greater\"]", "methods = [\"greatr\"]"), "unknown method 'greatr'.*greater"),
    (("tasks = [\"bbh/navigate\"]", "tasks = [\"bbh/navigat\"]"), "unknown task 'bbh/navigat'"),
    (("models = [\"smollm2-135m\"]", "models = [\"smollm3\"]"), "smollm3"),
    (("kind = \"comparison\"", "kind = \"compare\""), "kind must be one of comparison"),
    (("seeds = [0]", "seeds = [0]\npreset = \"papr\""), "unknown preset 'papr'"),
    (("seeds = [0]", "seeds = [0]\nmodel = \"x\""), "unknown key 'model'.*models"),
    (("steps = 2", "stepz = 2"), "no selected method has a config field 'stepz'.*steps"),
    (("steps = 2", "steps = 2\n[overrides.greater]\ntopk = 3"),
     "overrides.greater: unknown config field 'topk'.*top_k"),
    (("steps = 2", "steps = 2\n[sweep]\ntop_k = [1]"), "only for kind = \"ablation\""),
])
def test_bad_spec_names_file_and_valid_choices(tmp_path, edit, message):
    path = _spec(tmp_path, BASE.replace(*edit))
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_invalid_value_names_the_cell(tmp_path, data_dir):
    path = _spec(tmp_path, BASE.replace("steps = 2", "steps = 0"))
    spec = load_spec(path)
    with pytest.raises(SpecError, match=r"cell greater smollm2-135m bbh/navigate seed 0: "
                                        r"steps must be a positive integer"):
        resolve_cells(spec, data_dir=data_dir)


def test_bad_spec_fails_on_the_command_line_before_any_cell(tmp_path, data_dir, capsys):
    path = _spec(tmp_path, BASE.replace("greater", "greatr"))
    store = tmp_path / "s.sqlite"
    assert main(["grid", "run", str(path), "--store", str(store), "--data-dir",
                 str(data_dir)]) == 2
    assert "unknown method 'greatr'" in capsys.readouterr().err
    assert not store.exists()


def test_unknown_grid_name_lists_the_grids():
    with pytest.raises(SpecError, match="valid grids: .*cpu-smoke"):
        load_spec("cpu-smok")


def test_presets_by_task_family(data_dir):
    cells = resolve_cells(load_spec("paper-comparison"), data_dir=data_dir)
    greater = {c.task: c for c in cells if c.method == "greater"
               and c.model == "meta-llama/Meta-Llama-3-8B-Instruct"}
    assert greater["bbh/navigate"].config["top_k"] == 40 and greater["gsm8k"].config["top_k"] == 10
    assert (greater["bbh/navigate"].preset, greater["folio"].preset) == ("paper-bbh", "paper-folio")
    assert all(c.config["n_train"] == 50 for c in cells)  # shared preset fields reach baselines


def test_unknown_preset_family(tmp_path):
    path = _spec(tmp_path, BASE.replace("seeds = [0]", "seeds = [0]\npreset = {mmlu = \"paper-bbh\"}"))
    with pytest.raises(SpecError, match="unknown task family 'mmlu'"):
        load_spec(path)
