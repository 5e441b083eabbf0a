"""Reading benchmark data: the data directory, JSON / JSONL files, the Hugging Face hub fallback.

Every problem becomes a :class:`TaskError` that names the file (or hub dataset) and the line or
example, so that a broken data file can be fixed without a debugger.

A data directory is laid out like the project's shared copy::

    bbh/<task>.json                    {"canary": ..., "examples": [{"input", "target"}, ...]}
    gsm8k/train.jsonl, gsm8k/test.jsonl
    folio/folio-train.jsonl, folio/folio-validation.jsonl
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greater.tasks.base import TaskError

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_DIR_ENV",
    "Record",
    "resolve_data_dir",
    "read_json_examples",
    "read_jsonl",
    "load_hub_split",
    "require_str",
    "require_str_list",
]

DATA_DIR_ENV = "GREATER_DATA_DIR"

_HOW_TO_FIX = (
    f"pass --data-dir (data_dir=...) or set {DATA_DIR_ENV} to a directory laid out like the "
    "project's data copy (bbh/<task>.json, gsm8k/{train,test}.jsonl, "
    "folio/folio-{train,validation}.jsonl)"
)


@dataclass(frozen=True)
class Record:
    """One raw data row and where it came from (for error messages)."""

    where: str
    fields: dict[str, Any]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data directory to read: ``data_dir``, else ``$GREATER_DATA_DIR``, else None (hub).

    Raises:
        TaskError: the directory given does not exist.
    """
    source = "data_dir argument"
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get(DATA_DIR_ENV, "").strip()
        if not env:
            return None
        data_dir, source = env, DATA_DIR_ENV
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise TaskError(
            f"data directory {str(path)!r} (from {source}) does not exist or is not a directory"
        )
    return path


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read data file {path}: {exc}") from exc


def read_json_examples(path: Path) -> list[Record]:
    """The ``examples`` of a BBH-style JSON file; each record's ``where`` names the example index.

    Raises:
        TaskError: missing file, invalid JSON (with its line), no ``examples`` list, an example
            that is not an object, or no examples at all.
    """
    text = _read_text(path)
    if not text.strip():
        raise TaskError(f"{path}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}: invalid JSON: {_json_problem(exc, exc.lineno)}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise TaskError(f"{path}: expected a JSON object with an 'examples' list")
    examples = data["examples"]
    if not examples:
        raise TaskError(f"{path}: the 'examples' list is empty")
    records = []
    for index, item in enumerate(examples):
        where = f"{path}: example {index}"
        if not isinstance(item, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(item).__name__}")
        records.append(Record(where, item))
    return records


def _json_problem(exc: json.JSONDecodeError, line: int | None = None) -> str:
    """The decoder's complaint as a whole sentence with its position (its messages end in "at"
    before the position: "Unterminated string starting at")."""
    where = f"line {line}, column {exc.colno}" if line is not None else f"column {exc.colno}"
    joiner = " " if exc.msg.endswith(" at") else " at "
    return f"{exc.msg}{joiner}{where} (is the file truncated or damaged?)"


def read_jsonl(path: Path) -> list[Record]:
    """The rows of a JSONL file (blank lines skipped); each record's ``where`` names the line.

    Raises:
        TaskError: missing file, a line that is not a JSON object (with its number), no rows.
    """
    text = _read_text(path)
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{where}: invalid JSON: {_json_problem(exc)}") from exc
        if not isinstance(item, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(item).__name__}")
        records.append(Record(where, item))
    if not records:
        raise TaskError(f"{path}: the file has no data rows")
    return records


def load_hub_split(repo: str, config: str | None, split: str) -> list[Record]:
    """Rows of one split of a Hugging Face hub dataset (``datasets`` is imported lazily).

    Raises:
        TaskError: ``datasets`` is missing or the download fails (e.g. no network); the message
            says how to use a local data directory instead.
    """
    label = f"{repo}" + (f" (config {config!r})" if config else "") + f", split {split!r}"
    try:
        import datasets  # noqa: PLC0415 - heavy import, only when the hub is used
    except ImportError as exc:
        raise TaskError(
            f"no data directory given and the 'datasets' package is missing; {_HOW_TO_FIX}"
        ) from exc
    logger.info("loading %s from the Hugging Face hub", label)
    try:
        dataset = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise TaskError(
            f"no data directory given and loading {label} from the Hugging Face hub failed "
            f"({type(exc).__name__}: {exc}); {_HOW_TO_FIX}"
        ) from exc
    records = [
        Record(f"hub {repo} {split} row {index}", dict(row)) for index, row in enumerate(dataset)
    ]
    if not records:
        raise TaskError(f"hub dataset {label} is empty")
    return records


def require_str(record: Record, name: str, *, allow_empty: bool = False) -> str:
    """Field ``name`` of ``record`` as a string.

    Raises:
        TaskError: the field is missing, not a string, or (unless ``allow_empty``) blank.
    """
    if name not in record.fields:
        raise TaskError(f"{record.where}: missing field {name!r}")
    value = record.fields[name]
    if not isinstance(value, str):
        raise TaskError(
            f"{record.where}: field {name!r} must be a string, got {type(value).__name__}"
        )
    if not allow_empty and not value.strip():
        raise TaskError(f"{record.where}: field {name!r} is empty")
    return value


def require_str_list(record: Record, name: str) -> list[str]:
    """Field ``name`` as a non-empty list of strings; a single string is split into its lines
    (the hub's FOLIO stores premises that way)."""
    if name not in record.fields:
        raise TaskError(f"{record.where}: missing field {name!r}")
    value = record.fields[name]
    if isinstance(value, str):
        items: Sequence[Any] = [line for line in value.splitlines() if line.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise TaskError(
            f"{record.where}: field {name!r} must be a list of strings, "
            f"got {type(value).__name__}"
        )
    if not items or not all(isinstance(item, str) for item in items):
        raise TaskError(f"{record.where}: field {name!r} must be a non-empty list of strings")
    return [item.strip() for item in items]


def read_split_records(folder: str, filename: str, hub_repo: str, hub_config: str | None,
                       hub_split: str, data_dir: Path | None) -> tuple[list[Record], str]:
    """Records of one split file: ``<data_dir>/<folder>/<filename>``, else the hub's split.

    Returns the records and a description of where they came from (for messages and logs).
    """
    if data_dir is not None:
        path = data_dir / folder / filename
        return read_jsonl(path), str(path)
    return load_hub_split(hub_repo, hub_config, hub_split), f"hub {hub_repo} {hub_split}"
