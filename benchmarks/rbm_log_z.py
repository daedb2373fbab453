"""Exact log Z of a 25-hidden MNIST-sized RBM, side by side in one run: vizkit's float32 sum by
exponential factors (1 + e^{a_lo} e^{a_hi}, one log per term) against the softplus-per-term sum it
replaced (``logaddexp(a, 0)`` on every one of the 2^25 × 784 terms), and both against float64.

The RBM is random at the scale of a trained one (weights N(0, 0.3²), visible biases −1), so the
activations span the range where both exp and the softplus do real work.

    python benchmarks/rbm_log_z.py            # 1 thread, best of --repeat
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vizkit.models.rbm import RBMParams, log_partition_exact
    from vizkit.models.rbm.evaluate import _binary_sum_by_softplus, _states

    gen = torch.Generator().manual_seed(0)
    h, d = args.hidden, 784
    rbm = RBMParams(torch.randn(h, d, generator=gen) * 0.3, torch.randn(h, generator=gen) * 0.1,
                    torch.full((d,), -1.0), "binary")

    def softplus_sum() -> float:
        # the previous implementation, on the same split of the hidden states into halves
        n_lo = min(h, 10)
        lo, hi = _states(n_lo, torch.float32, "cpu"), _states(h - n_lo, torch.float32, "cpu")
        act_lo = torch.addmm(rbm.visible_bias, lo, rbm.weight[:n_lo])
        act_hi = hi @ rbm.weight[n_lo:]
        return _binary_sum_by_softplus(act_lo, act_hi, lo @ rbm.hidden_bias[:n_lo], hi @ rbm.hidden_bias[n_lo:],
                                       None, h)

    def timed(fn) -> tuple[float, float]:
        best, value = float("inf"), float("nan")
        for _ in range(args.repeat):
            start = time.process_time()
            value = fn()
            best = min(best, time.process_time() - start)
        return value, best

    z_factors, t_factors = timed(lambda: log_partition_exact(rbm, dtype=torch.float32))
    z_softplus, t_softplus = timed(softplus_sum)
    print(f"{h} hidden × {d} visible ({2 ** h:,} hidden states), 1 thread, CPU seconds, best of {args.repeat}")
    print(f"  factors (vizkit):      {t_factors:7.2f} s   log Z {z_factors:.4f}")
    print(f"  softplus per term:     {t_softplus:7.2f} s   log Z {z_softplus:.4f}")
    print(f"  speed-up {t_softplus / t_factors:.2f}×, |difference| {abs(z_factors - z_softplus):.2e} nats")
    if h <= 20:
        z64 = log_partition_exact(rbm, dtype=torch.float64)
        print(f"  float64: log Z {z64:.6f} (factors off by {abs(z_factors - z64):.2e})")


if __name__ == "__main__":
    main()
