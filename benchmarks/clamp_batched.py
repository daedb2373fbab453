"""clamp: (unit × chain) in one batch vs one unit at a time, on a 784-500-500 DBN.

36 units × 10 chains × 1,000 Gibbs steps (10 samples, one every 100 steps, no burn-in), both
paths through the model's own ``clamped_sample``, timed in one run. Random weights: the cost of a
Gibbs step does not depend on what the weights are.

    python benchmarks/clamp_batched.py [--threads 1] [--units 36]
"""

from __future__ import annotations

import argparse
import time

import torch

from vizkit.models.rbm import DBN


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--units", type=int, default=36)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = DBN(input_shape=[1, 28, 28], layers="500,500")
    with torch.no_grad():
        for w in model.weight:
            w.normal_(0, 0.05)
    units = torch.arange(args.units)
    kwargs = dict(chains=10, samples=10, every=100, burn_in=0, probabilities=True)

    start = time.perf_counter()
    batched = model.clamped_sample("h2", units, generator=torch.Generator().manual_seed(0), **kwargs)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    for u in units:
        model.clamped_sample("h2", u.reshape(1), generator=torch.Generator().manual_seed(0), **kwargs)
    t_loop = time.perf_counter() - start

    print(f"clamp, {args.units} units x 10 chains x 1000 Gibbs steps, 784-500-500 DBN, {args.threads} thread(s)")
    print(f"  batched (one call)      {t_batched:8.2f} s   output {tuple(batched.shape)}")
    print(f"  one unit at a time      {t_loop:8.2f} s")
    print(f"  speed-up                {t_loop / t_batched:8.1f} x")


if __name__ == "__main__":
    main()
