"""Poses of capsules: the "nice" parametrisation, its matrix, composition, and the output model.

Frames (Tieleman 2014, §2.3, which leaves them open; the "coordinate frames" row of
docs/models/capsule.md): both the template and the world (output image) are unit squares with their
middle at (0.5, 0.5); points are homogeneous column vectors ``(x, y, 1)`` with ``x`` along columns
and ``y`` along rows (downwards). A pose's matrix maps **world → template** coordinates, so
rendering asks, for each output pixel, where to look in the template, and nothing is ever inverted
(inverses gave the thesis unstable gradients).

The "nice" form is six learner-friendly numbers ``(t0, t1, s0, s1, z, θ)``: translation, two
scales stored as raw multipliers (not logs: log-scales overflowed in the thesis), shear, and
rotation in radians. The matrix is ``C · R(θ) · Z(z) · S(s0, s1) · T(t0, t1) · C⁻¹`` with ``C`` the
shift to the centre, so rotation, scale and shear act about the middle of the image and
``det M[:2, :2] = s0 · s1`` (what the determinant penalty needs). The identity pose
``(0, 0, 1, 1, 0, 0)`` maps the template onto exactly the whole output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: index of each number in a nice pose vector
T0, T1, S0, S1, SHEAR, THETA = range(6)
IDENTITY_NICE = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)

#: sharpness of the non-negativity map f(x) = log(1 + e^{10x}) / 10 (thesis §2.4.5)
INK_SHARPNESS = 10.0
#: sharpness of the maxSemiSoft output model, log Σ exp(100 a) / 100 (thesis §2.3.3)
OUTPUT_SHARPNESS = 100.0


def nice_to_matrix(nice: torch.Tensor) -> torch.Tensor:
    """``[..., 6]`` nice poses → ``[..., 3, 3]`` world→template matrices (differentiable).

    Written out in closed form (rather than as four matrix products) so a batch of poses costs a
    handful of elementwise operations.
    """
    t0, t1, s0, s1, z, theta = nice.unbind(-1)
    c, s = torch.cos(theta), torch.sin(theta)
    # R · Z · S = [[c, -s], [s, c]] · [[1, z], [0, 1]] · diag(s0, s1)
    a00 = c * s0
    a01 = (c * z - s) * s1
    a10 = s * s0
    a11 = (s * z + c) * s1
    # A · (p - 0.5 + t) + 0.5: the translation acts before the linear part (world→template order)
    b0 = a00 * (t0 - 0.5) + a01 * (t1 - 0.5) + 0.5
    b1 = a10 * (t0 - 0.5) + a11 * (t1 - 0.5) + 0.5
    zero, one = torch.zeros_like(t0), torch.ones_like(t0)
    rows = [torch.stack([a00, a01, b0], -1), torch.stack([a10, a11, b1], -1), torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, -2)


def nice_matrix_reference(nice: torch.Tensor) -> torch.Tensor:
    """The same map as :func:`nice_to_matrix`, built as the literal product C·R·Z·S·T·C⁻¹ (for tests)."""
    t0, t1, s0, s1, z, theta = (float(v) for v in nice)

    def mat(rows: list[list[float]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.float64)

    centre = mat([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    uncentre = mat([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    rot = mat([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    shear = mat([[1, z, 0], [0, 1, 0], [0, 0, 1]])
    scale = mat([[s0, 0, 0], [0, s1, 0], [0, 0, 1]])
    trans = mat([[1, 0, t0], [0, 1, t1], [0, 0, 1]])
    return centre @ rot @ shear @ scale @ trans @ uncentre


def compose(part_in_whole: torch.Tensor, whole_in_world: torch.Tensor) -> torch.Tensor:
    """World→part matrix of a part posed inside a posed whole (MIGP's geometric half).

    With world→object matrices, a world point goes first into the whole's frame, then into the
    part's: ``M_world→part = M_whole→part · M_world→whole``.
    """
    return part_in_whole @ whole_in_world


def determinant(matrix: torch.Tensor) -> torch.Tensor:
    """det of the 2×2 linear part of ``[..., 3, 3]`` matrices."""
    return matrix[..., 0, 0] * matrix[..., 1, 1] - matrix[..., 0, 1] * matrix[..., 1, 0]


def template_centre(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` the world point (x, y) that ``[..., 3, 3]`` world→template matrices send to the
    template's middle (0.5, 0.5): where a capsule is drawn. A 2×2 solve in closed form (the
    determinant penalty keeps det away from 0; it is clamped at 1e-3 for safety)."""
    a, b, c, d = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 0], matrix[..., 1, 1]
    det = a * d - b * c
    det = torch.where(det.abs() < 1e-3, torch.full_like(det, 1e-3), det)
    u, v = 0.5 - matrix[..., 0, 2], 0.5 - matrix[..., 1, 2]
    return torch.stack([(d * u - b * v) / det, (a * v - c * u) / det], -1)


def ink(x: torch.Tensor) -> torch.Tensor:
    """The sharpened softplus f(x) = log(1 + e^{10x}) / 10 that keeps templates and intensities ≥ 0.

    The thesis rejected clipping and max(x, 0) (dead gradients) and L2 on the negative part; f is
    smooth, ≈ x for x ≫ 0.1 and ≈ 0 for x ≪ 0.
    """
    return F.softplus(x, beta=INK_SHARPNESS)


def ink_inverse(y: torch.Tensor) -> torch.Tensor:
    """f⁻¹(y) for y > 0: the raw parameter that :func:`ink` maps to ``y``."""
    y = torch.as_tensor(y)
    return torch.log(torch.expm1(INK_SHARPNESS * y)) / INK_SHARPNESS


def max_semi_soft(contributions: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The output model: log Σₖ exp(100·aₖ) / 100 minus its value when every aₖ is 0 (log K / 100).

    A sharpened max, so overlapping strokes do not add up to more than the brightest one, and the
    offset makes "no capsule draws here" exactly 0. The offset is computed by the same logsumexp in
    the same dtype, so all-zero contributions give exactly 0.
    """
    k = contributions.shape[dim]
    zeros = torch.zeros(k, dtype=contributions.dtype, device=contributions.device)
    offset = torch.logsumexp(OUTPUT_SHARPNESS * zeros, 0) / OUTPUT_SHARPNESS
    return torch.logsumexp(OUTPUT_SHARPNESS * contributions, dim) / OUTPUT_SHARPNESS - offset


def combine(contributions: torch.Tensor, output_model: str = "maxsemisoft", dim: int = 1) -> torch.Tensor:
    """Combine per-capsule images along ``dim`` with the named output model."""
    if output_model == "maxsemisoft":
        return max_semi_soft(contributions, dim)
    if output_model == "sum":
        return contributions.sum(dim)
    if output_model == "max":
        return contributions.amax(dim)
    raise ValueError(f"unknown output model {output_model!r}")
