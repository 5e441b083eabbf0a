"""Baselines compared with GReaTer, behind one registry.

``METHODS`` maps a method name to ``(ConfigClass, optimize)``; every ``optimize`` has the
signature ``optimize(lm, task, config=None, *, optimizer_llm=None, progress=True,
checkpoint=None) -> OptimizationResult``. Methods without an optimiser LLM (greater, zscot,
gcg) refuse a non-None ``optimizer_llm`` rather than ignore it.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

from greater.optimizer import GreaterConfig
from greater.optimizer import optimize as _greater_optimize
from greater.result import OptimizationResult

from baselines import ape, apo, gcg, textgrad, zscot
from baselines.ape import APEConfig
from baselines.apo import APOConfig
from baselines.common import BaseConfig, LLMOptimizerConfig
from baselines.engines import ChatEngine, EngineError, LocalEngine, OpenAIEngine
from baselines.gcg import GCGConfig
from baselines.textgrad import TextGradConfig
from baselines.zscot import ZSCoTConfig


def greater_optimize(lm, task, config: GreaterConfig | None = None, *,
                     optimizer_llm: ChatEngine | None = None, progress: bool = True,
                     checkpoint: str | os.PathLike | None = None) -> OptimizationResult:
    """GReaTer behind the baselines' signature (it has no optimiser LLM)."""
    if optimizer_llm is not None:
        raise ValueError("GReaTer uses no optimiser LLM; pass optimizer_llm=None")
    return _greater_optimize(lm, task, config, progress=progress, checkpoint=checkpoint)


class Method(NamedTuple):
    config: type
    optimize: Callable[..., OptimizationResult]


METHODS: dict[str, Method] = {
    "greater": Method(GreaterConfig, greater_optimize),
    "zscot": Method(ZSCoTConfig, zscot.optimize),
    "ape": Method(APEConfig, ape.optimize),
    "apo": Method(APOConfig, apo.optimize),
    "textgrad": Method(TextGradConfig, textgrad.optimize),
    "gcg": Method(GCGConfig, gcg.optimize),
}


def get_method(name: str) -> Method:
    """``(ConfigClass, optimize)`` of ``name``; ValueError listing the valid names otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; valid methods: "
                         f"{', '.join(sorted(METHODS))}") from None


__all__ = ["METHODS", "Method", "get_method", "greater_optimize", "APEConfig", "APOConfig",
           "TextGradConfig", "GCGConfig", "ZSCoTConfig", "BaseConfig", "LLMOptimizerConfig",
           "ChatEngine", "LocalEngine", "OpenAIEngine", "EngineError"]
