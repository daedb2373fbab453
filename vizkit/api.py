"""The Python API: load a checkpoint, run a probe, list what is installed.

The CLI is a thin layer over these functions, so everything the command line can do is available
(and validated the same way) from Python.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import file_sha256, read_checkpoint
from .errors import (
    CapabilityError,
    CheckpointError,
    ProbeFailure,
    UnitError,
    UnknownNameError,
    UsageError,
)
from .model import ProbeModel, layer_info
from .options import resolve_options
from .output import RESULT_FIXED, check_overwrite, ensure_writable, load_arrays, verified_meta
from .probe import ProbeContext, Result
from .registry import get_host
from .units import parse_units


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild a model from a vizkit checkpoint or a Lightning ``.ckpt`` of a vizkit model.

    Nothing in the file is executed: it is read with ``weights_only=True`` and the model is built
    from its kind's registered class.
    """
    ckpt = read_checkpoint(path, map_location)
    host = get_host()
    if ckpt["kind"] not in host.models:
        known = ", ".join(sorted(host.models)) or "(none)"
        raise CheckpointError(
            f"{path} holds model kind {ckpt['kind']!r}, which no installed plugin provides "
            f"(installed kinds: {known})"
        )
    cls = host.model_class(ckpt["kind"])
    try:
        with _size_guard(ckpt):
            model = cls.from_checkpoint(ckpt)
    except _TooBig as exc:
        raise CheckpointError(
            f"{path} does not match model kind {ckpt['kind']!r}: its hyperparameters ask for a tensor of "
            f"{exc.args[0]:,} elements, far more than its weights hold (refused before allocating)"
        ) from None
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError, UsageError) as exc:
        # a bad hyperparameter is the file's fault (exit 1), not a flag the user typed
        raise CheckpointError(
            f"{path} does not match model kind {ckpt['kind']!r}: {str(exc).splitlines()[0]}"
        ) from None
    model.source = {"path": str(path), "sha256": file_sha256(path)}
    return model


class _TooBig(Exception):
    pass


def _size_guard(ckpt: dict[str, Any]) -> Any:
    """A torch function mode that stops any tensor factory asking for far more elements than the
    checkpoint's largest weight holds, before the memory is allocated.

    A checkpoint's hyperparameters declare sizes; a damaged or hostile 14 KB file could otherwise ask
    for gigabytes while the model is built, before its weights are compared with them.
    """
    from torch.overrides import TorchFunctionMode

    largest = max((v.numel() for v in ckpt["state_dict"].values()), default=0)
    limit = max(4 * largest, 1 << 22)
    factories = {torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full, torch.randint,
                 torch.tensor, torch.eye, torch.arange}

    def numel(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        size = kwargs.get("size", args[0] if args else ())
        if isinstance(size, int):
            dims = [a for a in args if isinstance(a, int)] if args and isinstance(args[0], int) else [size]
        elif isinstance(size, torch.Size | tuple | list) and all(isinstance(d, int) for d in size):
            dims = list(size)
        else:
            return 0
        total = 1
        for d in dims:
            total *= max(int(d), 0)
        return total

    class Guard(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in factories and func not in (torch.tensor, torch.arange) and numel(args, kwargs) > limit:
                raise _TooBig(numel(args, kwargs))
            return func(*args, **kwargs)

    return Guard()


def load_module(
    factory: str,
    weights: str | Path | None = None,
    input_shape: Any = None,
    layers: Any = None,
) -> Any:
    """Your own model, named explicitly: ``"package.module:Factory"`` (a class or function that
    returns a ``torch.nn.Module``) with a state dict from ``weights``, wrapped for probing.

    The factory is imported because you named it; the weights are still read with
    ``weights_only=True``. ``input_shape`` is one example's shape, e.g. ``(1, 28, 28)`` or
    ``"1,28,28"``; ``layers`` narrows the captured layers (default: every leaf module).
    This is what ``vizkit probe --module ... --weights ... --input-shape ...`` calls.
    """
    import importlib
    import sys

    from .checkpoint import read_weights
    from .wrapping import wrap

    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--module must look like package.module:Factory, got {factory!r}")
    shape = _parse_shape(input_shape)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a module next to where the user runs vizkit
    try:
        target = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        raise UsageError(f"cannot import {module_name!r} for --module: {type(exc).__name__}: {exc}") from None
    obj = target
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no {attr!r} (for --module {factory})")
        obj = getattr(obj, part)
    try:
        module = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    except Exception as exc:
        raise UsageError(f"--module {factory}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"--module {factory} gave a {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = read_weights(weights)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise CheckpointError(f"{weights} does not fit {factory}: {' '.join(lines[1:3]) or lines[0]}") from None
    module.eval()
    if isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    try:
        model = wrap(module, input_shape=shape, layers=layers)
    except RuntimeError as exc:
        raise UsageError(f"--input-shape {','.join(map(str, shape))} does not fit {factory}: "
                         f"{str(exc).splitlines()[0]}") from None
    model.source = {"module": factory, "path": str(weights) if weights is not None else None,
                    "sha256": file_sha256(weights) if weights is not None else None}
    return model


def _parse_shape(value: Any) -> tuple[int, ...]:
    if value is None:
        raise UsageError("--input-shape is required with --module (one example's shape, e.g. 1,28,28)")
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        shape = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 or d > 1 << 20 for d in shape) or len(shape) > 4:
        raise UsageError(f"--input-shape must be one to four positive sizes such as 1,28,28, got {value!r}")
    return shape


def load_dataset(name_or_path: str, split: str = "test", seed: int = 0, limit: int = 0, **options: Any) -> Any:
    """Examples of a registered dataset (``vizkit datasets``) or of your own ``.npy``/``.npz``/image
    folder, as a :class:`vizkit.probe_inputs.Examples` (``images`` ``[N, *input_shape]``, ``labels``
    or None, ``source``).

    ``split`` is ``test`` (default), ``train`` or ``all``; ``options`` are the dataset's own (the
    ``-D KEY=VALUE`` of ``vizkit train``), e.g. ``load_dataset("patches", size=16, whiten="zca")``.
    A probe that wants the model's *own* data calls ``vizkit.probe_inputs.load_examples(ctx.model)``.
    """
    from .errors import OptionError
    from .probe_inputs import SPLITS, Examples
    from .training import build_data

    if split not in SPLITS:
        raise OptionError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    check_seed(seed)
    dm = build_data(str(name_or_path), options, 100, seed)
    tensors = {"test": [dm.test_tensor()], "train": [dm.train_tensor()], "all": [dm.train_tensor(), dm.test_tensor()]}
    labels = {"test": [dm.test_labels()], "train": [dm.train_labels()], "all": [dm.train_labels(), dm.test_labels()]}
    images = torch.cat(tensors[split])
    found = labels[split]
    label = None if any(x is None for x in found) else torch.cat([x.long() for x in found])
    if limit > 0:
        images, label = images[:limit], (label[:limit] if label is not None else None)
    return Examples(images, label, f"{dm.name} {split} split ({images.shape[0]} examples)")


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """What ``vizkit inspect`` shows: kind, data, hyperparameters, layers, capabilities, compatible
    probes and metrics. Read from the checkpoint's stored listing when it is there and matches the
    file's hyperparameters (no model class, no Lightning import); otherwise the model is built."""
    from .checkpoint import hparams_digest
    from .model import LayerInfo

    ckpt = read_checkpoint(path)
    stored = ckpt.get("listing")
    host = get_host()
    try:
        fast = (ckpt["kind"] in host.models and isinstance(stored, dict)
                and stored.get("hparams_sha256") == hparams_digest(ckpt["hparams"]))
        layers = {str(k): LayerInfo(str(k), tuple(int(d) for d in v)) for k, v in stored["layers"].items()} if fast else {}
        capabilities = frozenset(str(c) for c in stored["capabilities"]) if fast else frozenset()
    except (AttributeError, KeyError, TypeError, ValueError):
        fast = False
    if not fast:
        model = load(path)
        info = model_description(model)
        return {**info, "sha256": model.source["sha256"], "layers": model.layer_infos(),
                "capabilities": sorted(model.capabilities), "probes": compatible_probes(model),
                "metrics": getattr(model, "metrics", None) or {}}
    data = {k: v for k, v in (ckpt.get("data") or {}).items() if k != "buffers"}
    probes = sorted(name for name, reg in host.probes.items() if set(reg.obj.requires) <= capabilities)
    return {"kind": ckpt["kind"], "checkpoint": {"path": str(path)}, "hparams": dict(ckpt["hparams"]),
            "input_shape": list(ckpt["hparams"].get("input_shape") or data.get("input_shape") or []),
            "data": data, "sha256": file_sha256(path), "layers": layers, "capabilities": sorted(capabilities),
            "probes": probes, "metrics": ckpt.get("metrics") or {}}


def list_probes() -> list[str]:
    return sorted(get_host().probes)


def list_models() -> list[str]:
    return sorted(get_host().models)


def list_datasets() -> list[str]:
    return sorted(get_host().datasets)


def compatible_probes(model: ProbeModel) -> list[str]:
    """Probes whose required capabilities the model has."""
    host = get_host()
    have = set(model.capabilities)
    return sorted(name for name, reg in host.probes.items() if set(reg.obj.requires) <= have)


def model_description(model: ProbeModel) -> dict[str, Any]:
    data = {k: v for k, v in (getattr(model, "data_info", None) or {}).items() if k != "buffers"}
    hparams = getattr(model, "hparams", None)
    return {
        "kind": getattr(model, "kind", type(model).__name__),
        "checkpoint": getattr(model, "source", None),
        "hparams": dict(hparams) if hparams is not None else None,
        "input_shape": list(model.input_shape),
        "data": data,
    }


def _move(model: Any, device: torch.device) -> None:
    target = model if isinstance(model, torch.nn.Module) else getattr(model, "module", None)
    if isinstance(target, torch.nn.Module):
        target.to(device)


def run_probe(
    name: str,
    model: ProbeModel,
    layer: str,
    units: Any = None,
    out: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    force: bool = False,
    link_back: str | None = None,
    **options: Any,
) -> Result:
    """Run probe ``name`` on ``model``'s ``layer`` and return its :class:`Result`.

    Every check (probe exists, capabilities, layer, units, options, output directory) happens
    before any compute. With ``out`` the result is written there; re-running with the same model,
    layer, units, options and seed reuses the finished result (after checking every file's hash)
    instead of recomputing it. ``units`` may be a spec such as ``"0:36"``, an int, a list, a
    ``range``, a NumPy array or a tensor. Long probes draw progress bars on stderr when it is a terminal (``show_progress=False`` never).
    ``force`` lets the run replace another probe's result or files vizkit did not write in ``out``
    (see :func:`vizkit.output.check_overwrite`). ``link_back`` is a relative link the result page
    shows back up to the page that lists it (the gallery passes ``"../../index.html"``).
    """
    run = prepare_run(name, model, layer, units=units, out=out, seed=seed, device=device, force=force, **options)
    run.back = link_back
    if run.out is None:
        return _compute(run, show_progress)
    from .output import out_lock

    with out_lock(run.out):  # one run at a time in a directory: the second waits, then reuses
        reused = _reuse(run.out, run.fingerprint)
        if reused is not None:
            return reused
        if run.probe_cls.splits_units():
            from .shard import extend_earlier

            extended = extend_earlier(run, show_progress)
            if extended is not None:
                return extended
        return _compute(run, show_progress)


def _compute(run: PreparedRun, show_progress: bool) -> Result:
    run.start()
    start = time.perf_counter()
    result = run.probe_cls().run(run.context(run.units, show_progress))
    return run.finish(result, time.perf_counter() - start)


@dataclass
class PreparedRun:
    """A probe run that has passed every check: what it runs on, and how to finish it.

    :func:`run_probe` runs it in one go; :mod:`vizkit.shard` computes parts of ``units`` in
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
            from .output import write_result

            result.files = write_result(result, self.out, force=self.force, back=self.back)
        return result


def check_capabilities(probe_cls: type, model: Any) -> None:
    """Refuse a probe whose required capabilities the model lacks, naming the probes that do work
    (checked before anything else about the run: a missing layer is not the user's real problem)."""
    missing = set(probe_cls.requires) - set(model.capabilities)
    if missing:
        working = ", ".join(compatible_probes(model)) or "(none)"
        raise CapabilityError(
            f"probe {probe_cls.name!r} needs capability {', '.join(sorted(missing))!r}, which model "
            f"{getattr(model, 'kind', type(model).__name__)!r} does not have; "
            f"probes that work on this model: {working}"
        )


def prepare_run(
    name: str,
    model: ProbeModel,
    layer: str,
    units: Any = None,
    out: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    force: bool = False,
    **options: Any,
) -> PreparedRun:
    """Validate a probe run (raising a typed :class:`vizkit.VizkitError`) before any compute."""
    host = get_host()
    probe_cls = host.probe(name)
    if isinstance(model, torch.nn.Module) and not isinstance(model, ProbeModel):
        raise UsageError("that is a plain torch module; wrap it first: vizkit.wrap(module, input_shape=...)")
    check_capabilities(probe_cls, model)
    info = layer_info(model, layer)
    allowed = probe_cls.valid_layers(model)
    if layer not in allowed:
        raise UnknownNameError(
            f"probe {name!r} cannot run on layer {layer!r}; valid layers for it: "
            f"{', '.join(allowed) or '(none in this model)'}"
        )
    try:
        unit_idx = parse_units(units, info.n_units)
    except UnitError as exc:
        raise UnitError(f"layer {layer!r}: {exc}") from None
    opts = resolve_options(probe_cls.options, options, f"probe {name!r}")
    check_seed(seed)
    out_path = ensure_writable(out) if out is not None else None
    if out_path is not None:
        check_overwrite(out_path, RESULT_FIXED, name, force)
    dev = check_device(device)

    model_meta = model_description(model)
    plugin_version = _distribution_version(host.distributions.get(host.probes[name].plugin, ""))
    # the device type, not its index: cuda:0 and cuda:1 (or the ranks of a split run) are one run
    same_run = [name, plugin_version, model_meta, layer, opts, seed, dev.type, _files_read(opts)]
    fingerprint = _digest([*same_run, unit_idx.tolist()])
    from . import __version__

    meta = {
        "probe": name,
        "plugin": host.probes[name].plugin,
        "plugin_version": plugin_version,
        "model": model_meta,
        "data": model_meta["data"].get("name"),
        "layer": layer,
        "layer_shape": list(info.shape),
        "units": unit_idx.tolist(),
        "units_spec": "all" if units is None else str(units),
        "options": opts,
        "seed": seed,
        "device": str(dev),
        "versions": {
            "vizkit": __version__,
            "torch": str(torch.__version__),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "fingerprint": fingerprint,
        "unit_key": _digest(same_run),  # equal for runs that differ only in their units
    }
    return PreparedRun(name, probe_cls, model, layer, info, unit_idx, opts, seed, dev, out_path, fingerprint, meta,
                       force=force)


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


def _files_read(opts: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of every file an option names (e.g. ``-o data images.npy``), so a result is not
    reused after such a file changed in place."""
    from .output import sha256_file

    hashes = {}
    for key, value in sorted(opts.items()):
        if isinstance(value, str) and value and len(value) < 4096:
            try:
                path = Path(value).expanduser()
                if path.is_file():
                    hashes[key] = sha256_file(path)
            except (OSError, ValueError):
                continue
    return hashes


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _distribution_version(dist: str) -> str:
    """Part of a result's fingerprint, so upgrading a probe invalidates its cached results."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except (metadata.PackageNotFoundError, ValueError):
        return "unknown"


def _reuse(out: Path, fingerprint: str) -> Result | None:
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
