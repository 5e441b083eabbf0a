"""KV caches for the decode loop: preallocated row slots on one shared time axis.

Every running row of a batch owns a *slot* of a :class:`SlotCache`. Keys and values of each
layer live in one buffer ``[slots, kv_heads, capacity, head_dim]`` and the attention mask in one
buffer ``[slots, capacity]``, both on the model's device. All live rows share one time axis:
a decode step writes column ``length`` of every live slot (no concatenation, no copy of what is
already cached), and attention reads the view ``[:rows, :, :length]``. Rows are left-aligned to
the axis's end: a row admitted while others run is prefilled on its own and written so that its
last token sits at the current end, its earlier columns masked.

* Finishing a row moves the last live slot into its place (one row copied, not the batch).
* Admitting rows writes only their slots. A prefix longer than the time axis so far shifts the
  axis right first; columns no live row uses any more are dropped from the left on admission.
* Sliding-window layers (Gemma-2/3) keep their full history here; the model's own sliding-window
  mask, which counts columns of the axis, limits what they attend to, exactly as in transformers'
  batched ``generate`` with left padding.

:func:`new_prefill_cache` gives the plain growing cache a prefill runs in before its rows are
placed, and the gradient passes use for their no-grad prefix.
"""

from __future__ import annotations

import inspect
import logging

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

logger = logging.getLogger(__name__)

#: Attention layer types a :class:`SlotCache` can stand in for.
SUPPORTED_LAYER_TYPES = ("full_attention", "sliding_attention")
#: Columns added at a time when the time axis outgrows its buffer.
CAPACITY_STEP = 256


def cache_keyword(model: torch.nn.Module) -> str:
    """Name of the KV-cache keyword of ``model.forward`` (``cache`` in transformers >= 5.x)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out) -> Cache:
    """The KV cache a transformers forward returned (``cache`` or ``past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def new_prefill_cache() -> DynamicCache:
    """A growing cache with full-history layers only (no sliding-window truncation)."""
    return DynamicCache()


def check_supported(model: torch.nn.Module) -> None:
    """Raise a clear error for models whose layers a :class:`SlotCache` cannot hold."""
    config = model.config.get_text_config(decoder=True)
    types = getattr(config, "layer_types", None) or ["full_attention"]
    unknown = sorted(set(types) - set(SUPPORTED_LAYER_TYPES))
    if unknown:
        raise ValueError(f"layer types {unknown} are not supported by the generation engine "
                         f"(supported: {', '.join(SUPPORTED_LAYER_TYPES)})")


class SlotLayer(DynamicLayer):
    """One layer's keys and values: ``[slots, kv_heads, capacity, head_dim]`` buffers.

    ``update`` (called by the model) appends the new columns for the first ``B`` slots, where
    ``B`` is the batch of the call, and returns views ``[B, kv_heads, length, head_dim]``.
    """

    is_sliding = False
    is_croppable = False

    def __init__(self, slots: int, capacity: int) -> None:
        super().__init__()
        self.slots = slots
        self.capacity = capacity
        self.length = 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def allocate(self, like: torch.Tensor) -> None:
        """Create the buffers with ``like``'s heads, head size, dtype and device."""
        shape = (self.slots, like.shape[1], self.capacity, like.shape[3])
        # Uninitialised: a column is written (or zeroed, see place) before any view reads it.
        self.key_buffer = like.new_empty(shape)
        self.value_buffer = like.new_empty(shape)
        self.device = like.device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor,
                            value_states: torch.Tensor | None = None) -> None:
        self.allocate(key_states)

    def reserve(self, columns: int) -> None:
        """Grow the buffers (by copying) so that ``columns`` fit on the time axis."""
        if columns <= self.capacity:
            return
        capacity = -(-columns // CAPACITY_STEP) * CAPACITY_STEP
        if self.key_buffer is not None:
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)
                new = old.new_empty(old.shape[:2] + (capacity,) + old.shape[3:])
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)
        self.capacity = capacity

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.key_buffer is None:
            self.allocate(key_states)
        rows, width = key_states.shape[0], key_states.shape[2]
        self.reserve(self.length + width)
        end = self.length + width
        self.key_buffer[:rows, :, self.length:end] = key_states
        self.value_buffer[:rows, :, self.length:end] = value_states
        self.length = end
        self.keys = self.key_buffer[:rows, :, :end]
        self.values = self.value_buffer[:rows, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1

    # ----- row and column moves, driven by SlotCache
    def place(self, first_slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``[b, H, L, D]`` states into slots ``first_slot..`` ending at column ``length``."""
        if self.key_buffer is None:
            self.allocate(keys)
        rows, width = keys.shape[0], keys.shape[2]
        start = self.length - width
        for buffer, states in ((self.key_buffer, keys), (self.value_buffer, values)):
            # Masked columns before the row must still hold finite numbers (0 x NaN is NaN).
            buffer[first_slot:first_slot + rows, :, :start] = 0
            buffer[first_slot:first_slot + rows, :, start:self.length] = states

    def move_row(self, source: int, target: int) -> None:
        for buffer in (self.key_buffer, self.value_buffer):
            if buffer is not None:
                buffer[target, :, : self.length] = buffer[source, :, : self.length]

    def shift(self, rows: int, by: int) -> None:
        """Move the first ``rows`` slots' columns ``by`` to the right (``by`` > 0) or left."""
        if by > 0:
            self.reserve(self.length + by)
        for buffer in (self.key_buffer, self.value_buffer):
            if buffer is None:
                continue
            if by > 0:
                buffer[:rows, :, by:self.length + by] = buffer[:rows, :, : self.length].clone()
                buffer[:rows, :, :by] = 0
            else:
                buffer[:rows, :, : self.length + by] = buffer[:rows, :, -by:self.length].clone()
        self.length += by


class SlotCache(Cache):
    """A batch's KV cache and attention mask in row slots (see module docstring).

    Args:
        n_layers: decoder layers of the model.
        slots: most rows at once (the batch size).
        capacity: initial length of the time axis (grown when needed).
        device: where the mask lives (the model's device; the layers follow their inputs).
    """

    def __init__(self, n_layers: int, *, slots: int, capacity: int,
                 device: torch.device | str) -> None:
        capacity = max(CAPACITY_STEP, -(-capacity // CAPACITY_STEP) * CAPACITY_STEP)
        super().__init__(layers=[SlotLayer(slots, capacity) for _ in range(n_layers)])
        self.slots = slots
        self.rows = 0
        self.length = 0
        self.mask_buffer = torch.zeros((slots, capacity), dtype=torch.long, device=device)
        #: per slot: the first column holding one of its tokens (host-side).
        self.first_column = [0] * slots

    @classmethod
    def for_model(cls, model: torch.nn.Module, *, slots: int, capacity: int,
                  device: torch.device | str) -> "SlotCache":
        check_supported(model)
        n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
        return cls(n_layers, slots=slots, capacity=capacity, device=device)

    @property
    def mask(self) -> torch.Tensor:
        """``[rows, length]`` attention mask of the live rows (1 = a real token)."""
        return self.mask_buffer[: self.rows, : self.length]

    def _reserve(self, columns: int) -> None:
        if columns > self.mask_buffer.shape[1]:
            capacity = -(-columns // CAPACITY_STEP) * CAPACITY_STEP
            new = self.mask_buffer.new_zeros((self.slots, capacity))
            new[:, : self.length] = self.mask_buffer[:, : self.length]
            self.mask_buffer = new
        for layer in self.layers:
            layer.reserve(columns)

    def begin_step(self, step_mask: torch.Tensor | None, width: int = 1) -> torch.Tensor:
        """Open ``width`` new columns for the live rows before a forward; return the full mask.

        Args:
            step_mask: ``[rows, width]`` mask of the fed tokens, or None when every row feeds a
                real token (the common decode step: nothing is copied from the host).
        """
        self._reserve(self.length + width)
        columns = self.mask_buffer[: self.rows, self.length:self.length + width]
        if step_mask is None:
            columns.fill_(1)
        else:
            columns.copy_(step_mask)
        self.length += width
        return self.mask

    def admit(self, prefill: Cache, mask: torch.Tensor, lengths: list[int]) -> range:
        """Place a prefilled ``[b, L]`` batch in the next ``b`` free slots; return their slots.

        ``prefill`` is a growing cache of ``b`` rows, ``mask`` their left-padded ``[b, L]`` mask
        (on the device) and ``lengths`` their numbers of real tokens (on the host, so that
        nothing waits on the device).
        """
        rows, width = mask.shape
        if self.rows + rows > self.slots:
            raise ValueError(f"{rows} rows do not fit in {self.slots - self.rows} free slots")
        if self.rows == 0:
            self._reset(width)
        elif width > self.length:
            self._shift(width - self.length)
        for layer, source in zip(self.layers, prefill.layers):
            layer.place(self.rows, source.keys, source.values)
        start = self.length - width
        self.mask_buffer[self.rows:self.rows + rows, :start] = 0
        self.mask_buffer[self.rows:self.rows + rows, start:self.length] = mask
        slots = range(self.rows, self.rows + rows)
        for slot, real in zip(slots, lengths):
            self.first_column[slot] = self.length - real
        self.rows += rows
        self._drop_unused_columns()
        return slots

    def release(self, slot: int) -> int | None:
        """Free ``slot``: the last live slot moves into it. Returns the moved slot, if any."""
        last = self.rows - 1
        moved = None
        if slot != last:
            for layer in self.layers:
                layer.move_row(last, slot)
            self.mask_buffer[slot, : self.length] = self.mask_buffer[last, : self.length]
            self.first_column[slot] = self.first_column[last]
            moved = last
        self.rows -= 1
        return moved

    def _reset(self, width: int) -> None:
        self._reserve(width)
        self.length = width
        for layer in self.layers:
            layer.length = width

    def _shift(self, by: int) -> None:
        """Shift every live row ``by`` columns (right if positive, left if negative)."""
        self._reserve(self.length + max(by, 0))
        for layer in self.layers:
            layer.shift(self.rows, by)
        m = self.mask_buffer
        if by > 0:
            m[: self.rows, by:self.length + by] = m[: self.rows, : self.length].clone()
            m[: self.rows, :by] = 0
        else:
            m[: self.rows, : self.length + by] = m[: self.rows, -by:self.length].clone()
        self.length += by
        for slot in range(self.rows):
            self.first_column[slot] += by

    def _drop_unused_columns(self) -> None:
        """Drop leading columns no live row uses, when that saves a quarter of the axis."""
        unused = min(self.first_column[: self.rows])
        if unused >= max(16, self.length // 4):
            self._shift(-unused)


def prefix_states(cache: Cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's ``(keys, values)`` of a filled growing cache, ``[B, H, L, D]`` each."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def repeat_prefix_cache(states: list[tuple[torch.Tensor, torch.Tensor]],
                        rows: int) -> DynamicCache:
    """A growing cache holding one prefix's ``[1, H, L, D]`` states for each of ``rows`` rows.

    The states are broadcast, not copied; the first forward that extends the cache writes the
    rows' own copies (the prefix itself is never run again).
    """
    cache = new_prefill_cache()
    for k, v in states:
        layer = DynamicLayer()
        layer.device, layer.dtype, layer.is_initialized = k.device, k.dtype, True
        layer.keys = k.expand(rows, -1, -1, -1)
        layer.values = v.expand(rows, -1, -1, -1)
        cache.layers.append(layer)
    return cache
