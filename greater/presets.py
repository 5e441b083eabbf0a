"""Named presets (the research code's settings) and building a method's config from them.

Defaults of every config stay sized for a CPU. A preset sets the paper's sizes:
``paper-bbh`` (GReaTer's BBH scripts: top_k 40, q 6, 1024 new tokens, 50 training examples,
125 steps, 3 re-scored), ``paper-gsm8k`` and ``paper-folio`` (the research code's template:
top_k 10, q 5, 100 steps). Shared fields (training examples, generation bound) apply to every
method, so baselines run at the same sizes; method fields only to their method. Explicit
overrides always win over the preset, and the preset's name is recorded in the result.

>>> from greater.presets import build_config
>>> cfg = build_config("greater", "paper-bbh", {"steps": 2})   # doctest: +SKIP
>>> cfg.top_k, cfg.steps                                         # doctest: +SKIP
(40, 2)
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Preset:
    """A named set of config values.

    Attributes:
        name: what users type (``--preset NAME``, grid specs).
        description: one line for ``greater list presets`` and ``--help``.
        shared: values for the fields every method has (applied where a config has the field).
        methods: per method name, values of that method's own fields.
    """

    name: str
    description: str
    shared: Mapping[str, Any] = field(default_factory=dict)
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_PAPER_SHARED = {"n_train": 50, "max_new_tokens": 1024}

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("paper-bbh", "the research code's BBH scripts: top_k 40, q 6, 1024 new tokens, "
           "50 training examples, 125 steps, 3 re-scored",
           _PAPER_SHARED, {"greater": {"top_k": 40, "n_intersections": 6, "steps": 125,
                                       "n_rescore": 3}}),
    Preset("paper-gsm8k", "the research code's template on GSM8K: top_k 10, q 5, 1024 new "
           "tokens, 50 training examples, 100 steps, 3 re-scored",
           _PAPER_SHARED, {"greater": {"top_k": 10, "n_intersections": 5, "steps": 100,
                                       "n_rescore": 3}}),
    Preset("paper-folio", "the research code's template on FOLIO: top_k 10, q 5, 1024 new "
           "tokens, 50 training examples, 100 steps, 3 re-scored",
           _PAPER_SHARED, {"greater": {"top_k": 10, "n_intersections": 5, "steps": 100,
                                       "n_rescore": 3}}),
)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError with a did-you-mean otherwise."""
    preset = PRESETS.get(name)
    if preset is None:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint} (valid presets: "
                         f"{', '.join(sorted(PRESETS))})")
    return preset


def config_fields(config_cls: type) -> dict[str, Any]:
    """Field name -> annotated type (as written) of a config dataclass."""
    return {f.name: f.type for f in dataclasses.fields(config_cls)}


def unknown_field_error(method: str, name: str, config_cls: type) -> ValueError:
    names = sorted(config_fields(config_cls))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"method {method!r} has no setting {name!r}{hint} (its settings: "
                      f"{', '.join(names)})")


def preset_values(method: str, config_cls: type, preset: str | None) -> dict[str, Any]:
    """The values ``preset`` gives a config of ``config_cls`` for ``method``."""
    if preset is None:
        return {}
    p = get_preset(preset)
    fields = config_fields(config_cls)
    values = {k: v for k, v in p.shared.items() if k in fields}
    values.update(p.methods.get(method, {}))
    return values


def build_config(method: str, preset: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> Any:
    """The config of registered ``method``: its defaults, then ``preset``, then ``overrides``.

    Unknown override fields raise ValueError naming the valid ones; the config validates values.
    """
    from greater.methods import get_method

    config_cls = get_method(method).config_cls
    fields = config_fields(config_cls)
    values = preset_values(method, config_cls, preset)
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise unknown_field_error(method, name, config_cls)
        values[name] = value
    return config_cls(**values)


def parse_field_value(raw: str, annotation: Any, name: str) -> Any:
    """Convert text (a ``--set`` value, a spec entry) to a config field's annotated type."""
    type_name = annotation if isinstance(annotation, str) else getattr(
        annotation, "__name__", str(annotation))
    if raw.strip().lower() == "none" and "None" in type_name:
        return None
    raw = raw.strip()
    try:
        if type_name.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not a valid {type_name.split(' ')[0]}") from None
    return raw
