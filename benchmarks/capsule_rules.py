"""Tieleman (2014) Fig. 2.13 on the thesis's own configuration: which rule of the conservative optimiser
set each number's step, against training time, and what that configuration reaches in 50 epochs.

The model is the ``capsule-mnist-thesis`` entry of gallery/tieleman2014.toml (one place for its
options: logistic encoder, no shared code, no encoder decay, dropout ½ in the encoder and on the 30
distortion variables, the conservative optimiser at a constant rate), trained here through
``vizkit.gallery.train_entry``: the gallery build's own copy of the model, trained once. The optimiser records the share of
numbers each rule set every few updates (``metrics["optimizer_rules"]``); the figure draws it,
and the model's own measurements (MSE, clustering, the manager, specialisation) are printed.

    python benchmarks/capsule_rules.py --figure docs/img/capsule-thesis-rules.png
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "gallery" / "tieleman2014.toml"
BUILD = ROOT / "gallery" / "_build" / "tieleman2014"
MODEL = "capsule-mnist-thesis"
RULES = ("1: cap on the change", "2: plain gradient", "3: RMSprop-like (α3 g/√ĝ²)", "4: α4 g/ĝ²")


def recipe_entry() -> dict:
    return next(m for m in tomllib.loads(RECIPE.read_text())["model"] if m["name"] == MODEL)


def draw(rules: dict, figure: Path, epochs: int, batches_per_epoch: int) -> None:
    from matplotlib.figure import Figure

    steps = np.asarray(rules["step"])
    share = 100 * np.asarray(rules["share"])
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for r, colour in ((3, "tab:red"), (2, "tab:blue"), (0, "tab:gray"), (1, "tab:green")):
        if share[:, r].max() >= 0.5 or r >= 2:
            ax.plot(steps, share[:, r], color=colour, label=f"rule {RULES[r]}")
    ax.axhline(40, color="tab:red", ls=":", lw=1, label="thesis: rule 4 still ~40% at the end of its (far longer) run")
    ax.set_xlabel(f"update ({epochs} epochs × {batches_per_epoch} updates, MNIST subset)")
    ax.set_ylabel("% of numbers whose step the rule set")
    ax.set_ylim(0, 100)
    ax.set_title("Fig. 2.13: which rule sets each step (thesis configuration, conservative optimiser)", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    fig.savefig(figure, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--figure", type=Path, default=None, help="write Fig. 2.13 here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    from vizkit import papers
    from vizkit.gallery import train_entry

    torch.set_num_threads(args.threads)
    entry = recipe_entry()
    # the gallery build's own copy (trained there, or here into the same place, and reused by it)
    model = train_entry(entry, BUILD, progress=False)
    rules = model.metrics["optimizer_rules"]
    share = np.asarray(rules["share"])
    print(f"{MODEL}: {entry['options']}, {entry['epochs']} epochs, seed {entry.get('seed', 0)}")
    print("| update | rule 1 | rule 2 | rule 3 | rule 4 |\n|---:|---:|---:|---:|---:|")
    for i in sorted({0, len(share) // 10, len(share) // 4, len(share) // 2, len(share) - 1}):
        print(f"| {rules['step'][i]} | " + " | ".join(f"{100 * v:.1f}%" for v in share[i]) + " |")
    ev = model.metrics["evaluation"]
    thesis = papers.tieleman2014_capsule_mnist()
    print(f"held-out MSE {ev['test_mse']:.4f} ({ev['test_pct_var']:.1f}%), train {ev['train_mse']:.4f} "
          f"(thesis, full MNIST: {thesis.test_mse} / {thesis.train_mse})")
    c = ev.get("clustering")
    if c:
        s = c["specialisation"]
        print(f"clustering {100 * c['error']:.1f}% (thesis {thesis.cluster_error_pct}%); max y >= 0.9 for "
              f"{100 * c['max_y_ge_0.9']:.0f}% (thesis {thesis.max_y_ge_09_pct}%); specialisation ratio "
              f"{s['median_ratio']:.2f}, wrong component draws its own digit {100 * s['wrong_draws_own']:.0f}% / "
              f"the input's {100 * s['wrong_draws_input']:.0f}%")
    if args.figure:
        batches = max(1, int(round(max(rules["step"]) / max(1, entry["epochs"]))))
        draw(rules, args.figure, entry["epochs"], batches)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
