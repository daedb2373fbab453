"""Grey natural-image patches from the photographs shipped inside scikit-learn and scikit-image.

Photographs (all read from the installed wheels, never downloaded; ``-D images=NAME,NAME,...``):

- scikit-learn: ``china`` (a temple), ``flower``;
- scikit-image: ``astronaut``, ``camera`` (cameraman), ``coffee``, ``chelsea`` (a cat), ``grass``,
  ``gravel``, ``brick`` (close-up textures), ``rocket``, ``motorcycle`` (left stereo view),
  ``coins``.

The default, ``natural``, is all twelve: natural scenes plus textures give the edges of many
orientations, positions and scales that teach Gabor-like filters (two photographs, ``sklearn``,
hold long straight edges of a few orientations). Left out on purpose: scikit-image's synthetic
images (text, chessboard, logo, colour wheel), the binary horse silhouette, the motion-blurred
clock and the scientific images (cells, retina, Hubble, moon), whose statistics are not those of
natural scenes.

Erhan et al. use 12x12 patches and Rasmus et al. whitened 16x16 patches; both train on patches cut
at random positions, so training patches are drawn fresh every epoch from the left 80% of each
photograph, while the right 20% is a held-out region for test patches (no test pixel is ever seen
in training). Preprocessing, fixed on one seeded training draw and stored in the checkpoint:

1. subtract each patch's own mean (its DC component: overall brightness says nothing about
   structure);
2. divide by one scalar so pixels have unit std over the training draw;
3. optionally whiten: ``zca`` (symmetric whitening, the result still looks like an image) or
   ``pca`` (whitening restricted to the top principal components that keep >= 99% of the
   variance, at most 256, projected back to pixel space so the input shape stays a patch).

The DC direction has zero variance after step 1; whitening leaves it at zero instead of dividing
by a zero eigenvalue, so the whitened covariance is the identity on the other directions.

Cost: fitting is an eigendecomposition of the (size^2 x size^2) covariance, and every fresh epoch
draw is whitened by one matrix product, so the cost grows steeply with the patch side: cheap for the
12x12 and 16x16 patches of the papers, slow for large ones (docs/methods.md, "Data").
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import VizDataModule, coerce_choice, coerce_int, numpy_rng
from vizkit.errors import DataError

__all__ = [
    "LUMA",
    "MAX_PCA_DIMS",
    "PCA_VARIANCE",
    "TRAIN_FRACTION",
    "WHITEN_CHOICES",
    "CONTRAST_CHOICES",
    "CONTRAST_FLOOR",
    "divide_by_contrast",
    "DEFAULT_IMAGES",
    "IMAGE_SETS",
    "PHOTOGRAPHS",
    "build",
    "column_ranges",
    "fit_whitening",
    "grey_images",
    "patch_rng",
    "preprocess",
    "resolve_images",
    "sample_patches",
]

#: ITU-R BT.601 luminance weights for R, G, B.
LUMA = np.array([0.299, 0.587, 0.114])
#: Share of each photograph's width (from the left) that training patches come from.
TRAIN_FRACTION = 0.8
WHITEN_CHOICES = ("none", "zca", "pca")
#: ``contrast``: none, or divisive normalisation of each (whitened) patch by its own RMS. Windows of
#: these photographs differ in contrast by orders of magnitude (gravel beside sky), and a patch's
#: energy barely changes when it is shifted, so without it any unit that follows local energy looks
#: translation invariant to Rasmus et al.'s gamma (docs/models/ladder.md, "Why Add looked like Mod").
CONTRAST_CHOICES = ("none", "divisive")
#: the softening of divisive normalisation, as a share of the training draw's mean patch energy
CONTRAST_FLOOR = 0.1
PCA_VARIANCE = 0.99
MAX_PCA_DIMS = 256
#: Whitening regulariser, relative to the mean non-null eigenvalue (keeps 1/sqrt finite while
#: leaving the whitened covariance within 0.1% of the identity on natural-image spectra).
EPS_RELATIVE = 1e-4
#: Eigenvalues below this share of the largest are treated as exactly zero (the DC direction).
NULL_RELATIVE = 1e-6

#: Rows per float32 block when accumulating the covariance.
_CHUNK = 4096

# streams of the seed (see base.numpy_rng)
_FIXED_TRAIN, _TEST, _EPOCH = 0, 1, 2


#: Every photograph ``images`` may name, in the order of the default set.
PHOTOGRAPHS = ("china", "flower", "astronaut", "camera", "coffee", "chelsea", "grass", "gravel", "brick",
               "rocket", "motorcycle", "coins")
#: Named sets ``images`` accepts besides a comma-separated list of photographs.
IMAGE_SETS = {"natural": PHOTOGRAPHS, "sklearn": ("china", "flower")}
DEFAULT_IMAGES = "natural"


def _load_photograph(name: str) -> np.ndarray:
    """One photograph as uint8 [H, W] or [H, W, 3+], from the installed packages only."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image  # lazy: sklearn is slow to import

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def resolve_images(images: Any = DEFAULT_IMAGES) -> tuple[str, ...]:
    """The photograph names an ``images`` option means (a set name or a comma-separated list)."""
    text = str(images).strip().lower()
    if text in IMAGE_SETS:
        return IMAGE_SETS[text]
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in PHOTOGRAPHS]
    if unknown or not names:
        raise DataError(f"option images must be {' or '.join(IMAGE_SETS)} or a comma-separated list of "
                        f"{', '.join(PHOTOGRAPHS)}; got {images!r}")
    return names


@functools.lru_cache(maxsize=8)
def grey_images(images: Any = DEFAULT_IMAGES) -> tuple[np.ndarray, ...]:
    """The photographs ``images`` names as read-only float64 grey images in [0, 1] (BT.601 luma)."""
    out = []
    for name in resolve_images(images):
        try:
            image = np.asarray(_load_photograph(name))
        except (ImportError, OSError, ValueError) as exc:  # a stripped install without the data files
            raise DataError(f"cannot read the photograph {name!r} from the installed packages: {exc}") from None
        pixels = image.astype(np.float64)
        grey = pixels[..., :3] @ LUMA if pixels.ndim == 3 else pixels
        grey = grey / 255.0
        grey.setflags(write=False)
        out.append(grey)
    return tuple(out)


def coerce_float(value: Any, name: str, *, minimum: float, maximum: float) -> float:
    """``value`` as a finite float in [minimum, maximum]; strings like "0.1" are accepted (CLI)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"option {name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not (minimum <= out <= maximum):
        raise DataError(f"option {name} must be in [{minimum:g}, {maximum:g}], got {value!r}")
    return out


def column_ranges(width: int, size: int) -> dict[str, tuple[int, int]]:
    """Allowed left-edge columns ``[lo, hi]`` (inclusive) per part, for an image of ``width``.

    A training patch ends before the cut at ``round(0.8 * width)``; a test patch starts at or
    after it, so the two regions never share a pixel column.
    """
    cut = int(round(TRAIN_FRACTION * width))
    ranges = {"train": (0, cut - size), "test": (cut, width - size)}
    for part, (lo, hi) in ranges.items():
        if hi < lo:
            raise DataError(f"patch size {size} does not fit the {part} region of a "
                            f"{width}-pixel-wide image")
    return ranges


def patch_rng(seed: int, stream: str, epoch: int = 0) -> np.random.Generator:
    """The generator for one draw: ``stream`` is "train" (the fixed draw), "test" or "epoch"."""
    if stream == "train":
        return numpy_rng(seed, _FIXED_TRAIN)
    if stream == "test":
        return numpy_rng(seed, _TEST)
    if stream == "epoch":
        return numpy_rng(seed, _EPOCH, epoch)
    raise ValueError(f"unknown stream {stream!r}")


def sample_patches(
    n: int, size: int, part: str, rng: np.random.Generator,
    images: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` raw grey float32 patches ``[n, size, size]`` from ``part`` ("train"/"test") of the images.

    Also returns their coordinates ``[n, 3]`` = (image index, top row, left column), so callers
    (and tests) can verify which region a patch came from. Images are chosen uniformly.
    """
    images = grey_images() if images is None else images
    which = rng.integers(len(images), size=n)
    rows = np.empty(n, dtype=np.int64)
    cols = np.empty(n, dtype=np.int64)
    out = np.empty((n, size, size), dtype=np.float32)
    offsets = np.arange(size)
    for k, image in enumerate(images):
        sel = np.flatnonzero(which == k)
        height, width = image.shape
        if size > height:
            raise DataError(f"patch size {size} exceeds image height {height}")
        lo, hi = column_ranges(width, size)[part]
        r = rng.integers(0, height - size + 1, size=sel.size)
        c = rng.integers(lo, hi + 1, size=sel.size)
        out[sel] = image[(r[:, None] + offsets)[:, :, None], (c[:, None] + offsets)[:, None, :]]
        rows[sel], cols[sel] = r, c
    return out, np.stack([which, rows, cols], axis=1)


def _remove_dc(raw: np.ndarray) -> np.ndarray:
    """Flattened float32 patches minus their own mean (float32 keeps 64x64 draws affordable)."""
    flat = raw.reshape(raw.shape[0], -1).astype(np.float32, copy=False)
    return flat - flat.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)


def _covariance(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Sample covariance in float64, accumulated over float32 chunks to bound memory and time."""
    d = x.shape[1]
    cov = np.zeros((d, d), dtype=np.float64)
    mean32 = mean.astype(np.float32)
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start:start + _CHUNK].astype(np.float32, copy=False) - mean32
        cov += (chunk.T @ chunk).astype(np.float64)
    return cov / max(x.shape[0] - 1, 1)


def fit_whitening(x: np.ndarray, mode: str, eps_relative: float = EPS_RELATIVE) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mean, matrix, n_components)`` such that ``(x - mean) @ matrix`` is whitened.

    ``matrix`` is symmetric: ``U_k diag(1/sqrt(lambda_k + eps)) U_k^T`` over the kept
    eigen-directions (all non-null ones for ZCA; the top ones reaching 99% of the variance, at most
    256, for PCA), which is whitening in PCA space followed by back-projection to pixels.
    """
    if mode not in ("zca", "pca"):
        raise ValueError(f"unknown whitening {mode!r}")
    mean = x.mean(axis=0, dtype=np.float64)
    lam, vec = np.linalg.eigh(_covariance(x, mean))
    lam, vec = lam[::-1], vec[:, ::-1]
    if lam[0] <= 0:
        raise DataError("cannot whiten patches with zero variance")
    keep = int(np.count_nonzero(lam > NULL_RELATIVE * lam[0]))
    eps = eps_relative * float(lam[:keep].mean())
    if mode == "pca":
        share = np.cumsum(lam[:keep]) / lam[:keep].sum()
        keep = min(int(np.searchsorted(share, PCA_VARIANCE)) + 1, MAX_PCA_DIMS, keep)
    u = vec[:, :keep]
    matrix = (u / np.sqrt(lam[:keep] + eps)) @ u.T
    return mean, matrix, keep


def preprocess(raw: np.ndarray | torch.Tensor, buffers: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Map raw grey patches ``[n, size, size]`` (values in [0, 1]) to model inputs ``[n, 1, size, size]``.

    ``buffers`` is ``describe()["buffers"]`` of a patches dataset (``scale``, and for whitened
    data ``mean`` and ``whiten``), so a checkpoint alone reproduces the preprocessing.
    """
    raw_np = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    size = raw_np.shape[-1]
    x = torch.from_numpy(_remove_dc(raw_np)) / float(buffers["scale"])
    if "whiten" in buffers:
        x = (x - buffers["mean"].float()) @ buffers["whiten"].float()
    if "contrast_floor" in buffers:
        x = divide_by_contrast(x, float(buffers["contrast_floor"]), float(buffers["contrast_scale"]))
    return x.reshape(-1, 1, size, size).contiguous()


def divide_by_contrast(x: torch.Tensor, floor: float, scale: float = 1.0) -> torch.Tensor:
    """Each patch divided by its own RMS, softened by ``floor`` (a share of the training draw's mean
    energy) so near-flat patches (sky, quantisation noise) are not blown up to full contrast."""
    energy = x.pow(2).mean(dim=1, keepdim=True)
    return x / (energy + floor).sqrt() / scale


def build(
    size: Any = 12,
    whiten: Any = "none",
    n_train: Any = 20000,
    n_test: Any = 2000,
    images: Any = DEFAULT_IMAGES,
    whiten_eps: Any = EPS_RELATIVE,
    contrast: Any = "none",
    contrast_floor: Any = CONTRAST_FLOOR,
    *,
    batch_size: Any = 100,
    seed: Any = 0,
) -> VizDataModule:
    """Natural-image patches ``(1, size, size)``, DC-removed, unit std, optionally whitened.

    ``train_tensor()`` is one fixed draw of ``n_train`` patches (the one preprocessing is fitted
    on); the training loader draws ``n_train`` fresh patches every epoch from a generator seeded
    by ``(seed, epoch)``. ``n_test`` test patches come from the held-out right part of the images.
    ``images`` names the photographs (see the module docstring; default: all twelve).
    """
    size_i = coerce_int(size, "size", minimum=4, maximum=64)
    mode = coerce_choice(whiten, "whiten", WHITEN_CHOICES)
    n_train_i = coerce_int(n_train, "n_train", minimum=2, maximum=10_000_000)
    n_test_i = coerce_int(n_test, "n_test", minimum=1, maximum=10_000_000)
    seed_i = coerce_int(seed, "seed", minimum=0)
    names = resolve_images(images)
    eps_f = coerce_float(whiten_eps, "whiten_eps", minimum=0.0, maximum=1e6)
    contrast_mode = coerce_choice(contrast, "contrast", CONTRAST_CHOICES)
    floor_f = coerce_float(contrast_floor, "contrast_floor", minimum=1e-9, maximum=1e6)
    photos = grey_images(",".join(names))
    image_option = next((k for k, v in IMAGE_SETS.items() if v == names), ",".join(names))

    raw_train, _ = sample_patches(n_train_i, size_i, "train", patch_rng(seed_i, "train"), photos)
    centred = _remove_dc(raw_train)
    scale = float(centred.std(dtype=np.float64))
    if scale <= 0:
        raise DataError("sampled patches have zero variance")
    buffers: dict[str, torch.Tensor] = {"scale": torch.tensor(scale, dtype=torch.float64)}
    extra: dict[str, Any] = {"whiten_dims": size_i * size_i}
    if mode != "none":
        centred /= np.float32(scale)
        mean, matrix, dims = fit_whitening(centred, mode, eps_f)
        buffers["mean"] = torch.from_numpy(mean)
        buffers["whiten"] = torch.from_numpy(np.ascontiguousarray(matrix))
        extra["whiten_dims"] = dims
    if contrast_mode == "divisive":
        prepared = preprocess(raw_train, buffers).reshape(n_train_i, -1)
        floor = floor_f * float(prepared.pow(2).mean())
        after = divide_by_contrast(prepared, floor)
        buffers["contrast_floor"] = torch.tensor(floor, dtype=torch.float64)
        buffers["contrast_scale"] = torch.tensor(float(after.std()), dtype=torch.float64)

    def draw(stream: str, n: int, epoch: int = 0) -> torch.Tensor:
        raw, _ = sample_patches(n, size_i, "train" if stream != "test" else "test",
                                patch_rng(seed_i, stream, epoch), photos)
        return preprocess(raw, buffers)

    return VizDataModule(
        "patches",
        preprocess(raw_train, buffers),
        draw("test", n_test_i),
        options={"size": size_i, "whiten": mode, "n_train": n_train_i, "n_test": n_test_i,
                 "images": image_option, "whiten_eps": eps_f,
                 **({"contrast": contrast_mode, "contrast_floor": floor_f} if contrast_mode != "none" else {})},
        batch_size=batch_size,
        seed=seed_i,
        buffers=buffers,
        resample=lambda epoch: draw("epoch", n_train_i, epoch),
        extra_stats=extra,
    )
