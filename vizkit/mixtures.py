"""Whether a mixture model's components specialise (Tieleman 2014, §2.3.5 and Fig. 2.19).

A mixture of composite capsules is meant to give each component one kind of image: forced to
draw an image of another kind, a specialised component draws its own kind and misses. A
component that redraws any image it is given has not specialised, however well the chosen one
reconstructs; the manager's choice then carries little. These measures read that from the
reconstruction errors with y forced to each component, so they need no labels; with labels and a
classifier they also say *what* a wrong component draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def specialisation(errors: np.ndarray, chosen: np.ndarray) -> dict[str, Any]:
    """How much better each component reconstructs its own images than the others' images.

    ``errors`` ``[n, K]``: each image's reconstruction error with y forced to each component (and
    that component's own pose); ``chosen`` ``[n]``: the manager's choice. For component c, ``ratio``
    is its mean error on images chosen for other components ÷ its mean error on its own images
    (NaN where c has no images of one kind): 1 means it redraws everything equally well.
    ``chosen_is_best`` is the fraction of images whose chosen component is also the one that
    reconstructs them best.
    """
    errors = np.asarray(errors, dtype=np.float64)
    chosen = np.asarray(chosen)
    k = errors.shape[1]
    ratio = np.full(k, np.nan)
    for c in range(k):
        own = chosen == c
        if own.any() and (~own).any():
            ratio[c] = errors[~own, c].mean() / max(errors[own, c].mean(), 1e-300)
    defined = ratio[np.isfinite(ratio)]
    return {
        "ratio": ratio,
        "median_ratio": float(np.median(defined)) if len(defined) else float("nan"),
        "chosen_is_best": float(np.mean(errors.argmin(1) == chosen)),
    }


def wrong_component_draws(predicted: np.ndarray, labels: np.ndarray, names: np.ndarray) -> dict[str, float]:
    """What a component draws when forced onto an image of another label.

    ``predicted`` ``[n, K]``: a classifier's label for each forced reconstruction; ``labels`` ``[n]``:
    the images' labels; ``names`` ``[K]``: each component's label (−1: none). Over the pairs where
    the component is named and its name differs from the image's label, ``own`` is the fraction
    drawn as the component's own label (specialised, as the thesis's Fig. 2.19) and ``input`` the
    fraction drawn as the image's (the component just redraws the input).
    """
    predicted, labels, names = np.asarray(predicted), np.asarray(labels), np.asarray(names)
    name = np.broadcast_to(names[None, :], predicted.shape)
    pair = (name >= 0) & (name != labels[:, None])
    if not pair.any():
        return {"own": float("nan"), "input": float("nan"), "pairs": 0}
    return {
        "own": float(np.mean(predicted[pair] == name[pair])),
        "input": float(np.mean(predicted[pair] == np.broadcast_to(labels[:, None], predicted.shape)[pair])),
        "pairs": int(pair.sum()),
    }
