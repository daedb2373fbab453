"""The two capabilities only Boltzmann stacks have, registered with their model kinds.

A DBN can generate: with one hidden unit held on (Erhan et al. 2009's clamped sampling, the
``clamp`` probe) or free-running (Tieleman 2014's sample grids, the ``sample`` probe). Any other
generative model that can do the same declares these names and implements these calls.
"""

from __future__ import annotations

from typing import Protocol

import torch

from vizkit import Capability, ProbeModel

CLAMPED_SAMPLE = "clamped_sample"
SAMPLE = "sample"


class ClampedSampleModel(ProbeModel, Protocol):
    def clamped_sample(
        self,
        layer: str,
        units: torch.Tensor,
        *,
        chains: int,
        samples: int,
        every: int,
        burn_in: int,
        probabilities: bool,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Return [units, chains * samples, *input_shape] images generated with each unit on."""
        ...


class SamplingModel(ProbeModel, Protocol):
    def sample(
        self,
        *,
        layer: str | None = None,
        chains: int = 100,
        samples: int = 1,
        every: int = 1000,
        burn_in: int = 0,
        probabilities: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return [chains, samples, *input_shape] free-running samples of the generative model
        under ``layer`` (default: the top one). A model may also take ``progress=``
        (:data:`vizkit.optim.Progress`) to show its steps; the ``sample`` probe passes it only to a
        ``sample`` whose signature names it."""
        ...


CAPABILITIES = (
    Capability(CLAMPED_SAMPLE, "clamped_sample(layer, units, ...): Gibbs samples with one unit held on",
               ClampedSampleModel),
    Capability(SAMPLE, "sample(layer=..., chains=...): free-running samples of the generative model",
               SamplingModel),
)
