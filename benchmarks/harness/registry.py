"""The harness's one view of the core's method registry and presets."""

from __future__ import annotations

from dataclasses import fields

from greater.methods import get_method, method_names
from greater.presets import PRESETS, build_config

__all__ = ["method_names", "config_fields", "preset_names", "build_config", "n_steps", "optimize"]


def config_fields(method: str) -> tuple[str, ...]:
    """The config field names of ``method``."""
    return tuple(f.name for f in fields(get_method(method).config_cls))


def preset_names() -> list[str]:
    """The named presets a spec may use."""
    return sorted(PRESETS)


def n_steps(method: str, config: dict) -> int:
    """How many optimisation steps ``method`` takes with ``config`` (a resolved config dict)."""
    spec = get_method(method)
    return spec.strategy().n_steps(spec.config_cls(**config))


def optimize(method: str, lm, task, config, *, checkpoint, preset):
    """Run ``method`` (its optimiser LLM, if any, is the task model itself)."""
    return get_method(method).optimize(lm, task, config, progress=False, checkpoint=checkpoint,
                                       preset=preset)
