"""Baselines compared with GReaTer: zero-shot CoT, APE, APO/ProTeGi, TextGrad-style, GCG-style.

Importing this package registers each method in the core registry
(:mod:`greater.methods`); the core finds it through the ``greater.methods`` entry point, so
``greater.get_method("apo")`` works without importing anything from here.
"""

from __future__ import annotations

from baselines import ape, apo, gcg, textgrad, zscot
from baselines.ape import APEConfig
from baselines.apo import APOConfig
from baselines.gcg import GCGConfig
from baselines.textgrad import TextGradConfig
from baselines.zscot import ZSCoTConfig

__all__ = ["ape", "apo", "gcg", "textgrad", "zscot", "APEConfig", "APOConfig", "GCGConfig",
           "TextGradConfig", "ZSCoTConfig"]
