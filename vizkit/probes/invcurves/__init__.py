"""``invcurves``: how far a layer's features move when the image is shifted, scaled or rotated
(Zeiler & Fergus 2013, Fig. 5).

For a few images and a sweep of each transformation: the Euclidean distance between the layer's
feature vector of the original and of the transformed image, for every chosen layer, and the
classifier's probability of the true label. The copies come from the core's transformation
module (:mod:`vizkit.image_transforms`, shared with the γ probe, so "shifted by 2 px" or "rotated by
30°" means the same everywhere); all copies of all images go through the model in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, image_transforms, probe_inputs

KIND_LABELS = {"translation": "vertical shift (px)", "rotation": "rotation (degrees)", "scale": "zoom factor"}


def sweep(kind: str, opts: dict[str, Any]) -> torch.Tensor:
    """The transformation values of one curve: shifts [K, 2] (vertical, or horizontal), angles or zooms [K]."""
    n = opts["points"]
    if kind == "translation":
        dy = torch.linspace(-opts["shift"], opts["shift"], n).round().unique()
        zero = torch.zeros_like(dy)
        return torch.stack([dy, zero] if opts["direction"] == "vertical" else [zero, dy], 1)
    if kind == "rotation":
        return torch.linspace(-opts["angle"], opts["angle"], n)
    lo, hi = opts["zoom_min"], opts["zoom_max"]
    if not 0 < lo < hi:
        raise OptionError(f"options 'zoom_min' {lo} and 'zoom_max' {hi} need 0 < zoom_min < zoom_max")
    return torch.linspace(lo, hi, n)


def curve_layers(model: Any, text: str, main: str) -> list[str]:
    """``-o layers``: comma-separated names; empty: the first layer, the probed one, and the last
    layer before the output (Zeiler & Fergus plot layer 1 and layer 7)."""
    infos = list(model.layer_infos())
    if text.strip():
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in infos]
        if bad:
            raise OptionError(f"option 'layers': unknown layer {bad[0]!r}; valid layers: {', '.join(infos)}")
        return names
    wanted = {infos[0], main, infos[-2] if len(infos) > 2 else infos[-1]}
    return [n for n in infos if n in wanted]


class InvCurves(probe_inputs.NeedsExamples, Probe):
    name = "invcurves"
    summary = "feature distance to shifted / rotated / zoomed copies per layer, and the true-class probability"
    requires = frozenset({vizkit.capabilities.ACTIVATIONS})
    options = (
        Option("kinds", str, "translation,rotation,scale", "transformations to sweep, comma-separated"),
        Option("images", str, "", "which examples: 'a:b' or comma-separated indices (empty: 5 spread over the data)"),
        Option("layers", str, "", "layers to draw curves for, comma-separated (empty: the first layer, the "
               "probed layer, and the last before the output)"),
        Option("points", int, 17, "values per sweep", min=2, max=361),
        Option("shift", int, 0, "largest shift in pixels (0: a quarter of the image side)", min=0),
        Option("direction", str, "vertical", "direction of the shift (Zeiler-Fergus: vertical)",
               choices=("vertical", "horizontal")),
        Option("angle", float, 180.0, "largest rotation in degrees (sweep -angle..angle)", min=0.0, max=360.0),
        Option("zoom_min", float, 0.5, "smallest zoom factor", min=0.01),
        Option("zoom_max", float, 1.5, "largest zoom factor", min=0.01),
        Option("output", str, "", "classifier layer for the true-class probability (default: 'logits' or the "
               "last flat layer; 'none' to skip)"),
        *probe_inputs.DATA_OPTIONS,
        Option("batch", int, 512, "transformed copies per forward pass", min=1),
    )

    def run(self, ctx: ProbeContext) -> Result:
        opts, model = dict(ctx.options), ctx.model
        if len(model.input_shape) != 3:
            raise OptionError(f"invcurves needs image inputs [channels, height, width]; the model takes "
                              f"{tuple(model.input_shape)}")
        kinds = [k.strip() for k in opts["kinds"].split(",") if k.strip()]
        for kind in kinds:
            image_transforms.check_kind(kind)
        if not kinds:
            raise OptionError("option 'kinds' names no transformation; choose from " + ", ".join(image_transforms.KINDS))
        _, height, width = (int(s) for s in model.input_shape)
        opts["shift"] = opts["shift"] or max(1, min(height, width) // 4)
        layers = curve_layers(model, opts["layers"], ctx.layer)
        out_layer = (None if opts["output"].strip().lower() == "none"
                     else probe_inputs.classifier_layer(model, opts["output"], "invcurves"))
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])
        picked = examples.pick(opts["images"], 5)
        images = examples.images[picked].to(ctx.device)
        truth = None
        arrays: dict[str, np.ndarray] = {"indices": examples.rows_of(picked),  # rows of the source
                                         "images": images.cpu().numpy().astype(np.float32)}
        with torch.no_grad():
            base = {name: model.activations(images, name).reshape(len(picked), -1) for name in layers}
            if out_layer is not None:
                logits = model.activations(images, out_layer).reshape(len(picked), -1)
                truth = probe_inputs.true_classes(None if examples.labels is None else examples.labels[picked],
                                                logits, out_layer)
                arrays["true_labels"] = truth.cpu().numpy().astype(np.int64)
            for kind in kinds:
                values = sweep(kind, opts)
                copies = image_transforms.transform_images(images, kind, values.to(torch.float64), (height, width))
                k = copies.shape[1]
                flat = copies.reshape(-1, *model.input_shape).to(images.dtype)  # [n·K, C, H, W], image-major
                owner = torch.arange(len(picked), device=ctx.device).repeat_interleave(k)
                dist = {name: [] for name in layers}
                probs, labels = [], []
                for x, who in zip(flat.split(opts["batch"]), owner.split(opts["batch"]), strict=True):
                    for name in layers:
                        feat = model.activations(x, name).reshape(x.shape[0], -1)
                        dist[name].append((feat - base[name][who]).double().norm(dim=1))
                    if out_layer is not None:
                        p = torch.softmax(model.activations(x, out_layer).reshape(x.shape[0], -1).double(), 1)
                        probs.append(p.gather(1, truth[who].reshape(-1, 1)).squeeze(1))
                        labels.append(p.argmax(1))
                arrays[f"{kind}_values"] = values.numpy().astype(np.float32)
                arrays[f"{kind}_copies"] = copies[:, :, :1].cpu().numpy().astype(np.float32)
                arrays[f"{kind}_distance"] = np.stack(
                    [torch.cat(dist[name]).reshape(len(picked), k).cpu().numpy() for name in layers]).astype(np.float32)
                if out_layer is not None:
                    arrays[f"{kind}_probability"] = torch.cat(probs).reshape(len(picked), k).cpu().numpy() \
                        .astype(np.float32)
                    arrays[f"{kind}_label"] = torch.cat(labels).reshape(len(picked), k).cpu().numpy().astype(np.int64)
        meta = {**examples.meta(), "layers": layers, "kinds": kinds, "output_layer": out_layer,
                "labels": None if truth is None else ("data" if examples.labels is not None else "predicted")}
        result = Result(arrays=arrays, meta=meta)
        result.figures["invcurves"] = _figure(result, opts)
        result.captions["invcurves"] = (
            f"How far each layer's representation of an example moves as the example is transformed step by "
            f"step ({', '.join(kinds)}). "
            f"Rows: {', '.join(kinds)} of {len(picked)} examples of the {examples.source} (first column: one "
            f"example across the sweep). Then, per layer, the Euclidean distance between its feature vector for "
            f"the original and for the transformed image (one line per example, all units of the layer)"
            + (f"; last column: the probability of the {meta['labels']} label ({out_layer})." if out_layer else ".")
            + " Copies reaching outside the image are zero-filled (vizkit.image_transforms)."
        )
        return result


#: panels per figure row: more layers wrap onto further rows, so the figure never grows wider
#: than about 17 inches (1,740 px at the saved 100 dpi) however many layers are asked for
MAX_COLUMNS = 6


def _figure(result: Result, opts: dict[str, Any]) -> Figure:
    a, meta = result.arrays, result.meta
    kinds, layers = meta["kinds"], meta["layers"]
    with_prob = meta["output_layer"] is not None
    panels = 1 + len(layers) + int(with_prob)  # per kind: the strip, one per layer, the probability
    ncols = min(panels, MAX_COLUMNS)
    per_kind = -(-panels // ncols)
    fig = Figure(figsize=(2.9 * ncols, 2.5 * len(kinds) * per_kind + 0.6), layout="constrained")
    grid = np.asarray(fig.subplots(len(kinds) * per_kind, ncols, squeeze=False))
    n_img = a["images"].shape[0]
    colours = [f"C{i}" for i in range(n_img)]
    for row, kind in enumerate(kinds):
        axes = [grid[row * per_kind + j // ncols, j % ncols] for j in range(panels)]
        for ax in grid[row * per_kind:(row + 1) * per_kind].flat[panels:]:
            ax.set_visible(False)
        values = a[f"{kind}_values"]
        x = values[:, 0] + values[:, 1] if kind == "translation" else values
        xlabel = (KIND_LABELS[kind] if kind != "translation" or opts["direction"] == "vertical"
                  else "horizontal shift (px)")
        strip_at = np.linspace(0, len(x) - 1, min(5, len(x))).round().astype(int)
        strip = np.concatenate([np.pad(a[f"{kind}_copies"][0, i, 0], 1, constant_values=1.0) for i in strip_at], 1)
        ax = axes[0]
        ax.imshow(strip, cmap="gray", vmin=min(0.0, float(strip.min())), vmax=max(1.0, float(strip.max())))
        ax.set_xticks([(i + 0.5) * strip.shape[1] / len(strip_at) for i in range(len(strip_at))])
        ax.set_xticklabels([f"{x[i]:.3g}" for i in strip_at], fontsize=7)
        ax.set_yticks([])
        ax.set_title(f"{kind}: example {a['indices'][0]}", fontsize=9)
        for col, name in enumerate(layers, start=1):
            ax = axes[col]
            for i in range(n_img):
                ax.plot(x, a[f"{kind}_distance"][col - 1, i], color=colours[i], lw=1.2, label=str(a["indices"][i]))
            ax.set_title(f"{name}: feature distance", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_ylim(bottom=0)
        if with_prob:
            ax = axes[-1]
            for i in range(n_img):
                ax.plot(x, a[f"{kind}_probability"][i], color=colours[i], lw=1.2,
                        label=f"ex. {a['indices'][i]} (label {a['true_labels'][i]})")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"p({meta['labels']} label)", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.legend(fontsize=6, loc="lower left")
    fig.suptitle("invcurves: feature distance between each image and its transformed copies (Zeiler-Fergus Fig. 5)",
                 fontsize=10)
    return fig


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(InvCurves)
