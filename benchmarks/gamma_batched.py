"""gamma: batched, streaming γ over every unit vs the model's own forward-pass rate and a naive loop.

Three measurements in one run, on the paper's Mod model (256-1622-50) over 16x16 PCA-whitened
patches of the sample photographs (random weights: speed does not depend on training):

1. forward: ``model.activations(x, top layer)`` on precomputed inputs, in the probe's chunks;
   samples per second. The ceiling for any γ computation that has to see every copy once.
2. gamma: the whole probe, end to end (held-out photograph windows, the 16 transformed copies,
   the dataset's whitening, every layer's activations, streaming statistics, figures excluded);
   samples (= sets x 16) per second, as a fraction of (1). Goal: >= 50%.
3. naive: the per-set loop a first implementation would write: for each set, each copy through
   the model on its own and two-pass variances at the end (on a subset; samples per second).

    OMP_NUM_THREADS=1 python benchmarks/gamma_batched.py [--sets 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vizkit import image_transforms


def build_model(layers: str) -> object:
    from vizkit.datasets import patches
    from vizkit.models.ladder import Ladder

    dm = patches.build(size=16, whiten="pca", n_train=20000, n_test=10)
    torch.manual_seed(0)
    model = Ladder(input_shape=[1, 16, 16], decoder="mod", layers=layers, data_std=float(dm.stats["pixel_std"]))
    model.data_info = dm.describe()
    model.eval()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=2000)
    parser.add_argument("--naive-sets", type=int, default=100)
    parser.add_argument("--layers", default="1622,50")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.layers)
    top = list(model.layer_infos())[-1]
    n = args.sets * image_transforms.SET_SIZE
    from vizkit.registry import get_host

    get_host()
    # (1) forward pass rate on the same inputs, same chunks as the probe uses
    source = image_transforms.set_source(model, "translation", n_sets=args.sets, seed=0)
    x = source.sets("translation").reshape(n, 1, 16, 16)
    from vizkit.probes.gamma import Gamma

    chunk = Gamma._chunk(source, model.layer_infos(), 256.0, torch.float32) * image_transforms.SET_SIZE

    def forward() -> None:
        with torch.no_grad():
            for start in range(0, n, chunk):
                model.activations(x[start:start + chunk], top)

    def gamma() -> None:
        from vizkit.api import prepare_run

        run = prepare_run("gamma", model, top, sets=args.sets)
        run.start()
        ctx = run.context(run.units)
        # the numbers only (figures are drawn once per result and are not part of the rate)
        Gamma._figures = lambda *a, **k: None  # type: ignore[method-assign]
        Gamma().run(ctx)

    def naive() -> None:
        acts = []
        with torch.no_grad():
            for s in range(args.naive_sets):
                copies = source.sets("translation", s, s + 1)[0]
                acts.append([model.activations(copies[k:k + 1], top)[0].double().numpy() for k in range(16)])
        a = np.array(acts)
        a.mean(axis=1).var(axis=0) / a.reshape(-1, a.shape[2]).var(axis=0)

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    t_forward = best(forward)
    t_gamma = best(gamma)
    t_naive = best(naive)
    rate_f = n / t_forward
    rate_g = n / t_gamma
    rate_n = args.naive_sets * image_transforms.SET_SIZE / t_naive
    print(f"model: ladder mod 256-{args.layers.replace(',', '-')}, layer {top}; {args.sets} sets x 16 = {n} samples; "
          f"{args.threads} thread(s); best of {args.repeats}")
    print(f"forward only ({top}, chunks of {chunk}):        {rate_f:10.0f} samples/s  ({t_forward:.2f} s)")
    print(f"gamma probe, all layers, end to end:       {rate_g:10.0f} samples/s  ({t_gamma:.2f} s)  "
          f"= {rate_g / rate_f:.0%} of the forward rate")
    print(f"naive per-set loop ({args.naive_sets} sets):             {rate_n:10.0f} samples/s  "
          f"-> batched gamma is {rate_g / rate_n:.0f}x faster")


if __name__ == "__main__":
    main()
