"""GReaTer: `GreaterConfig` -> `optimize(lm, task, config)` -> `OptimizationResult`."""

from greater.optimizer.config import GreaterConfig
from greater.optimizer.search import optimize

__all__ = ["GreaterConfig", "optimize"]
