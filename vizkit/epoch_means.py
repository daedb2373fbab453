"""Means over a training epoch of what each step computes, logged once when the epoch ends.

Lightning's ``self.log(..., on_epoch=True)`` moves its whole result object to the value's device
on every call: about a millisecond per logged value per step on a CPU core, a tenth of a small
model's update (``benchmarks/train_step_rate.py``). The epoch mean needs only a running sum of
detached values, which is one in-place add per value.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch

__all__ = ["EpochMeans"]


class EpochMeans:
    """Running sums of named values, weighted by batch size as Lightning's epoch means are."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._weight = 0

    def add(self, weight: int, **values: torch.Tensor) -> None:
        """Count one step's ``values`` (scalars over a batch of ``weight`` examples)."""
        for name, value in values.items():
            value = value.detach() * weight
            if name in self._sums:
                self._sums[name].add_(value)
            else:
                self._sums[name] = value.clone()
        self._weight += weight

    def log(self, module: Any, prog_bar: Collection[str] = ()) -> None:
        """Log each mean through ``module.log`` (from an epoch-end hook) and start again at zero."""
        if self._weight:
            for name, total in self._sums.items():
                module.log(name, total / self._weight, prog_bar=name in prog_bar)
        self._sums, self._weight = {}, 0
