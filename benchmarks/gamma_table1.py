"""Table 1 of Rasmus, Raiko & Valpola (2015) from a built rasmus2015 gallery, beside the paper's values.

Reads the gallery's checkpoints (the denoising cost per element on held-out patches, with the
fixed validation corruption) and the gamma results (γ⁽⁰⁾…γ⁽²⁾ for translation, rotation and
scale), and prints one markdown table. It also prints the closed-form cost of the best *linear*
denoiser on the same data (Σ over the eigenvalues λ of the scaled data covariance of
λσ²/(λ + σ²), per element, σ = 0.5): the number the Linear model must approach, and the bar
the nonlinear models must beat.

    vizkit gallery build gallery/rasmus2015.toml --out gallery/_build/rasmus2015
    python benchmarks/gamma_table1.py gallery/_build/rasmus2015
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import vizkit
from vizkit import papers

LABEL = {"linear": "Linear", "nolat-1": "No-lat", "addmod-1": "Add/Mod", "nolat": "No-lat", "add": "Add", "mod": "Mod"}
HIDDEN_LAYERS = {"linear": 0, "nolat-1": 1, "addmod-1": 1}  # the rest: 2


def wiener_cost(model: object) -> float:
    """Cost per element of the optimal linear denoiser on the model's own (scaled) patches."""
    from vizkit.datasets import patches

    info = model.data_info  # type: ignore[attr-defined]
    opts = {k: v for k, v in info["options"].items() if k in ("size", "whiten", "images", "contrast", "contrast_floor")}
    dm = patches.build(**opts, n_train=50_000, n_test=10, seed=int(info.get("seed", 0)))
    x = dm.train_tensor().reshape(50_000, -1).double() / model.hparams["data_std"]  # type: ignore[attr-defined]
    lam = torch.linalg.eigvalsh(torch.cov(x.T)).clamp_min(0)
    s2 = float(model.hparams["noise"]) ** 2  # type: ignore[attr-defined]
    return float((lam * s2 / (lam + s2)).sum() / x.shape[1])


def fmt(values: object) -> str:
    return "NA" if values is None else " / ".join(f"{v:.2f}" for v in values)  # type: ignore[union-attr]


def paper_cell(data: str, name: str) -> str:
    row = papers.rasmus2015_row(data, LABEL[name], HIDDEN_LAYERS.get(name, 2))
    return f"{row.sizes}: {row.cost:.4f}, {fmt(row.gamma_translation)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gallery", nargs="?", default="gallery/_build/rasmus2015")
    args = parser.parse_args()
    root = Path(args.gallery)
    rows = []
    bound = None
    for name in LABEL:
        ckpt = root / "models" / f"{name}.pt"
        if not ckpt.exists():
            continue
        model = vizkit.load(ckpt)
        den = model.metrics.get("denoising", {})
        sizes = "-".join(str(s) for s in model.sizes[:1]) if name == "linear" else "-".join(map(str, model.sizes))
        gam = {}
        for layer in ("h2", "h1"):
            path = root / name / f"gamma-{layer}" / "arrays.npz"
            if path.exists():
                with np.load(path) as arr:
                    gam = {k: arr[f"layer_gamma_{k}"] for k in ("translation", "rotation", "scale")
                           if f"layer_gamma_{k}" in arr}
                break
        if bound is None:
            bound = wiener_cost(model)
        rows.append(f"| {LABEL[name]} | {sizes} | {den.get('steps', '?')} | {den.get('val_cost_min', float('nan')):.4f} | "
                    + (" | ".join(fmt(gam.get(k)) for k in ("translation", "rotation", "scale")) if name != "linear"
                       else "NA | NA | NA")
                    + f" | {paper_cell('CIFAR-10', name)} | {paper_cell('O&F', name)} |")
    print("| model | sizes | updates | min cost (ours) | γ⁽⁰⁾/γ⁽¹⁾/γ⁽²⁾ translation | rotation | scale "
          "| paper CIFAR-10: cost, γ translation | paper O&F: cost, γ translation |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if bound is not None:
        print(f"\nBest possible linear denoiser on these patches (closed form): {bound:.4f} per element.")


if __name__ == "__main__":
    main()
