"""Figures of the ``templates`` probe: mosaics with one shared scale, a diverging map for mismatch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vizkit import ProbeContext, Result, papers
from vizkit.figure import as_images, image_grid, mosaic

THESIS = papers.tieleman2014_capsule_mnist()

BLUE = np.array([0.15, 0.35, 1.0])


def _imgs(arr: np.ndarray) -> np.ndarray:
    """[N, *input_shape] → [N, H, W] grey images."""
    return as_images(arr.reshape(arr.shape[0], -1) if arr.ndim == 2 else arr, arr.shape[1:])


def _panel(ax: Any, grid: np.ndarray, title: str, cmap: str = "gray", vmin: float = 0.0, vmax: float = 1.0) -> Any:
    image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def draw(ctx: ProbeContext, result: Result) -> None:
    a, meta = result.arrays, result.meta
    _rows(ctx, result)
    if "templates_upsampled" in a:
        _templates(result)
        _centres(result)
        if a["usage"].shape[0] > 1:  # one composite capsule: no manager to describe
            _manager(result)
        if "forced" in a:
            _forced(result)
        if "sweeps" in a:
            _sweeps(result)
    elif "templates" in a:
        shape = a["templates"].shape[1:]
        result.figures["templates"] = image_grid(
            as_images(a["templates"].astype(np.float64), shape), labels=a["template_units"].tolist(),
            title=f"decoder filters into {ctx.layer} (the model's templates)")
        result.captions["templates"] = (f"Weights between the input and {len(a['template_units'])} units of "
                                        f"{ctx.layer}: the images this model's decoder adds up.")
    meta.setdefault("figures", sorted(result.figures))


def _rows(ctx: ProbeContext, result: Result) -> None:
    a, meta = result.arrays, result.meta
    orig, rec, mis = _imgs(a["originals"]), _imgs(a["reconstructions"]), _imgs(a["mismatch"])
    n, h, w = orig.shape
    hi = max(1.0, float(max(orig.max(), rec.max())))
    lo = min(0.0, float(min(orig.min(), rec.min())))
    left = mosaic(np.concatenate([orig[:, None], rec[:, None]], 1).reshape(-1, h, w), 2, fill=hi)
    span = float(np.abs(mis).max()) or 1.0
    middle = mosaic(mis, 1, fill=0.0)
    contrib = a.get("contributions")
    panels = 3 if contrib is not None else 2
    k = contrib.shape[1] if contrib is not None else 0
    widths = [2, 1] + ([max(k, 1)] if k else [])
    fig = Figure(figsize=(min(2.2 + 0.5 * (3 + k), 16), min(1.0 + 0.5 * n, 18)), layout="constrained")
    axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": widths})
    _panel(axes[0], left, "original | recon.", vmin=lo, vmax=hi)
    axes[0].set_yticks([1 + r * (h + 1) + h / 2 for r in range(n)])
    axes[0].set_yticklabels([str(i) for i in a["row_indices"]], fontsize=6)
    axes[0].set_ylabel("example", fontsize=8)
    image = _panel(axes[1], middle, "mismatch", cmap="RdBu_r", vmin=-span, vmax=span)
    cbar = fig.colorbar(image, ax=axes[1], fraction=0.12, shrink=0.5)
    cbar.ax.tick_params(labelsize=6)
    cbar.set_label("original − reconstruction", fontsize=7)
    if k:
        tiles = _imgs(contrib.reshape(n * k, *contrib.shape[2:]))
        _panel(axes[2], mosaic(tiles, k, fill=hi), "contribution of each capsule (same scale)", vmin=lo, vmax=hi)
        axes[2].set_xticks([1 + c * (w + 1) + w / 2 for c in range(k)])
        axes[2].set_xticklabels([f"AC{c}" for c in range(k)], fontsize=6)
        axes[2].xaxis.tick_top()
    pct = meta.get("pct_variance")
    fig.suptitle(f"reconstructions of {meta['data_source']}: per-pixel MSE {meta['mse']:.4g}"
                 + (f" ({pct:.1f}% of data variance)" if pct is not None else ""), fontsize=9)
    result.figures["reconstructions"] = fig
    result.captions["reconstructions"] = (
        f"How well the model redraws images of the data: each image, the model's version of it and where "
        f"they differ. Original, reconstruction and mismatch (original − reconstruction; red: the model drew too little, blue: "
        f"too much) for {n} images; per-pixel MSE over all {meta['n_images']} images {meta['mse']:.4g}, "
        + (f"{pct:.1f}% of the data variance {float(a['data_variance']):.4g} (mean per-pixel variance)"
           if pct is not None else "data variance 0")
        + (". Then each atomic capsule's rendered contribution before the output model, capsule order fixed "
           f"across rows (Tieleman Fig. 2.14; thesis, full MNIST without dropout: {THESIS.train_mse} train / "
           f"{THESIS.test_mse} held-out)." if k else "."))


def _templates(result: Result) -> None:
    a = result.arrays
    up = a["templates_upsampled"].astype(np.float64)
    k = up.shape[0]
    cols = min(k, 10)
    fig = Figure(figsize=(min(1.2 * cols + 0.6, 16), 1.4 * math.ceil(k / cols) + 0.7), layout="constrained")
    ax = fig.add_subplot()
    vmax = float(max(up.max(), 1e-12))
    vmin = min(0.0, float(up.min()))
    _panel(ax, mosaic(up, cols, pad=2, fill=vmax), "", vmin=vmin, vmax=vmax)
    th = up.shape[1]
    rows = math.ceil(k / cols)
    ax.set_xticks([2 + c * (th + 2) + th / 2 for c in range(cols)])
    # one row: each column is its capsule; more: each row names its first and last capsule and the
    # columns count on from it, so the second row's tiles are not read as AC0-AC9 again
    ax.set_xticklabels([f"AC{c}" if rows == 1 else f"+{c}" for c in range(cols)], fontsize=7)
    ax.xaxis.tick_top()
    if rows > 1:
        ax.set_yticks([2 + r * (th + 2) + th / 2 for r in range(rows)])
        ax.set_yticklabels([f"AC{r * cols}–{min(k, (r + 1) * cols) - 1}" for r in range(rows)], fontsize=7)
    fig.suptitle(f"learned templates ({a['templates'].shape[1]}×{a['templates'].shape[2]} points, bilinear)",
                 fontsize=9)
    result.figures["templates"] = fig
    result.captions["templates"] = (
        f"The {k} learned templates as the renderer sees them: the points bilinearly interpolated "
        f"(Tieleman Fig. 2.15); one grey scale, black 0, white {vmax:.3g}"
        + ("; tile +c of row ACr–… is capsule r + c." if rows > 1 else "."))


def _centres(result: Result) -> None:
    a = result.arrays
    cog = a["cog"]
    n, k = cog.shape[:2]
    h, w = a["originals"].shape[-2:]
    cols = min(k, 10)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(1.3 * cols + 0.5, 1.4 * rows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= k:
            ax.set_visible(False)
            continue
        ok = a["cog_valid"][:, i]
        ax.scatter(cog[ok, i, 1], cog[ok, i, 0], s=4, c="k", alpha=0.6, linewidths=0)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"AC{i}", fontsize=7)
    fig.suptitle(f"centre of gravity of each capsule's contribution over {n} images", fontsize=9)
    result.figures["centres"] = fig
    faint = int((~a["cog_valid"]).sum())
    result.captions["centres"] = (
        f"Each square is the {h}×{w} image; a dot is where one capsule's ink is centred in one of {n} images "
        f"(Tieleman Fig. 2.16). A capsule with its own region has a tight cloud."
        + (f" {faint} (image, capsule) pairs drew almost nothing and are left out." if faint else ""))


def _manager(result: Result) -> None:
    a, meta = result.arrays, result.meta
    usage = a["usage"]
    m = meta["manager"]
    fig = Figure(figsize=(max(4.0, 0.25 * len(usage) + 1.5), 2.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(usage)), usage, color="0.4")
    ax.set_xlabel("mixture component", fontsize=8)
    ax.set_ylabel("images assigned", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"manager: max y ≥ 0.99 for {100 * m['max_y_ge_0.99']:.0f}%, ≥ 0.9 for {100 * m['max_y_ge_0.9']:.0f}%; "
                 f"entropy {m['entropy_pct_of_logK']:.1f}% of log K", fontsize=8)
    result.figures["manager"] = fig
    result.captions["manager"] = (
        f"How many images each of the model's mixture components is chosen for. "
        f"Images per mixture component (noise-free argmax of y) over {meta['n_images']} images; "
        f"{m['components_used']} of {m['components']} components used. Thesis, MNIST with 25 components: max y ≥ 0.99 "
        f"for {THESIS.max_y_ge_099_pct:g}%, ≥ 0.9 for {THESIS.max_y_ge_09_pct:g}%, entropy ≈ "
        f"{THESIS.entropy_pct_of_log_k:g}% of log 25.")


def _forced(result: Result) -> None:
    a = result.arrays
    forced = a["forced"]
    n, k = forced.shape[:2]
    orig = _imgs(a["originals"][:n])
    h, w = orig.shape[1:]
    chosen = a["forced_chosen"]
    tiles = np.concatenate([orig[:, None], forced.reshape(n, k, h, w)[np.arange(n), chosen][:, None],
                            forced.reshape(n, k, h, w)], 1)
    hi = max(1.0, float(tiles.max()))
    rgb = np.repeat(np.clip(tiles / hi, 0, 1)[..., None], 3, -1)
    # the manager's choice: a blue frame (and a blue tint) on its tile
    for r in range(n):
        tile = rgb[r, 2 + chosen[r]]
        tile[:] = 0.75 * tile + 0.25 * BLUE
        tile[[0, -1], :] = BLUE
        tile[:, [0, -1]] = BLUE
    grid = mosaic(rgb.reshape(-1, h, w, 3), k + 2, fill=1.0)
    fig = Figure(figsize=(min(0.45 * (k + 2) + 1, 16), 0.5 * n + 1), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([1 + c * (w + 1) + w / 2 for c in range(k + 2)])
    ax.set_xticklabels(["orig", "chosen"] + [str(c) for c in range(k)], fontsize=6)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.set_title("every mixture component reconstructs the same image (blue: the manager's choice)", fontsize=9)
    result.figures["components"] = fig
    result.captions["components"] = (
        "What each mixture component makes of the same images: every image redrawn by each component in turn. "
        "Column 1: original; column 2: the chosen component's reconstruction; then the reconstruction with y "
        "forced to each component and that component's own pose (Tieleman Fig. 2.19). "
        + _specialisation_note(result.meta.get("specialisation"), result.meta["n_images"], k))


def _specialisation_note(spec: dict[str, Any] | None, n_images: int, k: int) -> str:
    """The figure's one number: how much worse a component draws the others' images than its own."""
    if not spec or spec.get("median_ratio") is None or not np.isfinite(spec["median_ratio"]):
        return ""
    return (f"Specialisation over all {n_images} images: a component's error on the images the manager gives to "
            f"other components is {spec['median_ratio']:.2f}× its error on its own (median over components; "
            f"1 would mean every component redraws every image equally well), and the chosen component is also "
            f"the best of all {k} for {100 * spec['chosen_is_best']:.0f}% of the images. In the thesis "
            f"(Fig. 2.19) a wrong component draws its own digit.")


def _sweeps(result: Result) -> None:
    a = result.arrays
    sweeps = a["sweeps"]
    n_comp, n_var, steps = sweeps.shape[:3]
    h, w = sweeps.shape[-2:]
    fig = Figure(figsize=(min(n_comp * (0.45 * steps + 0.8), 16), 0.5 * n_var + 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n_comp, squeeze=False)).ravel()
    hi = max(1.0, float(sweeps.max()))
    for i, ax in enumerate(axes):
        tiles = sweeps[i].reshape(n_var * steps, h, w)
        _panel(ax, mosaic(tiles, steps, fill=hi), f"component {int(a['sweep_components'][i])}", vmax=hi)
        ax.set_yticks([1 + r * (h + 1) + h / 2 for r in range(n_var)])
        ax.set_yticklabels([f"d{int(v)}" for v in a["sweep_variables"]], fontsize=6)
        ax.set_xticks([1 + c * (w + 1) + w / 2 for c in (0, steps // 2, steps - 1)])
        ax.set_xticklabels(["−2σ", "0", "+2σ"], fontsize=7)
    fig.suptitle("distortion sweeps: one variable at a time, the others 0", fontsize=9)
    result.figures["sweeps"] = fig
    result.captions["sweeps"] = (
        f"What each distortion variable of a component does to the image it draws, one variable at a time. "
        f"Rows: the {n_var} distortion variables with the largest spread over the data; columns: that variable "
        f"from −2σ to +2σ in {steps} steps, the others 0, at the component's median pose (Tieleman Fig. 2.18).")
