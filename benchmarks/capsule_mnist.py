"""Capsule autoencoder on MNIST beside the thesis and beside PCA / k-means, same split, one run.

Reads a trained checkpoint (``vizkit train capsule --data mnist ...``) and prints:
per-pixel MSE train / held-out without and with dropout and the % of data variance (mean per-pixel
variance of that split), beside PCA with as many components as one CC's code (7 pose numbers +
the distortion variables); the 25-label clustering error (cluster = manager's noise-free
choice, each cluster named by its most confident training image) beside k-means with 25
clusters on pixels scored the same way (most confident = nearest its centroid); and whether the
components specialise (vizkit.mixtures: each held-out image redrawn by every component).

    .venv/bin/python benchmarks/capsule_mnist.py CHECKPOINT.pt [--seeds 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import vizkit
from vizkit import papers
from vizkit.models.capsule.evaluate import evaluate, kmeans_cluster_error, pca_mse
from vizkit.training import build_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--seeds", type=int, default=3, help="k-means restarts seeds to average")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    thesis = papers.tieleman2014_capsule_mnist()
    model = vizkit.load(args.checkpoint)
    info = model.data_info
    options = {k: v for k, v in (info.get("options") or {}).items() if v is not None}
    dm = build_data(info["name"], options, 100, int(info.get("seed", 0)))
    cap = evaluate(model, dm)
    xtr, xte = dm.train_tensor().numpy(), dm.test_tensor().numpy()
    n_code = 7 + model.n_dist
    pca = pca_mse(xtr, xte, n_code)
    ytr, yte = dm.train_labels(), dm.test_labels()
    km = [kmeans_cluster_error(xtr, ytr.numpy(), xte, yte.numpy(), 25, seed)["error"] for seed in range(args.seeds)] \
        if ytr is not None else []
    var_tr = float(xtr.reshape(len(xtr), -1).var(0).mean())
    var_te = float(xte.reshape(len(xte), -1).var(0).mean())
    epochs = sum(int(v.get("epochs", 0)) for v in model.metrics.values() if isinstance(v, dict))
    print(f"capsule model {args.checkpoint}: {model.n_ccs} CCs x {model.n_acs} ACs, {model.n_dist} distortion "
          f"variables, {epochs} epochs; data {dm.name} ({len(xtr)} train / {len(xte)} held-out)")
    print(f"{'per-pixel MSE (% of variance)':34s} {'train':>16s} {'held-out':>16s}")
    for tag, label in (("", "capsule, no dropout"), ("_dropout", "capsule, dropout on")):
        print(f"{label:34s} {cap['train_mse' + tag]:9.4f} ({cap['train_pct_var' + tag]:4.1f}%) "
              f"{cap['test_mse' + tag]:9.4f} ({cap['test_pct_var' + tag]:4.1f}%)")
    print(f"{f'PCA, {n_code} components':34s} {pca['train_mse']:9.4f} ({100 * pca['train_mse'] / var_tr:4.1f}%) "
          f"{pca['test_mse']:9.4f} ({100 * pca['test_mse'] / var_te:4.1f}%)")
    print(f"{'thesis, no dropout (full MNIST)':34s} {thesis.train_mse:9.4f} ({thesis.train_pct_var:4.1f}%) "
          f"{thesis.test_mse:9.4f} ({thesis.test_pct_var:4.1f}%)")
    print(f"{'thesis, dropout on (full MNIST)':34s} {thesis.train_mse_dropout:9.4f} "
          f"({thesis.train_pct_var_dropout:4.1f}%) {thesis.test_mse_dropout:9.4f} ({thesis.test_pct_var_dropout:4.1f}%)")
    out = {"capsule": cap, "pca": pca, "n_pca": n_code, "kmeans_errors": km}
    if "clustering" in cap:
        c = cap["clustering"]
        print(f"25-label clustering test error: capsule {100 * c['error']:.2f}% ({c['clusters_used']} clusters used), "
              f"k-means on pixels {100 * np.mean(km):.2f}% ± {100 * np.std(km):.2f}% ({args.seeds} seeds); "
              f"thesis {thesis.cluster_error_pct} ± {thesis.cluster_error_spread_pct} "
              f"({thesis.cluster_seeds} seeds, full MNIST)")
        print(f"manager: max y >= 0.99 for {100 * c['max_y_ge_0.99']:.0f}%, >= 0.9 for {100 * c['max_y_ge_0.9']:.0f}%, "
              f"entropy {c['entropy_pct_of_logK']:.1f}% of log K (thesis: {thesis.max_y_ge_099_pct}%, "
              f"{thesis.max_y_ge_09_pct}%, {thesis.entropy_pct_of_log_k}%)")
        s = c["specialisation"]
        print(f"specialisation (held-out, y forced to each component): error on other components' images / on "
              f"its own, median over components {s['median_ratio']:.2f}; the chosen component is the best one "
              f"for {100 * s['chosen_is_best']:.0f}%; forced onto an image of another digit a component draws "
              f"its own digit {100 * s['wrong_draws_own']:.0f}%, the input's {100 * s['wrong_draws_input']:.0f}% "
              f"(a pixel classifier's reading; thesis Fig. 2.19: its own)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
