"""Image transformation sets: translated, rotated and zoomed copies of images, batched.

Invariance is measured by showing a unit transformed copies of the same image: the γ measure of
Rasmus, Raiko & Valpola (2015, §2.4) uses sets of 16 copies, and the Zeiler & Fergus invariance
curves sweep one transformation. Both go through this one module so that "translated by one pixel"
or "rotated by 4°" means the same thing in every probe.

Two entry points:

- :func:`transform_images` applies any list of parameter values of one kind to every image:
  ``[N, C, H, W]`` sources → ``[N, K, C, h, w]`` outputs (K = number of values).
- :func:`transformation_sets` makes the paper's sets of 16 (:func:`set_values`):

  ===============  ===========================================================================
  ``translation``  16 crops on a 4×4 grid of offsets ``step`` pixels apart, from a frame
                   ``3·step`` pixels larger than the output (:func:`source_size`)
  ``rotation``     16 angles −32°, −28°, …, 28° (4° steps) about the source's centre
  ``scale``        16 zooms 0.60, 0.65, …, 1.35 about the source's centre
  ===============  ===========================================================================

Conventions (the same for both entry points):

- Every transformation acts about the centre of the source, and the output is the centre
  ``h×w`` window of the transformed source. A source larger than the output is therefore
  cropped about its centre; a source the same size as the output (e.g. MNIST) is shifted,
  rotated or zoomed with **zero fill** where the copy reaches outside it. A source smaller than
  the output is refused (:class:`~vizkit.errors.DataError`).
- Translation by integer pixels is an exact crop (no interpolation). A value ``(dy, dx)`` moves
  the image content ``dy`` pixels down and ``dx`` right; the centre window of a source whose
  extra size is odd is the one whose top-left corner is ``floor((H - h) / 2)``.
- Rotation by ``θ`` degrees turns the content counter-clockwise as displayed (row 0 at the top);
  zoom ``z > 1`` magnifies the content (you see less of the source), ``z < 1`` shrinks it. Both
  resample with ``grid_sample`` (bilinear by default), computing only the output window.

Everything is one batched call per chunk of sources (no Python loop over images or copies);
callers chunk the sources to their memory budget (:func:`bytes_per_source` helps).

:func:`set_source` picks the images of a model's own data (or named data: a registered dataset's
held-out test split, all of a user's file in file order) and knows how transformed copies become
model inputs (for ``patches``: cut from the photographs and
transformed *before* the dataset's whitening).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError, OptionError

__all__ = [
    "KINDS",
    "SET_SIZE",
    "SetSource",
    "bytes_per_source",
    "check_kind",
    "set_source",
    "set_values",
    "source_size",
    "transform_images",
    "transformation_sets",
]

#: The transformation kinds, in the order the γ table reports them.
KINDS: tuple[str, ...] = ("translation", "rotation", "scale")
#: Copies per set (Rasmus et al.: 16).
SET_SIZE = 16
#: The paper's rotation angles (degrees) and zoom factors.
_ANGLES = tuple(-32.0 + 4.0 * k for k in range(SET_SIZE))
_ZOOMS = tuple(round(0.60 + 0.05 * k, 2) for k in range(SET_SIZE))


def check_kind(kind: str) -> str:
    """``kind`` if it is a known transformation, else an :class:`OptionError` naming the valid ones."""
    if kind not in KINDS:
        raise OptionError(f"unknown transformation {kind!r}; valid: {', '.join(KINDS)}")
    return kind


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        out = (size, size)
    else:
        out = tuple(int(s) for s in size)
        if len(out) != 2:
            raise OptionError(f"output size must be one integer or (height, width), got {size!r}")
    if min(out) < 1:
        raise OptionError(f"output size must be positive, got {size!r}")
    return out  # type: ignore[return-value]


def set_values(kind: str, step: int = 1) -> torch.Tensor:
    """The 16 parameter values of one set (float64): ``[16, 2]`` whole-pixel content shifts
    ``(dy, dx)`` for translation, or ``[16]`` angles in degrees / zoom factors.

    The shifts are those of the 16 crops at offsets ``(i·step, j·step)``, i, j = 0…3 (row-major),
    of a frame ``3·step`` larger than the output, relative to the frame's centre window (whose
    top-left offset is ``floor(3·step / 2)``): for step 1, ``dy, dx ∈ {1, 0, −1, −2}``.
    """
    check_kind(kind)
    if kind == "rotation":
        return torch.tensor(_ANGLES, dtype=torch.float64)
    if kind == "scale":
        return torch.tensor(_ZOOMS, dtype=torch.float64)
    if not isinstance(step, int) or step < 1:
        raise OptionError(f"translation step must be a positive whole number of pixels, got {step!r}")
    shift = (3 * step) // 2 - torch.arange(4, dtype=torch.float64) * step
    dy, dx = torch.meshgrid(shift, shift, indexing="ij")
    return torch.stack([dy.reshape(-1), dx.reshape(-1)], dim=1)


def source_size(kind: str, out_size: int | Sequence[int], step: int = 1,
                values: torch.Tensor | Sequence[float] | None = None) -> tuple[int, int]:
    """The smallest source ``(H, W)`` whose transformed copies need no zero fill.

    Translation: the output plus the largest shift on each side (``3·step`` larger for a set).
    Rotation: the box around the rotated output window. Zoom: the output divided by the smallest
    zoom. One extra pixel is added for the bilinear neighbours of the resampled kinds.
    """
    h, w = _pair(out_size)
    check_kind(kind)
    vals = set_values(kind, step) if values is None else torch.as_tensor(values, dtype=torch.float64)
    if kind == "translation":
        if values is None:
            return h + 3 * step, w + 3 * step
        shifts = vals.reshape(-1, 2).abs().amax(dim=0)
        return h + 2 * math.ceil(float(shifts[0])), w + 2 * math.ceil(float(shifts[1]))
    if kind == "rotation":
        rad = torch.deg2rad(vals)
        c, s = rad.cos().abs(), rad.sin().abs()
        need_h = float((h * c + w * s).max())
        need_w = float((w * c + h * s).max())
        return math.ceil(need_h - 1e-9) + 2, math.ceil(need_w - 1e-9) + 2
    zmin = float(vals.min())
    if zmin <= 0:
        raise OptionError(f"zoom factors must be positive, got {zmin}")
    return math.ceil(h / zmin - 1e-9) + 2, math.ceil(w / zmin - 1e-9) + 2


def bytes_per_source(n_values: int, channels: int, out_size: int | Sequence[int],
                     dtype: torch.dtype = torch.float32) -> int:
    """Memory one source's transformed copies take (for chunking sources to a budget)."""
    h, w = _pair(out_size)
    return n_values * channels * h * w * torch.empty((), dtype=dtype).element_size()


def _as_images(sources: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
    if not isinstance(sources, torch.Tensor):
        sources = torch.as_tensor(sources)
    if sources.dim() == 3:
        sources = sources.unsqueeze(1)
    if sources.dim() != 4:
        raise DataError(f"sources must be images [N, C, H, W] or [N, H, W], got shape {tuple(sources.shape)}")
    if not sources.is_floating_point():
        sources = sources.float()
    height, width = sources.shape[-2:]
    if height < out[0] or width < out[1]:
        raise DataError(f"source images of {height}x{width} pixels are too small for "
                        f"{out[0]}x{out[1]} transformed copies (they must be at least the output size)")
    return sources


def _translate(sources: torch.Tensor, shifts: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
    """Exact integer shifts as crops of the zero-padded source: one gather for all copies."""
    n, c, height, width = sources.shape
    h, w = out
    if not torch.equal(shifts, shifts.round()):
        raise OptionError("translation shifts must be whole pixels (use a frame and whole-pixel crops)")
    shifts = shifts.to(torch.long)
    top0, left0 = (height - h) // 2, (width - w) // 2
    top = top0 - shifts[:, 0]  # content moves down by dy → the window moves up
    left = left0 - shifts[:, 1]
    pad = max(0, int(-top.min()), int((top + h - height).max()), int(-left.min()), int((left + w - width).max()))
    padded = F.pad(sources, (pad, pad, pad, pad)) if pad else sources
    rows = (top + pad)[:, None] + torch.arange(h)  # [K, h]
    cols = (left + pad)[:, None] + torch.arange(w)  # [K, w]
    dev = sources.device
    picked = padded[:, :, rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]  # [N, C, K, h, w]
    return picked.permute(0, 2, 1, 3, 4)


def _resample(sources: torch.Tensor, matrices: torch.Tensor, out: tuple[int, int], mode: str) -> torch.Tensor:
    """Sample the centre ``out`` window of each source under K linear maps about the centre.

    ``matrices`` [K, 2, 2] map an output offset (row, col) from the window centre to the source
    offset from the source centre, in pixels. Only the output window is computed.
    """
    n, c, height, width = sources.shape
    h, w = out
    k = matrices.shape[0]
    dtype = sources.dtype if sources.dtype in (torch.float32, torch.float64) else torch.float32
    r = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    q = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    offsets = torch.stack(torch.meshgrid(r, q, indexing="ij"), dim=-1)  # [h, w, 2] (row, col)
    src = torch.einsum("kij,hwj->khwi", matrices.to(torch.float64), offsets)
    # the centre window's own centre in source pixels (floor convention, as for crops)
    centre_row = (height - h) // 2 + (h - 1) / 2
    centre_col = (width - w) // 2 + (w - 1) / 2
    rows = src[..., 0] + centre_row
    cols = src[..., 1] + centre_col
    # align_corners=False: pixel p of a side of n pixels sits at (2p + 1) / n - 1
    grid = torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], dim=-1)
    grid = grid.to(dtype=dtype, device=sources.device)
    stacked = sources.to(dtype).reshape(1, n * c, height, width).expand(k, n * c, height, width)
    sampled = F.grid_sample(stacked, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return sampled.reshape(k, n, c, h, w).permute(1, 0, 2, 3, 4)


def transform_images(
    sources: torch.Tensor,
    kind: str,
    values: torch.Tensor | Sequence[float] | Sequence[Sequence[float]],
    out_size: int | Sequence[int],
    *,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Copies of every source under each of ``values``: ``[N, C, H, W]`` → ``[N, K, C, h, w]``.

    ``values`` are ``[K, 2]`` whole-pixel content shifts ``(dy, dx)`` for translation, ``[K]``
    angles in degrees (counter-clockwise) for rotation, or ``[K]`` zoom factors for scale; see the
    module docstring for the centre, crop and zero-fill conventions. ``[N, H, W]`` sources are
    taken as one channel. ``mode`` is ``grid_sample``'s interpolation for rotation and scale.
    """
    check_kind(kind)
    out = _pair(out_size)
    sources = _as_images(sources, out)
    vals = torch.as_tensor(values, dtype=torch.float64)
    if kind == "translation":
        vals = vals.reshape(-1, 2)
        return _translate(sources, vals, out)
    vals = vals.reshape(-1)
    if vals.numel() == 0:
        raise OptionError("no transformation values given")
    if kind == "rotation":
        # output offset u ↦ source offset R(θ)ᵀ u; rows grow downwards, so a counter-clockwise
        # turn on screen is a clockwise one in (row, col) coordinates
        rad = torch.deg2rad(vals)
        cos, sin = rad.cos(), rad.sin()
        matrices = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    else:
        if (vals <= 0).any():
            raise OptionError(f"zoom factors must be positive, got {vals.min().item():g}")
        eye = torch.eye(2, dtype=torch.float64)
        matrices = eye / vals[:, None, None]
    return _resample(sources, matrices, out, mode)


def transformation_sets(
    sources: torch.Tensor,
    kind: str,
    out_size: int | Sequence[int],
    *,
    step: int = 1,
    mode: str = "bilinear",
) -> torch.Tensor:
    """The paper's set of 16 transformed copies of every source: ``[N, 16, C, h, w]``.

    Translation takes the centre frame of side ``out + 3·step`` (zero-padded when the source is
    smaller, e.g. a source the size of the output) and the 16 crops at offsets ``(i·step,
    j·step)``, i, j = 0…3, row-major; rotation and scale use :func:`set_values`.
    """
    check_kind(kind)
    out = _pair(out_size)
    if kind != "translation":
        return transform_images(sources, kind, set_values(kind), out, mode=mode)
    shifts = set_values(kind, step)
    sources = _as_images(sources, out)
    frame = (out[0] + 3 * step, out[1] + 3 * step)
    return _translate(_frame(sources, out, frame), shifts, out)


def _frame(sources: torch.Tensor, out: tuple[int, int], frame: tuple[int, int]) -> torch.Tensor:
    """The ``frame``-sized window whose centre ``out`` window is the source's centre ``out``
    window: a crop of a larger source, zero-padded where the source is smaller."""
    height, width = sources.shape[-2:]
    top = (height - out[0]) // 2 - (frame[0] - out[0]) // 2
    left = (width - out[1]) // 2 - (frame[1] - out[1]) // 2
    pad_t, pad_l = max(0, -top), max(0, -left)
    pad_b, pad_r = max(0, top + frame[0] - height), max(0, left + frame[1] - width)
    if pad_t or pad_l or pad_b or pad_r:
        sources = F.pad(sources, (pad_l, pad_r, pad_t, pad_b))
    top, left = top + pad_t, left + pad_l
    return sources[..., top:top + frame[0], left:left + frame[1]]


# ------------------------------------------------------------------------------------------------
# transformation sets of a model's own data


@dataclass
class SetSource:
    """Source images for transformation sets shown to one model, and how copies become inputs.

    ``sources`` are raw images ``[N, C, H, W]`` (for ``patches``: grey photograph windows in
    [0, 1], before the dataset's whitening); :meth:`sets` transforms a range of them and applies
    ``prepare`` (the dataset's own preprocessing, or nothing), giving model inputs
    ``[n, 16, *input_shape]``.
    """

    sources: torch.Tensor
    out_size: tuple[int, int]
    input_shape: tuple[int, ...]
    prepare: Callable[[torch.Tensor], torch.Tensor]
    description: str
    step: int = 1
    #: one-line remarks for the probe's ``meta["notes"]`` (fewer sets than asked for)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.sources.shape[0])

    def sets(self, kind: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Model inputs ``[n, 16, *input_shape]`` for sources ``start:stop``."""
        chunk = self.sources[start:stop]
        copies = transformation_sets(chunk, kind, self.out_size, step=self.step)
        flat = copies.reshape(-1, *copies.shape[2:])
        return self.prepare(flat).reshape(chunk.shape[0], SET_SIZE, *self.input_shape)


def set_source(
    model: Any,
    kind: str | Sequence[str] = KINDS,
    *,
    data: str | None = None,
    n_sets: int = 1000,
    step: int = 1,
    seed: int = 0,
) -> SetSource:
    """The images a model's transformation sets are made of (Rasmus et al. §2.4).

    ``data``: a dataset name or a user data path; empty/None means the model's own data (rebuilt
    from its checkpoint description, same options and seed, so the test split is held out).
    A registered dataset gives its held-out test split; a user's file or folder is used whole, in
    file order (it is the user's data: there is no held-out part to prefer).

    - ``patches``: ``n_sets`` windows drawn from the held-out (right) region of the photographs,
      large enough for every transformation in ``kind`` (:func:`source_size`); copies are
      transformed before the dataset's own preprocessing (DC removal, scaling, whitening), with
      the model's stored preprocessing when the model was trained on patches of that size.
    - any other data: the first ``n_sets`` of those images. Images larger than the model input are
      the sources (cropped about their centre); images the size of the input are shifted /
      resampled with zero fill; smaller ones are refused. When the data holds fewer than
      ``n_sets`` images, all are used and :attr:`SetSource.notes` says so.
    """
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for k in kinds:
        check_kind(k)
    shape = tuple(int(s) for s in model.input_shape)
    if len(shape) != 3:
        raise DataError(f"transformation sets need image inputs [channels, height, width]; the model takes {shape}")
    out = (shape[1], shape[2])
    if n_sets < 2:
        raise OptionError(f"need at least 2 transformation sets, got {n_sets}")
    from .probe_inputs import data_refusal, model_data, split_examples

    reason = data_refusal(model, data)
    if reason is not None:
        raise DataError(reason)
    info = dict(model.data_info or {})
    name = (data or "").strip() or info.get("name")
    own = name == info.get("name")
    if name == "patches":
        return _patch_source(info if own else {}, shape, kinds, n_sets, step, seed)
    name, dm, _ = model_data(model, data)
    examples = split_examples(dm, "auto")
    images = examples.images
    if images.dim() != 4:
        raise DataError(f"data {name!r} holds inputs of shape {tuple(images.shape[1:])}, not images; "
                        "transformation sets need [channels, height, width]")
    if images.shape[1] != shape[0]:
        raise DataError(f"data {name!r} has {images.shape[1]} channels, the model takes {shape[0]}")
    if images.shape[2] < out[0] or images.shape[3] < out[1]:
        raise DataError(f"data {name!r} holds {images.shape[2]}x{images.shape[3]} images, too small to crop "
                        f"the model's {out[0]}x{out[1]} input from")
    if images.shape[0] < 2:
        raise DataError(f"data {name!r} has only {images.shape[0]} image(s): {examples.source}; need at least "
                        "2 sets")
    images = images[:n_sets]
    fill = "zero fill" if tuple(images.shape[2:]) == out else "cropped about the centre"
    source = SetSource(images, out, shape, lambda x: x, f"the first {images.shape[0]} images of the "
                       f"{examples.source}, {images.shape[2]}x{images.shape[3]} ({fill})", step)
    if images.shape[0] < n_sets:
        why = f"the data holds {len(examples)} images" if len(examples) == examples.held else examples.source
        source.notes.append(f"used {images.shape[0]} of {n_sets} transformation sets: {why}")
    return source


def _patch_source(info: dict[str, Any], shape: tuple[int, ...], kinds: list[str], n_sets: int, step: int,
                  seed: int) -> SetSource:
    from .datasets import patches
    from .datasets.base import numpy_rng

    out = (shape[1], shape[2])
    if shape[0] != 1 or out[0] != out[1]:
        raise DataError(f"patches are square grey images; the model takes {shape}")
    options = dict(info.get("options") or {})
    buffers = (info.get("buffers") or {}) if options.get("size") == out[0] else {}
    if not buffers:  # not the model's own patches: fit the dataset's default preprocessing at this size
        from .training import build_data

        dm = build_data("patches", {"size": out[0]}, 100, 0)
        buffers, options = dm.describe()["buffers"], dict(dm.options)
    images = options.get("images")
    photos = patches.grey_images(images) if images else patches.grey_images()
    side = max(max(source_size(k, out, step)) for k in kinds)
    # its own stream of the seed: never the dataset's training or test draws
    raw, _ = patches.sample_patches(n_sets, side, "test", numpy_rng(seed, 0x6A33A), photos)
    sources = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32)).unsqueeze(1)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return patches.preprocess(x[:, 0], buffers)

    return SetSource(sources, out, shape, prepare,
                     f"{n_sets} {side}x{side} windows from the held-out region of the photographs "
                     f"({images or 'default'}), transformed before the dataset's preprocessing", step)
