"""``topk``: the dataset examples that drive each unit hardest (the baseline every method is compared with).

One pass over the data in batches, every requested unit at once, with a running top-k per unit
(:func:`vizkit.probe_inputs.top_examples`). For conv units the figure shows the receptive-field
crop around the unit's strongest position in each example (the deep-visualization toolbox's top-9
crops; Zeiler & Fergus Fig. 2's image patches).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, UnitView, deconvnet, probe_inputs, receptive_fields
from vizkit import capabilities as caps
from vizkit.figure import as_images, captioned_tiles, image_grid


def strongest_positions(model: Any, x: torch.Tensor, layer: str, units: torch.Tensor) -> torch.Tensor:
    """[B, 2] row, col of the maximum of channel ``units[b]`` for image ``b`` (conv maps)."""
    out = model.activations(x, layer)
    return deconvnet.unit_signal(out, units)[1]


class TopK(Probe):
    name = "topk"
    summary = "the k dataset examples that activate each unit most (receptive-field crops for conv units)"
    requires = frozenset({caps.ACTIVATIONS})
    options = (
        Option("k", int, 9, "examples per unit", min=1, max=1000),
        *probe_inputs.DATA_OPTIONS,
        *probe_inputs.UNIT_OPTIONS,
        receptive_fields.CROP_OPTION,
        Option("batch", int, 256, "examples per forward pass", min=1),
    )
    unit_arrays = frozenset({"indices", "values", "images", "positions", "crops"})

    @classmethod
    def refusal(cls, model: vizkit.ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        return (probe_inputs.data_refusal(model, options.get("data"))
                or receptive_fields.crop_refusal(model, layer, options.get("crop", "auto")))

    def compute(self, ctx: ProbeContext) -> Result:
        opts, model, info = ctx.options, ctx.model, ctx.layer_info
        position = vizkit.parse_position(opts["position"], info)
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])

        def score(x: torch.Tensor) -> torch.Tensor:
            return probe_inputs.unit_scores(model.activations(x, ctx.layer), ctx.units, info, position,
                                          "max" if opts["max"] else "mean")

        values, indices = probe_inputs.top_examples(score, examples, opts["k"], opts["batch"], ctx.device,
                                                  progress=lambda it, d: ctx.progress(it, d))
        n_units, k = indices.shape
        flat_idx = indices.reshape(-1).cpu()
        images = examples.images[flat_idx]  # [U*k, *input_shape]
        arrays: dict[str, np.ndarray] = {
            "indices": examples.rows_of(indices),  # rows of the source (the user's file), not positions
            "values": values.cpu().numpy().astype(np.float32),
            "images": images.reshape(n_units, k, *images.shape[1:]).numpy().astype(np.float32),
        }
        view = receptive_fields.crop_view(model, ctx.layer, opts["crop"])
        if view is not None:
            if position is not None:
                pos = torch.tensor(position).repeat(n_units * k, 1)
            else:
                with torch.no_grad():
                    pos = torch.cat([strongest_positions(model, x.to(ctx.device), ctx.layer, u).cpu()
                                     for x, u in zip(images.split(opts["batch"]),
                                                     ctx.units.cpu().repeat_interleave(k).split(opts["batch"]),
                                                     strict=True)])
            crops = view.crop(images, pos)
            arrays["positions"] = pos.reshape(n_units, k, 2).numpy().astype(np.int64)
            arrays["crops"] = crops.reshape(n_units, k, *crops.shape[1:]).numpy().astype(np.float32)
        else:
            arrays["positions"] = np.zeros((n_units, k, 0), np.int64)
            arrays["crops"] = arrays["images"]
        meta = {"data_source": examples.source, "receptive_field": None if view is None else view.meta()}
        meta.update(examples.meta())
        return Result(arrays=arrays, meta=meta)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        crops, values = result.arrays["crops"], result.arrays["values"]
        units = ctx.units.cpu().tolist()
        n_units, k = values.shape
        field = result.meta.get("receptive_field")
        what = receptive_fields.describe(field)
        reading = _reading(ctx)
        result.figures["topk"] = image_grid(
            as_images(crops.reshape(n_units * k, *crops.shape[2:]), crops.shape[2:]),
            ncols=k, mode="minmax", shared_scale=True,
            row_labels=[str(u) for u in units], col_labels=[f"#{i + 1}" for i in range(k)],
            title=(f"topk: {k} strongest examples per unit of {ctx.layer} "
                   f"({receptive_fields.describe(field, short=True)})"),
        )
        result.captions["topk"] = (
            f"The examples that excite each unit of {ctx.layer} most. "
            f"Rows: units of {ctx.layer}; columns: the {k} examples of the {result.meta['data_source']} with the "
            f"highest {reading}, best first ({what}, pixel values on one scale). Activations of the best examples "
            f"range {values[:, 0].min():.3g}–{values[:, 0].max():.3g}."
        )
        return result

    def unit_view(self, result: Result, index: int) -> UnitView:
        """The unit's k examples, best first, each named by its row (or file) and activation."""
        crops, values = result.arrays["crops"][index], result.arrays["values"][index]
        labels = probe_inputs.example_labels(result.meta, result.arrays["indices"][index], values)
        figure = captioned_tiles(as_images(crops, crops.shape[1:]), labels, title=(
            f"strongest examples, best first ({receptive_fields.describe(result.meta.get('receptive_field'), short=True)})"))
        return UnitView(figure=figure, text=f"best activation {float(values[0]):.4g}, k-th {float(values[-1]):.4g}")


def _reading(ctx: ProbeContext) -> str:
    if not ctx.layer_info.is_map:
        return "activation"
    if ctx.options["position"]:
        return f"activation at position {ctx.options['position']}"
    return "channel maximum" if ctx.options["max"] else "channel-mean activation"


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(TopK)
