"""``lincomb``: a unit's filter as a linear combination of the filters of the layer below.

Lee et al. (2008) and Erhan et al. (2009, §5) visualise a layer-2 unit by the weighted sum of the
layer-1 filters it is most strongly connected to, and a layer-3 unit by recursing. It ignores the
non-linearities, which is exactly what the comparison with actmax and clamp is meant to show.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid


def keep_top_k(weights: torch.Tensor, k: int | None) -> torch.Tensor:
    """Zero all but the ``k`` largest-magnitude entries of each row (``None``: keep all)."""
    if k is None or k >= weights.shape[1]:
        return weights
    idx = weights.abs().topk(k, dim=1).indices
    return torch.zeros_like(weights).scatter_(1, idx, weights.gather(1, idx))


def chain_to_input(model: vizkit.WeightsModel, layer: str) -> list[torch.Tensor]:
    """Weight matrices from the input up to ``layer`` (bottom first), following ``Weights.source``."""
    chain = []
    current = layer
    seen = set()
    while True:
        weights = model.weights(current)
        chain.append(weights.matrix.reshape(weights.matrix.shape[0], -1))
        if weights.source == "input":
            return chain[::-1]
        if weights.source not in model.layer_infos() or weights.source in seen:
            raise vizkit.UsageError(
                f"layer {current!r} has no weights chain down to the input (its weights come from "
                f"{weights.source!r})"
            )
        seen.add(current)
        current = weights.source


def linear_combinations(chain: list[torch.Tensor], k: int | None) -> torch.Tensor:
    """Input-space filters of every unit of the top layer of ``chain``: V_l = topk(W_l) · V_{l−1}."""
    filters = chain[0]
    for weights in chain[1:]:
        filters = keep_top_k(weights, k) @ filters
    return filters


class LinComb(Probe):
    name = "lincomb"
    summary = "weighted sum of the top-k lower-layer filters (Lee et al. 2008; Erhan et al. 2009 §5)"
    requires = frozenset({caps.ACTIVATIONS, caps.WEIGHTS})
    options = (
        Option("k", int, 100, "lower-layer filters kept per unit (largest |weight|), or all", min=1,
               special=("all",)),
        Option("scale", str, "unit", "colour scale: each filter its own (unit) or one for all (shared)",
               choices=("unit", "shared")),
    )

    @classmethod
    def valid_layers(cls, model: vizkit.ProbeModel) -> list[str]:
        valid = []
        pixels = math.prod(model.input_shape)
        for name in model.layer_infos():
            try:
                chain = chain_to_input(model, name)
            except vizkit.UsageError:
                continue
            if chain[0].shape[1] == pixels:  # filters drawn as images the input's size (not conv kernels)
                valid.append(name)
        return valid

    unit_arrays = frozenset({"filters", "units"})

    def compute(self, ctx: ProbeContext) -> Result:
        k = None if ctx.options["k"] == "all" else int(ctx.options["k"])
        chain = [w.to(ctx.device, torch.float64) for w in chain_to_input(ctx.model, ctx.layer)]
        # Only the chosen units are needed at the top; every unit below may contribute.
        chain[-1] = chain[-1].index_select(0, ctx.units)
        filters = linear_combinations(chain, k).cpu().numpy()
        filters = filters.reshape(len(filters), *tuple(ctx.model.input_shape))
        return Result(
            arrays={"filters": filters.astype(np.float32), "units": ctx.units.cpu().numpy().astype(np.int64)},
            meta={"k": "all" if k is None else str(k), "depth": len(chain)},
        )

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        filters, units = result.arrays["filters"], result.arrays["units"]
        k_text, depth = result.meta["k"], result.meta["depth"]
        result.figures["lincomb"] = image_grid(
            as_images(filters.astype(np.float64), filters.shape[1:]),
            labels=units.tolist(),
            title=f"lincomb of {ctx.layer} (depth {depth}), top k = {k_text} per layer",
            shared_scale=ctx.options["scale"] == "shared",
        )
        result.captions["lincomb"] = (
            f"What each unit of {ctx.layer} looks for in the input, drawn as a weighted sum of the filters of "
            f"the units it is connected to most strongly. Each tile: Σ over the {k_text} strongest connections "
            f"of the unit of its weight × the filter of the unit below, recursively down {depth - 1} layer(s) "
            f"to the input."
        )
        return result


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(LinComb)
