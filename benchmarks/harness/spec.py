"""Grid specs: TOML files under ``benchmarks/grids/`` naming what a grid runs.

A spec (see the README's "Grids" section for every key)::

    kind = "comparison"            # comparison | ablation | transfer
    description = "..."
    methods = ["all"]              # registered method names, or "all"
    tasks = ["bbh-paper", "gsm8k"] # task names or sets (bbh, bbh-paper, bbh-transfer)
    models = ["smollm2-135m"]      # registry names or Hugging Face ids (transfer: see [transfer])
    seeds = [0]
    dtype = "bf16"                 # bf16 | fp16 | fp32
    preset = "paper-bbh"           # optional: one preset, or a table by task family:
    # [preset]  bbh = "paper-bbh"  gsm8k = "paper-gsm8k"  folio = "paper-folio"
    [defaults]                     # config fields for every method that has them
    n_train = 4
    [overrides.greater]            # config fields for one method (explicit values win)
    top_k = 10
    [sweep]                        # ablation only: one GReaTer field varied at a time
    top_k = [5, 10, 40]
    [transfer]                     # transfer only: optimise on the first, evaluate on the second
    pairs = [["smollm2-135m", "gemma3-270m"]]

:func:`load_spec` checks everything it can without loading data (names, keys, value types) and
raises :class:`SpecError` naming the file, the key and the valid choices.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greater.models import ModelError, resolve_model
from greater.tasks import TaskError, resolve_task_names

from benchmarks.harness import registry

GRID_DIR = Path(__file__).resolve().parents[1] / "grids"
KINDS = ("comparison", "ablation", "transfer")
DTYPES = ("bf16", "fp16", "fp32")
#: GReaTer fields an ablation may sweep (the paper's three ablations).
SWEEP_FIELDS = ("top_k", "perplexity_weight", "use_reasoning")
#: The paper's five transfer tasks (section "Transfer").
TRANSFER_TASKS = tuple(f"bbh/{t}" for t in (
    "movie_recommendation", "object_counting", "tracking_shuffled_objects_five_objects",
    "hyperbaton", "causal_judgement"))
#: Task sets a spec may name besides the task registry's own groups (bbh, bbh-paper).
TASK_SETS = {"bbh-transfer": TRANSFER_TASKS}
PRESET_FAMILIES = ("*", "bbh", "gsm8k", "folio")
_KEYS = ("name", "kind", "description", "methods", "tasks", "models", "seeds", "dtype", "preset",
         "defaults", "overrides", "sweep", "transfer")


class SpecError(ValueError):
    """A grid spec that cannot run; the message names the file and what is wrong."""


@dataclass(frozen=True)
class GridSpec:
    """A parsed, validated grid spec.

    Attributes:
        name: the grid's name (the file stem unless ``name`` is set).
        path: the file it was read from.
        kind: ``"comparison"``, ``"ablation"`` or ``"transfer"``.
        description: one line saying what the grid is for.
        methods: method names, in spec order.
        tasks: task names, sets expanded.
        models: models cells optimise on (transfer: the source models of ``pairs``).
        seeds: seeds, one cell each.
        dtype: the models' dtype.
        presets: ``{task family: preset name}`` (``"*"``: every task); families are
            ``bbh``, ``gsm8k``, ``folio``.
        defaults: config fields for every method that has them.
        overrides: ``{method: {field: value}}``.
        sweep: ``{field: [values]}`` (ablation only).
        pairs: ``[(source model, target model)]`` (transfer only).
    """

    name: str
    path: Path
    kind: str
    description: str
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    dtype: str = "bf16"
    presets: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = ()


def grid_names() -> list[str]:
    """Names of the specs shipped under ``benchmarks/grids/``."""
    return sorted(p.stem for p in GRID_DIR.glob("*.toml"))


def spec_path(name_or_path: str | Path) -> Path:
    """The file of a spec given by name (``cpu-smoke``) or path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"no grid spec file {path}")
        return path
    candidate = GRID_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    raise SpecError(f"unknown grid {name!r}{_did_you_mean(name, grid_names())}"
                    f"; valid grids: {', '.join(grid_names())} (or a path to a .toml file)")


def _did_you_mean(name: str, valid: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def load_spec(name_or_path: str | Path) -> GridSpec:
    """Read and validate a spec (by name or path).

    Raises:
        SpecError: unreadable TOML, an unknown key, kind, method, task, model, preset, dtype,
            sweep field or transfer pair, or a config field no selected method has.
    """
    path = spec_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None

    def fail(message: str) -> SpecError:
        return SpecError(f"{path}: {message}")

    for key in raw:
        if key not in _KEYS:
            raise fail(f"unknown key {key!r}{_did_you_mean(key, _KEYS)}; valid keys: "
                       f"{', '.join(_KEYS)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fail(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")

    def str_list(key: str) -> list[str]:
        value = raw.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise fail(f"{key} must be a non-empty list of strings, got {value!r}")
        return value

    valid_methods = registry.method_names()
    methods = str_list("methods")
    methods = valid_methods if methods == ["all"] else methods
    for m in methods:
        if m not in valid_methods:
            raise fail(f"unknown method {m!r}{_did_you_mean(m, valid_methods)}; valid methods: "
                       f"{', '.join(valid_methods)} (or \"all\")")

    tasks: list[str] = []
    for t in str_list("tasks"):
        try:
            tasks.extend(TASK_SETS.get(t, ()) or resolve_task_names(t))
        except TaskError as exc:
            raise fail(f"tasks: {exc} Also: {', '.join(TASK_SETS)}.") from None
    tasks = list(dict.fromkeys(tasks))

    pairs: list[tuple[str, str]] = []
    if kind == "transfer":
        transfer = raw.get("transfer")
        ok = isinstance(transfer, dict) and set(transfer) == {"pairs"} and isinstance(
            transfer["pairs"], list) and transfer["pairs"] and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(m, str) for m in p)
            for p in transfer["pairs"])
        if not ok:
            raise fail("a transfer grid needs [transfer] pairs = [[\"source model\", "
                       "\"target model\"], ...]")
        if "models" in raw:
            raise fail("a transfer grid takes its models from [transfer] pairs; remove models")
        pairs = [(a, b) for a, b in transfer["pairs"]]
        models = list(dict.fromkeys(a for a, _ in pairs))
        _check_models([m for p in pairs for m in p], fail)
    else:
        if "transfer" in raw:
            raise fail("[transfer] is only for kind = \"transfer\"")
        models = str_list("models")
        _check_models(models, fail)

    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise fail(f"seeds must be a non-empty list of integers, got {seeds!r}")
    dtype = raw.get("dtype", "bf16")
    if dtype not in DTYPES:
        raise fail(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    presets = _presets(raw.get("preset"), fail)

    defaults = _table(raw, "defaults", fail)
    fields_of = {m: registry.config_fields(m) for m in methods}
    for name in defaults:
        if name == "seed":
            raise fail("defaults: set seeds with the top-level seeds list, not a seed field")
        if not any(name in f for f in fields_of.values()):
            every = sorted({n for f in fields_of.values() for n in f})
            raise fail(f"defaults: no selected method has a config field {name!r}"
                       f"{_did_you_mean(name, every)}; valid fields: {', '.join(every)}")
    overrides = _table(raw, "overrides", fail)
    for method, table in overrides.items():
        if method not in methods:
            raise fail(f"overrides.{method}: {method!r} is not among the grid's methods "
                       f"({', '.join(methods)})")
        if not isinstance(table, dict):
            raise fail(f"overrides.{method} must be a table of config fields")
        for name in table:
            if name not in fields_of[method] or name == "seed":
                raise fail(f"overrides.{method}: unknown config field {name!r}"
                           f"{_did_you_mean(name, fields_of[method])}; valid fields: "
                           f"{', '.join(f for f in fields_of[method] if f != 'seed')}")

    sweep = _table(raw, "sweep", fail)
    if kind == "ablation":
        if methods != ["greater"]:
            raise fail(f"an ablation grid sweeps GReaTer's fields; methods must be "
                       f"[\"greater\"], got {methods}")
        if not sweep:
            raise fail(f"an ablation grid needs a [sweep] table over {', '.join(SWEEP_FIELDS)}")
        for name, values in sweep.items():
            if name not in SWEEP_FIELDS:
                raise fail(f"sweep: {name!r} cannot be swept{_did_you_mean(name, SWEEP_FIELDS)}; "
                           f"valid fields: {', '.join(SWEEP_FIELDS)}")
            if not isinstance(values, list) or not values:
                raise fail(f"sweep.{name} must be a non-empty list of values")
    elif sweep:
        raise fail("[sweep] is only for kind = \"ablation\"")

    name = raw.get("name", path.stem)
    return GridSpec(name=name, path=path, kind=kind, description=str(raw.get("description", "")),
                    methods=tuple(methods), tasks=tuple(tasks), models=tuple(models),
                    seeds=tuple(seeds), dtype=dtype, presets=presets, defaults=defaults,
                    overrides=overrides, sweep=sweep, pairs=tuple(pairs))


def preset_for(spec: GridSpec, task: str) -> str | None:
    """The preset a cell on ``task`` uses: its family's, else the spec-wide one, else None."""
    return spec.presets.get(task_family(task), spec.presets.get("*"))


def task_family(task: str) -> str:
    """``bbh`` for ``bbh/<task>``, else the task name (``gsm8k``, ``folio``)."""
    return task.split("/", 1)[0]


def _presets(value: Any, fail) -> dict[str, str]:
    if value is None:
        return {}
    table = {"*": value} if isinstance(value, str) else value
    if not isinstance(table, dict):
        raise fail("preset must be a preset name or a table {task family = preset name}")
    valid = registry.preset_names()
    for family, name in table.items():
        if family not in PRESET_FAMILIES:
            raise fail(f"preset: unknown task family {family!r}; valid families: "
                       f"{', '.join(f for f in PRESET_FAMILIES if f != '*')}")
        if name not in valid:
            raise fail(f"unknown preset {name!r}{_did_you_mean(str(name), valid)}; valid presets: "
                       f"{', '.join(valid)}")
    return dict(table)


def _table(raw: dict, key: str, fail) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise fail(f"{key} must be a table")
    return dict(value)


def _check_models(models: list[str], fail) -> None:
    for m in models:
        try:
            resolve_model(m)
        except ModelError as exc:
            raise fail(f"models: {exc}") from None
