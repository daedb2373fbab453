"""Parsing of unit selections such as ``0:36``, ``3,5,9`` and ``all``."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from .errors import UnitError

_RANGE = re.compile(r"^(\d+)?:(\d+)?(?::(\d+))?$", re.ASCII)
_INDEX = re.compile(r"^\d+$", re.ASCII)
_MAX_INDEX = 2**62  # anything larger is out of every layer's range; checked before torch sees it


def _as_indices(spec: Any) -> torch.Tensor:
    """Python/NumPy/torch unit selections as a flat long tensor (integers only)."""
    if isinstance(spec, range):
        spec = list(spec)
    if isinstance(spec, np.ndarray):
        if spec.dtype.kind not in "iu":
            raise UnitError(f"units must be integers, got a NumPy array of {spec.dtype}")
        spec = spec.astype(np.int64, copy=False)
    if isinstance(spec, torch.Tensor):
        if spec.is_floating_point() or spec.is_complex() or spec.dtype == torch.bool:
            raise UnitError(f"units must be integers, got a tensor of {spec.dtype}")
        return spec.detach().to("cpu", torch.long).reshape(-1)
    items = [spec] if isinstance(spec, int | np.integer) else list(spec)
    values: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise UnitError(f"units must be integers, got {item!r}")
        if not -_MAX_INDEX < int(item) < _MAX_INDEX:
            raise UnitError(f"unit {int(item)} is out of range")
        values.append(int(item))
    return torch.tensor(values, dtype=torch.long)


def parse_units(spec: str | int | range | list[int] | np.ndarray | torch.Tensor | None, n_units: int) -> torch.Tensor:
    """Turn a user's unit selection into validated indices for a layer of ``n_units``.

    ``None`` and ``"all"`` mean every unit; an int, list, ``range``, NumPy integer array or tensor
    gives the indices directly; ``a:b[:step]`` is a Python-style slice (end exclusive);
    a comma list may mix single indices and slices.
    """
    if spec is None:
        return torch.arange(n_units)
    if not isinstance(spec, str):
        units = _as_indices(spec)
    else:
        text = str(spec).strip()
        if text.lower() == "all":
            return torch.arange(n_units)
        if not text:
            raise UnitError("empty --units; use e.g. 0:36, 3,5,9 or all")
        picked: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if _INDEX.match(part):
                if len(part) > 18:
                    raise UnitError(f"unit {part} is out of range: the layer has {n_units} units (0..{n_units - 1})")
                picked.append(int(part))
                continue
            match = _RANGE.match(part)
            if not match:
                raise UnitError(
                    f"malformed units {text!r}: {part!r} is not an index or a start:stop range "
                    "(use e.g. 0:36, 3,5,9 or all)"
                )
            if any(g is not None and len(g) > 18 for g in match.groups()):
                raise UnitError(f"units {part!r} reach past the layer: it has {n_units} units (0..{n_units - 1})")
            start = int(match.group(1) or 0)
            stop = int(match.group(2)) if match.group(2) is not None else n_units
            step = int(match.group(3) or 1)
            if step == 0:
                raise UnitError(f"malformed units {text!r}: step may not be 0")
            if stop > n_units:
                raise UnitError(
                    f"units {part!r} reach past the layer: it has {n_units} units (0..{n_units - 1})"
                )
            if start >= stop:
                raise UnitError(f"units {part!r} select nothing (start must be below stop)")
            picked.extend(range(start, stop, step))
        units = torch.tensor(picked, dtype=torch.long)
    if units.numel() == 0:
        raise UnitError("no units selected")
    bad = units[(units < 0) | (units >= n_units)]
    if bad.numel():
        raise UnitError(
            f"unit {int(bad[0])} is out of range: the layer has {n_units} units (0..{n_units - 1})"
        )
    if torch.unique(units).numel() != units.numel():
        raise UnitError("units repeat an index; list each unit once")
    return units
