"""Which machine made a number or an image.

The same code and seed train to slightly different models on different CPUs (their matrix
routines round differently, and thousands of updates amplify that), and a speed ratio such as
``benchmarks/train_step_rate.py``'s depends on how fast the CPU's BLAS is against its elementwise
work. So the docs manifest and the benchmarks say which processor they ran on.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

__all__ = ["cpu_name", "machine_name"]


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The processor's model name (from ``cpuinfo`` on Linux), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name:
                    return name
    return platform.processor() or platform.machine() or "unknown"


def machine_name() -> str:
    """The processor, the architecture, torch's version and its thread count: what decides a
    trained model's last bits (a matrix product split over two threads sums in another order than
    on one, so the same commit and CPU train the capsule to other images at 2 threads than at 1)."""
    import torch

    threads = torch.get_num_threads()
    return f"{cpu_name()}, {platform.machine()}, torch {torch.__version__}, {threads} thread{'s' * (threads != 1)}"
