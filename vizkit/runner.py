"""Running a validated probe run: compute it, or reuse what an identical earlier run left in ``out``.

:func:`vizkit.api.prepare_run` does every check and builds a :class:`PreparedRun`; this module
only executes one, so the single-process path (:func:`vizkit.run_probe`) and the split one
(:mod:`vizkit.shard`) share one way to finish, reuse and fingerprint a run without importing the
API that loads models and plugins.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ProbeFailure
from .freshness import input_fingerprints
from .model import ProbeModel, torch_module
from .output import load_arrays, out_lock, verified_meta, write_result
from .probe import ProbeContext, Result


def _move(model: Any, device: torch.device) -> None:
    target = torch_module(model)
    if target is not None:
        target.to(device)


@dataclass
class PreparedRun:
    """A probe run that has passed every check: what it runs on, and how to finish it.

    :func:`run_prepared` runs it in one go; :mod:`vizkit.shard` computes parts of ``units`` in
    several processes and finishes once with the merged arrays.
    """

    name: str
    probe_cls: Any
    model: ProbeModel
    layer: str
    info: Any
    units: torch.Tensor
    options: dict[str, Any]
    seed: int
    device: torch.device
    out: Path | None
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    back: str | None = None  # a link from the result page up to the page that shows it (the gallery)
    heading: str | None = None  # the result page's heading (a gallery: its model's name and the entry's title)

    def start(self) -> None:
        """Put the model on the run's device and seed torch's global generator from the run's seed."""
        _move(self.model, self.device)
        torch.manual_seed(self.seed)

    def context(self, units: torch.Tensor, show_progress: bool = False) -> ProbeContext:
        return ProbeContext(self.model, self.layer, self.info, units.to(self.device), self.options, self.seed,
                            self.device, show_progress)

    def finish(self, result: Result, elapsed: float, extra_meta: dict[str, Any] | None = None) -> Result:
        """Check the arrays, add the run's metadata, and write the result when there is an ``out``."""
        for key, arr in result.arrays.items():
            arr = np.asarray(arr)
            result.arrays[key] = arr
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ProbeFailure(f"probe {self.name!r} produced non-finite values in {key!r} (diverged?)")
        result.meta.update(self.meta)
        result.meta["timings"] = {"run_s": round(elapsed, 4)}
        result.meta.update(extra_meta or {})
        if self.out is not None:
            result.files = write_result(result, self.out, force=self.force, back=self.back,
                                        heading=self.heading)
        return result


def run_prepared(run: PreparedRun, show_progress: bool = True) -> Result:
    """Execute a prepared run: reuse a finished identical result in ``run.out``, else extend an earlier
    run that differed only in its units, else compute from scratch.

    The reuse check and the write happen under ``out``'s lock, so two runs into one directory never
    interleave: the second waits, then reuses.
    """
    if run.out is None:
        return compute_run(run, show_progress)
    with out_lock(run.out):
        reused = reuse_finished(run.out, run.fingerprint)
        if reused is not None:
            return reused
        if run.probe_cls.splits_units():
            extended = extend_earlier(run, show_progress)
            if extended is not None:
                return extended
        return compute_run(run, show_progress)


def compute_run(run: PreparedRun, show_progress: bool = True) -> Result:
    """The whole run in this process, timed and finished (never reused)."""
    run.start()
    start = time.perf_counter()
    result = run.probe_cls().run(run.context(run.units, show_progress))
    return run.finish(result, time.perf_counter() - start)


def compute_part(run: PreparedRun, units: torch.Tensor, show_progress: bool = False) -> Result:
    """``compute`` of ``run``'s probe for ``units`` only."""
    run.start()
    return run.probe_cls().compute(run.context(units, show_progress))


def reuse_finished(out: Path, fingerprint: str) -> Result | None:
    """A finished identical run in ``out`` whose every file still has its recorded hash, or None
    (then the probe runs again: a killed, damaged or different run is never reused)."""
    meta = verified_meta(out)
    if meta is None or meta.get("fingerprint") != fingerprint:
        return None
    arrays = load_arrays(out / "arrays.npz")
    if arrays is None:
        return None
    files = [out / f for f in meta.get("files", [])]
    meta["reused"] = True
    return Result(arrays=arrays, meta=meta, files=files)


def extend_earlier(run: PreparedRun, show_progress: bool = False) -> Result | None:
    """Finish ``run`` from the result already in its ``out`` when that run differed only in its
    units: the units it has are taken from it, only the others are computed. None when there is no
    such result (or it shares no unit with this run)."""
    earlier = _earlier(run)
    if earlier is None:
        return None
    arrays, meta = earlier
    have = {int(u): i for i, u in enumerate(meta["units"])}
    wanted = run.units.tolist()
    missing = [u for u in wanted if u not in have]
    if len(missing) == len(wanted):
        return None
    start = time.perf_counter()
    fresh = compute_part(run, torch.tensor(missing, dtype=torch.long), show_progress) if missing else None
    where = {u: i for i, u in enumerate(missing)}
    merged = dict(fresh.arrays if fresh is not None else arrays)
    for key in run.probe_cls.unit_arrays:
        if key in arrays:
            rows = [fresh.arrays[key][where[u]] if u in where else arrays[key][have[u]] for u in wanted]
            merged[key] = np.stack(rows) if rows else arrays[key][:0]
    probe_meta = fresh.meta if fresh is not None else {k: v for k, v in meta.items() if k not in _RUN_KEYS}
    result = run.probe_cls().draw(run.context(run.units), Result(arrays=merged, meta=dict(probe_meta)))
    return run.finish(result, time.perf_counter() - start, {"units_reused": len(wanted) - len(missing)})


# keys the core writes into result.json (not the probe's own metadata)
_RUN_KEYS = {"probe", "plugin", "plugin_version", "model", "data", "layer", "layer_shape", "units", "units_spec",
             "options", "seed", "device", "versions", "inputs", "fingerprint", "unit_key", "timings", "files", "reused",
             "ranks", "units_per_rank", "units_reused", "hashes", "thumbnail_file"}


def _earlier(run: PreparedRun) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and meta of a verified earlier result in ``run.out`` that differs only in units."""
    meta = verified_meta(run.out)
    if meta is None or meta.get("unit_key") != run.meta["unit_key"] or not isinstance(meta.get("units"), list):
        return None
    arrays = load_arrays(Path(run.out) / "arrays.npz")
    if arrays is None:
        return None
    if any(k in arrays and len(arrays[k]) != len(meta["units"]) for k in run.probe_cls.unit_arrays):
        return None
    return arrays, meta


# -- fingerprints ----------------------------------------------------------------------------------
def digest(parts: list[Any]) -> str:
    """SHA-256 of ``parts`` as canonical JSON: equal runs get equal fingerprints on any machine."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def option_file_hashes(opts: dict[str, Any]) -> dict[str, Any]:
    """What every file, folder or comma-separated list of paths an option names stands for in a
    fingerprint (:func:`vizkit.freshness.input_fingerprints`; kept under its older name)."""
    return input_fingerprints(opts)


def distribution_version(dist: str) -> str:
    """Part of a result's fingerprint, so upgrading a probe invalidates its cached results."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except (metadata.PackageNotFoundError, ValueError):
        return "unknown"
