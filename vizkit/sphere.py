"""Geometry of the constraint ‖x‖ = ρ shared by activation maximisation and invariance analysis.

Erhan et al. optimise on the sphere of radius ρ (the training data's mean norm) and Berkes &
Wiskott / Le et al. move along its geodesics; keeping these few formulas in one place keeps the
two probes consistent with each other.
"""

from __future__ import annotations

from typing import Any

import torch


def data_radius(model: Any) -> float | None:
    """The mean input norm recorded with the model's training data, if any."""
    stats = (getattr(model, "data_info", None) or {}).get("stats") or {}
    value = stats.get("mean_norm")
    return float(value) if value else None


def project_to_sphere(x: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
    """Scale each example (first dimension) to norm ``rho``."""
    flat = x.reshape(x.shape[0], -1)
    norms = flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    rho = torch.as_tensor(rho, dtype=x.dtype, device=x.device).reshape(-1, 1)
    return (flat * (rho / norms)).reshape(x.shape)


def tangent_project(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Remove from ``v`` its component along ``x`` (per example): P = I − x xᵀ/‖x‖²."""
    vf = v.reshape(v.shape[0], -1)
    xf = x.reshape(x.shape[0], -1)
    coef = (vf * xf).sum(dim=1, keepdim=True) / (xf * xf).sum(dim=1, keepdim=True)
    return (vf - coef * xf).reshape(v.shape)


def geodesic(x: torch.Tensor, v: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Points cos(t)·x + sin(t)·ρ·v̂ along the great circle through ``x`` in tangent direction ``v``.

    ``x`` is one point [*shape] of norm ρ, ``v`` a tangent vector [*shape], ``angles`` [T];
    returns [T, *shape], all of norm ρ.
    """
    rho = x.norm()
    direction = v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)
    shape = (-1,) + (1,) * x.dim()
    t = angles.to(x.dtype).reshape(shape)
    return torch.cos(t) * x.unsqueeze(0) + torch.sin(t) * rho * direction.unsqueeze(0)
