"""scikit-learn ``BernoulliRBM`` → vizkit ``rbm``: probe a model fitted with scikit-learn.

scikit-learn's RBM has the same energy as vizkit's binary RBM: ``components_`` is W
``[n_hidden, n_visible]``, ``intercept_hidden_`` is b and ``intercept_visible_`` is c, and its
``transform`` is p(h | v), vizkit's ``activations(x, "h1")``.

Only a fitted estimator object is accepted, never a file: unpickling a ``.joblib``/``.pkl`` file runs
code from it, so loading it stays the user's own decision (``joblib.load`` on a file you trust).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import save_checkpoint
from ..errors import UsageError


def _default_shape(n_features: int) -> tuple[int, ...]:
    side = math.isqrt(n_features)
    return (1, side, side) if side * side == n_features else (n_features,)


def from_sklearn_rbm(
    rbm: Any,
    input_shape: tuple[int, ...] | list[int] | None = None,
    *,
    data: Any = None,
    data_info: dict[str, Any] | None = None,
) -> Any:
    """A vizkit ``RBM`` with the fitted estimator's parameters (float32, eval mode).

    ``input_shape`` defaults to ``(1, s, s)`` when the number of features is a square ``s²``
    (images), else ``(n_features,)``. Pass the training array as ``data`` to store its statistics
    (mean input norm, pixel range: what probes such as ``actmax`` need), or a ready ``data_info``.
    """
    from ..datasets.base import compute_stats
    from ..models.rbm import RBM

    missing = [a for a in ("components_", "intercept_hidden_", "intercept_visible_") if not hasattr(rbm, a)]
    if missing:
        raise UsageError(f"expected a fitted sklearn.neural_network.BernoulliRBM; {type(rbm).__name__} "
                         f"has no {', '.join(missing)} (call fit first)")
    weight = torch.as_tensor(np.asarray(rbm.components_, dtype=np.float32))
    hbias = torch.as_tensor(np.asarray(rbm.intercept_hidden_, dtype=np.float32))
    vbias = torch.as_tensor(np.asarray(rbm.intercept_visible_, dtype=np.float32))
    if weight.ndim != 2 or hbias.shape != (weight.shape[0],) or vbias.shape != (weight.shape[1],):
        raise UsageError(f"inconsistent BernoulliRBM parameters: components_ {tuple(weight.shape)}, "
                         f"intercept_hidden_ {tuple(hbias.shape)}, intercept_visible_ {tuple(vbias.shape)}")
    n_hidden, n_features = weight.shape
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else _default_shape(n_features)
    if math.prod(shape) != n_features:
        raise UsageError(f"input_shape {shape} has {math.prod(shape)} values but the RBM has {n_features} "
                         f"visible units")
    lr = float(getattr(rbm, "learning_rate", 0.1))
    model = RBM(input_shape=list(shape), hidden=int(n_hidden), visible="binary", trainer="pcd", lr=lr,
                loglik="auto" if n_hidden <= 25 else "ais")
    with torch.no_grad():
        model.weight[0].copy_(weight)
        model.hidden_bias[0].copy_(hbias)
        model.visible_bias[0].copy_(vbias)
    if data_info is None:
        data_info = {"name": "sklearn", "options": {}, "input_shape": list(shape), "stats": {}, "buffers": {}}
        if data is not None:
            arr = torch.as_tensor(np.asarray(data, dtype=np.float32))
            if arr.ndim != 2 or arr.shape[1] != n_features:
                raise UsageError(f"data must be [n_samples, {n_features}], got {tuple(arr.shape)}")
            data_info["stats"] = compute_stats(arr.reshape(-1, *shape), 0)
    model.data_info = dict(data_info)
    model.metrics = {"sklearn": {"n_iter": int(getattr(rbm, "n_iter", 0)), "learning_rate": lr,
                                 "batch_size": int(getattr(rbm, "batch_size", 0))}}
    model.eval()
    return model


def save_sklearn_rbm(rbm: Any, path: str | Path, input_shape: tuple[int, ...] | list[int] | None = None, *,
                     data: Any = None, data_info: dict[str, Any] | None = None) -> Path:
    """Write the estimator as a vizkit checkpoint that ``vizkit inspect/probe`` and ``vizkit.load`` read."""
    model = from_sklearn_rbm(rbm, input_shape, data=data, data_info=data_info)
    return save_checkpoint(model.to_checkpoint(), path)
