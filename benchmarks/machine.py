"""What every benchmark records about the machine it ran on (``extra_info`` of each result)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from greater.devices import cpu_has_fast_bf16


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), or None where it is not readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(lm=None) -> dict:
    """Threads, cores, the CPU (model, ATen's vector capability, native bf16 or not), OpenMP
    wait policy, load average at the time of the call, versions, and the dtype of ``lm``'s
    weights and the kernels its linear layers run on where one is given. Results from
    different CPUs are not comparable: an AVX2-only CPU runs bf16 matmuls about 6x slower than
    fp32 ones."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    info = {} if lm is None else {"dtype": str(lm.dtype).removeprefix("torch."),
                                  "linear_kernels": lm.linear_kernels}
    return info | {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_fast_bf16": cpu_has_fast_bf16(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_1m_at_start": load[0], "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
