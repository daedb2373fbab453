"""``faces``: the 100 faces of scikit-image's Labeled-Faces-in-the-Wild subset, grey, 25×25 pixels.

The stand-in for the Toronto Face Database of Tieleman's capsule chapter (§2.7): it ships inside
the scikit-image wheel (``skimage.data.lfw_subset()``), so it needs no network. Values are in
[0, 1]; 20% of the faces are held out, chosen by the seed. ``lfw_subset()`` returns 200 crops,
the first 100 faces and then 100 background (non-face) crops; only the faces are used. They carry no
identity labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vizkit.datasets.base import VizDataModule, coerce_int, split_indices
from vizkit.errors import DataError

__all__ = ["N_FACES", "TEST_FRACTION", "build"]

TEST_FRACTION = 0.2
N_FACES = 100


def build(*, batch_size: Any = 100, seed: Any = 0) -> VizDataModule:
    """The 100 faces as ``(1, 25, 25)`` inputs in [0, 1], an 80/20 split by ``seed``."""
    seed_i = coerce_int(seed, "seed", minimum=0)
    try:
        from skimage.data import lfw_subset
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        raise DataError("dataset faces needs scikit-image (pip install scikit-image)") from None
    x = np.asarray(lfw_subset(), dtype=np.float32)[:N_FACES]  # then come 100 non-faces
    if x.ndim != 3:
        raise DataError(f"scikit-image's lfw_subset has shape {x.shape}, expected [N, H, W]")
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else x
    train_idx, test_idx = split_indices(x.shape[0], int(round(TEST_FRACTION * x.shape[0])), seed_i)
    return VizDataModule(
        "faces",
        torch.from_numpy(x[train_idx, None]),
        torch.from_numpy(x[test_idx, None]),
        options={},
        batch_size=batch_size,
        seed=seed_i,
    )
