"""The harness's one view of the method registry and presets (the only place it reads them)."""

from __future__ import annotations

from dataclasses import fields

from baselines import METHODS, get_method


def method_names() -> list[str]:
    """Every registered method, sorted."""
    return sorted(METHODS)


def config_fields(method: str) -> tuple[str, ...]:
    """The config field names of ``method``."""
    return tuple(f.name for f in fields(get_method(method).config))


def preset_names() -> list[str]:
    """The named presets a spec may use."""
    return []


def build_config(method: str, preset: str | None, overrides: dict):
    """``method``'s config with ``overrides`` (explicit values win over ``preset``)."""
    if preset is not None:
        raise ValueError(f"unknown preset {preset!r}")
    return get_method(method).config(**overrides)


def optimize(method: str, lm, task, config, *, checkpoint):
    """Run ``method`` (its optimiser LLM, if any, is the task model itself)."""
    return get_method(method).optimize(lm, task, config, progress=False, checkpoint=checkpoint)
