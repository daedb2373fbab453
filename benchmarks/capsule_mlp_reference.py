"""Can any autoencoder beat PCA-37 on the MNIST subset within 50 epochs? (docs/models/capsule.md)

A plain fully connected autoencoder with a 37-number code (as many as one composite capsule's pose
and distortion variables): 784-666-666-37-666-666-784, ReLU hidden units, logistic output, Adam with
a cosine schedule, batch 100, on the capsule benchmarks' split (the harness's seed-0 4,000 / 1,000
split of the offline subset). Printed beside PCA with 37 components on the same split. It tells
whether the capsule model's 50-epoch shortfall is the data budget (then no autoencoder would beat
PCA) or the capsule model's own learning speed.

    .venv/bin/python benchmarks/capsule_mlp_reference.py [--epochs 50]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from vizkit.models.capsule.evaluate import pca_mse
from vizkit.training import build_data

CODE = 37


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="the split (as the harness draws it) and the init")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dm = build_data("mnist", {}, 100, args.seed)
    xtr, xte = dm.train_tensor().flatten(1), dm.test_tensor().flatten(1)
    pca = pca_mse(xtr.numpy(), xte.numpy(), CODE)
    print(f"PCA-{CODE}: train {pca['train_mse']:.4f}, held-out {pca['test_mse']:.4f}")
    steps_per_epoch = -(-len(xtr) // 100)
    for lr in (1e-3, 3e-3):
        torch.manual_seed(args.seed)
        net = nn.Sequential(nn.Linear(784, 666), nn.ReLU(), nn.Linear(666, 666), nn.ReLU(), nn.Linear(666, CODE),
                            nn.Linear(CODE, 666), nn.ReLU(), nn.Linear(666, 666), nn.ReLU(), nn.Linear(666, 784),
                            nn.Sigmoid())
        opt = torch.optim.Adam(net.parameters(), lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps_per_epoch)
        start = time.time()
        for _ in range(args.epochs):
            for idx in torch.randperm(len(xtr)).split(100):
                loss = (net(xtr[idx]) - xtr[idx]).square().sum(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            train, test = (float((net(x) - x).square().mean()) for x in (xtr, xte))
        print(f"MLP autoencoder, code {CODE}, lr {lr:g}, {args.epochs} epochs ({time.time() - start:.0f} s): "
              f"train {train:.4f}, held-out {test:.4f}", flush=True)


if __name__ == "__main__":
    main()
