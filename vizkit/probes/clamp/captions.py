"""The clamp captions: what each figure shows, with the run's numbers filled in."""

from __future__ import annotations


def clamp_caption(layer: str, n_samples: int, chains: int, per_chain: int, every: int, burn_in: int,
                  probabilities: bool, agreement: float | None, real_valued: bool = False) -> str:
    """The mean | samples grid; ``agreement`` is the median half agreement, ``None`` when undefined;
    ``real_valued`` samples (Gaussian visible units) are shown a scale per unit."""
    text = (
        f"What the model generates when one unit of {layer} is held on, one unit per row: the mean of its "
        f"samples, then samples from different chains. The unit is clamped to 1; the mean is over "
        f"{n_samples} samples ({chains} chains × {per_chain}, one every "
        f"{every} Gibbs steps after {burn_in} burn-in). "
        f"{'Pixel probabilities E[x | h1]' if probabilities else 'Samples'}; "
        + ("grey is 0, black negative, white positive; each mean on its own scale and each unit's samples on "
           "one, so a faint sample (a chain with no first-layer unit on shows the visible bias alone) stays "
           "grey beside its unit's strong ones." if real_valued else
           "one grey scale for all tiles, lowest value black, highest white.")
    )
    if agreement is not None:
        text += (
            f" Agreement: for each unit, the cosine between its mean minus the mean over all units, "
            f"estimated from the first and from the second half of its chains; median {agreement:.2f} "
            f"(near 1: the units' differences are reproducible; near 0: sampling noise).")
    return text


def chain_caption(unit: int, every: int) -> str:
    """The video of one unit's first chain."""
    return f"Unit {unit}: one chain, a frame every {every} Gibbs steps"
