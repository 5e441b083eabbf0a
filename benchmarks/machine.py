"""What every benchmark records about the machine it ran on (``extra_info`` of each result)."""

from __future__ import annotations

import os
import platform

import torch


def machine_info() -> dict:
    """Threads, cores, OpenMP wait policy, load average at the time of the call, versions."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_1m_at_start": load[0], "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
