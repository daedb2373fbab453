"""scikit-learn's 8x8 digits: 1,797 tiny images, the fastest real dataset for tests and demos."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import VizDataModule, coerce_int, split_indices

__all__ = ["TEST_FRACTION", "build"]

TEST_FRACTION = 0.2


def build(*, batch_size: Any = 100, seed: Any = 0) -> VizDataModule:
    """Digits as ``(1, 8, 8)`` inputs in [0, 1] (grey levels 0..16 divided by 16), 80/20 split by seed."""
    from sklearn.datasets import load_digits  # lazy: sklearn is slow to import

    seed_i = coerce_int(seed, "seed", minimum=0)
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = split_indices(x.shape[0], int(round(TEST_FRACTION * x.shape[0])), seed_i)
    return VizDataModule(
        "digits",
        torch.from_numpy(x[train_idx]),
        torch.from_numpy(x[test_idx]),
        options={},
        batch_size=batch_size,
        seed=seed_i,
        train_labels=torch.from_numpy(y[train_idx]),
        test_labels=torch.from_numpy(y[test_idx]),
    )
