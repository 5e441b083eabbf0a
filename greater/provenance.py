"""What produced a result: recorded with every optimisation and evaluation result.

Provenance is enough to reproduce a number later: the method and its full config and seed, the
model with its dtype, device and linear-layer kernels, library versions, the project's git
commit (when run from a checkout), the date the run was made, a digest of the data it read, the
preset it started from and the date string pinned into chat templates. It never holds a
secret: API keys and tokens stay in the environment (:func:`scrub` drops any field whose name
says it is one).
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from greater.versions import library_versions

logger = logging.getLogger(__name__)

#: Key names that hold secrets (``api_key``, ``hf_token``, ``client_secret``, ...), but not
#: counts such as ``max_new_tokens`` or names of variables such as ``api_key_env``.
_SECRET_NAME = re.compile(r"(^|[_-])(api[_-]?key|token|secret|password|authorization)$",
                          re.IGNORECASE)
_REPO = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` if modified), else None."""
    if not (_REPO / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def scrub(value: Any) -> Any:
    """``value`` with every mapping entry whose key names a secret removed (recursively)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_NAME.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def provenance(*, method: str | None, lm: Any, task: Any, config: dict[str, Any] | None,
               seed: int | None, preset: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance record of a run of ``method`` with ``lm`` on ``task``."""
    from greater.result import SCHEMA_VERSION

    record = {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "model": lm.name,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": str(lm.device),
        "linear_kernels": getattr(lm, "linear_kernels", None),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "task": task.name,
        "data_digest": task.data_digest,
        "config": config,
        "seed": seed,
        "preset": preset,
        "chat_date": getattr(lm, "chat_date", None),
    }
    if extra:
        record.update(extra)
    return scrub(record)
