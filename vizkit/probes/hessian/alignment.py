"""Do a unit's invariances *mean* something? Compare them with small transformations of its optimum.

Le et al. (2010) read the top invariance videos of a TCNN pooling unit as translation, rotation and
scale. That reading can be measured: move the optimum x* by a one-pixel shift, a small rotation or a
small zoom about the centre,
take the change d = T(x*) − x* projected onto the sphere's tangent space at x* (the direction in which
the transformation leaves x*), and ask how much of it the top-k invariance directions span:

    alignment = ‖Vᵀ d̂‖ ∈ [0, 1]     (V: the k orthonormal invariance directions, d̂ = d/‖d‖).

1 means the transformation lies inside the invariance subspace; a random direction scores about
√(k/(D−1)), the chance level the probe records beside it. Transformations are bilinear resamplings
(``affine_grid``/``grid_sample``, zero outside), batched over units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: Name → (shift x in px, shift y in px, rotation in degrees, zoom factor).
TRANSFORMS: dict[str, tuple[float, float, float, float]] = {
    "shift 1 px right": (1.0, 0.0, 0.0, 1.0),
    "shift 1 px down": (0.0, 1.0, 0.0, 1.0),
    "rotate 10°": (0.0, 0.0, 10.0, 1.0),
    "scale 1.1×": (0.0, 0.0, 0.0, 1.1),
}


def transformed(x: torch.Tensor, dx: float, dy: float, degrees: float, zoom: float = 1.0) -> torch.Tensor:
    """``x`` [U, C, H, W] enlarged ``zoom`` times and rotated by ``degrees`` about the centre, then
    shifted by (dx, dy) pixels."""
    n, _, h, w = x.shape
    t = math.radians(degrees)
    cos, sin = math.cos(t) / zoom, math.sin(t) / zoom
    # output pixel p samples input at (zR)⁻¹p − shift (normalised coordinates, align_corners=False)
    theta = torch.tensor([[cos, sin * h / w, -2.0 * dx / w], [-sin * w / h, cos, -2.0 * dy / h]],
                         dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def transform_alignment(optimum: torch.Tensor, directions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Alignment [U, T] of each transformation with the span of ``directions`` [U, k, *shape], and the
    cosines [U, T, k] with each direction (sign-free)."""
    x = optimum.double()
    flat_x = x.reshape(x.shape[0], -1)
    unit_x = flat_x / flat_x.norm(dim=1, keepdim=True)
    v = directions.double().reshape(directions.shape[0], directions.shape[1], -1)
    cosines = []
    for move in TRANSFORMS.values():
        d = (transformed(x, *move) - x).reshape(flat_x.shape)
        d = d - (d * unit_x).sum(1, keepdim=True) * unit_x
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
        cosines.append((v @ d.unsqueeze(2)).squeeze(2))  # [U, k]
    cos = torch.stack(cosines, dim=1)  # [U, T, k]
    return cos.norm(dim=2).cpu().numpy(), cos.abs().cpu().numpy()
