"""Batched Gabor fitting (vizkit.probes.gabor.fit) vs a Python loop of scipy least-squares fits.

Both fit the same 9-parameter Gabor from the same starts (the FFT-peak starts of the batched fit)
to the same filters: 64 FastICA unmixing filters of 12x12 natural-image patches (a realistic mix of
Gabor-like and other filters). The loop calls ``scipy.optimize.least_squares`` (trust-region
reflective with the same closed-form Jacobian) once per filter and start, which is what a
straightforward implementation does. Printed: seconds for each, the ratio, and the agreement of the
resulting R² and Gabor-like decisions, all measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/gabor_fit.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.optimize import least_squares
from sklearn.decomposition import FastICA

from vizkit.datasets.patches import _remove_dc, grey_images, patch_rng, sample_patches
from vizkit.probes.gabor.fit import _grid, _linear_part, _model_and_jacobian, _starts, fit_gabors, gabor_like


def filters(n: int = 64) -> np.ndarray:
    raw, _ = sample_patches(20000, 12, "train", patch_rng(0, "train"), grey_images("sklearn"))
    ica = FastICA(n_components=n, whiten="unit-variance", random_state=0, max_iter=400).fit(_remove_dc(raw))
    return ica.components_.reshape(n, 12, 12)


def scipy_loop(f: np.ndarray, peaks: int = 6) -> np.ndarray:
    """R² per filter from a Python loop of scipy fits over filters × starts."""
    n, h, w = f.shape
    t = torch.as_tensor(f, dtype=torch.float64)
    pad = 32
    starts = _starts(t, peaks, pad)
    xs, ys = _grid(h, w, torch.float64)
    r2 = np.zeros(n)
    for i in range(n):
        target = t[i].reshape(-1)
        best = np.inf
        for s in range(starts.shape[1]):
            p0 = _linear_part(starts[i, s][None], target[None], xs, ys)[0].numpy()

            def resid(p: np.ndarray, target: torch.Tensor = target) -> np.ndarray:
                v, _ = _model_and_jacobian(torch.as_tensor(p[None]), xs, ys, jacobian=False)
                return (v[0] - target).numpy()

            def jac(p: np.ndarray) -> np.ndarray:
                return _model_and_jacobian(torch.as_tensor(p[None]), xs, ys)[1][0].numpy()

            fit = least_squares(resid, p0, jac=jac, max_nfev=40)
            best = min(best, float((fit.fun ** 2).sum()))
        ss_tot = float(((f[i] - f[i].mean()) ** 2).sum())
        r2[i] = 1 - best / ss_tot
    return r2


def main() -> None:
    torch.set_num_threads(1)
    f = filters()
    clock = time.perf_counter()
    batched = fit_gabors(f)
    t_batched = time.perf_counter() - clock
    clock = time.perf_counter()
    r2_loop = scipy_loop(f)
    t_loop = time.perf_counter() - clock
    like_loop = gabor_like(r2_loop, batched.frequency, batched.sigma_u, 12)
    print(f"{len(f)} filters x 12 starts, 1 thread")
    print(f"batched Levenberg-Marquardt (torch): {t_batched:.2f} s")
    print(f"python loop of scipy least_squares : {t_loop:.2f} s   ratio {t_loop / t_batched:.1f}x")
    print(f"median R2 batched {np.median(batched.r2):.3f} vs loop {np.median(r2_loop):.3f}; "
          f"max |dR2| {np.abs(batched.r2 - r2_loop).max():.3f}")
    print(f"Gabor-like: batched {batched.fraction:.2f} (loop R2 with the batched shape parameters: "
          f"{like_loop.mean():.2f})")


if __name__ == "__main__":
    main()
