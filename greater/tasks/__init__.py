"""The task layer: benchmark data, canonical splits, extractor texts and answer scoring.

>>> from greater.tasks import load_task
>>> task = load_task("bbh/navigate", data_dir="../shared/data")   # doctest: +SKIP
>>> task.extractor                                                  # doctest: +SKIP
"Therefore, the final answer (use exact format: '$Yes' or '$No') is $"
>>> task.is_correct("... so we are back. " + task.extractor + "Yes", task.test[0])  # doctest: +SKIP

Modules: :mod:`.base` (types), :mod:`.data` (files, errors, hub), :mod:`.splits`,
:mod:`.parsing` (answer parsers), :mod:`.extractors` (p_extract texts), :mod:`.task` (Task),
:mod:`.bbh`, :mod:`.gsm8k`, :mod:`.folio`, :mod:`.registry` (names, load_task).
"""

from greater.tasks.base import AnswerType, Example, TaskError
from greater.tasks.data import DATA_DIR_ENV
from greater.tasks.registry import (
    BBH_PAPER_TASKS,
    BBH_TASKS,
    TASK_GROUPS,
    TASK_NAMES,
    load_task,
    resolve_task_names,
)
from greater.tasks.task import SPLITS, Task

__all__ = [
    "AnswerType",
    "BBH_PAPER_TASKS",
    "BBH_TASKS",
    "DATA_DIR_ENV",
    "Example",
    "SPLITS",
    "TASK_GROUPS",
    "TASK_NAMES",
    "Task",
    "TaskError",
    "load_task",
    "resolve_task_names",
]
