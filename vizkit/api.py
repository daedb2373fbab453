"""The Python API: load a checkpoint, run a probe, list what is installed.

The CLI is a thin layer over these functions, so everything the command line can do is available
(and validated the same way) from Python.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import read_checkpoint
from .errors import (
    CapabilityError,
    CheckpointError,
    UnitError,
    UnknownNameError,
    UsageError,
)
from .freshness import file_sha256, run_inputs
from .model import ProbeModel, layer_info
from .options import resolve_options
from .output import RESULT_FIXED, check_overwrite, ensure_writable, sha256_file
from .probe import Result
from .registry import cached, get_host
from .runner import (
    PreparedRun,
    digest,
    distribution_version,
    run_prepared,
)
from .units import parse_units
from .validation import MAX_SEED as MAX_SEED  # the validators live in vizkit.validation; re-exported here
from .validation import check_device as check_device
from .validation import check_seed as check_seed


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
    model.source = {"path": str(path), "sha256": sha256_file(path)}
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
                    "sha256": sha256_file(weights) if weights is not None else None,
                    # the factory's code is part of the model: same weights through a Tanh are another model
                    "module_sha256": _module_sha256(target)}
    return model


def _module_sha256(module: Any) -> str | None:
    """The content hash of a module's source file (None for one without a file, such as a
    namespace package)."""
    path = getattr(module, "__file__", None)
    return file_sha256(path) if path else None


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


def load_dataset(name_or_path: str, split: str = "auto", seed: int = 0, limit: int = 0, **options: Any) -> Any:
    """Examples of a registered dataset (``vizkit datasets``) or of your own ``.npy``/``.npz``/image
    folder, as a :class:`vizkit.probe_inputs.Examples` (``images`` ``[N, *input_shape]``, ``labels``
    or None, ``source``, ``rows``: each example's row of the source).

    ``split`` is ``auto`` (default: a registered dataset's ``test`` split, all of your own file in
    file order), ``test``, ``train`` or ``all``; ``options`` are the dataset's own (the
    ``-D KEY=VALUE`` of ``vizkit train``), e.g. ``load_dataset("patches", size=16, whiten="zca")``.
    A probe that wants the model's *own* data calls ``vizkit.probe_inputs.load_examples(ctx.model)``.
    """
    from .errors import OptionError
    from .probe_inputs import SPLITS, split_examples
    from .training import build_data

    if split not in SPLITS:
        raise OptionError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    check_seed(seed)
    return split_examples(build_data(str(name_or_path), options, 100, seed), split, limit)


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """What ``vizkit inspect`` shows: kind, data, hyperparameters, layers, capabilities, compatible
    probes and metrics. Read from the checkpoint's stored listing when it is there and matches the
    file's hyperparameters (no model class, no Lightning import); otherwise the model is built.
    Which probes run is asked of the model itself when a probe's own check needs it; that answer is
    cached under the file's SHA-256 and the source of the model kind and of those probes."""
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
        return describe_model(load(path))
    candidates = [reg.obj for reg in host.probes.values() if set(reg.obj.requires) <= capabilities]
    sha = sha256_file(path)
    if any(_asks_the_model(cls) for cls in candidates):
        # a probe's own check (its layers, its refusal) needs the model itself: build it, so that
        # what is listed is exactly what runs; the answer is kept for these bytes and this code
        code = host.code_key(host.models[ckpt["kind"]].obj, *candidates)
        key = None if code is None else digest([sha, code, sorted(cls.name for cls in candidates)])
        probes = cached("inspect", sha, key, lambda: compatible_probes(load(path)),
                        check=lambda value: isinstance(value, list) and set(value) <= set(host.probes))
    else:
        probes = sorted(cls.name for cls in candidates if layers)
    data = {k: v for k, v in (ckpt.get("data") or {}).items() if k != "buffers"}
    return {"kind": ckpt["kind"], "checkpoint": {"path": str(path)}, "hparams": dict(ckpt["hparams"]),
            "input_shape": list(ckpt["hparams"].get("input_shape") or data.get("input_shape") or []),
            "data": data, "sha256": sha, "layers": layers, "capabilities": sorted(capabilities),
            "probes": probes, "metrics": ckpt.get("metrics") or {}}


def describe_model(model: ProbeModel) -> dict[str, Any]:
    """:func:`describe_checkpoint`'s answer for a model in hand (a loaded checkpoint, or a user's
    module from :func:`load_module`, whose layers include its blocks and per-call names)."""
    info = model_description(model)
    return {**info, "sha256": (getattr(model, "source", None) or {}).get("sha256"), "layers": model.layer_infos(),
            "capabilities": sorted(model.capabilities), "probes": compatible_probes(model),
            "metrics": getattr(model, "metrics", None) or {}}


def list_probes() -> list[str]:
    return sorted(get_host().probes)


def list_models() -> list[str]:
    return sorted(get_host().models)


def list_datasets() -> list[str]:
    return sorted(get_host().datasets)


def compatible_probes(model: ProbeModel, layer: str | None = None) -> list[str]:
    """Probes that run on ``model`` (on ``layer``, or on some layer) with their default options:
    required capabilities, valid layers and each probe's own refusal (:meth:`vizkit.Probe.can_run`)."""
    host = get_host()
    names = []
    for name, reg in sorted(host.probes.items()):
        try:
            runs = reg.obj.can_run(model, layer)
        except Exception as exc:  # a plugin's own check that fails names the plugin; the listing goes on
            print(f"vizkit: probe {name!r} (plugin {reg.plugin!r}) failed to check this model: "
                  f"{type(exc).__name__}: {exc}; not listed", file=sys.stderr)
            continue
        if runs:
            names.append(name)
    return names


def _asks_the_model(probe_cls: type) -> bool:
    """Whether the probe's layer check or refusal looks at the model beyond its capabilities and
    layer names (then a checkpoint's stored listing is not enough to list it)."""
    from .probe import Probe

    return any(getattr(probe_cls, name).__func__ is not getattr(Probe, name).__func__
               for name in ("valid_layers", "refusal", "can_run"))


def _where_free(model_meta: dict[str, Any]) -> dict[str, Any]:
    """The model's description without where its files lie: the same checkpoint named by a relative
    or an absolute path (a gallery built from another directory) is the same model; its bytes are
    in the fingerprint by their hash."""
    source = model_meta.get("checkpoint")
    if not isinstance(source, dict):
        return model_meta
    return {**model_meta, "checkpoint": {k: v for k, v in source.items() if k != "path"}}


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
    page_heading: str | None = None,
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
    shows back up to the page that lists it (the gallery passes ``"../../index.html"``), and
    ``page_heading`` heads the result page (the gallery: its model's name and the entry's title).
    """
    run = prepare_run(name, model, layer, units=units, out=out, seed=seed, device=device, force=force, **options)
    run.back, run.heading = link_back, page_heading
    return run_prepared(run, show_progress)


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
    refusal = probe_cls.refusal(model, layer, opts)
    if refusal is not None:
        raise CapabilityError(f"probe {name!r} cannot run on layer {layer!r}: {refusal}")
    check_seed(seed)
    out_path = ensure_writable(out) if out is not None else None
    if out_path is not None:
        check_overwrite(out_path, RESULT_FIXED, name, force)
    dev = check_device(device)

    model_meta = model_description(model)
    plugin_version = distribution_version(host.distributions.get(host.probes[name].plugin, ""))
    inputs = run_inputs(probe_cls, model, opts, set(host.datasets))  # weights, code, what options point at (vizkit.freshness)
    # the device type, not its index: cuda:0 and cuda:1 (or the ranks of a split run) are one run
    same_run = [name, plugin_version, _where_free(model_meta), layer, opts, seed, dev.type, inputs]
    fingerprint = digest([*same_run, unit_idx.tolist()])
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
        "inputs": inputs,
        "fingerprint": fingerprint,
        "unit_key": digest(same_run),  # equal for runs that differ only in their units
    }
    return PreparedRun(name, probe_cls, model, layer, info, unit_idx, opts, seed, dev, out_path, fingerprint, meta,
                       force=force)
