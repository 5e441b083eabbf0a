"""Task names and loading: ``bbh/<task>`` (27), ``gsm8k``, ``folio``; groups "bbh", "bbh-paper"."""

from __future__ import annotations

import difflib
import logging
import os

from greater.tasks.base import TaskError
from greater.tasks.bbh import BBH_PAPER_TASK_IDS, BBH_TASK_TYPES, load_bbh
from greater.tasks.data import resolve_data_dir
from greater.tasks.folio import load_folio
from greater.tasks.gsm8k import load_gsm8k
from greater.tasks.task import Task

logger = logging.getLogger(__name__)

__all__ = [
    "BBH_TASKS",
    "BBH_PAPER_TASKS",
    "TASK_NAMES",
    "TASK_GROUPS",
    "load_task",
    "resolve_task_names",
]

BBH_PREFIX = "bbh/"
#: All 27 BBH tasks, as task names ("bbh/boolean_expressions", ...), sorted.
BBH_TASKS: tuple[str, ...] = tuple(BBH_PREFIX + task for task in sorted(BBH_TASK_TYPES))
#: The paper's 21 BBH tasks (data README), as task names.
BBH_PAPER_TASKS: tuple[str, ...] = tuple(BBH_PREFIX + task for task in BBH_PAPER_TASK_IDS)
#: Every loadable task name.
TASK_NAMES: tuple[str, ...] = (*BBH_TASKS, "gsm8k", "folio")
#: Names that stand for several tasks in :func:`resolve_task_names`.
TASK_GROUPS: dict[str, tuple[str, ...]] = {"bbh": BBH_TASKS, "bbh-paper": BBH_PAPER_TASKS}

_VALID_FORMS = (
    "valid forms: 'bbh/<task>' (27 BBH tasks, e.g. 'bbh/navigate'), 'gsm8k', 'folio', "
    "the groups 'bbh' (all 27) and 'bbh-paper' (the paper's 21), or a comma-separated list"
)


def _canonical_name(name: str) -> str:
    """``name`` as a registry name (case-insensitive; a bare BBH task name gets ``bbh/``)."""
    key = name.strip().lower().replace("\\", "/")
    if key in TASK_NAMES:
        return key
    if BBH_PREFIX + key in TASK_NAMES:
        return BBH_PREFIX + key
    if key in TASK_GROUPS:
        raise TaskError(
            f"{name!r} is a group of tasks; expand it with resolve_task_names({name!r}) "
            "and load each task"
        )
    candidates = [*TASK_NAMES, *TASK_GROUPS]
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    close += difflib.get_close_matches(BBH_PREFIX + key, BBH_TASKS, n=3, cutoff=0.6)
    close = list(dict.fromkeys(close))[:3]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise TaskError(f"unknown task {name!r}.{hint} {_VALID_FORMS[0].upper()}{_VALID_FORMS[1:]}.")


def resolve_task_names(spec: str) -> list[str]:
    """Expand a task spec to task names.

    ``"bbh-paper"`` -> the paper's 21 BBH tasks, ``"bbh"`` -> all 27, a single name -> ``[name]``
    (normalised, e.g. ``"navigate"`` -> ``["bbh/navigate"]``), ``"gsm8k,folio"`` -> both (order
    kept, duplicates dropped).

    Raises:
        TaskError: an unknown name, with close matches and the valid forms.
    """
    names: list[str] = []
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise TaskError(f"empty task name. {_VALID_FORMS[0].upper()}{_VALID_FORMS[1:]}.")
    for part in parts:
        group = TASK_GROUPS.get(part.lower())
        names.extend(group if group is not None else [_canonical_name(part)])
    return list(dict.fromkeys(names))


def load_task(name: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """Load one task with its canonical train/dev/test splits.

    Args:
        name: a task name (see :data:`TASK_NAMES`; a bare BBH task name also works).
        data_dir: a directory laid out like the project's data copy; default
            ``$GREATER_DATA_DIR``; without either, the Hugging Face hub (needs network).

    Raises:
        TaskError: unknown name, missing data directory/file, malformed data, or hub failure.
    """
    canonical = _canonical_name(name)
    directory = resolve_data_dir(data_dir)
    logger.debug("loading task %s from %s", canonical, directory or "the Hugging Face hub")
    if canonical == "gsm8k":
        return load_gsm8k(directory)
    if canonical == "folio":
        return load_folio(directory)
    return load_bbh(canonical[len(BBH_PREFIX):], directory)
