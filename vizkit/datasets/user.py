"""User data: an ``.npy`` / ``.npz`` array or a folder of images, turned into a VizDataModule.

Layouts understood (N examples first):

* ``[N, H, W]`` -> grey ``(1, H, W)``;
* ``[N, C, H, W]`` -> ``(C, H, W)``; ``[N, H, W, C]`` with C in {1, 3, 4} and the second axis not
  in {1, 3, 4} is taken as channel-last and transposed (what image libraries write);
* ``[N, D]`` -> ``(1, s, s)`` when D = s*s (flattened square images), else flat ``(D,)``.

An ``.npz`` may carry per-example integer class labels beside the data (``y``, ``labels`` or
``targets``), which class-based probes (occlusion) follow as the true class.

``uint8`` arrays and 8-bit images are divided by 255 (grey levels); other numbers are used as they
are. The split is a seeded 90/10 permutation (for training); the module also records which file
row every example came from (and a folder's file names), because probes use *all* of a user's
data in file order by default and report rows of the file, never positions in the permuted
split. Every problem with the input is a DataError with
one line saying what is wrong with which file, because this is the first thing a new user tries.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import VizDataModule, coerce_int, coerce_optional_int, split_indices
from vizkit.errors import DataError
from vizkit.paths import refuse_special, special_kind

__all__ = ["ARRAY_SUFFIXES", "IMAGE_SUFFIXES", "LABEL_KEYS", "NPZ_KEYS", "TEST_FRACTION", "from_path",
           "image_files", "load_array", "load_image_folder", "load_labels"]

ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
#: Keys of an ``.npz`` archive preferred over its first array.
NPZ_KEYS = ("x", "X", "data")
TEST_FRACTION = 0.1
_CHANNELS = (1, 3, 4)


def load_array(path: Path) -> np.ndarray:
    """The raw array in an ``.npy`` file, or the chosen array of an ``.npz`` archive."""
    refuse_special(path, "data file", DataError)
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise DataError(f"{path} contains no arrays")
            key = next((k for k in NPZ_KEYS if k in archive.files), archive.files[0])
            return archive[key]
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"cannot read {path}: {exc} (object arrays are not supported)") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


#: Keys of an ``.npz`` archive read as one integer class label per example.
LABEL_KEYS = ("y", "labels", "targets")


def load_labels(path: Path, n: int) -> np.ndarray | None:
    """Per-example integer class labels stored beside the data in an ``.npz`` (``y``, ``labels`` or
    ``targets``: a whole-number array of length N), or None. A string ``labels`` array is class
    names (:mod:`vizkit.class_names`), not labels; a label array of the wrong length is an error."""
    if path.suffix.lower() != ".npz":
        return None
    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in LABEL_KEYS if k in archive.files and archive[k].dtype.kind in "iu"), None)
        if key is None:
            return None
        labels = archive[key]
    if labels.shape != (n,) or (labels < 0).any():
        raise DataError(f"{path}: {key!r} must hold one class number >= 0 per example ({n}), got shape "
                        f"{labels.shape}")
    return labels.astype(np.int64)


def _read_image(path: Path) -> tuple[np.ndarray, bool]:
    """One image as float64 ``[H, W, 3]`` or ``[H, W]`` in its natural scale, and whether grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode.startswith("I;16"):
                return np.asarray(img, dtype=np.float64) / 65535.0, True
            if mode in ("I", "F"):
                return np.asarray(img, dtype=np.float64), True
            if mode in ("1", "L", "LA"):
                return np.asarray(img.convert("L"), dtype=np.float64) / 255.0, True
            rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    # a grey picture saved as RGB is still grey
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0], True
    return rgb, False


def image_files(folder: Path) -> list[Path]:
    """The images directly in ``folder``, sorted by name: row i of the data is file i.

    Other files and subfolders are ignored so a README next to the images does no harm. A pipe,
    device or socket with an image's name is refused rather than skipped: it would be read as an
    image, and skipping it would silently renumber the rows after it.
    """
    files = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        kind = special_kind(path)
        if kind is not None:
            raise DataError(f"refusing to read image folder {folder}: {path.name} is {kind}, not a regular file")
        if path.is_file():
            files.append(path)
    return files


def load_image_folder(folder: Path) -> np.ndarray:
    """All images directly in ``folder`` (:func:`image_files` order) as ``[N, C, H, W]`` float32.

    Grey (C = 1) if every image is grey, else RGB (C = 3, grey ones replicated).
    """
    files = image_files(folder)
    if not files:
        raise DataError(f"folder {folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    images: list[np.ndarray] = []
    all_grey = True
    first_size: tuple[int, int] | None = None
    for path in files:
        image, grey = _read_image(path)
        size = (image.shape[0], image.shape[1])
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise DataError(f"images in {folder} differ in size: {files[0].name} is "
                            f"{first_size[0]}x{first_size[1]}, {path.name} is {size[0]}x{size[1]}")
        images.append(image)
        all_grey &= grey
    if all_grey:
        stacked = np.stack(images)[:, None]
    else:
        stacked = np.stack([im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=2)
                            for im in images]).transpose(0, 3, 1, 2)
    return stacked.astype(np.float32)


def _to_examples(array: np.ndarray, path: Path) -> np.ndarray:
    """``array`` as float32 ``[N, *input_shape]`` following the layouts in the module docstring."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path} holds {array.dtype} values; expected numbers")
    if array.ndim not in (2, 3, 4):
        raise DataError(f"{path} holds an array of shape {array.shape}; expected [N, H, W], "
                        f"[N, C, H, W] or [N, D]")
    if array.shape[0] < 2 or 0 in array.shape:
        raise DataError(f"{path} holds shape {array.shape}; need at least 2 non-empty examples "
                        f"(one for training, one for test)")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    data = array.astype(np.float32) / np.float32(scale)
    if data.ndim == 2:
        side = math.isqrt(data.shape[1])
        if side * side == data.shape[1]:
            data = data.reshape(-1, 1, side, side)
    elif data.ndim == 3:
        data = data[:, None]
    elif data.shape[3] in _CHANNELS and data.shape[1] not in _CHANNELS:
        data = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data)


def from_path(
    path: str | Path,
    *,
    limit: Any = None,
    batch_size: Any = 100,
    seed: Any = 0,
) -> VizDataModule:
    """A dataset from an ``.npy``/``.npz`` file or a folder of images, split 90/10 by ``seed``.

    ``limit`` keeps only the first N training examples. ``file_rows`` / ``file_names`` on the
    module map every example back to its row of the file (its file in the folder). The module's ``name`` is the resolved
    path, so ``build_dataset(describe()["name"], ...)`` finds the same data again.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"no such file or folder: {p}")
    p = refuse_special(p.resolve(), "data", DataError)
    lim = coerce_optional_int(limit, "limit", minimum=1)
    seed_i = coerce_int(seed, "seed", minimum=0)
    names, labels = None, None
    if p.is_dir():
        data = load_image_folder(p)
        names = [f.name for f in image_files(p)]
        if data.shape[0] < 2:
            raise DataError(f"folder {p} holds {data.shape[0]} image; need at least 2 "
                            f"(one for training, one for test)")
    elif p.suffix.lower() in ARRAY_SUFFIXES:
        data = _to_examples(load_array(p), p)
        labels = load_labels(p, data.shape[0])
    else:
        raise DataError(f"unsupported data file {p}: expected .npy, .npz or a folder of images")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DataError(f"{p} contains {bad} non-finite values (NaN or inf)")
    n_test = max(1, int(round(TEST_FRACTION * data.shape[0])))
    train_idx, test_idx = split_indices(data.shape[0], n_test, seed_i)
    if lim is not None:
        train_idx = train_idx[:lim]
    return VizDataModule(
        str(p),
        torch.from_numpy(data[train_idx]),
        torch.from_numpy(data[test_idx]),
        options={"limit": lim},
        batch_size=batch_size,
        seed=seed_i,
        train_labels=None if labels is None else torch.from_numpy(labels[train_idx]),
        test_labels=None if labels is None else torch.from_numpy(labels[test_idx]),
        file_rows=(torch.from_numpy(train_idx), torch.from_numpy(test_idx)),
        file_names=names,
        file_size=int(data.shape[0]),
    )
