"""``gabor``: how Gabor-like the filters feeding a layer are — the classic check of a model of natural images.

Every model that learns something sensible from natural-image patches (sparse coding, ICA, RBMs,
denoising autoencoders, topographic ICA) grows localized, oriented, band-pass filters that a 2-D
Gabor describes well. This probe fits a Gabor (centre, two envelope widths, orientation, spatial
frequency, phase, amplitude, offset) to every filter by least squares (all filters and all starts in
one batched Levenberg–Marquardt, see :mod:`vizkit.probes.gabor.fit`) and applies the measure of
docs/methods.md §gabor: a filter is **Gabor-like** when the fit explains at least half its variance (R² ≥ 0.5), its
carrier is a grating (f ≥ 0.06 cycles/px) with at least a third of a cycle across the envelope
(2σ·f ≥ 0.3 along the carrier) and the envelope is localized along the carrier (2σ ≤ half the
patch side). References on scikit-learn's two photographs, 12×12 patches: FastICA's 64 unmixing
filters ≈ 58% Gabor-like; white noise and smooth ramps 0%.

Filters are read with the ``weights`` capability from layers fed by the input. Multi-channel
filters are fitted on their channel sum (what a grey grating sees). Filters that live on a local
field inside a larger input (tiled/convolutional units placed in input space, zero outside) are
cropped to their field when every chosen filter has a field of the same size (``crop=auto``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result
from vizkit import capabilities as caps

from .captions import HISTOGRAMS_CAPTION, TILING_CAPTION, fits_caption, headline
from .figures import fit_rows, histograms, tiling
from .fit import MAX_EXTENT, MIN_CYCLES, MIN_FREQUENCY, MIN_R2, fit_gabors

CRITERIA = (f"R² ≥ {MIN_R2}, f ≥ {MIN_FREQUENCY} cycles/px, 2σ·f ≥ {MIN_CYCLES} and 2σ ≤ {MAX_EXTENT:g}·side "
            "along the carrier")


def crop_to_fields(filters: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut each filter [N, H, W] to its non-zero bounding box when all boxes have one size.

    Returns the cropped filters and the boxes' top-left corners [N, 2] (row, col), or the input
    and ``None`` when the filters are not local fields of a common size.
    """
    nonzero = filters != 0
    rows, cols = nonzero.any(axis=2), nonzero.any(axis=1)
    if not rows.any(axis=1).all():
        return filters, None
    top = rows.argmax(axis=1)
    bottom = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    left = cols.argmax(axis=1)
    right = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    heights, widths = bottom - top, right - left
    if len(set(heights.tolist())) != 1 or len(set(widths.tolist())) != 1:
        return filters, None
    h, w = int(heights[0]), int(widths[0])
    if (h, w) == filters.shape[1:]:
        return filters, None
    r = top[:, None, None] + np.arange(h)[None, :, None]
    c = left[:, None, None] + np.arange(w)[None, None, :]
    return filters[np.arange(len(filters))[:, None, None], r, c], np.stack([top, left], axis=1)


def filter_images(model: vizkit.ProbeModel, layer: str, units: torch.Tensor) -> np.ndarray:
    """The chosen units' input-space filters as [N, C, H, W] (dense filters take the input's shape;
    flat channels become one-pixel-high images)."""
    matrix = model.weights(layer).matrix
    picked = matrix.index_select(0, units.to(matrix.device)).detach().cpu().double().numpy()
    if picked.ndim != 4:
        picked = picked.reshape(len(picked), *tuple(int(s) for s in model.input_shape))
    if picked.ndim == 3:  # [N, C, D] flat channels
        picked = picked[:, :, None, :]
    return picked


class Gabor(Probe):
    name = "gabor"
    summary = "fit a 2-D Gabor to every filter into a layer; Gabor-like fraction, orientation/frequency, tiling"
    requires = frozenset({caps.ACTIVATIONS, caps.WEIGHTS})
    options = (
        Option("starts", int, 6, "spectral peaks tried as starts per filter (each with a narrow and a wide "
               "envelope)", min=1, max=64),
        Option("steps", int, 40, "Levenberg-Marquardt iterations (all filters and starts together)", min=1,
               max=10_000),
        Option("crop", str, "auto", "fit local fields inside a larger input on their field (auto) or on the "
               "whole input (none)", choices=("auto", "none")),
        Option("show", int, 36, "filters shown in the filter | fit | residual figure", min=1, max=400),
    )
    unit_arrays = frozenset({"units", "filters", "fitted", "x0", "y0", "sigma_u", "sigma_v", "theta", "frequency",
                             "phase", "amplitude", "offset", "r2", "gabor_like", "field_origin"})

    @classmethod
    def valid_layers(cls, model: vizkit.ProbeModel) -> list[str]:
        return vizkit.input_weight_layers(model)

    @classmethod
    def refusal(cls, model: vizkit.ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        """A Gabor has too few pixels to be told from anything else below 4x4."""
        shape = filter_images(model, layer, torch.zeros(1, dtype=torch.long)).shape
        if len(shape) != 4 or shape[2] < 4 or shape[3] < 4:
            return f"gabor fits 2-D filters of at least 4x4 pixels; {layer}'s filters have shape {list(shape[1:])}"
        return None

    def compute(self, ctx: ProbeContext) -> Result:
        picked = filter_images(ctx.model, ctx.layer, ctx.units)
        grey = picked.sum(axis=1)  # channel sum: the response to a grey grating
        origin = np.zeros((len(grey), 2), dtype=np.int64)
        if ctx.options["crop"] == "auto":
            cropped, corner = crop_to_fields(grey)
            if corner is not None:
                grey, origin = cropped, corner.astype(np.int64)
        fit = fit_gabors(grey, peaks=ctx.options["starts"], steps=ctx.options["steps"])
        arrays = {k: np.asarray(v) for k, v in fit.arrays().items()}
        arrays = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in arrays.items()}
        arrays.update(units=ctx.units.cpu().numpy().astype(np.int64), filters=grey.astype(np.float32),
                      field_origin=origin)
        meta = {"criteria": CRITERIA, "side": int(fit.side), "field_shape": list(grey.shape[1:]),
                "cropped_to_field": bool(origin.any() or grey.shape[1:] != picked.shape[2:])}
        return Result(arrays=arrays, meta=meta)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        a = result.arrays
        like = a["gabor_like"].astype(bool)
        n, frac = len(like), float(like.mean()) if len(like) else 0.0
        side = int(result.meta["side"])
        result.meta["gabor_like_fraction"] = frac
        result.meta["gabor_like_count"] = int(like.sum())
        result.meta["median_r2"] = float(np.median(a["r2"])) if n else 0.0
        head = headline(ctx.layer, int(like.sum()), n, frac)
        show = min(ctx.options["show"], n)
        result.figures["fits"] = fit_rows(a["filters"][:show], a["fitted"][:show], a["r2"][:show], like[:show],
                                          a["units"][:show], title=f"gabor fits, {head}")
        result.captions["fits"] = fits_caption(show, n, CRITERIA, head, result.meta["median_r2"])
        result.figures["histograms"] = histograms(a, like, side, title=f"gabor parameters, {head}")
        result.captions["histograms"] = HISTOGRAMS_CAPTION
        result.figures["tiling"] = tiling(a, like, result.meta["field_shape"], title=f"gabor tiling, {head}")
        result.captions["tiling"] = TILING_CAPTION
        return result


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Gabor)
