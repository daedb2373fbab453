"""The numbers behind γ: streaming variances of set means and of all copies, significance, pooling.

γᵢ = var over sets of the set-mean activation ÷ var of the activation over all transformed copies
(Rasmus et al. 2015, Eq. 9). Both variances are population variances (divide by the count), so
by the law of total variance γ = 1 − (mean within-set variance) / (total variance) lies in [0, 1]
exactly. They are accumulated chunk by chunk with Chan et al.'s parallel update in float64, so
no activation is kept beyond its chunk and the result does not depend on the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of a stream of [n, units] rows (float64)."""

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach()
        n = rows.shape[0]
        if n == 0:
            return
        # The two-pass algorithm over the chunk in its own precision: the chunk mean, then the
        # squared deviations from it (no cancellation). Column sums as a product with a row of
        # ones run at BLAS speed, several times faster than var_mean over dim 0; float32 chunk
        # sums are accurate to ~1e-6 relative, far below γ's sampling error, and chunks merge in
        # float64.
        ones = torch.ones(1, n, dtype=rows.dtype, device=rows.device)
        chunk_mean = (ones @ rows)[0] / n
        d = rows - chunk_mean
        m2 = (ones @ d.square_())[0].to(torch.float64)
        mean = chunk_mean.to(torch.float64)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.count * n / total)
        self.count = total

    def variance(self) -> torch.Tensor:
        assert self.m2 is not None
        return self.m2 / self.count


@dataclass
class SetStats:
    """Streaming γ of one layer: moments of all copies and of the set means."""

    copies: Moments = field(default_factory=Moments)
    set_means: Moments = field(default_factory=Moments)

    def add(self, acts: torch.Tensor) -> None:
        """``acts``: [sets, copies, units]."""
        self.copies.add(acts.reshape(-1, acts.shape[-1]))
        self.set_means.add(acts.mean(dim=1))

    def variance(self) -> torch.Tensor:
        return self.copies.variance()

    def gamma(self, tiny: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ per unit, whether γ is defined): a unit that is constant over every copy has no
        variance to explain, so its γ is undefined (returned as 0 with ``defined`` False)."""
        total = self.copies.variance()
        between = self.set_means.variance()
        scale = total.abs().max().clamp_min(1.0) if total.numel() else torch.tensor(1.0)
        defined = total > tiny * scale
        gamma = torch.where(defined, between / torch.where(defined, total, torch.ones_like(total)),
                            torch.zeros_like(total))
        return gamma.clamp(0.0, 1.0), defined


def significance(weights: torch.Tensor, var_upper: torch.Tensor, var_lower: torch.Tensor) -> torch.Tensor:
    """Connection significances [upper, lower] (Rasmus et al., supplementary 4.3.1).

    The decoder sends upper unit i down to lower unit j with weight Wᵢⱼ (tied: the encoder's
    ``weights`` transposed). Its squared weight times the upper unit's variance is the variance
    it feeds into j; j's incoming shares are rescaled so that they sum to j's own output variance.
    The result, summed over j (:func:`unit_significance`), says how much of the lower layer's
    variance unit i accounts for.
    """
    feed = weights.to(torch.float64).pow(2) * var_upper.to(torch.float64)[:, None]
    incoming = feed.sum(dim=0, keepdim=True)
    share = feed / torch.where(incoming > 0, incoming, torch.ones_like(incoming))
    return share * var_lower.to(torch.float64)[None, :]


def unit_significance(connections: torch.Tensor) -> torch.Tensor:
    """Each upper unit's share of the lower layer's total output variance (sums to 1 over units
    when every lower unit receives something)."""
    total = connections.sum()
    return connections.sum(dim=1) / (total if total > 0 else 1.0)


def pooling_groups(connections: torch.Tensor, starts: int, links: int, members: int) -> list[dict[str, list[int]]]:
    """Fig. 4's pooling groups: from ``starts`` lower units (the most significant in total),
    follow each one's ``links`` strongest connections up, then take each upper unit's
    ``members`` strongest connections back down. Returns, per start unit,
    ``{"start": [j], "upper": [i₁, …], "members": [[j…] per upper unit]}`` flattened as lists."""
    lower_total = connections.sum(dim=0)
    first = torch.argsort(lower_total, descending=True, stable=True)[:starts]
    groups = []
    for j in first.tolist():
        ups = torch.argsort(connections[:, j], descending=True, stable=True)[:links].tolist()
        rows = [torch.argsort(connections[i], descending=True, stable=True)[:members].tolist() for i in ups]
        groups.append({"start": [j], "upper": ups, "members": rows})
    return groups
