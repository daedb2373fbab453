"""Restricted Boltzmann machines and deep belief nets (the ``rbm`` and ``dbn`` model kinds).

- :mod:`.params`: one RBM's parameters, conditionals and free energy (binary or Gaussian visible).
- :mod:`.trainers`: CD-k, PCD and Fast PCD gradient estimates as fused in-place updates.
- :mod:`.evaluate`: exact log Z / log-likelihood (≤ 25 hidden units), AIS, free energy.
- :mod:`.sampling`: Gibbs chains, free-running or with units clamped, and the DBN's top-down pass.
- :mod:`.model`: the Lightning models ``RBM`` and ``DBN``.
"""

from .evaluate import (
    MAX_EXACT_HIDDEN,
    AISEstimate,
    ais_log_partition,
    base_rate_bias,
    log_likelihood_exact,
    log_partition_exact,
    mean_free_energy,
)
from .model import DBN, RBM, BoltzmannStack
from .params import RBMParams
from .sampling import gibbs_generate
from .trainers import GradientEstimator

__all__ = [
    "DBN",
    "MAX_EXACT_HIDDEN",
    "RBM",
    "AISEstimate",
    "BoltzmannStack",
    "GradientEstimator",
    "RBMParams",
    "ais_log_partition",
    "base_rate_bias",
    "gibbs_generate",
    "log_likelihood_exact",
    "log_partition_exact",
    "mean_free_energy",
]
