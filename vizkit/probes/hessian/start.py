"""Where the invariance analysis starts: the optimal stimulus of each unit.

Either the ``actmax`` probe is run through the public API (so every improvement to it, and its
options, carry over), or the optima of an earlier actmax run are read from its output directory
(``-o from_dir DIR``), which saves the optimisation when several analyses share it. A directory
may also hold an exact optimum written by hand: ``arrays.npz`` with ``stimuli`` [units, *input_shape]
(rows in the order of ``--units``) and no ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import ProbeContext, UnitError, UsageError

#: hessian options handed to actmax unchanged when set.
PASSTHROUGH = ("steps", "restarts", "lr", "tol", "rho", "position")


def run_actmax(ctx: ProbeContext) -> tuple[torch.Tensor, dict[str, Any]]:
    """Optima [U, *input_shape] from the actmax probe, run on the same model, layer, units and seed."""
    if "actmax" not in vizkit.list_probes():
        raise UsageError("the hessian probe starts from the actmax probe's optima, but no actmax probe is "
                         "installed; install it or give -o from_dir DIR with optima saved earlier")
    options = {name: ctx.options[name] for name in PASSTHROUGH if ctx.options[name] is not None}
    options["preset"] = "erhan"  # the analysis is on the sphere |x| = rho, whatever actmax's default for the input
    result = vizkit.run_probe("actmax", ctx.model, ctx.layer, units=ctx.units.cpu().tolist(), seed=ctx.seed,
                              device=ctx.device, show_progress=ctx.show_progress, **options)
    stimuli = torch.as_tensor(np.asarray(result.arrays["stimuli"]))
    info = {"source": "actmax probe", "actmax_options": result.meta.get("options", {}),
            "actmax_rho": result.meta.get("rho"), "actmax_seconds": result.meta.get("timings", {}).get("run_s")}
    return stimuli, info


def read_optima(ctx: ProbeContext, directory: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """Optima [U, *input_shape] for ``ctx.units`` from an actmax result directory, checked first."""
    path = Path(directory)
    where = f"option from_dir {path}"
    if not path.is_dir():
        raise UsageError(f"{where}: no such directory")
    arrays_path = path / "arrays.npz"
    if not arrays_path.is_file():
        raise UsageError(f"{where}: no arrays.npz there (write one with `vizkit probe --plugin actmax ... --out DIR`)")
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            if "stimuli" not in data.files:
                raise UsageError(f"{where}: arrays.npz has no 'stimuli' array (it holds {', '.join(data.files)})")
            stimuli = np.asarray(data["stimuli"])
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: cannot read arrays.npz: {exc}") from None
    wanted = ctx.units.cpu().tolist()
    meta = _read_meta(path, where)
    if meta is None:
        if len(stimuli) != len(wanted):
            raise UsageError(f"{where}: without result.json the {len(stimuli)} rows of 'stimuli' must be the "
                             f"{len(wanted)} requested units in order")
        rows = list(range(len(wanted)))
    else:
        _check_meta(meta, ctx, where)
        saved = [int(u) for u in meta.get("units", range(len(stimuli)))]
        missing = [u for u in wanted if u not in saved]
        if missing:
            raise UnitError(f"{where} holds optima of units {_short(saved)} of layer {ctx.layer!r}, not unit "
                            f"{missing[0]}; run actmax on those units or choose among these")
        rows = [saved.index(u) for u in wanted]
    shape = tuple(ctx.model.input_shape)
    if stimuli.ndim < 2 or tuple(stimuli.shape[1:]) != shape:
        raise UsageError(f"{where}: 'stimuli' has shape {stimuli.shape}, expected [units, {', '.join(map(str, shape))}]")
    picked = stimuli[rows]
    if not np.isfinite(picked).all() or (np.abs(picked.reshape(len(rows), -1)).sum(1) == 0).any():
        raise UsageError(f"{where}: 'stimuli' holds non-finite or all-zero optima")
    return torch.from_numpy(np.ascontiguousarray(picked)), {"source": str(path)}


def _read_meta(path: Path, where: str) -> dict[str, Any] | None:
    meta_path = path / "result.json"
    if not meta_path.exists():
        return None
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: result.json is unreadable: {exc}") from None


def _check_meta(meta: dict[str, Any], ctx: ProbeContext, where: str) -> None:
    """The saved optima must be of this probe kind, layer, position and (when known) checkpoint."""
    if meta.get("probe", "actmax") != "actmax":
        raise UsageError(f"{where} holds a {meta['probe']!r} result, not actmax optima")
    if meta.get("layer") != ctx.layer:
        raise UsageError(f"{where} holds optima of layer {meta.get('layer')!r}, not {ctx.layer!r}")
    saved_position = (meta.get("options") or {}).get("position")
    if (saved_position or None) != (ctx.options["position"] or None):
        raise UsageError(f"{where} maximised position {saved_position!r}, but this run asks for "
                         f"{ctx.options['position']!r}")
    saved_sha = ((meta.get("model") or {}).get("checkpoint") or {}).get("sha256")
    own_sha = (getattr(ctx.model, "source", None) or {}).get("sha256")
    if saved_sha and own_sha and saved_sha != own_sha:
        raise UsageError(f"{where} was computed on another checkpoint (sha256 {saved_sha[:12]}…, this one "
                         f"{own_sha[:12]}…)")


def _short(units: list[int]) -> str:
    return ", ".join(map(str, units[:8])) + (", …" if len(units) > 8 else "")
