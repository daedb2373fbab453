"""Is the capsule model's reconstruction limited by its decoder or by its encoder? (docs/models/capsule.md)

Reads a trained checkpoint (``vizkit train capsule --data mnist ...``), freezes the whole model and,
for each image, starts from the code the encoder gives (the pose and distortion variables of the
manager's noise-free choice) and improves only that code by gradient descent on the squared error
(Adam, the component fixed). If the error falls far below the encoder's, the decoder (templates,
distortion network, renderer) can already draw the digits well and the encoder is what has not
learned to find the codes: the "amortisation gap". Printed beside PCA with as many components as
one composite capsule's code, on the same split.

    .venv/bin/python benchmarks/capsule_gap.py CHECKPOINT.pt [--images 500] [--steps 300]
"""

from __future__ import annotations

import argparse

import torch

import vizkit
from vizkit.models.capsule.evaluate import pca_mse
from vizkit.models.capsule.model import POSE
from vizkit.training import build_data

REPORT = (0, 10, 30, 100, 300, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=500, help="images of each split to refine")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's rate on the code")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = vizkit.load(args.checkpoint).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = model.data_info
    options = {k: v for k, v in (info.get("options") or {}).items() if v is not None}
    dm = build_data(info["name"], options, 100, int(info.get("seed", 0)))
    xtr, xte = dm.train_tensor(), dm.test_tensor()
    pca = pca_mse(xtr.numpy(), xte.numpy(), POSE + model.n_dist)
    print(f"{args.checkpoint}: per-pixel MSE of the argmax component's reconstruction, the code refined by "
          f"k Adam steps (lr {args.lr:g}) with the decoder frozen; {args.images} images per split")
    for name, x, base in (("train", xtr, pca["train_mse"]), ("held-out", xte, pca["test_mse"])):
        x = x[: args.images]
        errors = model.refine_code(x, model.code(x), args.steps, args.lr, track=True)[3]
        steps = "  ".join(f"k={k}: {errors[k]:.4f}" for k in REPORT if k < len(errors))
        print(f"{name:9s} {steps}   | PCA-{POSE + model.n_dist} on this split: {base:.4f}", flush=True)


if __name__ == "__main__":
    main()
