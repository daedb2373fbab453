"""``deconv``: each unit's strongest dataset activations projected back to pixels (Zeiler & Fergus 2013).

For every unit: its top-k examples (one batched pass, :func:`vizkit.probe_inputs.top_examples`),
then one batched backward pass per chunk of (unit × example) pairs in which only that unit's
strongest activation is kept (all others zero) and sent down by the deconvnet rule — unpool with
the recorded max locations, rectify, transposed filters (:mod:`vizkit.deconvnet`). The plain
gradient and guided backprop are the other ``rule`` choices, because users compare them. The
projections are shown beside the receptive-field crops of the images that caused them (Fig. 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, UnitView, deconvnet, probe_inputs, receptive_fields
from vizkit import capabilities as caps
from vizkit.figure import as_images, captioned_tiles, image_grid, normalise

RULE_NAMES = {"deconv": "deconvnet", "guided": "guided backprop", "gradient": "gradient"}


def project_units(
    model: Any, images: torch.Tensor, layer: str, units: torch.Tensor, rule: str, mode: str,
    position: tuple[int, int] | None, batch: int, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections [M, *input_shape] of unit ``units[m]`` on ``images[m]`` and the positions
    [M, 2] (or [M, 0]) that were kept; M pairs in chunks of ``batch``."""
    outs, where = [], []
    for x, u in zip(images.split(batch), units.split(batch), strict=True):
        u = u.to(device)
        kept: list[torch.Tensor] = []

        def signal(out: torch.Tensor, u: torch.Tensor = u, kept: list[torch.Tensor] = kept) -> torch.Tensor:
            sig, pos = deconvnet.unit_signal(out, u, mode, position)
            kept.append(pos)
            return sig

        outs.append(deconvnet.project(model, x.to(device), layer, signal, rule).cpu())
        where.append(kept[0].cpu())
    return torch.cat(outs), torch.cat(where)


class Deconv(Probe):
    name = "deconv"
    summary = "top-k activations of each unit projected to pixels (deconvnet; gradient, guided backprop)"
    requires = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD})
    options = (
        Option("k", int, 9, "examples per unit", min=1, max=1000),
        Option("rule", str, "deconv", "backward rule through ReLUs: deconv (ReLU of the incoming signal), "
               "guided (also masked by the forward sign), gradient (plain)", choices=deconvnet.RULES),
        Option("project", str, "max", "conv units: project only the strongest position of the channel (max, "
               "Zeiler-Fergus) or the whole channel map (map)", choices=("max", "map")),
        *probe_inputs.DATA_OPTIONS,
        *probe_inputs.UNIT_OPTIONS,
        receptive_fields.CROP_OPTION,
        Option("batch", int, 128, "(unit, example) pairs per backward pass", min=1),
    )
    unit_arrays = frozenset({"indices", "values", "images", "projections", "positions", "crops",
                             "projection_crops"})

    @classmethod
    def refusal(cls, model: vizkit.ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        """Examples to search, and a network the deconvnet can follow (convolutions, rectifiers, max
        pooling) down to the input."""
        return (probe_inputs.data_refusal(model, options["data"])
                or deconvnet.followable_refusal(model, layer, options["rule"])
                or ("-o crop yes goes with -o project max (a whole channel map has no one window)"
                    if options.get("crop") == "yes" and options.get("project") == "map" else None)
                or receptive_fields.crop_refusal(model, layer, options.get("crop", "auto")))

    def compute(self, ctx: ProbeContext) -> Result:
        opts, model, info = ctx.options, ctx.model, ctx.layer_info
        deconvnet.check_followable(model, ctx.layer, opts["rule"])
        position = vizkit.parse_position(opts["position"], info)
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])

        def score(x: torch.Tensor) -> torch.Tensor:
            return probe_inputs.unit_scores(model.activations(x, ctx.layer), ctx.units, info, position,
                                          "max" if opts["max"] else "mean")

        values, indices = probe_inputs.top_examples(score, examples, opts["k"], 256, ctx.device,
                                                  progress=lambda it, d: ctx.progress(it, d))
        n_units, k = indices.shape
        images = examples.images[indices.reshape(-1).cpu()]
        pair_units = ctx.units.cpu().repeat_interleave(k)
        proj, pos = project_units(model, images, ctx.layer, pair_units, opts["rule"], opts["project"], position,
                                  opts["batch"], ctx.device)
        shape = (n_units, k)
        arrays = {
            "indices": examples.rows_of(indices),  # rows of the source (the user's file), not positions
            "values": values.cpu().numpy().astype(np.float32),
            "images": images.reshape(*shape, *images.shape[1:]).numpy().astype(np.float32),
            "projections": proj.reshape(*shape, *proj.shape[1:]).numpy().astype(np.float32),
            "positions": pos.reshape(*shape, pos.shape[1]).numpy().astype(np.int64),
        }
        view = receptive_fields.crop_view(model, ctx.layer, opts["crop"] if opts["project"] == "max" else "no")
        if view is not None and view.crops:
            for key, full in (("crops", images), ("projection_crops", proj)):
                crops = view.crop(full.to(torch.float32), pos)
                arrays[key] = crops.reshape(*shape, *crops.shape[1:]).numpy().astype(np.float32)
        else:
            arrays["crops"], arrays["projection_crops"] = arrays["images"], arrays["projections"]
        meta = {"data_source": examples.source, "receptive_field": None if view is None else view.meta()}
        meta.update(examples.meta())
        return Result(arrays=arrays, meta=meta)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        crops, proj, values = (result.arrays[k] for k in ("crops", "projection_crops", "values"))
        units = [str(u) for u in ctx.units.cpu().tolist()]
        n_units, k = values.shape
        rule = RULE_NAMES[ctx.options["rule"]]
        field = result.meta.get("receptive_field")
        what = receptive_fields.describe(field)
        side = crops.shape[-1] / crops.shape[-2]
        width = min(2 * (k * 0.5 * side + 0.6) + 1.0, 18.0)
        fig = Figure(figsize=(max(width, 7.0), min(max(n_units * 0.5 + 1.8, 3.0), 22.0)), layout="constrained")
        left, right = fig.subplots(1, 2)
        cols = [f"#{i + 1}" for i in range(k)]
        image_grid(as_images(crops.reshape(n_units * k, *crops.shape[2:]), crops.shape[2:]), ncols=k,
                   mode="minmax", shared_scale=True, row_labels=units, col_labels=cols,
                   title=f"top {k} examples ({receptive_fields.describe(field, short=True)})", ax=left)
        image_grid(as_images(proj.reshape(n_units * k, *proj.shape[2:]), proj.shape[2:]), ncols=k,
                   mode="symmetric", row_labels=units, col_labels=cols, title=f"{rule} projections", ax=right)
        fig.suptitle(f"deconv: {ctx.layer} units, strongest activations projected to pixels ({rule})", fontsize=11)
        result.figures["deconv"] = fig
        kept = ("the whole channel map" if ctx.options["project"] == "map" or not ctx.layer_info.is_map
                else "only the unit's strongest position")
        result.captions["deconv"] = (
            f"The examples that excite each unit of {ctx.layer} most, and the pixels in them the unit responds "
            f"to. Left: the {k} examples of the {result.meta['data_source']} that activate each unit of {ctx.layer} "
            f"most, best first ({what}); right: the {rule} projection to pixels of {kept} in each "
            f"(all other activations of the layer set to zero). Best activations {values[:, 0].min():.3g}–{values[:, 0].max():.3g}."
        )
        return result

    def unit_view(self, result: Result, index: int) -> UnitView:
        """Each of the unit's examples beside its projection to pixels, pair by pair."""
        crops, proj = result.arrays["crops"][index], result.arrays["projection_crops"][index]
        values = result.arrays["values"][index]
        labels = probe_inputs.example_labels(result.meta, result.arrays["indices"][index], values)
        rule = RULE_NAMES.get(result.meta.get("options", {}).get("rule", ""), "projection")
        shape = crops.shape[1:]
        pictures = np.stack([normalise(as_images(crops, shape), "minmax", shared=True),
                             normalise(as_images(proj, shape), "symmetric")], axis=1)  # example, projection
        captions = [text for label in labels for text in (label, rule)]
        figure = captioned_tiles(pictures.reshape(-1, *pictures.shape[2:]), captions, ncols=4, mode="minmax",
                                 shared_scale=True, title="each example (left) and what the unit saw in it (right, "
                                                          "grey = 0)")
        return UnitView(figure=figure, text=f"best activation {float(values[0]):.4g}")


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Deconv)
