"""``evolution``: how units' strongest activations develop through training (Zeiler & Fergus Fig. 4).

For every kept training checkpoint — the convnet's ``--keep-epochs`` snapshots, or any list of
checkpoint files of one architecture — each unit's strongest activation over the data (one
batched top-1 pass per checkpoint, :func:`vizkit.probe_inputs.top_examples`) projected down to
pixels with the deconvnet (:mod:`vizkit.deconvnet`), one column per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, deconvnet, probe_inputs, receptive_fields
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid

#: The capability of models that keep training snapshots (registered by the convnet kind).
EPOCH_SNAPSHOTS = "epoch_snapshots"
_NO_EPOCHS = ("the model keeps no training epochs; train with --keep-epochs 1,2,5 (convnet) or list checkpoints "
              "with -o checkpoints a.pt,b.pt")


def checkpoints(model: Any, text: str, layer: str) -> tuple[list[str], list[Any]]:
    """``(labels, models)`` in training order: the files in ``text`` (comma-separated), or the
    epochs the model kept (``vizkit train convnet --keep-epochs``) followed by the final model."""
    shape = model.layer_infos()[layer].shape
    if text.strip():
        labels, models = [], []
        for path in (p.strip() for p in text.split(",") if p.strip()):
            other = vizkit.load(path)
            infos = other.layer_infos()
            if layer not in infos or infos[layer].shape != shape:
                raise OptionError(f"checkpoint {path} has no layer {layer!r} of shape {shape}; the checkpoints must "
                                  "share the probed model's architecture")
            labels.append(path.rsplit("/", 1)[-1])
            models.append(other)
        return labels, models
    kept = model.epoch_models() if EPOCH_SNAPSHOTS in model.capabilities else {}
    if not kept:
        raise OptionError(_NO_EPOCHS)
    labels = [f"epoch {e}" for e in kept]
    models = list(kept.values())
    last = models[-1]
    same = all(torch.equal(a.detach().cpu(), b.detach().cpu())
               for a, b in zip(last.parameters(), model.parameters(), strict=True))
    if not same:
        labels.append("final")
        models.append(model)
    else:
        models[-1] = model
    return labels, models


class Evolution(Probe):
    name = "evolution"
    summary = "each unit's strongest activation across kept training checkpoints, projected to pixels (Fig. 4)"
    requires = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD})
    options = (
        Option("checkpoints", str, "", "checkpoint files in training order, comma-separated (empty: the epochs "
               "the model kept with --keep-epochs, then the final model)"),
        Option("rule", str, "deconv", "backward rule for the projections", choices=deconvnet.RULES),
        Option("data", str, "", "images to search: a dataset name or a path (empty: the model's own data)"),
        Option("split", str, "auto", "which part of the data: auto (a registered dataset's training examples, "
               "as Zeiler-Fergus; all of a user's file, in file order), test, train or all", choices=probe_inputs.SPLITS),
        Option("limit", int, 0, "use only the first N examples (0: all)", min=0),
        *probe_inputs.UNIT_OPTIONS,
        Option("batch", int, 256, "examples per forward pass", min=1),
    )

    @classmethod
    def refusal(cls, model: vizkit.ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        """Without a list of checkpoint files the model itself must have kept epochs; and the
        projections need a layer the deconvnet can follow."""
        if not str(options.get("checkpoints") or "").strip() and not (
                EPOCH_SNAPSHOTS in model.capabilities and model.epoch_models()):
            return _NO_EPOCHS
        return probe_inputs.data_refusal(model, options["data"]) or deconvnet.followable_refusal(
            model, layer, options["rule"])

    def run(self, ctx: ProbeContext) -> Result:
        opts, info = ctx.options, ctx.layer_info
        labels, models = checkpoints(ctx.model, opts["checkpoints"], ctx.layer)
        for m in models:
            deconvnet.check_followable(m, ctx.layer, opts["rule"])
        position = vizkit.parse_position(opts["position"], info)
        examples = probe_inputs.load_examples(ctx.model, opts["data"], opts["split"], opts["limit"], auto="train")
        values, indices, projections, positions = [], [], [], []
        for model in ctx.progress(models, "checkpoints"):
            if isinstance(model, torch.nn.Module):
                model.to(ctx.device)

            def score(x: torch.Tensor, model: Any = model) -> torch.Tensor:
                return probe_inputs.unit_scores(model.activations(x, ctx.layer), ctx.units, info, position,
                                              "max" if opts["max"] else "mean")

            v, i = probe_inputs.top_examples(score, examples, 1, opts["batch"], ctx.device)
            images = examples.images[i[:, 0].cpu()].to(ctx.device)
            kept: list[torch.Tensor] = []

            def signal(out: torch.Tensor, kept: list[torch.Tensor] = kept) -> torch.Tensor:
                sig, pos = deconvnet.unit_signal(out, ctx.units, "max", position)
                kept.append(pos)
                return sig

            projections.append(deconvnet.project(model, images, ctx.layer, signal, opts["rule"]).cpu())
            positions.append(kept[0].cpu())
            values.append(v[:, 0].cpu())
            indices.append(i[:, 0].cpu())
        proj = torch.stack(projections, 1)  # [U, E, *input_shape]
        pos = torch.stack(positions, 1)  # [U, E, 2 or 0]
        idx = torch.stack(indices, 1)
        arrays: dict[str, np.ndarray] = {
            "values": torch.stack(values, 1).numpy().astype(np.float32),
            "indices": examples.rows_of(idx),  # rows of the source (the user's file), not positions
            "projections": proj.numpy().astype(np.float32),
            "images": examples.images[idx.reshape(-1)].reshape(*idx.shape, *examples.images.shape[1:]).numpy()
            .astype(np.float32),
            "positions": pos.numpy().astype(np.int64),
        }
        view = (receptive_fields.layer_field(ctx.model, ctx.layer) if info.is_map and len(ctx.model.input_shape) == 3
                else None)
        if view is not None and view.crops:
            flat_pos = pos.reshape(-1, 2)
            for key, full in (("crops", torch.from_numpy(arrays["images"])), ("projection_crops", proj)):
                crops = view.crop(full.reshape(-1, *full.shape[2:]).float(), flat_pos)
                arrays[key] = crops.reshape(*idx.shape, *crops.shape[1:]).numpy().astype(np.float32)
        else:
            arrays["crops"], arrays["projection_crops"] = arrays["images"], arrays["projections"]
        meta = {"checkpoints": labels, **examples.meta(),
                "receptive_field": None if view is None else view.meta()}
        result = Result(arrays=arrays, meta=meta)
        result.figures["evolution"] = _figure(ctx, result)
        rule = {"deconv": "deconvnet", "guided": "guided-backprop", "gradient": "gradient"}[opts["rule"]]
        result.captions["evolution"] = (
            f"How the units of {ctx.layer} changed during training: at each checkpoint, the example that "
            f"excites each unit most and the pixels responsible. "
            f"Columns: {', '.join(labels)}. Left: for each unit of {ctx.layer} (rows), the example of the "
            f"{examples.source} that activates it most at that point of training "
            f"({receptive_fields.describe(meta['receptive_field'])}); middle: its {rule} projection to "
            f"pixels (each tile on its own scale); right: that strongest activation across the checkpoints."
        )
        return result


def _figure(ctx: ProbeContext, result: Result) -> Figure:
    a, labels = result.arrays, result.meta["checkpoints"]
    crops, proj, values = a["crops"], a["projection_crops"], a["values"]
    n_units, n_ep = values.shape
    units = [str(u) for u in ctx.units.cpu().tolist()]
    side = crops.shape[-1] / crops.shape[-2]
    fig = Figure(figsize=(max(2 * n_ep * 0.55 * side + 5.5, 9.0), min(max(n_units * 0.55 + 1.8, 3.5), 22.0)),
                 layout="constrained")
    left, mid, right = fig.subplots(1, 3, width_ratios=[n_ep, n_ep, max(3, n_ep * 0.8)])
    cols = [label.replace("epoch ", "e") for label in labels]
    image_grid(as_images(crops.reshape(n_units * n_ep, *crops.shape[2:]), crops.shape[2:]), ncols=n_ep,
               mode="minmax", shared_scale=True, row_labels=units, col_labels=cols, title="strongest example", ax=left)
    image_grid(as_images(proj.reshape(n_units * n_ep, *proj.shape[2:]), proj.shape[2:]), ncols=n_ep,
               mode="symmetric", row_labels=units, col_labels=cols, title="projection to pixels", ax=mid)
    for u in range(min(n_units, 10)):
        right.plot(range(n_ep), values[u], marker="o", ms=3, lw=1, label=f"unit {units[u]}")
    right.set_xticks(range(n_ep))
    right.set_xticklabels(cols, fontsize=7)
    right.set_ylabel("strongest activation", fontsize=8)
    right.tick_params(labelsize=7)
    right.legend(fontsize=6)
    right.set_title("top activation" + (" (first 10 units)" if n_units > 10 else ""), fontsize=10)
    fig.suptitle(f"evolution: {ctx.layer} units through training (Zeiler-Fergus Fig. 4)", fontsize=11)
    return fig


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Evolution)
