"""The hessian figures: image strips along each direction, and the curvature spectra."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from vizkit.figure import mosaic, normalise


def display_scale(images: np.ndarray) -> np.ndarray:
    """Map a path's images to [0, 1] with one scale for all of them (grey = 0 for one channel)."""
    if images.ndim == 4 and images.shape[-1] == 3:
        return normalise(images, "minmax", shared=True)
    return normalise(images, "symmetric", shared=True)


def direction_strips(
    direction_images: np.ndarray,
    path_images: np.ndarray,
    angles_deg: np.ndarray,
    activations: np.ndarray,
    eigenvalues: np.ndarray,
    names: Sequence[str],
    *,
    title: str,
    footer: str,
) -> Figure:
    """One strip per direction: the direction v itself, then x(t) at the angles, activation under each.

    ``direction_images`` [K, h, w(, 3)], ``path_images`` [K, T, h, w(, 3)], ``activations`` [K, T],
    ``eigenvalues`` [K]. Every strip has one colour scale for its frames, so the frames can be
    compared with each other; the direction tile is scaled on its own.
    """
    k, t = activations.shape
    h, w = path_images.shape[2:4]
    tile = 0.62 if max(h, w) >= 10 else 0.5
    width = min(max((t + 1.4) * tile + 1.6, 6.0), 17.0)
    fig = Figure(figsize=(width, k * (tile + 0.42) + 1.25), layout="constrained")
    axes = fig.subplots(k, 1, squeeze=False)[:, 0]
    cmap = None if path_images.ndim == 5 else "gray"
    gap = max(1, w // 2)
    for row, ax in enumerate(axes):
        frames = display_scale(path_images[row])
        strip = mosaic(frames, ncols=t, pad=1, fill=1.0)
        direction = display_scale(direction_images[row][None])[0]
        blank = np.ones((strip.shape[0], gap, *strip.shape[2:]))
        head = np.ones((strip.shape[0], w + 2, *strip.shape[2:]))
        head[1:1 + h, 1:1 + w] = direction
        ax.imshow(np.concatenate([head, blank, strip], axis=1), cmap=cmap, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        offset = w + 2 + gap
        centres = [w / 2 + 0.5] + [offset + 1 + i * (w + 1) + w / 2 - 0.5 for i in range(t)]
        ax.set_xticks(centres)
        ax.set_xticklabels(["v"] + [f"{a:.3g}" for a in activations[row]], fontsize=6.5)
        ax.set_yticks([h / 2 + 0.5])
        ax.set_yticklabels([f"{names[row]}\nμ = {eigenvalues[row]:.3g}"], fontsize=7)
        ax.tick_params(length=0, pad=1.5)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if row == 0:
            top = ax.secondary_xaxis("top")
            top.set_xticks(centres[1:])
            top.set_xticklabels([f"{a:+.0f}°" for a in angles_deg], fontsize=6.5)
            top.tick_params(length=0, pad=1)
            for spine in top.spines.values():
                spine.set_visible(False)
    fig.suptitle(title, fontsize=9.5)
    fig.supxlabel(footer, fontsize=7)
    return fig


def spectrum_figure(
    spectra: Sequence[np.ndarray],
    chosen: np.ndarray,
    lams: np.ndarray,
    units: Sequence[int],
    *,
    complete: bool,
    title: str,
    max_panels: int = 12,
    flat_count: np.ndarray | None = None,
    identifiable: np.ndarray | None = None,
) -> Figure:
    """Small multiples, one per unit: tangent curvatures sorted, the chosen ones marked.

    ``spectra`` per unit (all D−1 eigenvalues, or the Ritz values of the Krylov basis), ``chosen``
    [U, top+1] (invariances, then the least invariant), ``lams`` [U] the Lagrange multipliers:
    −λ is the curvature of a direction the unit ignores entirely (H v = 0).
    """
    n = min(len(units), max_panels)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(3.1 * ncols, 6.0), 2.5 * nrows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_visible(False)
            continue
        values = np.sort(np.asarray(spectra[i], dtype=np.float64))
        ranks = np.arange(len(values))
        style = {"linewidth": 1.0} if complete else {"linestyle": "none", "marker": ".", "markersize": 3}
        ax.plot(ranks, values, color="0.35", **style, label="all computed" if complete else "Ritz values")
        inv, least = chosen[i, :-1], chosen[i, -1]
        ax.plot(np.searchsorted(values, inv), inv, "o", color="tab:green", markersize=4, label="invariances")
        ax.plot([np.searchsorted(values, least)], [least], "x", color="tab:red", markersize=6, label="least invariant")
        ax.axhline(0.0, color="0.8", linewidth=0.8)
        ax.axhline(-lams[i], color="tab:orange", linewidth=0.8, linestyle="--", label="−λ (ignored direction)")
        label = f"unit {units[i]}"
        if flat_count is not None:
            label += f": {flat_count[i]} of {len(values)} at −λ"
        if identifiable is not None and not identifiable[i]:
            label += "\nnot every invariance identifiable"
        ax.set_title(label, fontsize=8, color="black" if identifiable is None or identifiable[i] else "tab:red")
        ax.tick_params(labelsize=6.5)
        ax.set_xlabel("rank (sorted)", fontsize=7)
        if i % ncols == 0:
            ax.set_ylabel("curvature on the sphere", fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    shown = "" if n == len(units) else f" (first {n} of {len(units)} units)"
    fig.suptitle(title + shown, fontsize=9.5)
    return fig
