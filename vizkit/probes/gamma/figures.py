"""The gamma probe's figures: scatter (Fig. 3 / 7), γ against depth, pooling groups (Fig. 4)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

from vizkit.figure import as_images, normalise


def scatter_figure(gammas: dict[str, np.ndarray], defined: dict[str, np.ndarray], x: np.ndarray,
                   sign: np.ndarray, x_kind: str, title: str, layer_mean: dict[str, float]) -> Figure:
    """γᵢ against significance (log x), one panel per transformation, coloured by weight sign."""
    kinds = list(gammas)
    fig = Figure(figsize=(4.2 * len(kinds) + 0.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    norm = Normalize(-1.0, 1.0)
    positive = x[x > 0]
    floor = float(positive.min()) / 2 if positive.size else 1e-6
    shown_x = np.where(x > 0, x, floor)
    scatter = None
    for ax, kind in zip(axes, kinds):
        ok = defined[kind]
        scatter = ax.scatter(shown_x[ok], gammas[kind][ok], c=sign[ok], cmap="coolwarm", norm=norm, s=14,
                             edgecolors="0.3", linewidths=0.3)
        ax.set_xscale("log")
        # 1, 2, 5 × 10ᵏ: a layer's significances often span less than a decade
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("significance (share of the lower layer's variance)" if x_kind == "decoder"
                      else "activation variance (no decoder weights)", fontsize=8)
        ax.set_ylabel(f"{kind} invariance γ", fontsize=8)
        ax.set_title(f"{kind}: mean γ = {layer_mean[kind]:.2f}, {int(ok.sum())} units", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    assert scatter is not None
    bar = fig.colorbar(scatter, ax=list(axes), shrink=0.85)
    bar.set_label("mean sign of encoder weights\n(blue negative, red positive)", fontsize=8)
    fig.suptitle(f"{title}: invariance against significance", fontsize=10)
    return fig


#: widest figure in inches (1,600 px at the saved 100 dpi): a deep wrapped network (a ResNet has
#: ~60 layers) squeezes its ticks instead of growing the figure thousands of pixels wide
MAX_WIDTH = 16.0
#: up to this many depths the legend and every tick carry the values / names; beyond, thinned
FULL_LABELS = 12


def depth_figure(layer_gamma: dict[str, np.ndarray], names: list[str], undefined: dict[str, list[str]],
                 title: str) -> Figure:
    """γ⁽ˡ⁾ for the input and each layer, one line per transformation; at most :data:`MAX_WIDTH`
    inches wide, with thinned, rotated ticks when there are many layers."""
    many = len(names) > FULL_LABELS
    longest = max(len(n) for n in names)
    height = 4.2 + 0.07 * min(longest, 40) if many else 3.6
    fig = Figure(figsize=(min(max(4.5, (0.22 if many else 1.2) * len(names) + 2.5), MAX_WIDTH), height),
                 layout="constrained")
    ax = fig.add_subplot()
    depth = np.arange(len(names))
    for kind, values in layer_gamma.items():
        ok = np.array([n not in undefined.get(kind, []) for n in names])
        # the values go in the legend: annotations beside the points collide when lines meet
        label = kind if many else f"{kind}: " + " / ".join(f"{v:.2f}" for v in values[ok])
        ax.plot(depth[ok], values[ok], marker="o", ms=3 if many else 6, label=label)
    if many:  # every k-th layer named, vertical: ~60 names side by side would overlap
        every = -(-len(names) // 40)
        shown = depth[::every]
        ax.set_xticks(shown)
        ax.set_xticklabels([names[d] if names[d] == str(d) else f"{names[d]} ({d})" for d in shown], fontsize=6,
                           rotation=90)
    else:
        ax.set_xticks(depth)
        ax.set_xticklabels([f"{n}\n(γ⁽{d}⁾)" for d, n in enumerate(names)], fontsize=8)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("layer" + (" (depth)" if many else ""), fontsize=8)
    ax.set_ylabel("layer average invariance γ⁽ˡ⁾", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="transformation" if many else "transformation: γ⁽⁰⁾ / γ⁽¹⁾ / …",
              title_fontsize=8, loc="upper left")
    ax.set_title(f"{title}: invariance against depth", fontsize=10)
    return fig


def pooling_figure(groups: list[dict[str, list]], filters: np.ndarray, input_shape: tuple[int, ...],
                   lower: str, upper: str, gamma_of: dict[int, float]) -> Figure:
    """One block per start unit: its filter, then one row per upper unit of the lower-layer
    filters that unit pools (strongest first). Each filter on its own symmetric grey scale."""
    members = max(len(row) for g in groups for row in g["members"])
    n_rows = sum(len(g["upper"]) for g in groups)
    images = as_images(filters, input_shape)
    h, w = images.shape[1:3]
    fig = Figure(figsize=(min(0.42 * (members + 2) + 1.6, MAX_WIDTH), 0.46 * n_rows + 0.3 * len(groups) + 0.9),
                 layout="constrained")
    axes = fig.subplots(n_rows, members + 2, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.1})
    row = 0
    for g in groups:
        start = g["start"][0]
        for k, (up, ids) in enumerate(zip(g["upper"], g["members"])):
            for col in range(members + 2):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if col == 0 and k == 0:
                    ax.imshow(normalise(images[start][None])[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    ax.set_title(f"{lower} {start}", fontsize=6)
                    for spine in ax.spines.values():
                        spine.set_visible(True)
                        spine.set_color("tab:green")
                elif col == 1:
                    gam = gamma_of.get(int(up))
                    ax.text(0.95, 0.5, f"{upper} {up}" + (f"\nγ={gam:.2f}" if gam is not None else ""),
                            ha="right", va="center", fontsize=6, transform=ax.transAxes)
                elif col >= 2 and col - 2 < len(ids):
                    j = ids[col - 2]
                    ax.imshow(normalise(images[j][None])[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    if j == start:
                        for spine in ax.spines.values():
                            spine.set_visible(True)
                            spine.set_color("tab:green")
            row += 1
    fig.suptitle(f"Pooling groups: {lower} units (left, green) → the {upper} units they feed most → "
                 f"the {lower} filters each pools ({h}x{w}, each on its own grey scale)", fontsize=8)
    return fig
