"""``photos``: RGB crops of ten colour photographs shipped inside scikit-image and scikit-learn, labelled by photograph.

A small natural-image classification task that needs no network: the class of a crop is the
photograph it was cut from. The photographs (read from the installed wheels, never downloaded),
in class order:

0. ``astronaut`` (Eileen Collins), 1. ``chelsea`` (a cat), 2. ``coffee`` (a cup), 3. ``rocket``
(on its launch pad), 4. ``motorcycle`` (left view of the stereo pair), 5. ``hubble_deep_field``
(galaxies), 6. ``immunohistochemistry`` (stained tissue), 7. ``retina`` (the square inside the
fundus disc, so no crop is the black surround), all from scikit-image; 8. ``china`` (a temple)
and 9. ``flower``, from scikit-learn.

Left out: scikit-image's other colour images are synthetic (logo, colour wheel, RGB chessboard)
or a near copy of one used (the right stereo view of the motorcycle); its other natural images
are grey, and its larger colour images (eagle, skin, lily, ...) are fetched from the network.

Each photograph is first resized (anti-aliased) so its shorter side is ``short_side`` pixels, so
crops of different photographs show things at a comparable scale; the default, 288, is below the
smallest photograph's shorter side (chelsea's 300), so no photograph is enlarged. The right-most
``test_fraction`` of each resized photograph's columns is held out: every test crop lies inside
that strip and every training crop ends left of it, so no test pixel is ever seen in training.
Crop positions are uniform within their region and drawn from ``seed`` (one stream per
photograph and split). Inputs are ``(3, size, size)`` float32 RGB in [0, 1], without further
preprocessing; training crops are one fixed draw (the convnet trains with labels, and labelled
data is reshuffled, not redrawn, each epoch).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import VizDataModule, coerce_int, numpy_rng
from vizkit.datasets.patches import coerce_float
from vizkit.errors import DataError

__all__ = [
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "DEFAULT_SHORT_SIDE",
    "DEFAULT_SIZE",
    "DEFAULT_TEST_FRACTION",
    "PHOTOGRAPHS",
    "build",
    "column_ranges",
    "photographs",
    "sample_crops",
]

#: The photographs in class order (class ``k`` is ``PHOTOGRAPHS[k]``); also the class names.
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field",
               "immunohistochemistry", "retina", "china", "flower")
DEFAULT_SIZE = 64
DEFAULT_SHORT_SIDE = 288
DEFAULT_TEST_FRACTION = 0.25
DEFAULT_N_TRAIN = 500
DEFAULT_N_TEST = 100

#: The square of the 1411x1411 retina image that lies inside its fundus disc (rows = columns).
_RETINA_SQUARE = slice(240, 1170)

# streams of the seed (see base.numpy_rng): one per split, then one per photograph
_TRAIN, _TEST = 0, 1


def _load_photograph(name: str) -> np.ndarray:
    """One photograph as uint8 [H, W, 3], from the installed packages only."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image  # lazy: sklearn is slow to import

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name == "retina":
        return skimage.data.retina()[_RETINA_SQUARE, _RETINA_SQUARE]
    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=4)
def photographs(short_side: int = DEFAULT_SHORT_SIDE) -> tuple[np.ndarray, ...]:
    """The photographs in class order, resized to a shorter side of ``short_side`` pixels, as
    read-only float32 RGB arrays ``[H, W, 3]`` in [0, 1]."""
    from skimage.transform import resize

    out = []
    for name in PHOTOGRAPHS:
        try:
            image = np.asarray(_load_photograph(name))
        except (ImportError, OSError, ValueError) as exc:  # a stripped install without the data files
            raise DataError(f"cannot read the photograph {name!r} from the installed packages: {exc}") from None
        if image.ndim != 3 or image.shape[2] < 3:
            raise DataError(f"the photograph {name!r} has shape {image.shape}, expected [H, W, 3]")
        rgb = image[..., :3].astype(np.float64) / 255.0
        height, width = rgb.shape[:2]
        factor = short_side / min(height, width)
        shape = (max(short_side, round(height * factor)), max(short_side, round(width * factor)))
        small = np.clip(resize(rgb, shape, order=1, anti_aliasing=factor < 1), 0.0, 1.0).astype(np.float32)
        small.setflags(write=False)
        out.append(small)
    return tuple(out)


def column_ranges(width: int, size: int, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Allowed left-edge columns ``[lo, hi]`` (inclusive) per split, for a photograph ``width`` wide.

    The held-out strip starts at column ``cut = round((1 - test_fraction) * width)``: a test crop
    starts at or after it, a training crop ends before it (its right-most column is < ``cut``).
    """
    cut = int(round((1.0 - test_fraction) * width))
    return {"train": (0, cut - size), "test": (cut, width - size)}


def _check_fits(images: tuple[np.ndarray, ...], size: int, test_fraction: float) -> None:
    """A one-line DataError when ``size`` crops do not fit a photograph's training or test region."""
    for name, image in zip(PHOTOGRAPHS, images, strict=True):
        height, width = image.shape[:2]
        if size > height:
            raise DataError(f"option size {size} exceeds the height {height} of the resized photograph "
                            f"{name!r}; use a smaller size or a larger short_side")
        for split, (lo, hi) in column_ranges(width, size, test_fraction).items():
            if hi < lo:
                where = "held-out strip" if split == "test" else "training region"
                raise DataError(f"{size}-pixel crops do not fit the {where} of the resized photograph {name!r} "
                                f"({width} pixels wide, test_fraction {test_fraction:g}); use a smaller size, "
                                "a larger short_side or a test_fraction nearer 0.5")


def sample_crops(
    n: int, size: int, split: str, seed: int, test_fraction: float,
    images: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops per photograph from ``split`` ("train"/"test"): float32 ``[P * n, 3, size, size]``.

    Rows come in class order (the first ``n`` from photograph 0, ...). Also returns their
    coordinates ``[P * n, 3]`` = (photograph index, top row, left column), so tests can verify
    where each crop came from. Positions of photograph ``k`` depend only on ``(seed, split, k)``.
    """
    images = photographs() if images is None else images
    stream = {"train": _TRAIN, "test": _TEST}[split]
    _check_fits(images, size, test_fraction)
    out = np.empty((len(images) * n, 3, size, size), dtype=np.float32)
    coords = np.empty((len(images) * n, 3), dtype=np.int64)
    offsets = np.arange(size)
    for k, image in enumerate(images):
        rng = numpy_rng(seed, stream, k)
        height, width = image.shape[:2]
        lo, hi = column_ranges(width, size, test_fraction)[split]
        rows = rng.integers(0, height - size + 1, size=n)
        cols = rng.integers(lo, hi + 1, size=n)
        crops = image[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]
        out[k * n:(k + 1) * n] = crops.transpose(0, 3, 1, 2)
        coords[k * n:(k + 1) * n] = np.stack([np.full(n, k), rows, cols], axis=1)
    return out, coords


def build(
    size: Any = DEFAULT_SIZE,
    n_train: Any = DEFAULT_N_TRAIN,
    n_test: Any = DEFAULT_N_TEST,
    test_fraction: Any = DEFAULT_TEST_FRACTION,
    short_side: Any = DEFAULT_SHORT_SIDE,
    *,
    batch_size: Any = 100,
    seed: Any = 0,
) -> VizDataModule:
    """RGB crops ``(3, size, size)`` in [0, 1] labelled by photograph (see the module docstring).

    ``n_train`` / ``n_test`` crops per photograph; test crops come from the right-most
    ``test_fraction`` of each photograph's columns, training crops from the rest.
    """
    size_i = coerce_int(size, "size", minimum=4, maximum=1024)
    n_train_i = coerce_int(n_train, "n_train", minimum=1, maximum=1_000_000)
    n_test_i = coerce_int(n_test, "n_test", minimum=1, maximum=1_000_000)
    fraction = coerce_float(test_fraction, "test_fraction", minimum=0.01, maximum=0.99)
    side_i = coerce_int(short_side, "short_side", minimum=8, maximum=2048)
    seed_i = coerce_int(seed, "seed", minimum=0)
    if size_i > side_i:
        raise DataError(f"option size {size_i} exceeds short_side {side_i}; crops must fit the resized photographs")
    images = photographs(side_i)
    _check_fits(images, size_i, fraction)
    train, train_at = sample_crops(n_train_i, size_i, "train", seed_i, fraction, images)
    test, test_at = sample_crops(n_test_i, size_i, "test", seed_i, fraction, images)
    return VizDataModule(
        "photos",
        torch.from_numpy(train),
        torch.from_numpy(test),
        options={"size": size_i, "n_train": n_train_i, "n_test": n_test_i, "test_fraction": fraction,
                 "short_side": side_i},
        batch_size=batch_size,
        seed=seed_i,
        train_labels=torch.from_numpy(train_at[:, 0].copy()),
        test_labels=torch.from_numpy(test_at[:, 0].copy()),
        class_names=PHOTOGRAPHS,
    )
