"""The method registry: every optimiser (GReaTer and each baseline) registers here by decorator.

A method is a :class:`~greater.run.Method` subclass (only the search strategy) plus a config
dataclass; :func:`get_method` returns a :class:`MethodSpec` whose ``optimize`` runs it through
the one run lifecycle (:func:`greater.run.run_method`).

The core never imports ``baselines`` by name: packages that provide methods declare an entry
point in the group ``greater.methods`` (this project's ``pyproject.toml`` declares
``baselines``), and the registry imports them the first time a method is looked up.

>>> from greater.methods import get_method, method_names
>>> method_names()                                      # doctest: +SKIP
['ape', 'apo', 'gcg', 'gepa', 'greater', 'opro', 'pe2', 'textgrad', 'zscot']
>>> spec = get_method("greater")                        # doctest: +SKIP
>>> spec.optimize(lm, task, spec.config_cls(steps=2))   # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from greater.engines import ChatEngine
    from greater.lm import LM
    from greater.result import OptimizationResult
    from greater.run import Method
    from greater.tasks import Task

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "greater.methods"
#: Imported before the entry points, so the core's own method is always there.
_CORE_METHOD_MODULES = ("greater.optimizer.search",)


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: the name users type (``--method NAME``, grid specs).
        strategy: the :class:`~greater.run.Method` subclass with the search strategy.
        config_cls: its frozen config dataclass (a :class:`~greater.run_config.RunConfig`).
        uses_optimizer_llm: whether it asks an optimiser LLM (APE, APO, ...); the others refuse
            one rather than ignore it.
        summary: one line for ``greater list methods``.
    """

    name: str
    strategy: type
    config_cls: type
    uses_optimizer_llm: bool = False
    summary: str = ""

    def optimize(self, lm: "LM", task: "Task", config: Any = None, *,
                 optimizer_llm: "ChatEngine | None" = None, progress: bool = True,
                 checkpoint: str | os.PathLike | None = None, **kwargs: Any
                 ) -> "OptimizationResult":
        """Run the method on ``task`` with ``lm`` (see :func:`greater.run.run_method`)."""
        from greater.run import run_method

        return run_method(self, lm, task, config, optimizer_llm=optimizer_llm,
                          progress=progress, checkpoint=checkpoint, **kwargs)


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register_method(name: str, *, config: type, uses_optimizer_llm: bool = False,
                    summary: str = "") -> Callable[[type], type]:
    """Class decorator: register a :class:`~greater.run.Method` subclass under ``name``."""

    def decorate(cls: type) -> type:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.strategy is not cls:
            raise ValueError(f"method {name!r} is registered twice ({existing.strategy.__module__}"
                             f" and {cls.__module__})")
        _REGISTRY[name] = MethodSpec(name=name, strategy=cls, config_cls=config,
                                     uses_optimizer_llm=uses_optimizer_llm,
                                     summary=summary or (cls.__doc__ or "").strip().split("\n")[0])
        cls.method_name = name
        return cls

    return decorate


def _discover() -> None:
    """Import the core's methods and every package declared under the entry-point group."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in _CORE_METHOD_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not hide the others
            logger.warning("could not load methods from %s (%s): %s", ep.name, ep.value, exc)


def method_names() -> list[str]:
    """Every registered method's name, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; :class:`UnknownMethodError` otherwise."""
    _discover()
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(f"unknown method {name!r}{hint} (valid methods: "
                                 f"{', '.join(sorted(_REGISTRY))})")
    return spec
