"""``occlusion``: slide a grey square over an image and watch a unit and the classifier (Zeiler & Fergus Fig. 7).

For every window position: the unit's summed activation (its whole feature map, or one position),
the probability of the true class and the top label. All (image × window) copies go through the
model in batches, and each batch is one forward pass that yields every requested unit and the
classifier's output together (:func:`vizkit.layer_activations`). Also the per-pixel attribution
in captum's convention (``Occlusion``): for each pixel, the mean over the windows that cover it of
(activation unoccluded − activation occluded), so the two can be compared number for number.
Windows are products of a row span and a column span, so that mean is two small matrix products
(rows × windows × columns) rather than one product with every window's H×W mask.

The label panel colours only the classes that occur: the (up to) ten most frequent top labels,
the rest grey as "other", named from :mod:`vizkit.class_names` when names are known; a fixed
0–9 key says nothing about a 1000-class model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, UnitView, probe_inputs
from vizkit import capabilities as caps
from vizkit.class_names import class_names, describe

#: the label panel colours at most this many classes (tab10); the others are grey "other"
MAX_CLASSES_SHOWN = 10
OTHER_GREY = (0.82, 0.82, 0.82, 1.0)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis, as captum's ``Occlusion`` places them: 0, stride, ... up to
    ceil((size − window) / stride) steps; the last window is cut at the border."""
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def window_spans(size: int, starts: list[int], window: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[len(starts), size] bool: which pixels of one axis each window offset covers. A window's
    mask is the outer product of its row span and column span, so no [P·Q, H, W] stack is kept."""
    pixel = torch.arange(size, device=device)
    start = torch.tensor(starts, device=device)[:, None]
    return (pixel[None, :] >= start) & (pixel[None, :] < start + window)


def window_masks(height: int, width: int, window: int, stride: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """[P·Q, H, W] 0/1 masks of every window position (row-major), and the row and column offsets."""
    rows, cols = window_starts(height, window, stride), window_starts(width, window, stride)
    in_r, in_c = window_spans(height, rows, window), window_spans(width, cols, window)
    masks = (in_r[:, None, :, None] & in_c[None, :, None, :]).reshape(-1, height, width)
    return masks.to(torch.float32), rows, cols


def classes_by_frequency(label_maps: np.ndarray, limit: int = MAX_CLASSES_SHOWN) -> list[int]:
    """The (up to ``limit``) classes that are top label most often over all maps, most frequent
    first, ties to the lower class: the ones worth a colour of their own."""
    counts = np.bincount(np.asarray(label_maps).reshape(-1))
    present = np.flatnonzero(counts)
    order = present[np.lexsort((present, -counts[present]))]
    return [int(c) for c in order[:limit]]


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
        Option("labels", str, "", "class names: a .txt (one per line) or .json list (default: a string array "
               "'class_names' in the .npz data, or the model's; else classes are numbers)"),
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
        names = class_names(model, opts["data"], opts["labels"], math.prod(model.layer_infos()[out_layer].shape))
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])
        picked = examples.pick(opts["images"], 4)
        images = examples.images[picked].to(ctx.device)
        fill = float(examples.images.mean()) if opts["fill"] is None else float(opts["fill"])
        rows, cols = window_starts(height, window, stride), window_starts(width, window, stride)
        in_rows, in_cols = window_spans(height, rows, window, ctx.device), window_spans(width, cols, window, ctx.device)
        n_img, n_win = len(picked), len(rows) * len(cols)

        def read(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The units and the class probabilities of a batch, from one forward pass."""
            outs = vizkit.layer_activations(model, x, list(dict.fromkeys([ctx.layer, out_layer])))
            unit = outs[ctx.layer]
            if info.is_map:
                unit = unit[:, :, position[0], position[1]] if position else unit.sum(dim=(2, 3))
            unit = unit.reshape(x.shape[0], -1).index_select(1, ctx.units)
            logits = outs[out_layer].reshape(x.shape[0], -1)
            return unit, torch.softmax(logits.double(), dim=1)

        with torch.no_grad():
            base_unit, base_prob = read(images)
            truth = probe_inputs.true_classes(None if examples.labels is None else examples.labels[picked],
                                            base_prob, out_layer)
            units_out, prob_out, label_out = [], [], []
            pairs = torch.arange(n_img * n_win, device=ctx.device)  # (image, window), row-major
            for pair in ctx.progress(pairs.split(opts["batch"]), "windows"):
                img_i, win_i = pair // n_win, pair % n_win
                covered = in_rows[win_i // len(cols)].unsqueeze(2) & in_cols[win_i % len(cols)].unsqueeze(1)
                x = images[img_i].masked_fill_(covered.unsqueeze(1), fill)  # a fresh copy; every channel
                unit, prob = read(x)
                units_out.append(unit)
                prob_out.append(prob.gather(1, truth[img_i].reshape(-1, 1)).squeeze(1))
                label_out.append(prob.argmax(1))
        acts = torch.cat(units_out).reshape(n_img, n_win, -1).permute(2, 0, 1)  # [U, n_img, windows]
        shape_pq = (len(rows), len(cols))
        diff = (base_unit.T.unsqueeze(2) - acts).double().reshape(-1, n_img, *shape_pq)  # unoccluded − occluded
        span_r, span_c = in_rows.double(), in_cols.double()
        counts = span_r.sum(0)[:, None] * span_c.sum(0)[None, :]  # windows covering each pixel (≥ 1: stride ≤ window)
        attribution = (span_r.T @ diff @ span_c) / counts  # Σ over windows of diff · row span ⊗ column span
        label_maps = torch.cat(label_out).reshape(n_img, *shape_pq).cpu().numpy().astype(np.int64)
        truth_np = truth.cpu().numpy().astype(np.int64)
        shown = classes_by_frequency(label_maps)
        arrays = {
            "activation_maps": acts.reshape(-1, n_img, *shape_pq).cpu().numpy().astype(np.float32),
            "attribution": attribution.cpu().numpy().astype(np.float32),
            "baseline_activation": base_unit.T.cpu().numpy().astype(np.float32),
            "probability_maps": torch.cat(prob_out).reshape(n_img, *shape_pq).cpu().numpy().astype(np.float32),
            "label_maps": label_maps,
            "baseline_probability": base_prob.gather(1, truth.reshape(-1, 1)).squeeze(1).cpu().numpy()
            .astype(np.float32),
            "true_labels": truth_np,
            "images": images.cpu().numpy().astype(np.float32),
            "indices": examples.rows_of(picked),
            "window_rows": np.asarray(rows, dtype=np.int64),
            "window_cols": np.asarray(cols, dtype=np.int64),
        }
        meta = {**examples.meta(), "window": window, "stride": stride, "fill": fill,
                "output_layer": out_layer, "labels": "data" if examples.labels is not None else "predicted",
                # the label panel's key: its classes, and names (when known) for them and the true classes
                "classes_shown": shown, "n_classes": int(base_prob.shape[1]),
                "class_names": {} if names is None else
                {str(c): names[c] for c in sorted({*shown, *truth_np.tolist()})}}
        return Result(arrays=arrays, meta=meta)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        a, meta = result.arrays, result.meta
        units = ctx.units.cpu().tolist()
        shown = units[:4]
        n_img = a["images"].shape[0]
        window, stride = meta["window"], meta["stride"]
        rows, cols = a["window_rows"], a["window_cols"]
        extent = _extent(a, meta)
        ncols = 3 + len(shown)
        names = {int(c): name for c, name in meta.get("class_names", {}).items()}
        classes = [int(c) for c in meta.get("classes_shown", [])]
        key_width = 0.8 if names else 0.0  # named classes widen the label key
        fig = Figure(figsize=(2.1 * ncols + key_width, 2.0 * n_img + 0.9), layout="constrained")
        axes = np.asarray(fig.subplots(n_img, ncols, squeeze=False))
        truth_word = "true" if meta["labels"] == "data" else "predicted"
        for i in range(n_img):
            img = a["images"][i]
            ax = axes[i, 0]
            ax.imshow(img.transpose(1, 2, 0) if img.shape[0] == 3 else img.mean(0), cmap="gray")
            ax.add_patch(_square(rows[0], cols[0], window))
            truth = int(a["true_labels"][i])
            name = _cut(names.get(truth, ""), 22)  # its own line: a panel is about 24 characters wide
            ax.set_title(f"example {a['indices'][i]}: {truth_word} {truth}" + (f"\n{name}" if name else ""), fontsize=8)
            ax = axes[i, 1]
            im = ax.imshow(a["probability_maps"][i], extent=extent, vmin=0, vmax=1, cmap="magma")
            ax.set_title(f"p({truth_word}); unoccluded {a['baseline_probability'][i]:.2f}", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
            _label_panel(fig, axes[i, 2], a["label_maps"][i], classes, names, extent)
            for j, unit in enumerate(shown):
                ax = axes[i, 3 + j]
                im = ax.imshow(a["activation_maps"][j, i], extent=extent, cmap="viridis")
                ax.set_title(f"unit {unit}; unoccluded {a['baseline_activation'][j, i]:.3g}", fontsize=8)
                fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
        for ax in axes.flat:
            ax.set_xlim(-0.5, a["images"].shape[-1] - 0.5)
            ax.set_ylim(a["images"].shape[-2] - 0.5, -0.5)
            ax.tick_params(labelsize=6)
        for ax in axes[:, 1:].flat:  # the maps share the image's pixel axes; its ticks suffice (and tick
            ax.set_xticks([])       # labels were most of the PNG's rendering time)
            ax.set_yticks([])
        reading = (f"at position {ctx.options['position']}" if ctx.options["position"] else
                   "summed over its feature map" if ctx.layer_info.is_map else "")
        fig.suptitle(f"occlusion: {window}x{window} square (fill {meta['fill']:.2f}, stride {stride}) over "
                     f"{ctx.layer} / {meta['output_layer']}", fontsize=10)
        result.figures["occlusion"] = fig
        result.captions["occlusion"] = (
            f"Which parts of each example the network relies on: how its prediction and the units of "
            f"{ctx.layer} respond when a square of the image is covered, at every place. "
            f"Each map value is drawn at the centre of the window that was covered. Columns: the example (the "
            f"square shows the window size), the {truth_word} class's probability, the most probable label (the "
            f"{min(len(classes), MAX_CLASSES_SHOWN)} most frequent classes coloured, others grey), and "
            f"the activation of unit(s) {', '.join(map(str, shown))} of {ctx.layer} {reading}"
            + (f" (of {len(units)} units computed; all are in arrays.npz)" if len(units) > len(shown) else "") + "."
        )
        return result

    def unit_view(self, result: Result, index: int) -> UnitView:
        """Each example (top) above the unit's activation with the square at each place (bottom)."""
        a = result.arrays
        n_img = a["images"].shape[0]
        fig = Figure(figsize=(max(2.0 * n_img, 4.0), 4.4), layout="constrained")
        axes = np.asarray(fig.subplots(2, n_img, squeeze=False))
        labels = probe_inputs.example_labels(result.meta, a["indices"])
        for i in range(n_img):
            img = a["images"][i]
            axes[0, i].imshow(img.transpose(1, 2, 0) if img.shape[0] == 3 else img.mean(0), cmap="gray")
            axes[0, i].set_title(labels[i], fontsize=8)
            im = axes[1, i].imshow(a["activation_maps"][index, i], extent=_extent(a, result.meta), cmap="viridis")
            axes[1, i].set_title(f"unoccluded {a['baseline_activation'][index, i]:.3g}", fontsize=8)
            fig.colorbar(im, ax=axes[1, i], shrink=0.8).ax.tick_params(labelsize=6)
        for ax in axes.flat:
            ax.set_xlim(-0.5, a["images"].shape[-1] - 0.5)
            ax.set_ylim(a["images"].shape[-2] - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"activation with a {result.meta['window']}-px square over each place (bottom)", fontsize=9)
        drop = a["baseline_activation"][index][:, None, None] - a["activation_maps"][index]
        return UnitView(figure=fig, text=f"largest drop when occluded {float(drop.max()):.3g}")


def _extent(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> list[float]:
    """Where the window-centred maps sit on the image's pixel axes (imshow's extent)."""
    window, stride = meta["window"], meta["stride"]
    rows, cols = arrays["window_rows"], arrays["window_cols"]
    return [cols[0] + window / 2 - stride / 2, cols[-1] + window / 2 + stride / 2,
            rows[-1] + window / 2 + stride / 2, rows[0] + window / 2 - stride / 2]


def _label_panel(fig: Figure, ax: Any, label_map: np.ndarray, classes: list[int], names: dict[int, str],
                 extent: list[float]) -> None:
    """The most probable label at each window: each of the run's ``classes`` keeps one tab10 colour
    in every row, classes beyond them are grey "other", and the key lists only what this map holds."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    palette = colormaps["tab10"]
    present = [c for c in classes if (label_map == c).any()]
    others = np.setdiff1d(np.unique(label_map), classes)
    code = np.full(label_map.shape, len(present))
    for k, c in enumerate(present):
        code[label_map == c] = k
    colours = [palette(classes.index(c) % 10) for c in present] + ([OTHER_GREY] if len(others) else [])
    keys = [describe(c, names, 16) for c in present]
    if len(others):
        keys.append(f"other ({len(others)} class{'es' if len(others) > 1 else ''})")
    im = ax.imshow(code, extent=extent, vmin=-0.5, vmax=len(colours) - 0.5, cmap=ListedColormap(colours),
                   interpolation="nearest")
    ax.set_title("most probable label", fontsize=8)
    bar = fig.colorbar(im, ax=ax, shrink=0.8, ticks=range(len(keys)))
    bar.ax.set_yticklabels(keys)
    bar.ax.tick_params(labelsize=6, length=0)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _square(row: int, col: int, window: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), window, window, fill=False, edgecolor="red", linewidth=1)


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Occlusion)
