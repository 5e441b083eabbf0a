"""Choosing the torch device and dtype a model runs in.

Both functions are pure apart from asking torch what hardware there is, so tests can monkeypatch
``torch.cuda.is_available``, ``torch.cuda.is_bf16_supported``, ``torch.backends.mps.is_available``
and :func:`cpu_has_fast_bf16`.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
#: CPU flags (as in /proc/cpuinfo) that give native bfloat16 matmuls.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    Args:
        requested: ``None`` or ``"auto"`` (CUDA if available, else MPS if available, else CPU),
            or ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``.

    Raises:
        ValueError: an unparseable string, or a device this machine does not have.
    """
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(requested, torch.device):
        device = requested
    elif isinstance(requested, str):
        try:
            device = torch.device(requested.strip().lower())
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"invalid device {requested!r}: use 'auto', 'cpu', 'cuda', "
                             "'cuda:N' or 'mps'") from exc
    else:
        raise ValueError(f"invalid device {requested!r}: use a string or a torch.device")
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but CUDA is not available on "
                             "this machine (no GPU, or torch was built without CUDA); use 'cpu' "
                             "or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {requested!r} was requested but MPS (Apple GPU) is not "
                             "available; use 'cpu' or 'auto'")
        return device
    raise ValueError(f"unsupported device {requested!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' "
                     "or 'mps'")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    capability = ""
    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except (AttributeError, RuntimeError):
        pass
    if "AMX" in capability or "BF16" in capability:
        return True
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def pick_dtype(requested: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """The dtype to load weights in.

    Args:
        requested: ``None``/``"auto"``, one of "bf16", "bfloat16", "fp16", "float16", "fp32",
            "float32" (case-insensitive; also "half" and "float"), or a floating ``torch.dtype``.
        device: the device the model will run on.

    ``auto``: CUDA -> bfloat16 if the GPU supports it, else float16; CPU -> bfloat16 when the CPU
    has native bf16 (AVX512-BF16/AMX), else float32; MPS and others -> float32.

    Raises:
        ValueError: an unknown string or a non-floating dtype.
    """
    device = torch.device(device)
    if isinstance(requested, torch.dtype):
        if not requested.is_floating_point:
            raise ValueError(f"dtype {requested} is not a floating-point type")
        return requested
    if requested is not None and not isinstance(requested, str):
        raise ValueError(f"invalid dtype {requested!r}: use a string or a torch.dtype")
    key = "auto" if requested is None else requested.strip().lower().removeprefix("torch.")
    if key != "auto":
        if key not in _DTYPES:
            raise ValueError(f"invalid dtype {requested!r}: use 'auto', 'bf16', 'fp16' or 'fp32' "
                             f"(or {', '.join(sorted(set(_DTYPES) - {'bf16', 'fp16', 'fp32'}))})")
        return _DTYPES[key]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Bytes a new allocation can still get on ``device``; None where there is no fixed pool.

    On CUDA this is the driver's free memory plus what torch's caching allocator holds but no
    tensor uses. On the CPU (and MPS, whose memory is the host's) there is no device budget.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(cached, 0))
