"""clamp: (unit × chain) in one batch vs one unit at a time, on a 784-500-500 DBN.

The workload of the issue: 36 units of h2 × 10 chains × 1,000 Gibbs steps (10 samples, one every
100 steps, no burn-in). Every path goes through the model's own ``clamped_sample`` (what the
``clamp`` probe runs), timed in one run. Random weights: a Gibbs step costs the same whatever the
weights are.

* **batched**: one call, 360 rows (36 units × 10 chains).
* **one unit at a time**: 36 calls, each with its 10 chains batched (the baseline of the issue).
  Chains share random numbers across units (common random numbers), so both paths draw the same
  samples for a unit, up to float rounding; the script counts the units that come out bit-identical.
* **one unit and one chain at a time**: 360 single-row calls, the loop the paper's procedure
  suggests. Timed on ``--chain-runs`` of them and extrapolated linearly (each call is
  independent and identical in cost).

Why the first ratio is bounded on a CPU: a Gibbs step is two [rows, 500]·[500, 500] products
plus, per half-step, uniform random numbers for one unit's 10 chains (shared by all units). The
table at the end times the pieces alone at 1, 10 and 360 rows: the matrix product is only ~1.6×
more efficient per row at 360 rows than at 10, so once the per-unit loop batches its 10 chains,
batching over units removes per-call overhead and that efficiency gap, not work. On a GPU
a 10-row product leaves the device idle and the ratio is large; pass ``--device cuda`` there.

    python benchmarks/clamp_batched.py [--threads 1] [--units 36] [--chain-runs 36] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from vizkit.models.rbm import DBN

CHAINS, SAMPLES, EVERY = 10, 10, 100
KWARGS = dict(chains=CHAINS, samples=SAMPLES, every=EVERY, burn_in=0, probabilities=True)


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def per_call(fn, repeats: int, device: str) -> float:
    fn()
    return timed(lambda: [fn() for _ in range(repeats)], device) / repeats


def pieces(rows: int, device: str) -> tuple[float, float]:
    """Seconds for one [rows, 500]·[500, 500] product and for rows × 500 uniforms."""
    gen = torch.Generator(device=device).manual_seed(0)
    w = torch.randn(500, 500, device=device) * 0.05
    v = (torch.rand(rows, 500, device=device, generator=gen) < 0.5).float()
    bias = torch.zeros(500, device=device)
    gemm = per_call(lambda: torch.addmm(bias, v, w), 200, device)
    rng = per_call(lambda: torch.rand(v.shape, generator=gen, device=device), 200, device)
    return gemm, rng


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--units", type=int, default=36)
    parser.add_argument("--chain-runs", type=int, default=36,
                        help="single-chain calls to time for the extrapolated third row (0 skips it)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    model = DBN(input_shape=[1, 28, 28], layers="500,500").to(device)
    with torch.no_grad():
        for w in model.weight:
            w.normal_(0, 0.05)
    units = torch.arange(args.units)

    def gen() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(0)

    batched = None

    def run_batched() -> None:
        nonlocal batched
        batched = model.clamped_sample("h2", units, generator=gen(), **KWARGS)

    singles = []

    def run_units() -> None:
        for u in units:
            singles.append(model.clamped_sample("h2", u.reshape(1), generator=gen(), **KWARGS))

    def run_chains(n: int) -> None:
        for i in range(n):
            model.clamped_sample("h2", units[i % len(units)].reshape(1), generator=gen(),
                                 **{**KWARGS, "chains": 1})

    model.clamped_sample("h2", units[:1], generator=gen(), **{**KWARGS, "every": 2})  # warm-up
    t_batched = timed(run_batched, device)
    t_units = timed(run_units, device)
    total_chains = len(units) * CHAINS
    t_chains = (timed(lambda: run_chains(args.chain_runs), device) * total_chains / args.chain_runs
                if args.chain_runs else float("nan"))

    steps = SAMPLES * EVERY
    print(f"clamp, {len(units)} units x {CHAINS} chains x {steps} Gibbs steps, 784-500-500 DBN, "
          f"{device}, {args.threads} thread(s)")
    print(f"  {'path':44s} {'seconds':>9s} {'batched is':>11s}")
    print(f"  {'batched: one call, ' + str(total_chains) + ' rows':44s} {t_batched:9.2f}")
    print(f"  {'one unit at a time (10 chains per call)':44s} {t_units:9.2f} {t_units / t_batched:10.1f}x")
    if args.chain_runs:
        label = f"one unit, one chain at a time ({args.chain_runs} of {total_chains} timed)"
        print(f"  {label:44s} {t_chains:9.2f} {t_chains / t_batched:10.1f}x")
    # Common random numbers: a unit's chains use the same random numbers alone or in a batch, so the
    # two paths agree except where float rounding (GEMM at 10 vs 360 rows) flips a Bernoulli draw.
    same = sum(bool(torch.equal(one[0], batched[i])) for i, one in enumerate(singles))
    print(f"  output {tuple(batched.shape)}; units whose samples are bit-identical in both paths: "
          f"{same} of {len(units)}")

    print("\n  pieces of one half-step, per row (why the ratio is what it is):")
    print(f"  {'rows':>6s} {'GEMM us/row':>12s} {'GFLOP/s':>8s} {'uniforms ns/number':>19s}")
    for rows in (1, CHAINS, total_chains):
        gemm, rng = pieces(rows, device)
        print(f"  {rows:6d} {gemm / rows * 1e6:12.2f} {2 * rows * 500 * 500 / gemm / 1e9:8.1f} "
              f"{rng / (rows * 500) * 1e9:19.2f}")


if __name__ == "__main__":
    main()
