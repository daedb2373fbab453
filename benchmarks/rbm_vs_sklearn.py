"""vizkit PCD vs scikit-learn's BernoulliRBM (also PCD) on the same binarised MNIST, in one run.

Both get identical 0/1 data, hidden units, epochs, batch size and learning rate (scikit-learn's
``learning_rate`` also multiplies the batch-mean gradient). Reported per epoch, in-process, start-up
excluded: scikit-learn's ``fit`` time / epochs; vizkit through Lightning exactly as ``vizkit train``
runs it (progress bar off), and vizkit's fused update in a bare loop (the arithmetic without the
framework). Repeats are interleaved and the median is reported, because the machine is shared.
Then the exact test log-likelihood of the 25-hidden-unit models (``--ll-hidden``).

    python benchmarks/rbm_vs_sklearn.py                 # offline MNIST subset, 1 thread each
    python benchmarks/rbm_vs_sklearn.py --threads 2 --data-dir ~/mnist --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import threadpoolctl
import torch
from rbm_common import binarised_mnist, fit_vizkit_rbm, quiet


def fit_sklearn(x: np.ndarray, hidden: int, epochs: int, batch_size: int, lr: float, seed: int):
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch_size, n_iter=epochs,
                       random_state=seed)
    start = time.perf_counter()
    rbm.fit(x)
    return rbm, (time.perf_counter() - start) / epochs


def fused_loop(train: torch.Tensor, hidden: int, epochs: int, batch_size: int, lr: float) -> float:
    """vizkit's PCD update (GradientEstimator + SGD step in place) over index batches, no Lightning."""
    from vizkit.models.rbm import GradientEstimator, RBMParams

    x = train.reshape(len(train), -1)
    d = x.shape[1]
    params = RBMParams(torch.randn(hidden, d) * 0.01, torch.zeros(hidden), torch.zeros(d))
    grads = RBMParams(torch.empty(hidden, d), torch.empty(hidden), torch.empty(d))
    est = GradientEstimator("pcd", n_visible=d, n_hidden=hidden, batch_size=batch_size)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            est.gradients(params, x[order[i:i + batch_size]], grads)
            for p, g in zip((params.weight, params.hidden_bias, params.visible_bias),
                            (grads.weight, grads.hidden_bias, grads.visible_bias)):
                p.add_(g, alpha=-lr)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", default="25,500")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and for numpy's BLAS alike")
    ap.add_argument("--data-dir", default=None, help="full MNIST IDX files (default: offline 5,000 subset)")
    ap.add_argument("--ll-hidden", type=int, default=25)
    args = ap.parse_args()
    quiet()
    torch.set_num_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)
    train, test = binarised_mnist(args.data_dir)
    x = train.reshape(len(train), -1).double().numpy()
    sizes = [int(s) for s in args.hidden.split(",")]
    print(f"data: {len(train)} train / {len(test)} test binarised MNIST; batch {args.batch_size}, lr {args.lr}, "
          f"{args.epochs} epochs, {args.threads} thread(s), {args.repeats} interleaved repeats (median)")
    rows, models = [], {}
    for hidden in sizes:
        times: dict[str, list[float]] = {"sklearn": [], "lightning": [], "fused": []}
        for rep in range(args.repeats):
            sk, t = fit_sklearn(x, hidden, args.epochs, args.batch_size, args.lr, rep)
            times["sklearn"].append(t)
            vz, epoch_times = fit_vizkit_rbm(train, test, hidden=hidden, epochs=args.epochs,
                                             batch_size=args.batch_size, lr=args.lr, seed=rep)
            times["lightning"].append(statistics.median(epoch_times))
            times["fused"].append(fused_loop(train, hidden, args.epochs, args.batch_size, args.lr))
            if rep == 0:
                models[hidden] = (sk, vz)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((hidden, med))
    print()
    print("| hidden | scikit-learn s/epoch | vizkit (Lightning) s/epoch | vizkit fused loop s/epoch "
          "| speed-up Lightning | speed-up fused |")
    print("|---:|---:|---:|---:|---:|---:|")
    for hidden, med in rows:
        print(f"| {hidden} | {med['sklearn']:.3f} | {med['lightning']:.3f} | {med['fused']:.3f} "
              f"| {med['sklearn'] / med['lightning']:.2f}x | {med['sklearn'] / med['fused']:.2f}x |")
    if args.ll_hidden in models:
        from vizkit import from_sklearn_rbm
        from vizkit.models.rbm import log_likelihood_exact

        sk, vz = models[args.ll_hidden]
        flat = test.reshape(len(test), -1)
        ll_sk = float(log_likelihood_exact(from_sklearn_rbm(sk).rbm(0), flat).mean())
        ll_vz = float(log_likelihood_exact(vz.rbm(0), flat).mean())
        print()
        print(f"exact test log-likelihood, {args.ll_hidden} hidden units, {args.epochs} epochs (nats per image):")
        print("| scikit-learn BernoulliRBM | vizkit rbm --trainer pcd |")
        print("|---:|---:|")
        print(f"| {ll_sk:.2f} | {ll_vz:.2f} |")


if __name__ == "__main__":
    main()
