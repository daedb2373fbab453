"""The capsule mixture's manager during training: does it learn to choose? (docs/models/capsule.md)

A plain training loop (the model's own loss, optimiser and per-step learning-rate schedule over
the whole run, batch 100, no Lightning) on the offline
MNIST subset that prints, every ``--every`` epochs, the training loss terms, the held-out MSE, the
25-label clustering error (cluster = noise-free argmax y, named by its most confident training
image), how many components are used, the fraction of images with max y ≥ 0.9 and the manager's
mean entropy as % of log K (thesis: 90% and 2.5%). Model options go in ``--hp`` as JSON, e.g. the
old defaults that never chose:

    .venv/bin/python benchmarks/capsule_manager.py --epochs 10 \\
        --hp '{"manager_init": 1, "dropout": 0.5, "usage_penalty": 1}'
    .venv/bin/python benchmarks/capsule_manager.py --epochs 20          # the defaults
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vizkit.models.capsule.evaluate import capsule_cluster_error, reconstruction_mse
from vizkit.models.capsule.model import CapsuleAE
from vizkit.training import build_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="batch order, noise and dropout (the init is fixed)")
    parser.add_argument("--hp", default="{}", help="model options as JSON")
    parser.add_argument("--every", type=int, default=1, help="evaluate every N epochs")
    parser.add_argument("--save", default=None, help="write the trained model's state_dict and options here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    dm = build_data("mnist", {"limit": args.limit} if args.limit else {}, args.batch_size, 0)
    xtr, xte = dm.train_tensor(), dm.test_tensor()
    ytr, yte = dm.train_labels().numpy(), dm.test_labels().numpy()
    model = CapsuleAE(list(xtr.shape[1:]), **json.loads(args.hp))
    with torch.no_grad():
        spread = (model.eval().code(xtr[:500])[..., -1] * model.hparams["logit_gain"]).std(0).mean()
    print(f"initial noise-free logits: std over images {float(spread):.3g} (noise: uniform(0, "
          f"{model.hparams['noise']:g}))", flush=True)
    # the model's own optimiser and its per-step schedule over the whole run, as the harness does
    # (Lightning's estimated_stepping_batches = epochs x batches per epoch)
    opt = model.make_optimizer()
    total = args.epochs * -(-len(xtr) // args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: model.lr_factor(step, total))
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        totals: dict[str, float] = {}
        for idx in torch.randperm(len(xtr)).split(args.batch_size):
            terms = model.loss_terms(xtr[idx])
            loss = sum(v for k, v in terms.items() if k != "mse")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) * len(idx) / len(xtr)
        if epoch % args.every and epoch != args.epochs:
            continue
        model.eval()
        c = capsule_cluster_error(model, xtr, ytr, xte, yte)
        mse = reconstruction_mse(model, xte, dropout=False)
        print(f"epoch {epoch} ({time.time() - start:.0f} s, lr {sched.get_last_lr()[0]:.2g}) " + " ".join(f"{k}={v:.4g}" for k, v in totals.items())
              + f" | held-out mse {mse:.4f}, clustering error {c['error']:.3f}, {c['clusters_used']} used, "
              f"max y>=0.9 {c['max_y_ge_0.9']:.2f}, entropy {c['entropy_pct_of_logK']:.0f}% of log K", flush=True)
    if args.save:
        torch.save({"hparams": dict(model.hparams), "state_dict": model.state_dict()}, args.save)


if __name__ == "__main__":
    main()
