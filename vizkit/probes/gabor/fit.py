"""Batched least-squares fits of a 2-D Gabor to many filters at once, and the Gabor-like measure.

The model of one filter (pixel coordinates x = column, y = row, origin at the top-left pixel):

    g(x, y) = exp(-u²/(2σu²) - v²/(2σv²)) · (a·cos(2πf·u) + b·sin(2πf·u)) + c
    u = (x - x0)·cos θ + (y - y0)·sin θ      (along the carrier, across the stripes)
    v = -(x - x0)·sin θ + (y - y0)·cos θ     (along the edge)

so amplitude = √(a² + b²) and phase φ = atan2(-b, a) (g = A·E·cos(2πf·u + φ) + c). Writing the
carrier with (a, b) instead of (A, φ) keeps the model linear in (a, b, c), which gives every start
its best amplitude, phase and offset in closed form before the non-linear search begins.

Why Levenberg–Marquardt over one batch: all filters × all starts are one tensor [B, 9]; the
Jacobian [B, pixels, 9] is written out in closed form and each step solves B
9×9 systems with one ``torch.linalg.solve``, so a step costs a few large tensor operations instead
of a Python loop over filters and starts (benchmarks/gabor_fit.py compares a loop of scipy fits).

Starts: the strongest peaks of the zero-padded amplitude spectrum give frequency and orientation
(the classical initialisation), the energy centroid gives the centre, and each peak is tried with
a narrow and a wide envelope. The fit with the largest R² wins.

The measure (docs/methods.md §gabor): a filter is Gabor-like when
R² ≥ 0.5, f ≥ 0.06 cycles/px, 2σu·f ≥ 0.3 and 2σu ≤ side/2 (side = the smaller patch side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "MIN_CYCLES",
    "MIN_FREQUENCY",
    "MIN_R2",
    "PARAMS",
    "GaborFit",
    "fit_gabors",
    "gabor_images",
    "gabor_like",
]

#: Fit quality, carrier frequency (cycles/px) and cycles across the envelope that make a filter Gabor-like.
MIN_R2 = 0.5
MIN_FREQUENCY = 0.06
MIN_CYCLES = 0.3
#: Envelope extent along the carrier (2σu) as a share of the patch side, at most.
MAX_EXTENT = 0.5

#: Columns of the raw parameter tensor.
PARAMS = ("x0", "y0", "log_su", "log_sv", "theta", "freq", "a", "b", "c")
_X0, _Y0, _LSU, _LSV, _TH, _F, _A, _B, _C = range(9)


@dataclass
class GaborFit:
    """Fitted parameters per filter (numpy, one entry per filter) and the fitted images."""

    x0: np.ndarray  # centre column (px)
    y0: np.ndarray  # centre row (px)
    sigma_u: np.ndarray  # envelope std along the carrier (px)
    sigma_v: np.ndarray  # envelope std along the edge (px)
    theta: np.ndarray  # carrier direction in [0, π) (radians, from the +x axis towards +y, i.e. down)
    frequency: np.ndarray  # cycles per pixel
    phase: np.ndarray  # radians in (-π, π]
    amplitude: np.ndarray
    offset: np.ndarray
    r2: np.ndarray  # share of the filter's variance the fit explains
    fitted: np.ndarray  # [N, H, W] the fitted Gabors
    gabor_like: np.ndarray  # bool [N]: the measure
    side: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "x0": self.x0, "y0": self.y0, "sigma_u": self.sigma_u, "sigma_v": self.sigma_v,
            "theta": self.theta, "frequency": self.frequency, "phase": self.phase,
            "amplitude": self.amplitude, "offset": self.offset, "r2": self.r2,
            "gabor_like": self.gabor_like, "fitted": self.fitted,
        }

    @property
    def fraction(self) -> float:
        return float(self.gabor_like.mean()) if self.gabor_like.size else 0.0


def _grid(h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return xs.reshape(-1), ys.reshape(-1)


def _model_and_jacobian(p: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                        jacobian: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gabors of parameter rows ``p`` [B, 9] at the pixels [B, D], and (closed form) their Jacobian [B, D, 9]."""
    col = [p[:, k:k + 1] for k in range(9)]
    dx, dy = xs - col[_X0], ys - col[_Y0]
    cos_t, sin_t = torch.cos(col[_TH]), torch.sin(col[_TH])
    u = dx * cos_t + dy * sin_t
    v = -dx * sin_t + dy * cos_t
    iu, iv = torch.exp(-2 * col[_LSU]), torch.exp(-2 * col[_LSV])
    env = torch.exp(-0.5 * u * u * iu - 0.5 * v * v * iv)
    omega = 2 * math.pi * col[_F]
    cos_w, sin_w = torch.cos(omega * u), torch.sin(omega * u)
    carrier = col[_A] * cos_w + col[_B] * sin_w
    value = env * carrier + col[_C]
    if not jacobian:
        return value, None
    ek = env * carrier
    quad = env * (col[_B] * cos_w - col[_A] * sin_w)  # d carrier / d(ωu), times the envelope
    dg_du = -u * iu * ek + omega * quad
    dg_dv = -v * iv * ek
    jac = torch.stack([
        -dg_du * cos_t + dg_dv * sin_t,  # x0
        -dg_du * sin_t - dg_dv * cos_t,  # y0
        ek * u * u * iu,  # log σu
        ek * v * v * iv,  # log σv
        dg_du * v - dg_dv * u,  # θ
        2 * math.pi * u * quad,  # f
        env * cos_w, env * sin_w, torch.ones_like(value),  # a, b, c
    ], dim=2)
    return value, jac


def _batched_model(p: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    return _model_and_jacobian(p, xs, ys, jacobian=False)[0]


def _linear_part(p: torch.Tensor, target: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Set (a, b, c) of every row of ``p`` to their least-squares values given the other parameters."""
    basis = []
    for col in (_A, _B, _C):
        q = p.clone()
        q[:, _A:] = 0.0
        q[:, col] = 1.0
        basis.append(_batched_model(q, xs, ys))
    design = torch.stack(basis, dim=2)  # [B, D, 3]
    gram = design.transpose(1, 2) @ design + 1e-9 * torch.eye(3, dtype=p.dtype)
    coef = torch.linalg.solve(gram, design.transpose(1, 2) @ target.unsqueeze(2)).squeeze(2)
    out = p.clone()
    out[:, _A:] = coef
    return out


def _starts(filters: torch.Tensor, peaks: int, pad: int) -> torch.Tensor:
    """Initial parameters [N, S, 9]: ``peaks`` spectral peaks × two envelope widths per filter."""
    n, h, w = filters.shape
    dtype = filters.dtype
    centred = filters - filters.mean(dim=(1, 2), keepdim=True)
    spec = torch.fft.fft2(centred, s=(pad, pad)).abs()  # [N, pad, pad]
    fy = torch.fft.fftfreq(pad, dtype=dtype)
    fx = torch.fft.fftfreq(pad, dtype=dtype)
    fyy, fxx = torch.meshgrid(fy, fx, indexing="ij")
    # one half-plane (a real filter's spectrum is symmetric), DC excluded
    half = (fxx > 0) | ((fxx == 0) & (fyy > 0))
    spec = torch.where(half, spec, torch.zeros((), dtype=dtype)).reshape(n, -1)
    top = spec.topk(peaks, dim=1).indices  # [N, peaks]
    pfx, pfy = fxx.reshape(-1)[top], fyy.reshape(-1)[top]
    freq = torch.sqrt(pfx ** 2 + pfy ** 2)
    theta = torch.atan2(pfy, pfx)
    energy = centred ** 2
    total = energy.sum(dim=(1, 2)).clamp_min(1e-30)
    xs, ys = _grid(h, w, dtype)
    ex = (energy.reshape(n, -1) * xs).sum(1) / total
    ey = (energy.reshape(n, -1) * ys).sum(1) / total
    side = min(h, w)
    widths = torch.tensor([side / 8.0, side / 4.0], dtype=dtype)
    starts = torch.zeros(n, peaks, len(widths), 9, dtype=dtype)
    starts[..., _X0] = ex[:, None, None]
    starts[..., _Y0] = ey[:, None, None]
    starts[..., _LSU] = torch.log(widths)[None, None, :]
    starts[..., _LSV] = torch.log(widths)[None, None, :]
    starts[..., _TH] = theta[:, :, None]
    starts[..., _F] = freq[:, :, None]
    return starts.reshape(n, peaks * len(widths), 9)


def _clamp(p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Keep the search in a box where the model is meaningful (centre near the patch, f ≤ Nyquist)."""
    side = float(max(h, w))
    out = p.clone()
    out[:, _X0] = p[:, _X0].clamp(-0.5 * w, 1.5 * w)
    out[:, _Y0] = p[:, _Y0].clamp(-0.5 * h, 1.5 * h)
    out[:, _LSU] = p[:, _LSU].clamp(math.log(0.3), math.log(4 * side))
    out[:, _LSV] = p[:, _LSV].clamp(math.log(0.3), math.log(4 * side))
    out[:, _F] = p[:, _F].clamp(0.0, 0.5)
    return out


def _levenberg_marquardt(p: torch.Tensor, target: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                         h: int, w: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Levenberg–Marquardt: every row of ``p`` [B, 9] fits the matching row of ``target``."""
    lam = torch.full((p.shape[0],), 1e-2, dtype=p.dtype)
    resid = _batched_model(p, xs, ys) - target
    cost = (resid ** 2).sum(1)
    eye = torch.eye(9, dtype=p.dtype)
    for _ in range(steps):
        jmat = _model_and_jacobian(p, xs, ys)[1]  # [B, D, 9]
        jtj = jmat.transpose(1, 2) @ jmat
        grad = (jmat.transpose(1, 2) @ resid.unsqueeze(2)).squeeze(2)
        damp = lam[:, None, None] * (torch.diagonal(jtj, dim1=1, dim2=2).unsqueeze(2) * eye + 1e-9 * eye)
        step = torch.linalg.solve(jtj + damp, -grad.unsqueeze(2)).squeeze(2)
        trial = _clamp(p + step, h, w)
        trial_resid = _batched_model(trial, xs, ys) - target
        trial_cost = (trial_resid ** 2).sum(1)
        better = torch.isfinite(trial_cost) & (trial_cost < cost)
        p = torch.where(better[:, None], trial, p)
        resid = torch.where(better[:, None], trial_resid, resid)
        cost = torch.where(better, trial_cost, cost)
        lam = torch.where(better, lam * 0.3, lam * 4.0).clamp(1e-7, 1e7)
    return p, cost


def gabor_like(r2: np.ndarray, frequency: np.ndarray, sigma_u: np.ndarray, side: int) -> np.ndarray:
    """The measure of docs/methods.md §gabor, elementwise (bool array)."""
    extent = 2.0 * np.asarray(sigma_u)
    freq = np.asarray(frequency)
    return ((np.asarray(r2) >= MIN_R2) & (freq >= MIN_FREQUENCY) & (extent * freq >= MIN_CYCLES)
            & (extent <= MAX_EXTENT * side))


def gabor_images(params: torch.Tensor | np.ndarray, h: int, w: int) -> np.ndarray:
    """Images [N, h, w] of raw parameter rows [N, 9] (columns as in :data:`PARAMS`)."""
    p = torch.as_tensor(np.asarray(params), dtype=torch.float64)
    xs, ys = _grid(h, w, torch.float64)
    return _batched_model(p, xs, ys).reshape(-1, h, w).numpy()


def fit_gabors(filters: np.ndarray | torch.Tensor, *, peaks: int = 6, steps: int = 40,
               chunk: int = 512) -> GaborFit:
    """Fit a Gabor to each of ``filters`` [N, H, W] (all at once, chunked over filters).

    ``peaks`` spectral peaks × 2 envelope widths are the starts of every filter; ``steps``
    Levenberg–Marquardt iterations refine all of them together; the best start per filter is kept.
    """
    f = torch.as_tensor(np.asarray(filters, dtype=np.float64))
    if f.ndim != 3:
        raise ValueError(f"filters must be [N, H, W], got shape {tuple(f.shape)}")
    n, h, w = f.shape
    pad = max(32, 1 << math.ceil(math.log2(2 * max(h, w))))
    peaks = max(1, min(peaks, (pad * pad) // 2 - 1))
    xs, ys = _grid(h, w, torch.float64)
    best_rows = []
    for lo in range(0, n, chunk):
        block = f[lo:lo + chunk]
        nb = block.shape[0]
        starts = _starts(block, peaks, pad)  # [nb, S, 9]
        s = starts.shape[1]
        target = block.reshape(nb, 1, -1).expand(nb, s, h * w).reshape(nb * s, -1)
        p0 = _linear_part(starts.reshape(nb * s, 9), target, xs, ys)
        p, cost = _levenberg_marquardt(p0, target, xs, ys, h, w, steps)
        pick = cost.reshape(nb, s).argmin(dim=1)
        best_rows.append(p.reshape(nb, s, 9)[torch.arange(nb), pick])
    p = torch.cat(best_rows) if best_rows else torch.zeros(0, 9, dtype=torch.float64)
    fitted = gabor_images(p, h, w) if n else np.zeros((0, h, w))
    flat = f.reshape(n, -1).numpy()
    ss_tot = ((flat - flat.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    ss_res = ((flat - fitted.reshape(n, -1)) ** 2).sum(axis=1)
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    pn = p.numpy()
    theta, phase = pn[:, _TH], np.arctan2(-pn[:, _B], pn[:, _A])
    # θ and θ + π describe the same Gabor with the phase negated (u → -u)
    flip = np.floor(theta / np.pi).astype(np.int64) % 2 == 1
    theta = np.mod(theta, np.pi)
    phase = np.where(flip, -phase, phase)
    phase = np.angle(np.exp(1j * phase))
    sigma_u, sigma_v = np.exp(pn[:, _LSU]), np.exp(pn[:, _LSV])
    side = min(h, w)
    return GaborFit(
        x0=pn[:, _X0], y0=pn[:, _Y0], sigma_u=sigma_u, sigma_v=sigma_v, theta=theta,
        frequency=pn[:, _F], phase=phase, amplitude=np.hypot(pn[:, _A], pn[:, _B]), offset=pn[:, _C],
        r2=r2, fitted=fitted, gabor_like=gabor_like(r2, pn[:, _F], sigma_u, side), side=side,
    )
