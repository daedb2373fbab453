"""``filters``: the weights feeding a layer from the input, drawn as images.

The simplest visualization there is, and the end-to-end check of the plugin path: it needs only
the ``weights`` capability and works on any layer whose weights live in input space (first
dense layer, first convolution, tied decoder templates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, UnitView
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid


class Filters(Probe):
    name = "filters"
    summary = "first-layer weights (or decoder templates) as an image grid"
    requires = frozenset({caps.ACTIVATIONS, caps.WEIGHTS})
    options = (
        Option("scale", str, "unit", "colour scale: each filter its own (unit) or one for all (shared)",
               choices=("unit", "shared")),
        Option("order", str, "index", "tile order: unit index, or decreasing weight norm",
               choices=("index", "norm")),
        Option("columns", int, 0, "tiles per row (0: square grid)", min=0, max=100),
    )

    @classmethod
    def valid_layers(cls, model: vizkit.ProbeModel) -> list[str]:
        return vizkit.input_weight_layers(model)

    unit_arrays = frozenset({"filters", "norms", "units"})

    def compute(self, ctx: ProbeContext) -> Result:
        weights = ctx.model.weights(ctx.layer).matrix
        picked = weights.index_select(0, ctx.units.to(weights.device)).detach().cpu().double().numpy()
        if picked.ndim != 4:  # conv filters [units, channels, kh, kw] are images already
            picked = picked.reshape(len(picked), *tuple(ctx.model.input_shape))
        norms = np.sqrt((picked.reshape(len(picked), -1) ** 2).sum(axis=1))
        return Result(arrays={"filters": picked.astype(np.float32), "norms": norms.astype(np.float32),
                              "units": ctx.units.cpu().numpy().astype(np.int64)})

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        filters, norms, units = (result.arrays[k] for k in ("filters", "norms", "units"))
        shape = filters.shape[1:]
        order = np.argsort(-norms, kind="stable") if ctx.options["order"] == "norm" else np.arange(len(filters))
        result.figures["filters"] = image_grid(
            as_images(filters[order].astype(np.float64), shape),
            labels=units[order].tolist(),
            title=f"filters into {ctx.layer}: {len(units)} units"
            + (" (sorted by weight norm)" if ctx.options["order"] == "norm" else ""),
            shared_scale=ctx.options["scale"] == "shared",
            ncols=ctx.options["columns"] or None,
        )
        result.captions["filters"] = (
            f"Weights from the input to {len(units)} units of {ctx.layer}; "
            f"norms {norms.min():.3g}–{norms.max():.3g}."
        )
        return result

    def unit_view(self, result: Result, index: int) -> UnitView:
        filters = result.arrays["filters"]
        figure = image_grid(as_images(filters[index:index + 1].astype(np.float64), filters.shape[1:]),
                            tile_inches=2.0, title="weights from the input")
        return UnitView(figure=figure, text=f"weight norm {float(result.arrays['norms'][index]):.3g}")


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Filters)
