"""GReaTer: `GreaterConfig` -> `optimize(lm, task, config)` -> `OptimizationResult`."""

from greater.optimizer.config import GreaterConfig
from greater.optimizer.search import Greater, optimize

__all__ = ["Greater", "GreaterConfig", "optimize"]
