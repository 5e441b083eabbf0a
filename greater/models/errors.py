"""The one exception type of :mod:`greater.models`."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model that cannot be resolved, provisioned or loaded; the message says what to do."""
