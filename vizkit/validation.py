"""Checks of what every command takes (seeds, devices), at the bottom of the import graph.

Training, probing and sampling all validate these the same way; keeping the checks here lets each
of them import the rule without importing the modules that run probes or load models.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import UsageError

MAX_SEED = 2**32 - 1  # what numpy and Lightning accept; torch takes more, but one rule for every command


def check_seed(seed: Any) -> int:
    """A seed every generator vizkit seeds accepts, or one :class:`UsageError` line."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    return seed


def check_device(device: str | torch.device | None) -> torch.device:
    """A device that exists here: a malformed name or an absent accelerator is one line, exit 2."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} asked for, but no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError(f"device {device!r} asked for, but MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev
