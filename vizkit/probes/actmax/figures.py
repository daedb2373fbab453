"""The actmax figures beyond the plain grid: restarts panel, activation spread, sensitivity matrix."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vizkit.figure import normalise

#: a character's width in a DejaVu Sans label, as a share of its font size (a generous mean)
CHAR_EM = 0.6


def _label_row(ax: Axes, units: Sequence[int], names: Sequence[str] | None, i: int, fontsize: float,
               row_inches: float) -> None:
    """Label a row ``unit 3``, or ``3 rocket`` where the units are a classifier's named classes.

    A class name longer than its row is tall ("5 hubble_deep_field") would run into the rows
    beside it: the number goes on a line of its own, the name is broken after its underscores,
    and the font shrinks until the longest line fits the row.
    """
    text = f"{units[i]} {names[i]}" if names else f"unit {units[i]}"
    fits = lambda line: len(line) * CHAR_EM * fontsize / 72 <= row_inches  # noqa: E731
    if not fits(text):
        lines = [str(units[i])]
        for part in str(names[i]).replace("_", "_\n").split("\n"):
            if lines[1:] and fits(lines[-1] + part):
                lines[-1] += part
            else:
                lines.append(part)
        text = "\n".join(lines)
        fontsize = min(fontsize, row_inches * 72 / (CHAR_EM * max(len(line) for line in lines)))
    ax.set_ylabel(text, fontsize=fontsize)


def _fitted_title(title: str, fig_inches: float, fontsize: float) -> str:
    """``title`` broken into lines that fit the figure's width (a suptitle is clipped, not wrapped)."""
    return textwrap.fill(title, max(20, int(fig_inches * 72 / (CHAR_EM * fontsize))))


def restarts_panel(images: np.ndarray, activations: np.ndarray, units: Sequence[int], title: str, *,
                   agree: np.ndarray | None = None, cosine_min: np.ndarray | None = None,
                   spread: np.ndarray | None = None, mode: str = "symmetric",
                   reached: str = "activation reached", names: Sequence[str] | None = None) -> Figure:
    """One row per unit, one column per restart, the activation reached under each tile.

    Erhan et al.'s "9 random initialisations" figure; the restart kept (highest activation) is
    framed in red. ``images`` is [units, restarts, H, W(, 3)], each tile scaled to its own range.
    A row whose restarts all agree (``agree``) shows the optimum once and the measured agreement
    (smallest cosine with the kept one, activation spread) instead of n identical tiles and an
    arbitrary "kept" frame.
    """
    n_units, n_restarts = images.shape[:2]
    shown = normalise(images.reshape(n_units * n_restarts, *images.shape[2:]), mode)
    shown = shown.reshape(images.shape)
    h, w = images.shape[2:4]
    tile = 0.95 if max(h, w) >= 12 else 0.8
    fig = Figure(figsize=(max(n_restarts * tile + 1.3, 5.0), n_units * (tile + 0.28) + 1.3), layout="constrained")
    axes = fig.subplots(n_units, n_restarts, squeeze=False)
    cmap = None if shown.ndim == 5 else "gray"
    best = activations.argmax(axis=1)
    for i in range(n_units):
        if agree is not None and agree[i]:
            ax = axes[i, 0]
            ax.imshow(shown[i, best[i]], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{activations[i].max():.4g}", fontsize=7, labelpad=1.5)
            for other in axes[i, 1:]:
                other.set_axis_off()
            if n_restarts > 1:
                axes[i, 1].text(0.0, 0.5, f"all {n_restarts} restarts agree: cosine with the kept one ≥ "
                                f"{cosine_min[i]:.6f}, activation spread {spread[i]:.2g}",
                                transform=axes[i, 1].transAxes, fontsize=8, va="center", ha="left")
            if i == 0:
                ax.set_title("kept", fontsize=7)
            _label_row(axes[i, 0], units, names, i, 8, tile + 0.28)
            continue
        for r in range(n_restarts):
            ax = axes[i, r]
            ax.imshow(shown[i, r], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            is_best = r == best[i]
            ax.set_xlabel(f"{activations[i, r]:.4g}", fontsize=7, color="tab:red" if is_best else "black",
                          labelpad=1.5, fontweight="bold" if is_best else "normal")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if is_best:
                ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="tab:red", linewidth=2.0))
            if i == 0:
                ax.set_title(f"restart {r}", fontsize=7)
        _label_row(axes[i, 0], units, names, i, 8, tile + 0.28)
    fig.suptitle(_fitted_title(title, fig.get_figwidth(), 9), fontsize=9)
    if agree is not None and np.all(agree):  # no row shows its restarts, so no red frame to explain
        key = ("number under each tile: activation reached; in every row all restarts agree, so the optimum "
               "is shown once with the measured agreement")
    else:
        key = "number under each tile: activation reached; red frame: the restart kept (highest)" + (
            "" if agree is None or not np.any(agree)
            else "; rows whose restarts all agree show the kept optimum once with the measured agreement")
    scale = ("pixel values in [0, 1], shown as they are" if mode == "unit"
             else "grey = 0, black negative, white positive, each tile scaled to its own max |value|")
    fig.supxlabel(key.replace("activation reached", reached) + "\n" + scale, fontsize=7)
    return fig


def activation_spread(activations: np.ndarray, initial: np.ndarray, units: Sequence[int], title: str) -> Figure:
    """Activation reached by every restart of every unit (dots), the best (red), the start (grey)."""
    n_units, n_restarts = activations.shape
    fig = Figure(figsize=(min(max(5.5, 0.16 * n_units + 2.0), 16.0), 3.6), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(n_units)
    ax.scatter(np.repeat(pos, n_restarts), initial.reshape(-1), s=6, color="0.7", label="start (uniform noise)")
    ax.scatter(np.repeat(pos, n_restarts), activations.reshape(-1), s=8, color="tab:blue", alpha=0.6,
               label=f"each of {n_restarts} restarts")
    ax.scatter(pos, activations.max(axis=1), s=18, color="tab:red", marker="_", linewidths=2, label="best (kept)")
    step = max(1, math.ceil(n_units / 36))
    ax.set_xticks(pos[::step])
    ax.set_xticklabels([str(u) for u in np.asarray(units)[::step]], fontsize=7, rotation=90 if n_units > 36 else 0)
    ax.set_xlim(-0.8, n_units - 0.2)
    ax.set_xlabel("unit")
    ax.set_ylabel("activation")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def sensitivity_matrix(sensitivity: np.ndarray, units: Sequence[int], title: str) -> tuple[Figure, str]:
    """Rows: the optimum of unit i; columns: unit j's response to it, each column ÷ its max |value|.

    Returns the figure and the colour scale used, in words. When every value sits in a narrow band
    (saturated units: all ≈ 1), the fixed [0, 1] scale is one flat colour, so the scale is then
    stretched to the values' own range and says so.
    """
    n = len(units)
    side = min(max(4.5, 0.12 * n + 2.8), 12.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = float(sensitivity.min()), float(sensitivity.max())
    if lo >= 0 and hi - lo < 0.5:
        cmap, vmin, vmax = "viridis", lo, hi if hi > lo else lo + 1e-12
        scale = f"stretched to the values' own range [{lo:.4g}, {hi:.4g}] (they all lie in a narrow band)"
    elif lo >= 0:
        cmap, vmin, vmax = "viridis", 0.0, 1.0
        scale = "fixed [0, 1]"
    else:
        cmap, vmin, vmax = "RdBu_r", -1.0, 1.0
        scale = "fixed [-1, 1], white = 0"
    image = ax.imshow(sensitivity, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    step = max(1, math.ceil(n / 24))
    ticks = np.arange(0, n, step)
    labels = [str(units[t]) for t in ticks]
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7, rotation=90 if n > 12 else 0)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("unit j (responding)")
    ax.set_ylabel("optimal input of unit i")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label(f"activation of unit j ÷ its largest |activation| over the optima\n(colour scale {scale})",
                  fontsize=8)
    return fig, scale


def thresholds_panel(images: np.ndarray, steps: Sequence[int], units: Sequence[int], title: str,
                     mode: str = "symmetric", names: Sequence[str] | None = None) -> Figure:
    """One row per unit, one column per snapshot step, each tile shown in ``mode``."""
    n_units, n_steps = images.shape[:2]
    shown = normalise(images.reshape(n_units * n_steps, *images.shape[2:]), mode).reshape(images.shape)
    tile = 1.0
    fig = Figure(figsize=(max(n_steps * tile + 1.3, 4.0), n_units * (tile + 0.2) + 1.0), layout="constrained")
    axes = fig.subplots(n_units, n_steps, squeeze=False)
    cmap = None if shown.ndim == 5 else "gray"
    for i in range(n_units):
        for j in range(n_steps):
            ax = axes[i, j]
            ax.imshow(shown[i, j], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"step {steps[j]}", fontsize=9)
            if j == 0:
                _label_row(ax, units, names, i, 9, tile + 0.2)
    fig.suptitle(_fitted_title(title, fig.get_figwidth(), 10), fontsize=10)
    return fig
