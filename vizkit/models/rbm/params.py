"""One RBM's parameters and the conditionals every other part (training, evaluation, sampling) uses.

Energy of a binary-visible RBM: E(v, h) = -c·v - b·h - hᵀWv. Gaussian-visible units (unit
variance, for real-valued data scaled to unit std such as whitened patches) replace -c·v by
½‖v - c‖², so p(v | h) = N(c + Wᵀh, I). Hidden units are always binary. Keeping these formulas in
one place is what lets the exact log-likelihood, AIS and the Gibbs samplers agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

VISIBLE_TYPES = ("binary", "gaussian")


@dataclass(frozen=True)
class RBMParams:
    """Weights ``[n_hidden, n_visible]``, hidden bias ``b``, visible bias ``c`` and the visible type."""

    weight: torch.Tensor
    hidden_bias: torch.Tensor
    visible_bias: torch.Tensor
    visible: str = "binary"

    def __post_init__(self) -> None:
        if self.visible not in VISIBLE_TYPES:
            raise ValueError(f"visible must be one of {VISIBLE_TYPES}, got {self.visible!r}")
        h, d = self.weight.shape
        if self.hidden_bias.shape != (h,) or self.visible_bias.shape != (d,):
            raise ValueError(f"bias shapes {tuple(self.hidden_bias.shape)}, {tuple(self.visible_bias.shape)} "
                             f"do not match weight {tuple(self.weight.shape)}")

    @property
    def n_hidden(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_visible(self) -> int:
        return int(self.weight.shape[1])

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> RBMParams:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device=device, dtype=dtype)

        return RBMParams(move(self.weight), move(self.hidden_bias), move(self.visible_bias), self.visible)

    # -- conditionals ---------------------------------------------------------------------------
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight, self.hidden_bias)

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = σ(b_j + W_j·v), differentiable in ``v``."""
        return torch.sigmoid(self.hidden_logits(v))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: σ(c + Wᵀh) for binary units, c + Wᵀh for Gaussian ones."""
        pre = torch.addmm(self.visible_bias, h, self.weight)
        return torch.sigmoid(pre) if self.visible == "binary" else pre

    def sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None = None, *,
                      groups: int = 1) -> torch.Tensor:
        """A sample of h | v; ``groups`` as in :func:`bernoulli` (common random numbers)."""
        return bernoulli(self.hidden_probs(v), generator, groups=groups)

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None, *,
                       groups: int = 1) -> torch.Tensor:
        """A sample of v | h; ``groups`` as in :func:`bernoulli` (common random numbers)."""
        mean = self.visible_mean(h)
        if self.visible == "binary":
            return bernoulli(mean, generator, groups=groups)
        noise = torch.randn((mean.shape[0] // groups, *mean.shape[1:]), generator=generator, device=mean.device,
                            dtype=mean.dtype)
        return (mean.view(groups, -1, *mean.shape[1:]) + noise).view(mean.shape)

    # -- energies -------------------------------------------------------------------------------
    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)) per row, so that p(v) = exp(-F(v)) / Z."""
        hidden = F.softplus(self.hidden_logits(v)).sum(dim=1)
        if self.visible == "binary":
            return -(v @ self.visible_bias) - hidden
        return 0.5 * (v - self.visible_bias).pow(2).sum(dim=1) - hidden

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) per row (for brute-force checks)."""
        inter = ((h @ self.weight) * v).sum(dim=1) + h @ self.hidden_bias
        if self.visible == "binary":
            return -(v @ self.visible_bias) - inter
        return 0.5 * (v - self.visible_bias).pow(2).sum(dim=1) - inter

    def gaussian_log_norm(self) -> float:
        """log ∫ exp(-½‖v‖²) dv = (D/2) log 2π: the Gaussian units' share of log Z."""
        return 0.5 * self.n_visible * math.log(2 * math.pi)


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None, *, groups: int = 1) -> torch.Tensor:
    """A 0/1 sample of ``p`` in ``p``'s dtype, drawn from ``generator`` (seeded runs repeat exactly).

    ``groups`` = G > 1 splits the rows into G equal blocks that share their uniforms (row i of
    every block uses the same numbers): common random numbers. Each block is still an exact
    sample; blocks are coupled, not independent. Clamped sampling uses this across units, so one
    unit's chains do not depend on which other units share the batch, and drawing random numbers
    (as costly per number as the matrix products on a CPU) is not repeated for every unit.

    ceil(p - u) is 1 exactly when u < p (a float subtraction never flips sign), so this equals
    ``(u < p)`` bit for bit but skips the bool-to-float copy that cost as much as the comparison
    itself on CPU; ``+ 0.0`` turns ceil's -0.0 into 0.0 so saved samples hold only 0 and 1.
    """
    if p.shape[0] % groups:
        raise ValueError(f"{p.shape[0]} rows do not split into {groups} groups")
    u = torch.rand((p.shape[0] // groups, *p.shape[1:]), generator=generator, device=p.device, dtype=p.dtype)
    return torch.sub(p.detach().view(groups, -1, *p.shape[1:]), u).ceil_().add_(0.0).view(p.shape)
