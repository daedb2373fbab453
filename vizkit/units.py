"""Parsing of unit selections such as ``0:36``, ``3,5,9`` and ``all``."""

from __future__ import annotations

import re

import torch

from .errors import UnitError

_RANGE = re.compile(r"^(\d+)?:(\d+)?(?::(\d+))?$")


def parse_units(spec: str | int | list[int] | torch.Tensor | None, n_units: int) -> torch.Tensor:
    """Turn a user's unit selection into validated indices for a layer of ``n_units``.

    ``None`` and ``"all"`` mean every unit; ``a:b[:step]`` is a Python-style slice (end exclusive);
    a comma list may mix single indices and slices.
    """
    if spec is None:
        return torch.arange(n_units)
    if isinstance(spec, torch.Tensor | list | tuple | int):
        units = torch.as_tensor(spec, dtype=torch.long).reshape(-1)
    else:
        text = str(spec).strip()
        if text.lower() == "all":
            return torch.arange(n_units)
        if not text:
            raise UnitError("empty --units; use e.g. 0:36, 3,5,9 or all")
        picked: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if part.isdigit():
                picked.append(int(part))
                continue
            match = _RANGE.match(part)
            if not match:
                raise UnitError(
                    f"malformed units {text!r}: {part!r} is not an index or a start:stop range "
                    "(use e.g. 0:36, 3,5,9 or all)"
                )
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
