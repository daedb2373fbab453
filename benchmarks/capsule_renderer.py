"""Capsule renderer: all images × capsules in one grid_sample call vs one call per capsule.

Both paths draw the same images (checked here before timing). Measured side by side in one run:
(1) the renderer alone, forward + backward, for the MNIST configuration (9 ACs, 11×11 templates,
28×28 images, batch 100); (2) a whole training step of the default capsule model (25 CCs × 9 ACs,
encoder 3×666) with the model's batched renderer vs the same model patched to render capsule by
capsule, in images per second.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/capsule_renderer.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import torch

from vizkit.models.capsule import model as capsule_model
from vizkit.models.capsule import poses
from vizkit.models.capsule.renderer import render, render_one_by_one


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU figures are not measured here)")
    args = parser.parse_args()
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    gen = torch.Generator(device=args.device).manual_seed(0)
    b, k = args.batch, 9
    templates = torch.rand(k, 11, 11, generator=gen, device=dev, requires_grad=True)
    nice = (torch.tensor(poses.IDENTITY_NICE, device=dev) * 2
            + 0.2 * torch.randn(b, k, 6, generator=gen, device=dev)).requires_grad_()
    intensity = torch.rand(b, k, generator=gen, device=dev, requires_grad=True)

    def step(fn):
        def run():
            out = fn(templates, poses.nice_to_matrix(nice), intensity, (28, 28))
            out.square().sum().backward()
        return run

    same = torch.allclose(render(templates, poses.nice_to_matrix(nice), intensity, (28, 28)),
                          render_one_by_one(templates, poses.nice_to_matrix(nice), intensity, (28, 28)), atol=1e-6)
    t_batched = best_time(step(render), args.repeats)
    t_loop = best_time(step(render_one_by_one), args.repeats)
    where = f"{args.threads} CPU thread(s)" if dev.type == "cpu" else str(dev)
    print(f"renderer fwd+bwd, {b} images x {k} capsules, {where}; identical output: {same}")
    print(f"  batched      {b / t_batched:10.0f} images/s")
    print(f"  per capsule  {b / t_loop:10.0f} images/s   batched is {t_loop / t_batched:.2f}x faster")

    torch.manual_seed(0)
    model = capsule_model.CapsuleAE([1, 28, 28]).to(dev).train()
    x = torch.rand(b, 1, 28, 28, generator=gen, device=dev)
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def train_step():
        terms = model.loss_terms(x)
        loss = sum(v for name, v in terms.items() if name != "mse")
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_model = best_time(train_step, args.repeats)
    capsule_model.render = render_one_by_one  # the model's decoder now draws capsule by capsule
    t_model_loop = best_time(train_step, args.repeats)
    capsule_model.render = render
    print(f"training step of the default capsule model (25 CCs x 9 ACs, 3x666 encoder), batch {b}:")
    print(f"  batched      {b / t_model:10.0f} images/s  ({4000 / b * t_model:.1f} s per epoch of the 4,000-image subset)")
    print(f"  per capsule  {b / t_model_loop:10.0f} images/s   batched is {t_model_loop / t_model:.2f}x faster")


if __name__ == "__main__":
    main()
