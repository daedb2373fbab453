"""The gabor figures: filter | fit | residual rows, parameter histograms, and the envelope tiling."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle

from .fit import MAX_EXTENT, MIN_CYCLES, MIN_FREQUENCY, MIN_R2

#: Filters per block row of the fits figure.
PER_ROW = 12


def fit_rows(filters: np.ndarray, fitted: np.ndarray, r2: np.ndarray, like: np.ndarray, units: np.ndarray,
             *, title: str) -> Figure:
    """Blocks of three rows (filter, fit, residual) with ``PER_ROW`` filters each, one scale per filter."""
    n, h, w = filters.shape
    ncols = min(PER_ROW, max(n, 1))
    blocks = max(1, math.ceil(n / ncols))
    scale = np.abs(filters).reshape(n, -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)[:, None, None]
    rows = [filters, fitted, filters - fitted]
    names = ["filter", "fit", "residual"]
    tile = 0.62
    fig = Figure(figsize=(max(ncols * tile + 1.6, 6.0), blocks * (3 * tile + 0.55) + 1.0), layout="constrained")
    axes = fig.subplots(blocks, 1, squeeze=False)[:, 0]
    for b, ax in enumerate(axes):
        idx = np.arange(b * ncols, min((b + 1) * ncols, n))
        canvas = np.ones((3 * (h + 1) + 1, ncols * (w + 1) + 1))
        for j, i in enumerate(idx):
            for r in range(3):
                img = 0.5 + 0.5 * np.clip(rows[r][i] / scale[i], -1, 1)
                canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + j * (w + 1):1 + j * (w + 1) + w] = img
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for j, i in enumerate(idx):
            if like[i]:
                ax.add_patch(Rectangle((j * (w + 1) + 0.5, 0.5), w, 3 * (h + 1) - 1, fill=False,
                                       edgecolor="tab:green", linewidth=1.4))
        ax.set_xticks([1 + j * (w + 1) + w / 2 - 0.5 for j in range(len(idx))])
        ax.set_xticklabels([f"{int(units[i])}\nR²={r2[i]:.2f}" for i in idx], fontsize=6)
        ax.set_yticks([1 + r * (h + 1) + h / 2 - 0.5 for r in range(3)])
        ax.set_yticklabels(names, fontsize=7)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("unit and R² under each column; green frame: Gabor-like; grey = 0, each column on its "
                  "filter's own scale", fontsize=7)
    return fig


def histograms(a: Mapping[str, np.ndarray], like: np.ndarray, side: int, *, title: str) -> Figure:
    """Orientation, spatial-frequency and R² histograms, Gabor-like filters stacked on the others."""
    fig = Figure(figsize=(11.0, 3.3), layout="constrained")
    ax_o, ax_f, ax_r = fig.subplots(1, 3)
    deg = np.degrees(np.asarray(a["theta"], dtype=np.float64))
    freq = np.asarray(a["frequency"], dtype=np.float64)
    r2 = np.asarray(a["r2"], dtype=np.float64)
    for ax, values, bins, label in (
        (ax_o, deg, np.linspace(0, 180, 13), "carrier orientation (degrees; 0 = vertical stripes)"),
        (ax_f, freq, np.linspace(0, 0.5, 11), "spatial frequency (cycles / pixel)"),
        (ax_r, np.clip(r2, 0, 1), np.linspace(0, 1, 11), "R² of the fit"),
    ):
        ax.hist([values[like], values[~like]], bins=bins, stacked=True, color=["tab:green", "0.75"],
                label=[f"Gabor-like ({int(like.sum())})", f"not ({int((~like).sum())})"])
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    ax_o.set_ylabel("filters", fontsize=8)
    ax_f.axvline(MIN_FREQUENCY, color="k", linestyle="--", linewidth=0.8)
    ax_r.axvline(MIN_R2, color="k", linestyle="--", linewidth=0.8)
    ax_o.legend(fontsize=7, frameon=False)
    ax_f.text(MIN_FREQUENCY, ax_f.get_ylim()[1] * 0.95, f" f ≥ {MIN_FREQUENCY}", fontsize=6.5, va="top")
    ax_r.text(MIN_R2, ax_r.get_ylim()[1] * 0.95, f" R² ≥ {MIN_R2}", fontsize=6.5, va="top")
    fig.suptitle(f"{title}\n(also needed: 2σ·f ≥ {MIN_CYCLES} and 2σ ≤ {MAX_EXTENT:g}·{side} px along the carrier)",
                 fontsize=9.5)
    return fig


def tiling(a: Mapping[str, np.ndarray], like: np.ndarray, field_shape: list[int], *, title: str) -> Figure:
    """Fitted envelopes of the Gabor-like filters as oriented 1σ ellipses over the field."""
    h, w = int(field_shape[0]), int(field_shape[1])
    fig = Figure(figsize=(5.6, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="k", linewidth=1.0))
    freq = np.asarray(a["frequency"], dtype=np.float64)
    norm_f = np.clip(freq / 0.5, 0, 1)
    cmap = colormaps["viridis"]
    idx = np.flatnonzero(like)
    for i in idx:
        x0, y0 = float(a["x0"][i]), float(a["y0"][i])
        th = float(a["theta"][i])
        su, sv = float(a["sigma_u"][i]), float(a["sigma_v"][i])
        colour = cmap(norm_f[i])
        ax.add_patch(Ellipse((x0, y0), 2 * su, 2 * sv, angle=math.degrees(th), fill=False, edgecolor=colour,
                             linewidth=1.0, alpha=0.85))
        dx, dy = su * math.cos(th), su * math.sin(th)
        ax.plot([x0 - dx, x0 + dx], [y0 - dy, y0 + dy], color=colour, linewidth=0.8, alpha=0.85)
    ax.set_xlim(-0.5 - 0.1 * w, w - 0.5 + 0.1 * w)
    ax.set_ylim(h - 0.5 + 0.1 * h, -0.5 - 0.1 * h)
    ax.set_aspect("equal")
    ax.set_xlabel("column (px)", fontsize=8)
    ax.set_ylabel("row (px)", fontsize=8)
    ax.tick_params(labelsize=7)
    if not len(idx):
        ax.text((w - 1) / 2, (h - 1) / 2, "no Gabor-like filter", ha="center", va="center", fontsize=10)
    sm = ScalarMappable(cmap=cmap)
    sm.set_clim(0, 0.5)
    fig.colorbar(sm, ax=ax, shrink=0.7, label="spatial frequency (cycles/px)")
    ax.set_title(f"{title}\n1σ envelopes; stroke = carrier direction (black box: the field)", fontsize=9)
    return fig
