"""Checkpoints: one ``torch.save`` file that rebuilds a model without executing code.

A vizkit checkpoint is a plain dict of primitives and tensors (kind, hyperparameters, state dict,
dataset description, metrics, versions), so it loads with ``torch.load(weights_only=True)``; a file
whose pickle needs any other object is refused before that object could be built. Lightning
``.ckpt`` files of vizkit models carry the same description under the ``"vizkit"`` key.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UsageError
from .options import Option
from .output import atomic_write
from .paths import refuse_special

FORMAT = "vizkit-checkpoint"
FORMAT_VERSION = 1


# How torch's weights-only unpickler names the global it refused to build: "Unsupported global"
# for one not allowed, "unsupported GLOBAL" for one whose module is blocked outright.
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def make_checkpoint(
    kind: str,
    hparams: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    data: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict; every value is something ``weights_only`` loading accepts."""
    from . import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "hparams": dict(hparams),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "data": data,
        "metrics": metrics or {},
        "vizkit_version": __version__,
        "torch_version": str(torch.__version__),
    }


def checkpoint_bytes(ckpt: dict[str, Any]) -> bytes:
    """The file's bytes. Saved through a buffer: ``torch.save`` to a path stores the file's name
    inside the archive, so a temporary name would make identical trainings differ byte for byte
    (and change the sha256 that probe results are keyed on)."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def hparams_digest(hparams: dict[str, Any]) -> str:
    import json

    return hashlib.sha256(json.dumps(hparams, sort_keys=True, default=str).encode()).hexdigest()


def listing(model: Any, hparams: dict[str, Any]) -> dict[str, Any]:
    """What ``vizkit inspect`` shows about a model, stored in its checkpoint so inspecting needs
    neither the model's class nor Lightning (seconds of imports). Keyed on the hyperparameters:
    a file whose hyperparameters were changed afterwards is inspected by building the model."""
    return {
        "hparams_sha256": hparams_digest(hparams),
        "layers": {name: [int(d) for d in info.shape] for name, info in model.layer_infos().items()},
        "capabilities": sorted(model.capabilities),
    }


def save_checkpoint(ckpt: dict[str, Any], path: str | Path, model: Any = None) -> Path:
    """Write atomically, then prove the file loads safely (a checkpoint we cannot read is a bug).

    With ``model``, the checkpoint also carries its :func:`listing` (layers and capabilities).
    """
    path = Path(path)
    bad = first_non_finite(ckpt["state_dict"])
    if bad is not None:  # checked before writing: a diverged model never replaces what --out held
        raise CheckpointError(f"training diverged: {bad!r} holds NaN or inf values, so nothing was written to "
                              f"{path}; train again with a lower --lr")
    if model is not None:
        ckpt = {**ckpt, "listing": listing(model, ckpt["hparams"])}
    data = checkpoint_bytes(ckpt)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    read_checkpoint(path)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict, turning every failure into one clear error."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a checkpoint file")
    refuse_special(path, "checkpoint", UsageError)
    with open(path, "rb") as fh:
        head = fh.read(4)
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _REFUSED_GLOBAL.search(str(exc))
        if found:
            raise CheckpointError(
                f"refusing to load {path}: its pickle asks for {found.group(1)}, and loading it could "
                "run code (vizkit checkpoints hold only tensors and plain values)"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint (not a torch file)") from None
    except Exception:  # torch raises many types for garbage: all mean "not readable"
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is truncated or corrupted (not a complete torch zip archive)") from None
        raise CheckpointError(f"{path} is not a checkpoint (not a torch file)") from None
    return _normalise(raw, path)


def read_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``path`` for a user's own module (``--weights``): a plain state dict, a
    Lightning ``.ckpt`` or a vizkit checkpoint, read with ``weights_only=True`` like every file."""
    path = refuse_special(path, "--weights", UsageError)
    if not path.is_file():
        raise UsageError(f"no such weights file: {path}")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _REFUSED_GLOBAL.search(str(exc))
        what = f"its pickle asks for {found.group(1)}" if found else "it is not a weights-only torch file"
        raise CheckpointError(f"refusing to load {path}: {what} (save model.state_dict() instead)") from None
    except Exception:
        raise CheckpointError(f"{path} is not a torch file (or it is truncated); TorchScript archives are not "
                              f"read: save model.state_dict() with torch.save") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not (isinstance(raw, dict) and raw and all(isinstance(k, str) and torch.is_tensor(v) for k, v in raw.items())):
        raise CheckpointError(f"{path} holds no state dict (a dict of named tensors)")
    _refuse_complex(raw, path)
    return raw


def _refuse_complex(state: dict[str, torch.Tensor], path: Path) -> None:
    """Probes look at real-valued networks, and ``load_state_dict`` copies a complex tensor into a
    real parameter by dropping its imaginary part with only a warning: a complex tensor is refused."""
    for name, tensor in state.items():
        if tensor.is_complex():
            raise CheckpointError(f"{path} holds complex numbers ({str(tensor.dtype).removeprefix('torch.')}) in "
                                  f"{name!r}; vizkit probes real-valued networks")


class HparamError(CheckpointError, ValueError):
    """A stored hyperparameter of the wrong type or outside the range its kind declares.

    Also a ValueError, so a loader that names the file (``vizkit.load``) reports it as that file's
    mismatch with its model kind, like any other hyperparameter the kind's constructor refuses.
    """


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_hparams(hparams: Mapping[str, Any], specs: Sequence[Option]) -> None:
    """Check the stored value of every declared option before a model is built from it.

    ``vizkit train`` validated these values when it wrote the file, so a value that fails here was
    changed afterwards (or written by something else): ``pool = 0`` would divide by zero deep in
    the constructor, and ``activation = "evil"`` would quietly build some other network. The check
    is strict about types (no ``"2"`` for an integer, no ``True`` for a number) because nothing
    vizkit writes needs converting. A declared option missing from the file is left to the
    class's default (files from before the option existed).
    """
    for spec in specs:
        if spec.name in hparams:
            problem = _value_problem(spec, hparams[spec.name])
            if problem:
                raise HparamError(f"stored hyperparameter {spec.name!r} {problem}, got {hparams[spec.name]!r}")


def _value_problem(spec: Option, value: Any) -> str | None:
    """Why ``value`` cannot be ``spec``'s stored value (``"must be >= 1"``), or None when it can."""
    if value is None:
        return None if spec.default is None else "may not be empty"
    if isinstance(value, str) and value in spec.special:
        return None
    if not _has_type(value, spec.type):
        return f"must be {_TYPE_WORDS.get(spec.type, spec.type.__name__)}"
    if spec.choices and value not in spec.choices:
        return f"must be one of {list(spec.choices)}"
    if spec.type in (int, float):
        if spec.min is not None and value < spec.min:
            return f"must be >= {spec.min:g}"
        if spec.max is not None and value > spec.max:
            return f"must be <= {spec.max:g}"
    return None


def _has_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def check_input_shape(value: Any) -> None:
    """A stored ``input_shape``: one to four sizes, each a whole number from 1 to 2**20."""
    if not (isinstance(value, list | tuple) and 1 <= len(value) <= 4
            and all(_has_type(d, int) and 1 <= d <= 1 << 20 for d in value)):
        raise HparamError(f"stored hyperparameter 'input_shape' must be one to four sizes from 1 to {1 << 20}, "
                          f"got {value!r}")


def _check_types(ckpt: dict[str, Any], path: Path) -> None:
    """Every field the loader relies on has the type it expects: a damaged file is one line."""
    def bad(field: str, want: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{path} is damaged: {field} must be {want}, not {type(value).__name__}")

    if not isinstance(ckpt["kind"], str):
        raise bad("'kind'", "a string", ckpt["kind"])
    if not isinstance(ckpt["hparams"], dict) or not all(isinstance(k, str) for k in ckpt["hparams"]):
        raise bad("'hparams'", "a dict of named values", ckpt["hparams"])
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("'state_dict'", "a dict of named tensors", state)
    data = ckpt.get("data")
    if data is not None and not isinstance(data, dict):
        raise bad("'data'", "a dict", data)
    for key, want in (("stats", dict), ("options", dict), ("input_shape", list), ("name", str)):
        if isinstance(data, dict) and data.get(key) is not None and not isinstance(data[key], (list, tuple) if want is list else want):
            raise bad(f"'data.{key}'", {dict: "a dict", list: "a list", str: "a string"}[want], data[key])
    if ckpt.get("metrics") is not None and not isinstance(ckpt["metrics"], dict):
        raise bad("'metrics'", "a dict", ckpt["metrics"])


def _normalise(raw: Any, path: Path) -> dict[str, Any]:
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ckpt = raw
    elif isinstance(raw, dict) and isinstance(raw.get("vizkit"), dict) and "state_dict" in raw:
        meta = raw["vizkit"]
        try:
            ckpt = make_checkpoint(
                meta.get("kind", "?"),
                meta.get("hparams", {}),
                raw["state_dict"],
                meta.get("data", {}),
                meta.get("metrics", {}),
            )
        except (AttributeError, TypeError, ValueError):
            raise CheckpointError(f"{path} is damaged: its 'vizkit' description or state_dict has the wrong "
                                  f"type") from None
        ckpt["lightning"] = {"epoch": raw.get("epoch"), "global_step": raw.get("global_step")}
    elif isinstance(raw, dict) and raw and all(isinstance(k, str) and torch.is_tensor(v) for k, v in raw.items()):
        raise CheckpointError(
            f"{path} is a plain state dict (weights without the model's code); name the code that builds "
            f"the model: vizkit probe ... --module yourpkg.module:Factory --weights {path} --input-shape C,H,W"
        )
    elif isinstance(raw, torch.nn.Module):
        raise CheckpointError(f"{path} holds a whole module; save its state_dict() and use --module/--weights")
    else:
        raise CheckpointError(
            f"{path} is a torch file but not a vizkit checkpoint (write one with `vizkit train`, or give "
            f"your own model with --module pkg.mod:Factory --weights FILE --input-shape C,H,W)"
        )
    for key in ("kind", "hparams", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path} is missing {key!r}; it is not a complete vizkit checkpoint")
    _check_types(ckpt, path)
    _refuse_complex(ckpt["state_dict"], path)
    bad = first_non_finite(ckpt["state_dict"])
    if bad is not None:
        raise CheckpointError(f"{path} has non-finite values (NaN/inf) in {bad!r}; training probably diverged")
    return ckpt


def first_non_finite(state_dict: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    for name, tensor in state_dict.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None
