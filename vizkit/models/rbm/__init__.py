"""Restricted Boltzmann machines and deep belief nets (the ``rbm`` and ``dbn`` model kinds).

- :mod:`.params`: one RBM's parameters, conditionals and free energy (binary or Gaussian visible).
- :mod:`.trainers`: CD-k, PCD and Fast PCD gradient estimates as fused in-place updates.
- :mod:`.evaluate`: exact log Z / log-likelihood (≤ 25 hidden units), AIS, free energy.
- :mod:`.sampling`: Gibbs chains, free-running or with units clamped, and the DBN's top-down pass.
- :mod:`.model`: the Lightning models ``RBM`` and ``DBN``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MAX_EXACT_HIDDEN": "evaluate",
    "AISEstimate": "evaluate",
    "ais_log_partition": "evaluate",
    "base_rate_bias": "evaluate",
    "log_likelihood_exact": "evaluate",
    "log_partition_exact": "evaluate",
    "mean_free_energy": "evaluate",
    "DBN": "model",
    "RBM": "model",
    "BoltzmannStack": "model",
    "RBMParams": "params",
    "gibbs_generate": "sampling",
    "GradientEstimator": "trainers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, so that ``vizkit.models.rbm.command`` (the ``vizkit sample`` CLI) imports no Lightning.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vizkit.models.rbm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
