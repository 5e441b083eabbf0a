"""greater: GReaTer prompt optimisation (gradients over reasoning) and its baselines.

>>> import greater
>>> task = greater.load_task("bbh/boolean_expressions", data_dir="../shared/data")  # doctest: +SKIP
>>> lm = greater.LM.load("smollm2-135m")                                            # doctest: +SKIP
>>> greater.evaluate(lm, task, split="dev", limit=8).accuracy                       # doctest: +SKIP
"""

from greater.evaluate import ZERO_SHOT_COT_PROMPT, EvaluationResult, evaluate
from greater.lm import LM
from greater.methods import get_method, method_names, register_method
from greater.optimizer import GreaterConfig, optimize
from greater.presets import PRESETS, build_config
from greater.result import OptimizationResult, PromptScore, StepRecord
from greater.run import Method, ResumeError, Run
from greater.tasks import Example, Task, TaskError, load_task

__version__ = "0.1.0"

__all__ = [
    "LM", "Example", "Task", "TaskError", "load_task", "evaluate", "EvaluationResult",
    "ZERO_SHOT_COT_PROMPT", "GreaterConfig", "optimize", "OptimizationResult", "StepRecord",
    "PromptScore", "get_method", "method_names", "register_method", "Method", "Run",
    "ResumeError", "PRESETS", "build_config",
]
