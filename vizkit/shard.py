"""Splitting a probe's units over processes (``vizkit probe --devices N``), with Lightning Fabric.

Fabric starts the processes (one per device, any strategy and node count Lightning supports);
each computes :meth:`vizkit.Probe.compute` for its contiguous share of the units and writes it
to ``OUT/.vizkit-shards/``; after a barrier, rank 0 concatenates the unit arrays in unit order,
draws once and writes the result like a one-process run. Files, not collectives, carry the
parts, so arrays of any shape and dtype travel, and a rank that fails leaves a marker saying why
instead of a hung barrier. Several nodes need ``--out`` on a filesystem they all see.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import prepare_run
from .errors import ProbeFailure, UsageError
from .output import atomic_write_bytes
from .probe import Result
from .runner import PreparedRun, compute_part, extend_earlier, reuse_finished, run_prepared

# compute_part and extend_earlier live in vizkit.runner (a single-process run extends earlier results
# too); they stay importable from here, where split runs and plugins' tests have found them
__all__ = ["SHARD_DIR", "compute_part", "extend_earlier", "merge_parts", "draw_merged", "run_probe_on_ranks",
           "split_units"]

SHARD_DIR = ".vizkit-shards"


def split_units(units: torch.Tensor, parts: int) -> list[torch.Tensor]:
    """``parts`` contiguous slices of ``units`` in order, sizes differing by at most one (some may
    be empty when there are more parts than units)."""
    return list(torch.tensor_split(units, parts))


def merge_parts(probe_cls: Any, parts: Sequence[Result]) -> Result:
    """One result from the parts' results, in order: the probe's unit arrays concatenated along
    their first axis; every other array and the metadata from the first part."""
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    arrays = dict(first.arrays)
    for key in probe_cls.unit_arrays:
        if key in first.arrays:
            arrays[key] = np.concatenate([np.asarray(p.arrays[key]) for p in parts], axis=0)
    return Result(arrays=arrays, meta=dict(first.meta))


def draw_merged(run: PreparedRun, parts: Sequence[Result], elapsed: float, extra_meta: dict[str, Any] | None = None) -> Result:
    """Render the merged parts for all of ``run``'s units and finish the run (checks, metadata, files)."""
    merged = merge_parts(run.probe_cls, parts)
    result = run.probe_cls().draw(run.context(run.units), merged)
    return run.finish(result, elapsed, extra_meta)


# -- processes -----------------------------------------------------------------------------------
def run_probe_on_ranks(
    name: str,
    model: Any,
    layer: str,
    *,
    units: Any = None,
    out: str | Path,
    seed: int = 0,
    accelerator: str = "auto",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    show_progress: bool = False,
    options: dict[str, Any] | None = None,
    force: bool = False,
) -> Result | None:
    """Run a probe with its units split over Fabric's processes; rank 0 returns the result, the
    other ranks None. A probe that cannot split its units runs whole on rank 0.

    Every process runs the caller's code up to here (Lightning starts the others by re-running the
    command), so each passes its own copy of the loaded ``model``.
    """
    from lightning_fabric import Fabric

    from .training import quiet_lightning

    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    except Exception as exc:  # Lightning's own message names the bad value
        raise UsageError(f"cannot split over --devices {devices} (--accelerator {accelerator}, --strategy "
                         f"{strategy}): {str(exc).splitlines()[0]}") from None
    quiet_lightning()
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size
    run = prepare_run(name, model, layer, units=units, out=out, seed=seed, device=fabric.device,
                      force=force, **(options or {}))
    reused = reuse_finished(run.out, run.fingerprint)
    if reused is not None:
        return reused if rank == 0 else None
    if world == 1 or not run.probe_cls.splits_units():
        if rank != 0:
            return None
        if world > 1:
            print(f"vizkit: probe {name!r} does not split its units; running it in one process", file=sys.stderr)
        return run_prepared(run, show_progress)

    shard_dir = Path(run.out) / SHARD_DIR / run.fingerprint[:16]
    mine = split_units(run.units, world)[rank]
    start = time.perf_counter()
    part, failure = None, None
    try:
        part = compute_part(run, mine, show_progress and rank == 0) if len(mine) else None
        if rank != 0:
            _write_part(shard_dir, rank, part)
    except Exception as exc:  # tell rank 0 instead of leaving it waiting at the barrier
        if rank != 0:
            _write_failure(shard_dir, rank, exc)
        failure = exc
    fabric.barrier()
    if rank != 0:
        return None
    try:
        if failure is not None:
            raise failure
        # rank 0 keeps its own part (and the run-level meta) in memory; the others come from files
        parts = [part] + [_read_part(shard_dir, r) for r in range(1, world)]
        return draw_merged(run, parts, time.perf_counter() - start,
                             {"ranks": world, "units_per_rank": [len(u) for u in split_units(run.units, world)]})
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
        try:
            shard_dir.parent.rmdir()
        except OSError:
            pass


def _write_part(shard_dir: Path, rank: int, part: Result | None) -> None:
    shard_dir.mkdir(parents=True, exist_ok=True)
    meta = {"empty": part is None}  # run-level meta comes from rank 0's part
    if part is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in part.arrays.items()})
        atomic_write_bytes(shard_dir / f"rank{rank}.npz", buffer.getvalue())
    atomic_write_bytes(shard_dir / f"rank{rank}.json", json.dumps(meta, default=str).encode())


def _write_failure(shard_dir: Path, rank: int, exc: Exception) -> None:
    shard_dir.mkdir(parents=True, exist_ok=True)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    info = {"error": message, "type": type(exc).__name__, "usage": isinstance(exc, UsageError),
            "traceback": traceback.format_exc()}
    atomic_write_bytes(shard_dir / f"rank{rank}.json", json.dumps(info).encode())


def _read_part(shard_dir: Path, rank: int) -> Result | None:
    path = shard_dir / f"rank{rank}.json"
    if not path.exists():
        raise ProbeFailure(f"rank {rank} left no result in {shard_dir} (is --out on a filesystem every node sees?)")
    info = json.loads(path.read_text())
    if "error" in info:
        error = UsageError if info["usage"] else ProbeFailure
        raise error(f"rank {rank}: {info['error']}")
    if info["empty"]:
        return None
    with np.load(shard_dir / f"rank{rank}.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return Result(arrays=arrays)
