"""``occlusion``: slide a grey square over an image and watch a unit and the classifier (Zeiler & Fergus Fig. 7).

For every window position: the unit's summed activation (its whole feature map, or one position),
the probability of the true class and the top label. All (image × window) copies go through the
model in batches, and every requested unit is read from the same forward passes. Also the
per-pixel attribution in captum's convention (``Occlusion``): for each pixel, the mean over the
windows that cover it of (activation unoccluded − activation occluded), so the two can be
compared number for number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, probe_inputs
from vizkit import capabilities as caps


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis, as captum's ``Occlusion`` places them: 0, stride, ... up to
    ceil((size − window) / stride) steps; the last window is cut at the border."""
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def window_masks(height: int, width: int, window: int, stride: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """[P·Q, H, W] 0/1 masks of every window position (row-major), and the row and column offsets."""
    rows, cols = window_starts(height, window, stride), window_starts(width, window, stride)
    r = torch.arange(height)
    c = torch.arange(width)
    in_r = (r[None, :] >= torch.tensor(rows)[:, None]) & (r[None, :] < torch.tensor(rows)[:, None] + window)
    in_c = (c[None, :] >= torch.tensor(cols)[:, None]) & (c[None, :] < torch.tensor(cols)[:, None] + window)
    masks = (in_r[:, None, :, None] & in_c[None, :, None, :]).reshape(-1, height, width)
    return masks.to(torch.float32), rows, cols


class Occlusion(probe_inputs.NeedsExamples, Probe):
    name = "occlusion"
    summary = "grey square slid over images: unit's summed activation, true-class probability, top label"
    requires = frozenset({caps.ACTIVATIONS})
    options = (
        Option("images", str, "", "which examples of the data to occlude: 'a:b' or comma-separated indices "
               "(empty: 4 spread over the data)"),
        Option("window", int, 0, "side of the grey square in pixels (0: a quarter of the image side)", min=0),
        Option("stride", int, 0, "step between window positions in pixels (0: 1 for images up to 32 px, "
               "else window/4)", min=0),
        Option("fill", float, None, "value painted into the square (default: the data's mean pixel value)"),
        Option("output", str, "", "classifier layer whose softmax gives the class probabilities "
               "(default: 'logits' or the last flat layer)"),
        *probe_inputs.DATA_OPTIONS,
        Option("position", str, "", "conv maps: 'row,col' reads the unit at that position instead of summing "
               "its whole feature map"),
        Option("batch", int, 256, "occluded copies per forward pass", min=1),
    )
    unit_arrays = frozenset({"activation_maps", "attribution", "baseline_activation"})

    def compute(self, ctx: ProbeContext) -> Result:
        opts, model, info = ctx.options, ctx.model, ctx.layer_info
        if len(model.input_shape) != 3:
            raise OptionError(f"occlusion needs image inputs [channels, height, width]; the model takes "
                              f"{tuple(model.input_shape)}")
        _, height, width = (int(s) for s in model.input_shape)
        window = opts["window"] or max(1, math.ceil(min(height, width) / 4))
        if window > min(height, width):
            raise OptionError(f"option 'window' is {window} px, larger than the {height}x{width} image; "
                              f"use at most {min(height, width)}")
        stride = opts["stride"] or (1 if max(height, width) <= 32 else max(1, window // 4))
        if stride > window:
            raise OptionError(f"option 'stride' {stride} exceeds the window {window}: pixels between windows "
                              "would never be occluded")
        position = vizkit.parse_position(opts["position"], info)
        out_layer = probe_inputs.classifier_layer(model, opts["output"], "occlusion")
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])
        picked = probe_inputs.pick(opts["images"], examples.images.shape[0], 4)
        images = examples.images[picked].to(ctx.device)
        fill = float(examples.images.mean()) if opts["fill"] is None else float(opts["fill"])
        masks, rows, cols = window_masks(height, width, window, stride)
        masks = masks.to(ctx.device)
        n_img, n_win = len(picked), masks.shape[0]

        def read(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            unit = model.activations(x, ctx.layer)
            if info.is_map:
                unit = unit.index_select(1, ctx.units)
                unit = unit[:, :, position[0], position[1]] if position else unit.sum(dim=(2, 3))
            else:
                unit = unit.reshape(x.shape[0], -1).index_select(1, ctx.units)
            logits = model.activations(x, out_layer).reshape(x.shape[0], -1)
            return unit, torch.softmax(logits.double(), dim=1)

        with torch.no_grad():
            base_unit, base_prob = read(images)
            truth = probe_inputs.true_classes(None if examples.labels is None else examples.labels[picked],
                                            base_prob, out_layer)
            pair_img = torch.arange(n_img, device=ctx.device).repeat_interleave(n_win)
            pair_win = torch.arange(n_win, device=ctx.device).repeat(n_img)
            units_out, prob_out, label_out = [], [], []
            for img_i, win_i in ctx.progress(list(zip(pair_img.split(opts["batch"]), pair_win.split(opts["batch"]),
                                                      strict=True)), "windows"):
                m = masks[win_i].unsqueeze(1)  # [b, 1, H, W]: every channel occluded
                x = images[img_i] * (1 - m) + fill * m
                unit, prob = read(x)
                units_out.append(unit)
                prob_out.append(prob.gather(1, truth[img_i].reshape(-1, 1)).squeeze(1))
                label_out.append(prob.argmax(1))
        acts = torch.cat(units_out).reshape(n_img, n_win, -1).permute(2, 0, 1)  # [U, n_img, windows]
        diff = base_unit.T.unsqueeze(2) - acts  # unoccluded − occluded
        flat_masks = masks.reshape(n_win, -1).double()
        counts = flat_masks.sum(0)  # how many windows cover each pixel (≥ 1 when stride ≤ window)
        attribution = (diff.double() @ flat_masks) / counts  # [U, n_img, H·W]
        shape_pq = (len(rows), len(cols))
        arrays = {
            "activation_maps": acts.reshape(-1, n_img, *shape_pq).cpu().numpy().astype(np.float32),
            "attribution": attribution.reshape(-1, n_img, height, width).cpu().numpy().astype(np.float32),
            "baseline_activation": base_unit.T.cpu().numpy().astype(np.float32),
            "probability_maps": torch.cat(prob_out).reshape(n_img, *shape_pq).cpu().numpy().astype(np.float32),
            "label_maps": torch.cat(label_out).reshape(n_img, *shape_pq).cpu().numpy().astype(np.int64),
            "baseline_probability": base_prob.gather(1, truth.reshape(-1, 1)).squeeze(1).cpu().numpy()
            .astype(np.float32),
            "true_labels": truth.cpu().numpy().astype(np.int64),
            "images": images.cpu().numpy().astype(np.float32),
            "indices": np.asarray(picked, dtype=np.int64),
            "window_rows": np.asarray(rows, dtype=np.int64),
            "window_cols": np.asarray(cols, dtype=np.int64),
        }
        meta = {"data_source": examples.source, "window": window, "stride": stride, "fill": fill,
                "output_layer": out_layer, "labels": "data" if examples.labels is not None else "predicted"}
        return Result(arrays=arrays, meta=meta)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        a, meta = result.arrays, result.meta
        units = ctx.units.cpu().tolist()
        shown = units[:4]
        n_img = a["images"].shape[0]
        window, stride = meta["window"], meta["stride"]
        rows, cols = a["window_rows"], a["window_cols"]
        extent = [cols[0] + window / 2 - stride / 2, cols[-1] + window / 2 + stride / 2,
                  rows[-1] + window / 2 + stride / 2, rows[0] + window / 2 - stride / 2]
        ncols = 3 + len(shown)
        fig = Figure(figsize=(2.1 * ncols, 2.0 * n_img + 0.9), layout="constrained")
        axes = np.asarray(fig.subplots(n_img, ncols, squeeze=False))
        truth_word = "true" if meta["labels"] == "data" else "predicted"
        for i in range(n_img):
            img = a["images"][i]
            ax = axes[i, 0]
            ax.imshow(img.transpose(1, 2, 0) if img.shape[0] == 3 else img.mean(0), cmap="gray")
            ax.add_patch(_square(rows[0], cols[0], window))
            ax.set_title(f"example {a['indices'][i]} ({truth_word} {a['true_labels'][i]})", fontsize=8)
            ax = axes[i, 1]
            im = ax.imshow(a["probability_maps"][i], extent=extent, vmin=0, vmax=1, cmap="magma")
            ax.set_title(f"p({truth_word}); unoccluded {a['baseline_probability'][i]:.2f}", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
            ax = axes[i, 2]
            im = ax.imshow(a["label_maps"][i], extent=extent, vmin=-0.5, vmax=9.5, cmap="tab10",
                           interpolation="nearest")
            ax.set_title("most probable label", fontsize=8)
            bar = fig.colorbar(im, ax=ax, shrink=0.8, ticks=range(10))
            bar.ax.tick_params(labelsize=6)
            for j, unit in enumerate(shown):
                ax = axes[i, 3 + j]
                im = ax.imshow(a["activation_maps"][j, i], extent=extent, cmap="viridis")
                ax.set_title(f"unit {unit}; unoccluded {a['baseline_activation'][j, i]:.3g}", fontsize=8)
                fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
        for ax in axes.flat:
            ax.set_xlim(-0.5, a["images"].shape[-1] - 0.5)
            ax.set_ylim(a["images"].shape[-2] - 0.5, -0.5)
            ax.tick_params(labelsize=6)
        reading = (f"at position {ctx.options['position']}" if ctx.options["position"] else
                   "summed over its feature map" if ctx.layer_info.is_map else "")
        fig.suptitle(f"occlusion: {window}x{window} square (fill {meta['fill']:.2f}, stride {stride}) over "
                     f"{ctx.layer} / {meta['output_layer']}", fontsize=10)
        result.figures["occlusion"] = fig
        result.captions["occlusion"] = (
            f"Each map value is drawn at the centre of the window that was covered. Columns: the example (the "
            f"square shows the window size), the {truth_word} class's probability, the most probable label, and "
            f"the activation of unit(s) {', '.join(map(str, shown))} of {ctx.layer} {reading}"
            + (f" (of {len(units)} units computed; all are in arrays.npz)" if len(units) > len(shown) else "") + "."
        )
        return result


def _square(row: int, col: int, window: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), window, window, fill=False, edgecolor="red", linewidth=1)


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Occlusion)
