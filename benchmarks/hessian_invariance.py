"""Invariance analysis cost: vizkit's Hessian-vector products vs a finite-difference Hessian, and 224×224.

Run from the repository root: ``python benchmarks/hessian_invariance.py`` (about two minutes on two
CPU cores). Both parts are measured in one run, each in a fresh child process so that the peak
memory (ru_maxrss) belongs to that part alone.

1. One unit of a 784-input network (an SDAE-like 784-256-64 sigmoid stack) at its optimum on the
   sphere: top-5 invariances + the least invariant direction by
   - the original code's approach: a Hessian built by finite differences of 784 gradient
     evaluations, one input pixel at a time, then projected onto the tangent space and diagonalised;
   - vizkit ``full``: H from 784 batched Hessian-vector products (torch.func), then the same;
   - vizkit ``lanczos``: block Lanczos on products only.
   Printed: seconds, the speed ratio, and agreement (eigenvalues, angles) with the float64 FD result.
2. One unit of a small convnet (softplus) on 3×224×224 inputs — 150,528 dimensions, where H would
   have 2.3·10¹⁰ entries — by Lanczos: seconds and peak resident memory (goal: < 1 min, < 2 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn

import vizkit
from vizkit.probes.hessian.curvature import (
    SphereCurvature,
    angle_between,
    full_spectrum,
    lanczos_spectrum,
    refine_maximum,
    tangent_basis,
    unit_objective,
)

TOP = 5


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mlp_784() -> vizkit.WrappedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 64), nn.Sigmoid())
    for layer in (net[1], net[3]):
        nn.init.normal_(layer.weight, std=0.1)
        nn.init.zeros_(layer.bias)
    return vizkit.wrap(net, input_shape=(1, 28, 28), layers=["4"], data_info={"stats": {"mean_norm": 9.0}})


def optimum(model: vizkit.WrappedModel, layer: str, unit: int, shape: tuple[int, ...], rho: float,
            steps: int, restarts: int) -> tuple[torch.Tensor, float]:
    clock = time.perf_counter()
    res = vizkit.run_probe("actmax", model, layer, units=[unit], seed=0, steps=steps, restarts=restarts, rho=rho,
                           panel=0)
    x = torch.as_tensor(res.arrays["stimuli"]).reshape(1, *shape)
    x, _ = refine_maximum(unit_objective(model, layer, torch.tensor([unit])), x)
    return x, time.perf_counter() - clock


def finite_difference_spectrum(model: vizkit.WrappedModel, layer: str, unit: int, x: torch.Tensor,
                               step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The original approach: H[:, i] = (∇h(x + step·eᵢ) − ∇h(x)) / step, one gradient per pixel."""
    flat = x.reshape(-1).double()
    d = flat.numel()

    def gradient(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        value = model.activations(z.reshape(1, *model.input_shape), layer).reshape(-1)[unit]
        return torch.autograd.grad(value, z)[0]

    g0 = gradient(flat)
    h = torch.empty(d, d, dtype=torch.float64)
    for i in range(d):
        bumped = flat.clone()
        bumped[i] += step
        h[:, i] = (gradient(bumped) - g0) / step
    h = 0.5 * (h + h.T)
    lam = float(g0 @ flat / (flat @ flat))
    basis = tangent_basis(flat[None].float())[0]
    mu, w = torch.linalg.eigh(basis.T @ h @ basis)
    mu = mu - lam
    order = torch.tensor(mu.abs().argsort()[:TOP].tolist() + [int(mu.argmin())])
    return mu[order], (basis @ w[:, order]).T


def part_784() -> dict[str, float]:
    model = mlp_784()
    unit, layer = 3, "4"
    x, opt_s = optimum(model, layer, unit, (1, 28, 28), 9.0, steps=500, restarts=3)
    objective = unit_objective(model, layer, torch.tensor([unit]))
    SphereCurvature.at(objective, x)  # warm-up, so no first-call overheads land in one column

    model.module.double()
    clock = time.perf_counter()
    fd_vals, fd_dirs = finite_difference_spectrum(model, layer, unit, x, step=1e-5)
    fd_s = time.perf_counter() - clock
    model.module.float()

    clock = time.perf_counter()
    curv = SphereCurvature.at(objective, x)
    full = full_spectrum(curv, top=TOP)
    full_s = time.perf_counter() - clock
    clock = time.perf_counter()
    curv = SphereCurvature.at(objective, x)
    lanczos = lanczos_spectrum(curv, top=TOP, generator=torch.Generator().manual_seed(0))
    lanczos_s = time.perf_counter() - clock

    def agreement(spec) -> tuple[float, float]:
        rel = ((spec.chosen[0] - fd_vals) / fd_vals).abs().max().item()
        return rel, angle_between(spec.directions[0], fd_dirs).max().item()

    full_rel, full_angle = agreement(full)
    lanczos_rel, lanczos_angle = agreement(lanczos)
    return {"optimum_s": opt_s, "fd_s": fd_s, "full_s": full_s, "lanczos_s": lanczos_s,
            "full_rel": full_rel, "full_angle": full_angle, "lanczos_rel": lanczos_rel,
            "lanczos_angle": lanczos_angle, "lanczos_basis": lanczos.basis_size,
            "eigenvalues": [float(v) for v in full.chosen[0]]}


def convnet_224() -> vizkit.WrappedModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 7, stride=2, padding=3), nn.Softplus(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.Softplus(), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.Softplus(),
    )
    return vizkit.wrap(net, input_shape=(3, 224, 224), layers=["7"], data_info={"stats": {"mean_norm": 400.0}})


def part_224() -> dict[str, float]:
    model = convnet_224()
    unit, layer = 5, "7"
    start = time.perf_counter()
    res = vizkit.run_probe("hessian", model, layer, units=[unit], seed=0, top=TOP, method="auto", videos=False,
                           steps=100, restarts=1)
    total = time.perf_counter() - start
    timings = res.meta["phase_timings"]
    return {"total_s": total, "curvature_s": timings["curvature_s"], "refine_s": timings["refine_s"],
            "actmax_s": timings["optimum_s"], "render_s": timings["render_s"], "method": res.meta["method"],
            "basis": res.meta["basis_size"], "products": res.meta["hessian_vector_products"],
            "peak_mb": peak_mb(), "warnings": res.meta["warnings"],
            "eigenvalues": res.arrays["eigenvalues"][0].tolist()}


def child(part: str, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--part", part, "--threads", str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("784", "224"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine's 2 cores by default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part:
        print(json.dumps(part_784() if args.part == "784" else part_224()))
        return
    print(f"load average before the run: {' '.join(open('/proc/loadavg').read().split()[:3])} "
          "(other jobs on the machine slow multi-threaded kernels down a lot; see the 1-thread rows)")
    a = child("784", args.threads)
    print(f"1) one unit, 784 inputs, top-5 invariances + least invariant ({args.threads} CPU threads)")
    print(f"   optimum (actmax 3x500 steps + Newton polish): {a['optimum_s']:.2f} s, not in the ratios below")
    print(f"   {'method':<44} {'seconds':>8} {'speed-up':>9} {'max rel. eig. diff':>19} {'max angle':>10}")
    print(f"   {'finite differences, 784 gradients (float64)':<44} {a['fd_s']:8.2f} {1.0:8.1f}x {'reference':>19} "
          f"{'':>10}")
    print(f"   {'vizkit full (784 batched HVPs + eigh)':<44} {a['full_s']:8.2f} {a['fd_s'] / a['full_s']:8.1f}x "
          f"{a['full_rel']:19.2e} {a['full_angle']:9.3f}°")
    print(f"   {'vizkit lanczos (' + str(a['lanczos_basis']) + ' vectors)':<44} {a['lanczos_s']:8.2f} "
          f"{a['fd_s'] / a['lanczos_s']:8.1f}x {a['lanczos_rel']:19.2e} {a['lanczos_angle']:9.3f}°")
    print(f"   eigenvalues: {', '.join(f'{v:.4g}' for v in a['eigenvalues'])}")
    for threads in sorted({args.threads, 1}, reverse=True):
        b = child("224", threads)
        print(f"2) one unit of a softplus convnet on 3x224x224 inputs (150,528 dims), whole hessian probe, no videos, "
              f"{threads} thread(s)")
        print(f"   method {b['method']}, Krylov basis {b['basis']}, {b['products']} Hessian-vector products")
        print(f"   eigensolver (the top-5 invariances) {b['curvature_s']:.1f} s; before it: actmax (100 steps) "
              f"{b['actmax_s']:.1f} s, Newton polish {b['refine_s']:.1f} s; figures {b['render_s']:.1f} s; "
              f"total {b['total_s']:.1f} s")
        print(f"   peak resident memory of the process: {b['peak_mb']:.0f} MB")
        print(f"   eigenvalues: {', '.join(f'{v:.4g}' for v in b['eigenvalues'])}; warnings: {b['warnings'] or 'none'}")


if __name__ == "__main__":
    main()
