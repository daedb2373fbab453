"""CD-1 vs CD-10 vs PCD vs FPCD at 25 hidden units under the same time budget (Tieleman 2014, Fig. 3.1).

Each trainer gets the same wall-clock budget of training (fit's start-up excluded), spent as Lightning
training exactly like ``vizkit train rbm --hidden 25 --binarize`` (MNIST binarised afresh each time a
case is used), with the learning rate decaying linearly to zero over the budget.
A callback stops each run after the budget and sets the learning rate from the elapsed fraction
before every update, so a change in the machine's load changes the number of updates, not the
budget. The score is the exact
log-likelihood of the binarised test set (a sum over all 2^25 hidden states), in nats per image: the
thesis found PCD and FPCD best and CD-10 best among the CD variants.

    python benchmarks/rbm_trainers.py --budget 60 --figure docs/img/rbm-trainers-samples.png
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
from rbm_common import quiet

TRAINERS = {"CD-1": ("cd", 1), "CD-10": ("cd", 10), "PCD": ("pcd", 1), "FPCD": ("fpcd", 1)}


class TimeBudget(pl.Callback):
    """Stop after ``seconds`` of training (fit's start-up excluded), decaying the learning rate
    linearly to zero over that wall-clock time, so every trainer gets the same budget even when
    the machine's load changes during the run."""

    def __init__(self, seconds: float, lr: float) -> None:
        self.seconds, self.lr = seconds, lr
        self.start: float | None = None
        self.updates = 0
        self.elapsed = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        self.elapsed = now - self.start
        frac = self.elapsed / self.seconds
        if frac >= 1.0:
            trainer.should_stop = True
            return -1  # Lightning skips the rest of the epoch
        for group in module.optimizers().param_groups:
            group["lr"] = self.lr * (1.0 - frac)
        self.updates += 1


def train_for(dm, trainer: str, k: int, *, hidden: int, lr: float, weight_decay: float, seconds: float,
              seed: int):
    """A vizkit ``rbm`` trained for ``seconds``; returns (model, updates, training seconds)."""
    from vizkit.models.rbm import RBM

    pl.seed_everything(seed, verbose=False)
    # the model's own schedule is constant; the budget callback sets the decaying rate before each step
    model = RBM(input_shape=list(dm.input_shape), hidden=hidden, trainer=trainer, k=k, lr=lr,
                lr_schedule="constant", binarize=True, weight_decay=weight_decay, loglik="none")
    model.data_info = dm.describe()
    budget = TimeBudget(seconds, lr)
    fit = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, callbacks=[budget])
    fit.fit(model, datamodule=dm)
    return model.eval(), budget.updates, budget.elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of training per trainer")
    ap.add_argument("--hidden", type=int, default=25)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--data-dir", default=None, help="full MNIST IDX files (default: offline 5,000 subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a shared machine)")
    ap.add_argument("--figure", default=None, help="also write a PNG of free-running samples of each model")
    args = ap.parse_args()
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vizkit.datasets import mnist
    from vizkit.models.rbm import log_partition_exact
    from vizkit.models.rbm.evaluate import log_likelihood_exact

    dm = mnist.build(data_dir=args.data_dir, batch_size=args.batch_size, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    test = (torch.rand(dm.test_tensor().shape, generator=gen) < dm.test_tensor()).float().reshape(len(dm.test_tensor()), -1)
    print(f"data: {dm.stats['n_train']} train / {len(test)} test MNIST, binarised each use; {args.hidden} hidden, "
          f"batch {args.batch_size}, lr {args.lr} -> 0 linearly, weight decay {args.weight_decay}, "
          f"budget {args.budget:g} s per trainer")
    rows, models = [], {}
    for name, (trainer, k) in TRAINERS.items():
        model, steps, seconds = train_for(dm, trainer, k, hidden=args.hidden, lr=args.lr,
                                          weight_decay=args.weight_decay, seconds=args.budget, seed=args.seed)
        start = time.perf_counter()
        log_z = log_partition_exact(model.rbm(0))
        ll = float(log_likelihood_exact(model.rbm(0), test, log_z=log_z).mean())
        rows.append((name, steps, seconds, ll, time.perf_counter() - start))
        models[name] = model
        print(f"  {name}: {steps} updates in {seconds:.1f} s, exact test LL {ll:.2f} "
              f"(log Z {log_z:.2f}, evaluated in {rows[-1][4]:.0f} s)", flush=True)
    print()
    print("| trainer | updates in budget | training s | exact test log-likelihood (nats/image) |")
    print("|---|---:|---:|---:|")
    for name, steps, seconds, ll, _ in rows:
        print(f"| {name} | {steps} | {seconds:.1f} | {ll:.2f} |")
    if args.figure:
        write_samples_figure(models, args.figure, args.seed)
        print(f"\nwrote {args.figure}")


def write_samples_figure(models: dict, path: str, seed: int, chains: int = 12, steps: int = 1000) -> None:
    """One row per trainer: ``chains`` independent chains after ``steps`` Gibbs steps."""
    import numpy as np

    from vizkit.figure import as_images, image_grid
    from vizkit.output import figure_png

    rows = []
    for model in models.values():
        gen = torch.Generator().manual_seed(seed)
        rows.append(model.sample(chains=chains, every=steps, generator=gen).reshape(chains, -1).numpy())
    images = as_images(np.concatenate(rows), models[next(iter(models))].input_shape)
    fig = image_grid(images, ncols=chains, mode="minmax", shared_scale=True, row_labels=list(models),
                     col_labels=[str(c) for c in range(chains)],
                     title=f"{steps} Gibbs steps from random states, {chains} chains per trainer")
    fig.axes[0].set_ylabel("trainer", fontsize=8)
    fig.axes[0].set_xlabel("chain; pixel probabilities E[x | h] on one grey scale (lowest black, highest white)",
                           fontsize=8)
    with open(path, "wb") as fh:
        fh.write(figure_png(fig))


if __name__ == "__main__":
    main()
