"""Gibbs sampling from an RBM or a DBN, free-running or with hidden units clamped on.

A DBN generates by block Gibbs in the RBM of layers (j-1, j) and one top-down pass through the
directed lower layers, p(h_{l-1} | h_l) of each lower RBM (Hinton et al. 2006; Erhan et al. 2009 §4
for the clamped version). Units and chains run as one batch: row r belongs to unit r // chains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...optim import Progress
from .params import RBMParams, bernoulli


@torch.no_grad()
def down_pass(lower: Sequence[RBMParams], state: torch.Tensor, *, probabilities: bool,
              generator: torch.Generator | None = None, groups: int = 1) -> torch.Tensor:
    """Map a state of the top of ``lower`` to input space through the directed layers.

    Intermediate layers are sampled (so the mean over samples is an unbiased estimate of the
    conditional mean); the last step gives E[x | h_1] when ``probabilities`` else a sample.
    """
    for level in reversed(range(len(lower))):
        rbm = lower[level]
        if level == 0 and probabilities:
            state = rbm.visible_mean(state)
        else:
            state = rbm.sample_visible(state, generator, groups=groups)
    return state


@torch.no_grad()
def random_start(rbm: RBMParams, rows: int, generator: torch.Generator | None, groups: int = 1) -> torch.Tensor:
    """Random visible states of ``rbm``: fair coins, or N(c, I) for Gaussian units (``groups``
    blocks of rows share them, as in :func:`bernoulli`)."""
    w = rbm.weight
    if rbm.visible == "gaussian":
        noise = torch.randn((rows // groups, rbm.n_visible), generator=generator, device=w.device, dtype=w.dtype)
        return (rbm.visible_bias + noise).repeat(groups, 1)
    return bernoulli(torch.full((rows, rbm.n_visible), 0.5, device=w.device, dtype=w.dtype), generator, groups=groups)


@torch.no_grad()
def gibbs_generate(layers: Sequence[RBMParams], depth: int, *, chains: int, samples: int, every: int,
                   burn_in: int, probabilities: bool, generator: torch.Generator | None = None,
                   clamp: torch.Tensor | None = None, progress: Progress | None = None) -> torch.Tensor:
    """Samples in input space from the RBM of layers (depth-1, depth), ``[rows, samples, n_input]``.

    ``clamp`` (unit indices of layer ``depth``) holds one hidden unit at 1 per group of ``chains``
    rows, so rows = len(clamp) × chains; without it the chains run free (rows = chains). After
    ``burn_in`` full Gibbs steps a sample is kept every ``every`` steps; each kept state of layer
    depth-1 is passed down to pixels.

    Chain c of every clamped unit uses the same random numbers (common random numbers): each
    unit's chains are exact and independent of each other, a unit's samples are the same alone or
    in any batch of units, and differences between units are not blurred by sampling noise.

    ``progress`` (:data:`vizkit.optim.Progress`) is shown every Gibbs step: the default 1000
    steps of 100 chains of an MNIST RBM take a minute on a busy CPU.
    """
    if not 1 <= depth <= len(layers):
        raise ValueError(f"depth must be in 1..{len(layers)}, got {depth}")
    rbm, lower = layers[depth - 1], layers[: depth - 1]
    groups = len(clamp) if clamp is not None else 1
    rows = chains * groups
    rows_idx = clamped = None
    if clamp is not None:
        clamped = clamp.to(rbm.weight.device).repeat_interleave(chains)
        rows_idx = torch.arange(rows, device=rbm.weight.device)
    v = random_start(rbm, rows, generator, groups)
    h = torch.zeros(rows, rbm.n_hidden, device=v.device, dtype=v.dtype)
    n_input = layers[0].n_visible
    out = torch.empty(rows, samples, n_input, device=v.device, dtype=v.dtype)

    def step(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = rbm.sample_hidden(v, generator, groups=groups)
        if clamped is not None:
            h[rows_idx, clamped] = 1.0
        return rbm.sample_visible(h, generator, groups=groups), h

    total = burn_in + samples * every
    steps = range(total) if progress is None else progress(range(total), "Gibbs steps", total)
    for i in steps:
        v, h = step(v)
        kept, rest = divmod(i + 1 - burn_in, every)
        if i < burn_in or rest:
            continue
        s = kept - 1
        if depth == 1:
            out[:, s] = rbm.visible_mean(h) if probabilities else v
        else:
            out[:, s] = down_pass(lower, v, probabilities=probabilities, generator=generator, groups=groups)
    return out
