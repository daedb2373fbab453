"""What a result depends on, as hashes: weights, code, and every input an option points at.

A finished result is reused when its fingerprint matches (:mod:`vizkit.runner`). A fingerprint
that missed a dependency would hand back a stale result as "reused", so this module hashes what a
run reads rather than what it was told:

* **weights**: a SHA-256 of the model's state dict (every tensor's name, dtype, shape and bytes,
  in order), so a wrapped or in-memory model whose weights changed, or a loaded checkpoint edited
  in memory, is recomputed. A model without a torch module has only its checkpoint's hash.
* **code**: a content hash (file bytes, never mtimes, so a fresh checkout or ``touch`` changes
  nothing) of the code unit behind each class involved. vizkit's own code counts per probe,
  model kind or dataset: ``vizkit/probes/<name>/``, ``vizkit/models/<kind>(.py|/)`` (and the
  models' shared ``base.py``), ``vizkit/datasets/``. The rest of vizkit (the core every run shares)
  is not hashed: an edit there would invalidate every cached result, and it is versioned with
  vizkit. Other code counts by its top-level package (every ``.py`` file under it) or its single
  module, as ``vizkit.registry.source_key`` scopes a plugin; torch, Lightning and the standard
  library are versioned libraries and not hashed.
* **inputs**: an option value that names a regular file (its hash), a folder (the sorted names and
  hashes of its regular files: vizkit's folder readers are not recursive), a comma-separated list
  of those, or a folder holding a verified vizkit result (that result's own fingerprint).

Nothing but regular files is ever opened (a FIFO or device named by an option would block or never
end); anything else is left out. File hashes are kept for the process, keyed by path, size, mtime,
ctime and inode, so a data folder is read once however many probes use it; a file changed in the
last seconds is always read again, since coarse file-system clocks could hide a rewrite.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .model import ProbeModel, torch_module

#: vizkit's own code is hashed per unit only inside these areas (see the module docstring)
VIZKIT_AREAS = ("probes", "models", "datasets")

#: versioned libraries whose code is not hashed (their versions are in every result.json)
LIBRARIES = frozenset({"torch", "lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics", "builtins",
                       *sys.stdlib_module_names})

#: a file whose mtime or ctime is this recent is hashed again on every call (file-system clocks tick coarsely)
RACY_NS = 2_000_000_000

#: file hashes kept at most (each entry is a few hundred bytes)
MAX_CACHED = 200_000

_file_hashes: dict[tuple[str, int, int, int, int, int], str] = {}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# -- files and folders -----------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str | None:
    """The content hash of a regular file, or None for anything else (missing, a folder, a FIFO,
    a device): opened non-blocking and checked on the open descriptor, so a special file never
    stalls a run."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    key = (str(Path(path).absolute()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    if key in _file_hashes:
        return _file_hashes[key]
    value = _read_regular(path)
    if value is not None and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
        if len(_file_hashes) >= MAX_CACHED:
            _file_hashes.clear()  # a bound on memory; hashing again is only slower
        _file_hashes[key] = value
    return value


def _read_regular(path: str | Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped for a special file since the stat
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(path: str | Path) -> str:
    """The sorted names and hashes of a folder's regular files (not its subfolders: vizkit's image
    folders are read non-recursively, and a result folder written inside would otherwise change it)."""
    try:
        names = sorted(entry.name for entry in os.scandir(path))
    except OSError:
        return _digest(None)
    listing = [[name, sha] for name in names if (sha := file_sha256(Path(path) / name)) is not None]
    return _digest(listing)


def path_fingerprint(value: str) -> dict[str, Any] | None:
    """What a path stands for in a fingerprint: a file's hash, a verified result's fingerprint, a
    folder's listing; None when it names nothing readable (then the value alone counts)."""
    try:
        path = Path(value).expanduser()
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(st.st_mode):
        sha = file_sha256(path)
        return None if sha is None else {"file": sha}
    if not stat.S_ISDIR(st.st_mode):
        return None  # a FIFO, socket or device: never opened
    if file_sha256(path / "result.json") is not None:
        meta = _verified_result(path)
        if meta is not None and isinstance(meta.get("fingerprint"), str):
            # the result's own fingerprint names what it was computed from; its arrays what it holds
            return {"result": meta["fingerprint"], "arrays": (meta.get("hashes") or {}).get("arrays.npz")}
        # not a verified result (damaged, or being rewritten): its bytes, so it is never taken for one
    return {"folder": folder_sha256(path)}


def _verified_result(folder: Path) -> dict[str, Any] | None:
    """``result.json`` of ``folder`` when every file it lists has its recorded hash, else None: the
    check of :func:`vizkit.output.verified_meta`, made with :func:`file_sha256`, so a listed name
    that is a FIFO counts as damaged instead of blocking the run."""
    try:
        meta = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("hashes"), dict) or not isinstance(meta.get("files"), list):
        return None
    for name in meta["files"]:
        if name == "result.json":
            continue
        if not isinstance(name, str) or "/" in name or meta["hashes"].get(name) != file_sha256(folder / name):
            return None
    return meta


def input_fingerprints(values: Mapping[str, Any], names: Collection[str] = ()) -> dict[str, Any]:
    """For every string value that names a file, a folder or a comma-separated list of them, what
    :func:`path_fingerprint` makes of it (keys without such a value are left out). ``names`` are
    values that are not paths (registered dataset names win over a folder of that name, as the
    data loaders decide)."""
    found: dict[str, Any] = {}
    for key, value in sorted(values.items()):
        if not isinstance(value, str) or not value or len(value) >= 4096 or value in names:
            continue
        whole = path_fingerprint(value)
        if whole is not None:
            found[key] = whole
            continue
        if "," in value:
            parts = [part.strip() for part in value.split(",") if part.strip()]
            each = [[part, path_fingerprint(part)] for part in parts]
            if any(fp is not None for _, fp in each):
                found[key] = each
    return found


# -- weights -----------------------------------------------------------------------------------------
def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: each entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(f"{len(name)}:{name}".encode())
        if isinstance(value, torch.Tensor):
            digest.update(f"|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(_tensor_bytes(value))
        else:  # a module's extra state
            digest.update(f"|{type(value).__name__}|{value!r}|".encode())
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> Any:
    t = tensor.detach()
    if t.is_sparse:
        t = t.to_dense()
    if t.is_quantized:
        t = t.int_repr()
    t = t.cpu().contiguous().reshape(-1)
    try:
        return t.view(torch.uint8).numpy()
    except (RuntimeError, TypeError):
        return repr(t.tolist()).encode()


def weights_sha256(model: ProbeModel) -> str | None:
    """The state dict's hash of the torch module behind ``model``; None when there is none (then
    the checkpoint's hash in the model's description is all there is)."""
    module = torch_module(model)
    return None if module is None else state_dict_sha256(module)


# -- code ------------------------------------------------------------------------------------------
def code_unit(module_name: str) -> str | None:
    """The dotted name of the code unit ``module_name`` belongs to, or None when it is not hashed."""
    parts = module_name.split(".")
    if parts[0] == "vizkit":
        return ".".join(parts[:3]) if len(parts) >= 2 and parts[1] in VIZKIT_AREAS else None
    if parts[0] in LIBRARIES:
        return None
    return parts[0]


def _unit_files(unit: str) -> tuple[Path, list[Path]] | None:
    """The unit's root (names are relative to it) and its source files."""
    import importlib.util

    module = sys.modules.get(unit)
    paths = list(getattr(module, "__path__", None) or []) if module is not None else []
    origin = getattr(module, "__file__", None) if module is not None else None
    if module is None:
        try:
            spec = importlib.util.find_spec(unit)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        paths, origin = list(spec.submodule_search_locations or []), spec.origin
    if paths:
        return Path(paths[0]).parent, [p for root in paths for p in sorted(Path(root).rglob("*.py"))]
    if origin and Path(origin).is_file():
        return Path(origin).parent, [Path(origin)]
    return None


def unit_sha256(unit: str) -> str | None:
    """A content hash of a unit's source files (names relative to the unit, so equal code on two
    machines hashes equal); None when its files cannot be found (e.g. code typed into a REPL)."""
    found = _unit_files(unit)
    if found is None:
        return None
    root, files = found
    return _digest(sorted([str(p.relative_to(root)), file_sha256(p)] for p in files))


def code_sha256(classes: Iterable[type]) -> dict[str, str | None]:
    """``{unit: content hash}`` for the code units that define ``classes`` (and their bases)."""
    units = {code_unit(str(base.__module__ or "builtins")) for cls in classes for base in cls.__mro__}
    return {unit: unit_sha256(unit) for unit in sorted(u for u in units if u is not None)}


def model_classes(model: Any) -> list[type]:
    """The model's class and the class of every module inside it: a wrapped network's code is
    the code of its modules."""
    classes = [type(model)]
    module = torch_module(model)
    if module is not None:
        classes += list(dict.fromkeys(type(sub) for sub in module.modules()))
    return classes


# -- what a run or a training depends on ---------------------------------------------------------------
def run_inputs(probe_cls: type, model: ProbeModel, options: Mapping[str, Any],
               datasets: Collection[str] = ()) -> dict[str, Any]:
    """Everything a probe run reads beyond its options' values, for its fingerprint (``datasets``:
    the registered dataset names, which are never read as paths)."""
    data_name = (getattr(model, "data_info", None) or {}).get("name")
    return {
        "weights": weights_sha256(model),
        "code": {"probe": code_sha256([probe_cls]), "model": code_sha256(model_classes(model))},
        "options": input_fingerprints(options, datasets),
        "model_data": input_fingerprints({"name": data_name}, datasets).get("name"),
    }


def training_inputs(kind: str, data: str, data_options: Mapping[str, Any]) -> dict[str, Any]:
    """What a model trained from a recipe depends on besides the recipe's values: the code of its
    model kind, of vizkit's training harness (``vizkit/training.py``) and of the dataset's module
    (the registered spec's, or ``vizkit.datasets`` for the user's own data), and the files or
    folders that the data and its options point at."""
    from .registry import get_host

    host = get_host()
    spec = host.datasets.get(data)
    data_unit = code_unit(getattr(getattr(spec and spec.obj, "build", None), "__module__", None) or "vizkit.datasets")
    values = {"data": data, **{f"data_options.{k}": v for k, v in data_options.items()}}
    return {
        "model": code_sha256([host.model_class(kind)]),
        "training": unit_sha256("vizkit.training"),
        "data": {data_unit: unit_sha256(data_unit)} if data_unit else {},
        "inputs": input_fingerprints(values, set(host.datasets)),
    }
