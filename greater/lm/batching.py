"""Batch sizes chosen from a memory budget and backed off on out-of-memory.

Every batched pass of the engine (generation, one-hot gradients, scoring) asks
:func:`fit_batch_size` for the most rows that fit a budget, given an estimate of the bytes one
row needs (:class:`RowCosts`), and runs through :func:`run_with_backoff`, which halves the batch
and retries when the device still runs out of memory (the scheme of nanoGCG's
``find_executable_batch_size``). On CUDA the budget is the free device memory
(:func:`greater.devices.free_memory_bytes`); elsewhere there is no budget unless one is given, and
the requested batch size is used as is.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Share of the free memory a batch may plan to use (the rest absorbs estimate errors and
#: allocator fragmentation).
BUDGET_FRACTION = 0.8


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder that memory estimates need."""

    layers: int
    hidden: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    dtype_bytes: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ModelShape":
        config = model.config.get_text_config(decoder=True)
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        dtype = next(model.parameters()).dtype
        return cls(layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=head_dim, vocab=config.vocab_size,
                   dtype_bytes=torch.finfo(dtype).bits // 8)


@dataclass(frozen=True)
class RowCosts:
    """Estimated bytes one row of a batch needs, per kind of pass.

    Attributes:
        shape: the model's sizes.
    """

    shape: ModelShape

    def kv_cache(self, tokens: int) -> int:
        """Keys and values of ``tokens`` positions over every layer."""
        s = self.shape
        return 2 * s.layers * s.kv_heads * s.head_dim * s.dtype_bytes * tokens

    def activations(self, tokens: int) -> int:
        """Transient activations of one layer's forward over ``tokens`` positions."""
        s = self.shape
        return (4 * s.hidden + 3 * s.intermediate) * s.dtype_bytes * tokens

    def generation(self, prompt_tokens: int, new_tokens: int) -> int:
        """One generated row: its cache at full length, its prefill and its logits row."""
        s = self.shape
        return (self.kv_cache(prompt_tokens + new_tokens) + self.activations(prompt_tokens)
                + 2 * s.vocab * 4)

    def gradient(self, tokens: int, kept_logits: int) -> int:
        """One row of a forward kept for backward: every layer's activations, float logits."""
        s = self.shape
        return s.layers * self.activations(tokens) + 3 * kept_logits * s.vocab * 4

    def scoring(self, tokens: int, kept_logits: int) -> int:
        """One row of a no-grad forward: its cache, one layer's activations, float logits."""
        s = self.shape
        return (self.kv_cache(tokens) + self.activations(tokens)
                + 2 * kept_logits * s.vocab * 4)


def fit_batch_size(requested: int, row_bytes: int, budget_bytes: int | None) -> int:
    """The most rows, at most ``requested`` and at least 1, whose ``row_bytes`` fit the budget.

    ``budget_bytes`` None means no budget (``requested`` is returned).
    """
    if requested < 1:
        raise ValueError(f"requested batch size must be >= 1, got {requested}")
    if row_bytes < 1:
        raise ValueError(f"row_bytes must be >= 1, got {row_bytes}")
    if budget_bytes is None:
        return requested
    fits = int(budget_bytes * BUDGET_FRACTION) // row_bytes
    if fits < requested:
        logger.info("batch of %d rows lowered to %d to fit %.1f GiB", requested, max(fits, 1),
                    budget_bytes / 2**30)
    return max(1, min(requested, fits))


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors a device raises when an allocation fails."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def release_cached_memory() -> None:
    """Return freed blocks to the device after an out-of-memory error."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_backoff(fn: Callable[[int], T], batch_size: int, *, what: str = "batch") -> T:
    """``fn(batch_size)``; on out-of-memory, retry with half the batch until one row fails.

    ``fn`` must be safe to call again from the start (every pass of the engine is: nothing it
    returns is kept from a failed call).
    """
    size = batch_size
    while True:
        try:
            return fn(size)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(error) or size == 1:
                raise
            release_cached_memory()
            new = max(1, size // 2)
            logger.warning("%s of %d rows ran out of memory; retrying with %d", what, size, new)
            size = new
