"""Prepacked oneDNN weights for the linear layers of a model on the CPU (bf16 or fp32).

``torch.nn.functional.linear`` on the CPU runs a product that is slow at the few rows of a
decode step, for a different reason in each dtype:

* **bf16** runs through oneDNN, which reorders the weight into its blocked layout on *every*
  call; at decode batch sizes that reorder costs more than the product. Packing each weight
  once (``torch.ops.mkldnn._reorder_linear_weight``, the op torch's own compiler uses when it
  freezes a CPU graph) and calling the packed kernel (``torch.ops.mkldnn._linear_pointwise``)
  is 2-2.6x faster per layer on an AMX CPU (a 16 x 576 x 1536 layer 169 -> 85 us, SmolLM2's
  49k-row output layer 13.2 -> 5.0 ms, one thread). It gives the same numbers bit for bit at
  most shapes, decode batches included, but not at all: oneDNN picks its blocking per shape,
  and for a few (seen: a 576 x 576 layer over 450 rows, a padded 3-row prefill of SmolLM2) the
  packed and the per-call layout sum in another order, which moves the last bits of a result.
* **fp32** runs through MKL's ``sgemm``, which at 16 rows reaches a quarter of an AVX2 CPU's
  arithmetic (measured on a 2-core AMD EPYC: SmolLM2's output layer 21.9 ms, 41 GFLOP/s).
  oneDNN's packed fp32 kernel runs the same products 1.3-2.3x faster there (that layer 9.5 ms,
  the 576 x 3072 gate/up product 0.97 -> 0.59 ms at 16 rows). It is another library's
  summation order: the results equal MKL's to float32 rounding (a few units in the last place),
  not bit for bit, so a greedy reply can differ from the plain model's where two tokens' logits
  tie that closely. It stays deterministic: the same inputs give the same numbers. At a
  single row MKL's matrix-vector kernel is the faster one (oneDNN's packed kernel took 1.8-2.6x
  as long for SmolLM2's projections there), so fp32 products of one row run plain
  (:func:`runs_packed`).

The packed kernel has no backward, so a layer uses it only where no gradient is wanted (under
``torch.no_grad``/``inference_mode``, or when neither its input nor its weight requires one);
a gradient pass runs the plain ``linear`` on the original weight, which is kept. The packed
copy is a snapshot: weights changed after packing are not seen (call :func:`unpack_linears`
first). It costs one extra copy of the linear weights in memory.
"""

from __future__ import annotations

import logging
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: Attribute under which a packed layer keeps its packed weight.
PACKED_ATTRIBUTE = "greater_packed_weight"
#: Rows oneDNN tunes a packed layout for (any number of rows runs).
PACK_BATCH_HINT = 16


def can_pack(model: torch.nn.Module) -> bool:
    """True where packing applies: a model on the CPU with oneDNN, in fp32, or in bf16 where
    the CPU has oneDNN's native bf16 kernels (AVX512-BF16 or AMX)."""
    try:
        first = next(model.parameters())
    except StopIteration:
        return False
    if first.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if first.dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return first.dtype == torch.float32


#: Fewest rows an fp32 product runs its packed kernel at (see the module docstring).
FP32_PACKED_MIN_ROWS = 2


def runs_packed(rows: int, dtype: torch.dtype) -> bool:
    """Whether a packed layer runs its packed kernel on ``rows`` rows of ``dtype`` (the
    layer's dtype): always in bf16, from :data:`FP32_PACKED_MIN_ROWS` rows on in fp32."""
    return dtype == torch.bfloat16 or (dtype == torch.float32 and rows >= FP32_PACKED_MIN_ROWS)


def pack_weight(weight: torch.Tensor, batch_hint: int = PACK_BATCH_HINT) -> torch.Tensor:
    """A bf16 or fp32 ``[out, in]`` linear weight reordered once into oneDNN's blocked layout."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)


def packed_product(x: torch.Tensor, packed: torch.Tensor,
                   bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ W.T + bias`` for ``x`` ``[..., in]`` (the weight's dtype) on a weight from
    :func:`pack_weight` (no gradient); ``[..., out]``."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def packed_linear_forward(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for ``x`` ``[..., in]``: the packed kernel where no gradient is needed and
    :func:`runs_packed` says it is the faster one."""
    wants_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    if (wants_grad or x.dtype != layer.weight.dtype or x.device.type != "cpu"
            or not runs_packed(x.numel() // max(x.shape[-1], 1), x.dtype)):
        return F.linear(x, layer.weight, layer.bias)
    return packed_product(x, getattr(layer, PACKED_ATTRIBUTE), layer.bias)


@dataclass(frozen=True)
class PackReport:
    """What :func:`pack_linears` did: layers packed and the bytes their packed copies take."""

    layers: int
    bytes: int


def pack_linears(model: torch.nn.Module, *, batch_hint: int = PACK_BATCH_HINT) -> PackReport:
    """Pack every ``nn.Linear`` of ``model`` for oneDNN (see module docstring); idempotent.

    ``batch_hint`` is the number of rows oneDNN tunes the layout for; any number of rows runs.
    Raises ValueError where :func:`can_pack` is False.
    """
    if not can_pack(model):
        raise ValueError("weight packing needs an fp32 model on a CPU with oneDNN, or a bf16 "
                         "one on a CPU with oneDNN's native bf16 kernels (AVX512-BF16 or AMX)")
    layers = size = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear) or hasattr(module, PACKED_ATTRIBUTE):
                continue
            setattr(module, PACKED_ATTRIBUTE, pack_weight(module.weight, batch_hint))
            module.forward = types.MethodType(packed_linear_forward, module)
            layers += 1
            size += module.weight.numel() * module.weight.element_size()
    logger.info("packed %d linear layers for oneDNN (%.0f MiB extra)", layers, size / 2**20)
    return PackReport(layers=layers, bytes=size)


def unpack_linears(model: torch.nn.Module) -> int:
    """Undo :func:`pack_linears`: plain ``nn.Linear`` forwards again. Returns layers undone."""
    undone = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and hasattr(module, PACKED_ATTRIBUTE):
            delattr(module, PACKED_ATTRIBUTE)
            del module.forward  # the instance attribute; the class's forward shows again
            undone += 1
    return undone


def is_packed(model: torch.nn.Module) -> bool:
    """True when some linear layer of ``model`` runs packed."""
    return any(hasattr(m, PACKED_ATTRIBUTE) for m in model.modules()
               if isinstance(m, torch.nn.Linear))


@contextmanager
def plain_linears(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` with plain ``nn.Linear`` forwards inside the block (as transformers ships
    it, e.g. to time transformers' own ``generate`` against it), packed again after."""
    was_packed = is_packed(model)
    if was_packed:
        unpack_linears(model)
    try:
        yield
    finally:
        if was_packed:
            pack_linears(model)
