"""One training step of the default capsule model: the plain way vs the model's cheaper step, one run.

The model touches all of its ~4.4 million numbers three times per step beyond the forward/backward
(the thesis's weight decay on every number, the equalised layers' weight scaling, the optimiser).
The plain way: the decay through autograd (abs, sub, relu, square, sum and their backward), the
effective weight matrix built every forward, and ``torch.optim.Adam``'s default per-tensor loop on
the CPU. The model's way (vizkit/models/capsule/model.py): the decay as one autograd function
(clamp, sub, dot; one multiply backward), the [B, n_in] input scaled instead of the weights, and
fused Adam. Both compute the same loss (checked) on the same batches; printed: seconds per epoch of
the 4,000-image MNIST subset at each batch size and the ratio. Then the model's step with the
thesis's conservative optimiser (``--optimizer conservative``, four candidate steps per number)
against fused Adam, same batches, batch 100.

    .venv/bin/python benchmarks/capsule_step.py [--batches 100 25] [--steps-images 1200]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vizkit.models.capsule.model import CapsuleAE, ScaledLinear
from vizkit.training import build_data


def plain_forward(self: ScaledLinear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, self.weight, self.bias)


def step_plain(model: CapsuleAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    terms = model.loss_terms(x)  # built with weight_decay 0 below; the decay is added the plain way
    decay = sum(F.relu(p.abs() - 0.1).square().sum() for p in model.effective_parameters())
    loss = sum(v for k, v in terms.items() if k != "mse") + 1e-6 * decay
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def step_model(model: CapsuleAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    terms = model.loss_terms(x)
    loss = sum(v for k, v in terms.items() if k != "mse")
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 25])
    parser.add_argument("--steps-images", type=int, default=1200, help="images per timing (per batch size)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = build_data("mnist", {}, 100, 0).train_tensor()
    print(f"capsule training step, default model, 1 thread, {args.steps_images} images per timing")
    original_forward = ScaledLinear.forward
    for batch in args.batches:
        times = {}
        losses = {}
        for way in ("plain", "model"):
            torch.manual_seed(0)
            if way == "plain":
                ScaledLinear.forward = plain_forward  # type: ignore[method-assign]
                model = CapsuleAE([1, 28, 28], weight_decay=0.0).train()
                opt = torch.optim.Adam(model.parameters(), lr=model.hparams["lr"])
                step = step_plain
            else:
                ScaledLinear.forward = original_forward  # type: ignore[method-assign]
                model = CapsuleAE([1, 28, 28]).train()
                opt = model.make_optimizer()
                step = step_model
            idx = torch.arange(args.steps_images).split(batch)
            torch.manual_seed(1)
            losses[way] = float(step(model, opt, x[idx[0]]))  # first step: same weights, same noise
            start = time.perf_counter()
            for i in idx[1:]:
                step(model, opt, x[i])
            times[way] = (time.perf_counter() - start) / (args.steps_images - len(idx[0])) * len(x)
        ScaledLinear.forward = original_forward  # type: ignore[method-assign]
        same = abs(losses["plain"] - losses["model"]) <= 1e-4 * abs(losses["plain"])
        print(f"batch {batch:4d}: plain {times['plain']:.2f} s/epoch, model {times['model']:.2f} s/epoch, "
              f"{times['plain'] / times['model']:.2f}x; first-step loss {losses['plain']:.4f} vs "
              f"{losses['model']:.4f} ({'same' if same else 'DIFFERENT'})")
    per_epoch = {}
    idx = torch.arange(args.steps_images).split(100)
    for name in ("adam", "conservative"):
        torch.manual_seed(0)
        model = CapsuleAE([1, 28, 28], optimizer=name).train()
        opt = model.make_optimizer()
        step_model(model, opt, x[idx[0]])
        start = time.perf_counter()
        for i in idx[1:]:
            step_model(model, opt, x[i])
        per_epoch[name] = (time.perf_counter() - start) / (args.steps_images - len(idx[0])) * len(x)
    print(f"batch  100: fused Adam {per_epoch['adam']:.2f} s/epoch, conservative {per_epoch['conservative']:.2f} "
          f"s/epoch, {per_epoch['conservative'] / per_epoch['adam']:.2f}x Adam's time")


if __name__ == "__main__":
    main()
