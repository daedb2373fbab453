"""Batched projected gradient ascent on the sphere ‖x‖ = ρ, shared by the optimising probes.

Activation maximisation (Erhan et al. 2009) and everything built on its optima (invariance
analysis, Berkes & Wiskott) optimise many independent inputs at once: one per (unit, restart).
This module runs them as **one batch** and keeps each sample independent of the others:

* every sample has its own integer key, and all of its randomness (start point, jitter) comes
  from a counter-based hash of that key — never from its position in the batch — so a sample's
  trajectory does not depend on which other samples share the batch;
* step sizes, stopping and best-iterate bookkeeping are per sample; a sample that has stopped is
  masked out (frozen) while the rest of its chunk carries on, and a chunk ends when all of its
  samples have stopped;
* the batch is cut into chunks sized to a memory budget, measured from the tensors autograd
  actually saves for one sample.

The per-sample objectives are summed before differentiating: samples do not interact, so the
gradient of the sum with respect to sample b is exactly the gradient of sample b's objective.
(Layers that mix samples, such as BatchNorm in training mode, would break this; wrapped modules
run in eval mode.) Gradients are taken with ``torch.autograd.grad`` with respect to the input only,
so no weight gradients are computed or accumulated into the model.

Optional regularisers from the feature-visualisation literature — jitter, blur, total variation
and Lucid's decorrelated (FFT + colour) parametrisation — are all off by default, so the default
is the paper's method: gradient ascent from uniform noise, re-projected after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from .sphere import project_to_sphere, tangent_project

T = TypeVar("T")

#: ``objective(x, rows)``: value per sample [n] for inputs x [n, *shape]; ``rows`` [n] are the
#: samples' indices in the whole batch (so the objective can look up which unit each row targets).
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``progress(items, desc, total)``, e.g. :meth:`vizkit.ProbeContext.progress`.
Progress = Callable[[Iterable[int], str, int], Iterator[int]]

_MASK32 = 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# counter-based randomness: a sample's random numbers depend only on its key
# --------------------------------------------------------------------------------------------
def _mulmod32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x · c) mod 2³² for 32-bit x in int64 without overflow (split x into 16-bit halves)."""
    lo = (x & 0xFFFF) * c
    hi = (((x >> 16) * c) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' "lowbias32") on int64 tensors; identical on every device."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_keys(seed: int, *indices: torch.Tensor) -> torch.Tensor:
    """One key per sample from the run's seed and its identifying indices (e.g. unit, restart).

    The indices broadcast against each other; the key depends on their values only, so unit 7's
    restart 3 gets the same key alone or in any batch.
    """
    seed = int(seed)
    key = mix32(torch.tensor([(seed & _MASK32) ^ mix32(torch.tensor([seed >> 32]))[0].item()]))
    for i, index in enumerate(indices):
        index = torch.as_tensor(index, dtype=torch.int64).cpu()
        key = mix32(key ^ mix32(index + 0x9E3779B9 * (i + 1)))
    return key


def counter_uniform(keys: torch.Tensor, count: int, salt: int = 0) -> torch.Tensor:
    """Uniform [0, 1) numbers [len(keys), count]; row b depends only on ``keys[b]`` and ``salt``."""
    keys = keys.reshape(-1, 1)
    counter = torch.arange(count, dtype=torch.int64, device=keys.device).reshape(1, -1)
    salted = mix32(keys ^ mix32(torch.tensor(int(salt) & _MASK32, device=keys.device) + 0x632BE5AB))
    h = mix32(mix32(salted) ^ mix32(counter + 0x85EBCA6B))
    return (h >> 8).to(torch.float64) * 2.0**-24


# --------------------------------------------------------------------------------------------
# image shapes and Lucid's decorrelated parametrisation (as a gradient preconditioner)
# --------------------------------------------------------------------------------------------
def image_view(shape: Sequence[int]) -> tuple[int, int, int] | None:
    """(channels, height, width) of an image-shaped input, or None for non-image vectors.

    ``(C, H, W)`` and ``(H, W)`` are images; a flat vector of square length (784 = 28²) is read as
    a square grey image, as the renderer does.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    d = math.prod(shape)
    side = math.isqrt(d)
    return (1, side, side) if side * side == d and side > 1 else None


# Lucid's colour decorrelation for RGB: the square root of ImageNet's colour covariance
# (lucent's ``color_correlation_svd_sqrt``), scaled so its largest column has norm 1; vizkit.optvis's
# Fourier parameterisation uses the same matrix.
COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64)
COLOUR = COLOUR_SQRT / COLOUR_SQRT.norm(dim=0).max()


class FourierPreconditioner:
    """Lucid's decorrelated parametrisation x = A p, A p = colour · irfft2(p / |frequency|).

    Gradient steps on p move x by A Aᵀ ∇ₓh, so optimising in that basis is gradient ascent in
    pixel space preconditioned by M = A Aᵀ: low frequencies (and, for RGB, the decorrelated
    colour directions) get larger steps and the ascent does not drown in high-frequency noise.
    Working in x with M keeps the start point (uniform noise), the projection onto the sphere and
    the blur all in pixel space. Aᵀ is taken with autograd, so M is exactly symmetric.
    """

    def __init__(self, input_shape: Sequence[int]) -> None:
        view = image_view(input_shape)
        if view is None:
            raise ValueError(f"the fft parametrisation needs an image-shaped input, not {tuple(input_shape)}")
        self.input_shape = tuple(input_shape)
        self.c, self.h, self.w = view
        fy = torch.fft.fftfreq(self.h, dtype=torch.float64).reshape(-1, 1)
        fx = torch.fft.rfftfreq(self.w, dtype=torch.float64).reshape(1, -1)
        freq = torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(self.h, self.w))
        self.scale = 1.0 / freq  # [h, w//2+1]

    def basis(self, p: torch.Tensor) -> torch.Tensor:
        """A p for spectra p [n, c, h, w//2+1, 2] (real and imaginary parts)."""
        spectrum = torch.view_as_complex(p) * self.scale.to(p.device, p.dtype)
        x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        if self.c == 3:
            x = torch.einsum("ij,njhw->nihw", COLOUR.to(x.device, x.dtype), x)
        return x.reshape(p.shape[0], *self.input_shape)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """M v = A Aᵀ v for a batch v [n, *input_shape]."""
        p = torch.zeros(v.shape[0], self.c, self.h, self.w // 2 + 1, 2, dtype=v.dtype, device=v.device)
        with torch.enable_grad():
            p.requires_grad_(True)
            adjoint = torch.autograd.grad(self.basis(p), p, v)[0]
        return self.basis(adjoint)


# --------------------------------------------------------------------------------------------
# regularisers (image-shaped inputs only)
# --------------------------------------------------------------------------------------------
def jitter(x: torch.Tensor, keys: torch.Tensor, step: int, max_shift: int) -> torch.Tensor:
    """Shift each sample circularly by its own random (dy, dx) in [-max_shift, max_shift].

    The shifts come from the sample's key and the step number, so they are reproducible and
    independent of the batch.
    """
    view = image_view(x.shape[1:])
    assert view is not None
    c, h, w = view
    img = x.reshape(x.shape[0], c, h, w)
    u = counter_uniform(keys, 2, salt=step + 1).to(x.device)
    shifts = (u * (2 * max_shift + 1)).floor().long() - max_shift  # [n, 2]
    rows = (torch.arange(h, device=x.device).reshape(1, -1) - shifts[:, :1]) % h  # [n, h]
    cols = (torch.arange(w, device=x.device).reshape(1, -1) - shifts[:, 1:]) % w  # [n, w]
    img = img.gather(2, rows[:, None, :, None].expand(-1, c, -1, w))
    img = img.gather(3, cols[:, None, None, :].expand(-1, c, h, -1))
    return img.reshape(x.shape)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel (reflect padding), the usual high-frequency damper."""
    view = image_view(x.shape[1:])
    assert view is not None
    c, h, w = view
    radius = max(1, min(math.ceil(2 * sigma), h - 1, w - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    img = x.reshape(x.shape[0] * c, 1, h, w)
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), kernel.reshape(1, 1, 1, -1))
    img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode="reflect"), kernel.reshape(1, 1, -1, 1))
    return img.reshape(x.shape)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Scale-free total variation per sample [n]: mean |difference of neighbouring pixels| ÷ RMS pixel.

    Dividing the anisotropic TV by the number of neighbour pairs and by the RMS value ‖x‖/√D makes
    it independent of image size and of ρ (2/√π ≈ 1.13 for white noise, small for smooth images), so a
    ``tv`` weight is in units of the activation.
    """
    view = image_view(x.shape[1:])
    assert view is not None
    img = x.reshape(x.shape[0], *view)
    dy = (img[:, :, 1:, :] - img[:, :, :-1, :]).abs().flatten(1)
    dx = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().flatten(1)
    mean_diff = (dy.sum(1) + dx.sum(1)) / (dy.shape[1] + dx.shape[1])
    rms = x.flatten(1).norm(dim=1) / math.sqrt(x[0].numel())
    return mean_diff / rms.clamp_min(torch.finfo(x.dtype).tiny)


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AscentConfig:
    """How to climb. Defaults are Erhan et al.'s method: plain gradient steps, re-projection.

    ``lr`` is the step length as a fraction of ρ when ``normalize`` is on: x ← x + lr·ρ·g/‖g‖
    with the *full* gradient g, then back onto the sphere. Only the tangential part of the step
    survives the projection, and it shrinks to zero at a constrained optimum (where g ∥ x), so
    the iteration converges, and one ``lr`` suits every layer and model whatever the scale of
    its activations. With ``normalize`` off the step is lr·g, the paper's fixed-learning-rate
    update. ``param="fft"`` preconditions the gradient with Lucid's decorrelated basis
    (:class:`FourierPreconditioner`); Adam works on the tangential gradient with a step of
    lr·ρ/√D per coordinate (lr when not normalised).

    A sample stops when its objective's relative growth (v_t − v_{t−1}) / |v_{t−1}| falls below
    ``tol`` (tol = 0: run all ``steps``) and its best iterate is kept. With ``jitter`` the
    objective is random, so samples run all ``steps`` and the last iterate is kept.
    """

    steps: int = 1000
    lr: float = 0.1
    tol: float = 1e-6
    optimizer: str = "sgd"
    normalize: bool = True
    jitter: int = 0
    blur: float = 0.0
    tv: float = 0.0
    param: str = "pixel"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    @property
    def stochastic(self) -> bool:
        return self.jitter > 0


@dataclass
class AscentResult:
    """Per-sample outcome; all tensors are on the CPU, in the batch's order."""

    x: torch.Tensor  # [n, *shape], on the sphere
    value: torch.Tensor  # [n] objective (without regularisers) at x
    initial: torch.Tensor  # [n] objective at the start point
    steps: torch.Tensor  # [n] gradient steps taken
    converged: torch.Tensor  # [n] stopped by the tolerance rather than the step limit


def uniform_start(keys: torch.Tensor, input_shape: Sequence[int], rho: float, dtype: torch.dtype,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Erhan et al.'s start: each pixel uniform in [0, 1] (from the sample's key), scaled to ‖x‖ = ρ."""
    u = counter_uniform(keys, math.prod(input_shape)).to(device=device, dtype=dtype)
    return project_to_sphere(u.reshape(len(keys), *input_shape), rho)


def saved_bytes_per_sample(objective: Objective, input_shape: Sequence[int], dtype: torch.dtype,
                           device: torch.device | str = "cpu") -> float:
    """Memory one sample costs in a forward+backward pass: the bytes autograd saves for it.

    Measured, not guessed: the objective runs on 1 and on 3 samples under
    ``saved_tensors_hooks`` and the difference per extra sample is returned (shared tensors such
    as weights cancel out). Works for any model, including wrapped ones.
    """

    def measure(n: int) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = torch.zeros(n, *input_shape, dtype=dtype, device=device).uniform_().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            objective(x, torch.zeros(n, dtype=torch.long, device=device)).sum()
        return total

    return max(measure(3) - measure(1), 0) / 2.0


def chunk_size(n: int, memory_bytes: float, bytes_per_sample: float) -> int:
    """How many samples fit in the budget (at least 1, at most n)."""
    return int(max(1, min(n, memory_bytes // max(bytes_per_sample, 1.0))))


def state_bytes_per_sample(input_shape: Sequence[int], dtype: torch.dtype, config: AscentConfig) -> float:
    """The optimiser's own per-sample tensors: x, best, gradient, step, moved (+ Adam, FFT buffers),
    and the int64 temporaries of hashing the start noise."""
    copies = 6 + (3 if config.optimizer == "adam" else 0) + (4 if config.param == "fft" else 0)
    d = math.prod(input_shape)
    return copies * d * torch.empty((), dtype=dtype).element_size() + 6 * d * 8


def bytes_per_sample(objective: Objective, input_shape: Sequence[int], dtype: torch.dtype,
                     config: AscentConfig, device: torch.device | str = "cpu") -> float:
    """Estimated peak memory of one sample: what autograd saves, twice (the backward pass holds
    gradient buffers about as large, and the forward pass its temporaries), plus the optimiser's
    buffers. Meant to err slightly on the safe side (checked against benchmarks/actmax_batched.py's
    measured memory: docs/plugins/actmax.md)."""
    return 2 * saved_bytes_per_sample(objective, input_shape, dtype, device) + state_bytes_per_sample(
        input_shape, dtype, config)


def maximise_on_sphere(
    objective: Objective,
    keys: torch.Tensor,
    input_shape: Sequence[int],
    rho: float,
    config: AscentConfig = AscentConfig(),
    *,
    chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    desc: str = "ascent",
) -> AscentResult:
    """Maximise ``objective`` for ``len(keys)`` independent samples on the sphere ‖x‖ = ρ.

    Sample b starts from uniform noise drawn from ``keys[b]`` and is evaluated as row b
    (``rows`` passed to the objective). Chunks of ``chunk`` samples (default: all) run one after
    the other; each shows a progress bar over steps when ``progress`` is given.
    """
    device = torch.device(device)
    n = len(keys)
    chunk = n if not chunk else max(1, min(int(chunk), n))
    precondition = FourierPreconditioner(input_shape) if config.param == "fft" else None
    parts: list[AscentResult] = []
    n_chunks = math.ceil(n / chunk)
    for i, start in enumerate(range(0, n, chunk)):
        rows = torch.arange(start, min(n, start + chunk), device=device)
        label = desc if n_chunks == 1 else f"{desc} (chunk {i + 1}/{n_chunks})"
        parts.append(_ascend_chunk(objective, rows, keys[start : start + chunk], input_shape, rho, config,
                                   precondition, dtype, device, progress, label))
    return AscentResult(*(torch.cat([getattr(p, f) for p in parts]) for f in
                          ("x", "value", "initial", "steps", "converged")))


def _ascend_chunk(
    objective: Objective,
    rows: torch.Tensor,
    keys: torch.Tensor,
    input_shape: Sequence[int],
    rho: float,
    cfg: AscentConfig,
    precondition: FourierPreconditioner | None,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None,
    desc: str,
) -> AscentResult:
    n = len(rows)
    x = uniform_start(keys, input_shape, rho, dtype, device)
    bshape = (n,) + (1,) * len(input_shape)  # broadcast a per-sample scalar over x
    device_keys = keys.to(device)

    def evaluate(x_: torch.Tensor, step: int, grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(regularised objective, plain objective, its gradient w.r.t. x) at x_."""
        with torch.enable_grad() if grad else torch.no_grad():
            if grad:
                x_ = x_.detach().requires_grad_(True)
            seen = jitter(x_, device_keys, step, cfg.jitter) if (cfg.jitter and grad) else x_
            value = objective(seen, rows)
            total = value - cfg.tv * total_variation(x_) if cfg.tv else value
            g = torch.autograd.grad(total.sum(), x_)[0] if grad else None
        return total.detach(), value.detach(), g

    initial = evaluate(x, 0, grad=False)[1]
    best_x, best_total = x.clone(), torch.full((n,), -math.inf, dtype=dtype, device=device)
    best_value = initial.clone()
    prev = torch.full((n,), math.nan, dtype=dtype, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    converged = torch.zeros(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    moments = (torch.zeros_like(x), torch.zeros_like(x)) if cfg.optimizer == "adam" else None
    steps_iter: Iterable[int] = range(cfg.steps + 1)
    if progress is not None:
        steps_iter = progress(steps_iter, desc, cfg.steps + 1)
    value = initial
    for t in steps_iter:
        # Value and gradient at the current point; the value also decides whether to stop.
        total, value, g = evaluate(x, t, grad=t < cfg.steps)
        if not cfg.stochastic:
            better = active & (total > best_total)
            best_x = torch.where(better.reshape(bshape), x, best_x)
            best_total = torch.where(better, total, best_total)
            best_value = torch.where(better, value, best_value)
            if cfg.tol > 0:
                growth = (total - prev) / prev.abs().clamp_min(torch.finfo(dtype).tiny)
                stop = active & (growth < cfg.tol)  # NaN growth at t = 0 never stops
                converged |= stop
                active &= ~stop
        if t == cfg.steps or not bool(active.any()):
            break
        prev = torch.where(active, total, prev)
        moved = x + _step(g, x, t, cfg, rho, precondition, moments, bshape)
        if cfg.blur:
            moved = gaussian_blur(moved, cfg.blur)
        x = torch.where(active.reshape(bshape), project_to_sphere(moved, rho), x)
        steps += active.long()
    if cfg.stochastic:  # the last evaluation (t = steps) was without jitter
        best_x, best_value = x, value
    return AscentResult(best_x.detach().cpu(), best_value.cpu(), initial.cpu(), steps.cpu(), converged.cpu())


def _norm(v: torch.Tensor, bshape: tuple[int, ...]) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).reshape(bshape).clamp_min(torch.finfo(v.dtype).tiny)


def _step(g: torch.Tensor | None, x: torch.Tensor, t: int, cfg: AscentConfig, rho: float,
          precondition: FourierPreconditioner | None, moments: tuple[torch.Tensor, torch.Tensor] | None,
          bshape: tuple[int, ...]) -> torch.Tensor:
    """The ascent step of every sample (finished ones are masked by the caller).

    Plain pixels, SGD: lr·ρ·g/‖g‖ (or lr·g), the paper's step along the full gradient. With a
    preconditioner the tangential gradient is preconditioned (so the step still vanishes at the
    constrained optimum, where g ∥ x) and scaled to length lr·ρ·‖Pg‖/‖g‖, the tangential length
    of the plain step. Adam works on the (preconditioned) tangential gradient.
    """
    assert g is not None
    if cfg.optimizer == "sgd" and precondition is None:
        return cfg.lr * rho * g / _norm(g, bshape) if cfg.normalize else cfg.lr * g
    tangent = tangent_project(g, x)
    direction = precondition(tangent) if precondition is not None else tangent
    if cfg.optimizer == "adam":
        assert moments is not None
        m, v = moments
        b1, b2 = cfg.adam_betas
        m.mul_(b1).add_(direction, alpha=1 - b1)
        v.mul_(b2).addcmul_(direction, direction, value=1 - b2)
        adam = (m / (1 - b1 ** (t + 1))) / ((v / (1 - b2 ** (t + 1))).sqrt() + cfg.adam_eps)
        return (cfg.lr * rho / math.sqrt(x[0].numel())) * adam if cfg.normalize else cfg.lr * adam
    if not cfg.normalize:
        return cfg.lr * direction
    return cfg.lr * rho * (_norm(tangent, bshape) / _norm(g, bshape)) * direction / _norm(direction, bshape)


__all__: list[Any] = [
    "AscentConfig",
    "AscentResult",
    "bytes_per_sample",
    "FourierPreconditioner",
    "Objective",
    "chunk_size",
    "counter_uniform",
    "gaussian_blur",
    "image_view",
    "jitter",
    "maximise_on_sphere",
    "mix32",
    "sample_keys",
    "saved_bytes_per_sample",
    "state_bytes_per_sample",
    "total_variation",
    "uniform_start",
]
