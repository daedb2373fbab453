"""Figure helpers shared by probes: image grids with a readable unit index and a colour key.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so probes can run in
threads and tests without a display and figures are freed with their results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def as_images(array: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Reshape flat or channel-first arrays into displayable [N, H, W] or [N, H, W, 3] images."""
    arr = np.asarray(array, dtype=np.float64)
    n = arr.shape[0]
    shape = tuple(input_shape)
    arr = arr.reshape(n, *shape)
    if len(shape) == 3 and shape[0] == 3:
        return arr.transpose(0, 2, 3, 1)
    if len(shape) == 3:
        return arr[:, 0] if shape[0] == 1 else arr.mean(axis=1)
    if len(shape) == 2:
        return arr
    d = math.prod(shape)
    side = math.isqrt(d)
    if side * side == d:
        return arr.reshape(n, side, side)
    return arr.reshape(n, 1, d)


MODES = ("symmetric", "minmax", "unit")


def _displayable(images: np.ndarray) -> np.ndarray:
    """[N, H, W] or [N, H, W, 3] from what a plugin author is likely to pass."""
    if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3):
        return images
    if images.ndim == 4:  # channel-first [N, C, H, W]
        channels = images.shape[1]
        if channels == 1:
            return images[:, 0]
        if channels == 3:
            return images.transpose(0, 2, 3, 1)
        return images.mean(axis=1)
    raise ValueError(f"image_grid takes [N, H, W], [N, H, W, 3] or [N, C, H, W] images, got shape {images.shape}")


def normalise(images: np.ndarray, mode: str = "symmetric", shared: bool = False) -> np.ndarray:
    """Map images to [0, 1] for display.

    ``symmetric`` keeps zero at mid-grey (black negative, white positive), the convention of the
    seed papers for filters; ``minmax`` stretches each image to the full range; ``unit`` shows
    images that already are pixel values in [0, 1] as they are (an optimum in a sigmoid range is a
    picture: stretching it would change its colours).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "unit":
        return np.clip(images, 0.0, 1.0)
    axes = None if shared else tuple(range(1, images.ndim))
    if mode == "symmetric":
        scale = np.abs(images).max(axis=axes, keepdims=True)
        scale = np.where(scale > 0, scale, 1.0)
        return 0.5 + 0.5 * images / scale
    lo = images.min(axis=axes, keepdims=True)
    hi = images.max(axis=axes, keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (images - lo) / span


def mosaic(images: np.ndarray, ncols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile [N, H, W(, 3)] images into one array with ``pad`` pixels of ``fill`` between them."""
    n, h, w = images.shape[:3]
    nrows = math.ceil(n / ncols)
    extra = images.shape[3:]
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *extra), fill)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[i]
    return out


def image_grid(
    images: np.ndarray,
    *,
    labels: Sequence[int] | None = None,
    title: str = "",
    mode: str = "symmetric",
    shared_scale: bool = False,
    ncols: int | None = None,
    tile_inches: float = 0.55,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax: Any = None,
    row_title: str = "unit",
) -> Figure:
    """A grid of images with unit indices on the axes and a title saying what is shown.

    Row labels give the unit index of each row's first tile and column labels the offset within
    the row, so any tile's unit can be read off even for hundreds of units.

    ``images`` is ``[N, H, W]`` (grey), ``[N, H, W, 3]`` (RGB) or channel-first ``[N, C, H, W]`` as
    models produce it (C = 1 or 3; other channel counts are averaged, say so in the title).
    ``mode`` is ``"symmetric"`` (zero at mid-grey) or ``"minmax"``.
    """
    images = _displayable(np.asarray(images))
    if mode not in MODES:
        raise ValueError(f"image_grid mode must be one of {', '.join(MODES)}, got {mode!r}")
    n = images.shape[0]
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    shown = normalise(images, mode, shared_scale)
    grid = mosaic(shown, ncols, fill=1.0)
    h, w = images.shape[1:3]
    tile = max(tile_inches, 0.55 * 8 / max(h, w) if max(h, w) < 8 else tile_inches)
    width = min(max(ncols * tile * w / max(h, w) + 1.2, 5.5), 16.0)
    height = min(max(nrows * tile * h / max(h, w) + 1.2, 3.0), 18.0)
    if ax is None:
        # "compressed", not "constrained": constrained layout sizes the axes before their fixed
        # aspect shrinks them, so a wide grid of few rows pushed a two-line title and the key below
        # out of the picture (the clamp panels of 6 units x 11 tiles)
        fig = Figure(figsize=(width, height), layout="compressed")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    cmap = None if grid.ndim == 3 else "gray"
    ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    labels = list(range(n)) if labels is None else [int(u) for u in labels]
    step_r = max(1, math.ceil(nrows / 24))
    rows = list(range(0, nrows, step_r))
    ax.set_yticks([1 + r * (h + 1) + h / 2 - 0.5 for r in rows])
    ax.set_yticklabels([row_labels[r] if row_labels else str(labels[r * ncols]) for r in rows], fontsize=7)
    step_c = max(1, math.ceil(ncols / 24))
    cols = list(range(0, ncols, step_c))
    ax.set_xticks([1 + c * (w + 1) + w / 2 - 0.5 for c in cols])
    ax.set_xticklabels([col_labels[c] if col_labels else f"+{c}" for c in cols], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_ylabel(row_title, fontsize=8)
    if col_labels:
        ax.tick_params(axis="x", labelrotation=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    key = {
        "symmetric": "grey = 0, black negative, white positive;\n"
        + ("one colour scale for all tiles" if shared_scale else "each tile scaled to its own max |value|"),
        "minmax": ("one scale for all tiles: lowest value black,\nhighest white" if shared_scale
                   else "each tile stretched from its min (black)\nto its max (white)"),
        "unit": "pixel values in [0, 1], shown as they are",
    }[mode]
    ax.set_xlabel(key, fontsize=8)
    return fig


#: tiles per row of a unit page's view (about 620 px at the saved scale, so labels stay legible)
UNIT_VIEW_COLUMNS = 5


def captioned_tiles(
    images: np.ndarray,
    captions: Sequence[str],
    *,
    ncols: int = UNIT_VIEW_COLUMNS,
    mode: str = "minmax",
    shared_scale: bool = True,
    title: str = "",
    tile_inches: float = 1.2,
) -> Figure:
    """Images each with its own caption above it (a file name and a value, say), ``ncols`` per row:
    the few tiles of one unit, where a grid's row and column labels cannot say which is which."""
    images = _displayable(np.asarray(images, dtype=np.float64))
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    shown = normalise(images, mode, shared_scale)
    n = len(shown)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * tile_inches + 0.3, nrows * (tile_inches + 0.45) + (0.4 if title else 0.1)),
                 layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(shown[i], cmap=None if shown.ndim == 4 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(captions[i] if i < len(captions) else "", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
