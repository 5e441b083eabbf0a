"""Library versions recorded with every result, so a run can be reproduced later."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = ("greater", "torch", "transformers", "tokenizers", "datasets")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
