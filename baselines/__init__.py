"""Baselines compared with GReaTer: zero-shot CoT, APE, APO/ProTeGi, TextGrad-style, GCG-style,
PE2, OPRO and GEPA-style reflective evolution.

Importing this package registers each method in the core registry
(:mod:`greater.methods`); the core finds it through the ``greater.methods`` entry point, so
``greater.get_method("apo")`` works without importing anything from here.
"""

from __future__ import annotations

from baselines import ape, apo, gcg, gepa, opro, pe2, textgrad, zscot
from baselines.ape import APEConfig
from baselines.apo import APOConfig
from baselines.gcg import GCGConfig
from baselines.gepa import GEPAConfig
from baselines.opro import OPROConfig
from baselines.pe2 import PE2Config
from baselines.textgrad import TextGradConfig
from baselines.zscot import ZSCoTConfig

__all__ = ["ape", "apo", "gcg", "gepa", "opro", "pe2", "textgrad", "zscot", "APEConfig",
           "APOConfig", "GCGConfig", "GEPAConfig", "OPROConfig", "PE2Config", "TextGradConfig",
           "ZSCoTConfig"]
