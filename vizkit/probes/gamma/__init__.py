"""``gamma``: how invariant each unit is to translation, rotation and scale (Rasmus et al. 2015, §2.4).

Sets of 16 transformed copies of held-out images (:mod:`vizkit.image_transforms`: a 4×4 grid of
one-pixel crops, 16 angles −32°…28°, or 16 zooms 0.60…1.35) go through the model in batched
forward passes, chunked to a memory budget; for every unit i of every layer,

    γᵢ = var over sets of the set-mean activation ÷ var of the activation over all copies,

accumulated without keeping the activations (see :mod:`.stats`). 0 ≤ γ ≤ 1; 1 = the unit does
not change within a set. γ⁽ˡ⁾ is the mean over a layer, reported for the input pixels and every
layer, so one run gives a row of the paper's Table 1.

Figures: γᵢ against each unit's significance (supplementary 4.3.1: how much of the layer below's
variance the unit's decoder weights account for; models without decoder weights: the unit's
activation variance, and the axis says so), coloured by the mean sign of the unit's encoder
weights (Fig. 3 / Fig. 7); γ⁽ˡ⁾ against depth, one line per transformation; and, for a layer fed
by a layer whose weights live in input space, the pooling groups of Fig. 4.

A run on fewer images than ``-o sets`` asks for uses them all and says so (``meta["notes"]``, one
line on stderr); below :data:`MIN_SETS` it refuses. The paper's Table 1 is quoted in the caption
only when the run is the paper's setting (:func:`paper_setting`); elsewhere its numbers would
invite a comparison that does not hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, UnitView, image_transforms, papers, probe_inputs
from vizkit import capabilities as caps

from .figures import depth_figure, pooling_figure, scatter_figure
from .stats import SetStats, pooling_groups, significance, unit_significance

#: Fewest sets γ is computed from. γ's numerator is a variance over sets, whose relative standard
#: error is about sqrt(2 / (n - 1)): 47% at 10 sets, and more than half the value below that, so a
#: smaller run measures its sample rather than the units' invariance. (1,000 sets: 4.5%.)
MIN_SETS = 10

#: Table 1 of the paper (γ⁽⁰⁾, γ⁽¹⁾, γ⁽²⁾ for translation), printed beside ours.
PAPER_TABLE1 = {row.label: row.gamma_translation for row in papers.rasmus2015_table1()
                if row.gamma_translation is not None}


def _paper_caption() -> str:
    """The paper's numbers under the depth figure: every CIFAR-10 decoder, and O&F's Mod (the model
    the paper analyses), so the reader can set each layer's γ beside its own."""
    def gammas(row: papers.Table1Row) -> str:
        return "/".join(f"{g:.2f}" for g in row.gamma_translation or ())

    cifar = ", ".join(f"{row.model} {gammas(row)}" for row in papers.rasmus2015_table1()
                      if row.data == "CIFAR-10" and row.gamma_translation is not None and row.hidden_layers == 2)
    return (f"Paper, Table 1 (CIFAR-10, translation): {cifar}; "
            f"O&F Mod {gammas(papers.rasmus2015_row('O&F', 'Mod'))}.")


def paper_setting(model: Any, data: str | None) -> bool:
    """Whether a run reproduces the paper's setting, the only one whose Table 1 numbers a caption
    may quote: vizkit's reference ``ladder`` model measured on its own 16x16 natural-image
    patches (the paper's 16x16 natural-image / CIFAR-10 patches)."""
    info = dict(getattr(model, "data_info", None) or {})
    name = (data or "").strip() or info.get("name")
    return (getattr(model, "kind", None) == "ladder" and name == "patches" and info.get("name") == "patches"
            and (info.get("options") or {}).get("size") == 16)


class Gamma(probe_inputs.NeedsExamples, Probe):
    name = "gamma"
    summary = "invariance gamma = var(set means)/var(all) over sets of 16 translated/rotated/zoomed copies (Rasmus et al. 2015)"
    requires = frozenset({caps.ACTIVATIONS})
    options = (
        Option("transform", str, "translation", "transformation of the sets (all: the three)",
               choices=(*image_transforms.KINDS, "all")),
        Option("sets", int, 1000, "number of sets of 16 copies, one per image (fewer when the data holds fewer; "
               f"at least {MIN_SETS})", min=MIN_SETS, max=1_000_000),
        Option("step", int, 1, "translation: pixels between neighbouring crops of the 4x4 grid", min=1, max=64),
        Option("data", str, "", "images: a dataset name (its held-out test split) or a .npy/.npz/image-folder "
               "path (all of it, in file order); empty: the model's own data"),
        Option("position", str, "", "conv maps: 'row,col' reads the unit at that position instead of the channel mean"),
        Option("significance", str, "auto", "x axis of the scatter: decoder (tied autoencoders: the share of the "
               "layer below's variance the unit accounts for), variance (the unit's activation variance), or "
               "auto (decoder when the model has reconstruct and weights from the layer below)",
               choices=("auto", "decoder", "variance")),
        Option("pool_starts", int, 4, "pooling-groups figure: lower units to start from (0: no figure)", min=0, max=32),
        Option("pool_links", int, 3, "pooling groups: upper units followed from each start unit", min=1, max=16),
        Option("pool_members", int, 20, "pooling groups: lower-unit filters shown per upper unit", min=1, max=64),
        Option("memory_mb", float, 256.0, "memory budget of one chunk of sets, MB", min=1.0),
    )

    def run(self, ctx: ProbeContext) -> Result:
        opts = ctx.options
        model = ctx.model
        kinds = list(image_transforms.KINDS) if opts["transform"] == "all" else [opts["transform"]]
        position = vizkit.parse_position(opts["position"] or None, ctx.layer_info)
        if opts["significance"] == "decoder" and not {caps.WEIGHTS, caps.RECONSTRUCT} <= set(model.capabilities):
            raise vizkit.OptionError("significance 'decoder' needs tied decoder weights (a model with reconstruct "
                                     "and weights); use -o significance variance")
        source = image_transforms.set_source(model, kinds, data=opts["data"] or None, n_sets=opts["sets"],
                                       step=opts["step"], seed=ctx.seed)
        if len(source) < MIN_SETS:
            raise vizkit.DataError(f"gamma needs at least {MIN_SETS} transformation sets (one per image) for its "
                                   f"variances to mean anything, but there are only {len(source)}: "
                                   f"{source.description}; give more images with -o data PATH")
        infos = model.layer_infos()
        names = list(infos)
        dtype = vizkit.model_dtype(model)
        chunk = self._chunk(source, infos, opts["memory_mb"], dtype)

        per_kind: dict[str, list[SetStats]] = {}
        for kind in kinds:
            stats = [SetStats() for _ in range(len(names) + 1)]
            starts = range(0, len(source), chunk)
            for start in ctx.progress(starts, f"gamma {kind}", total=math.ceil(len(source) / chunk)):
                x = source.sets(kind, start, start + chunk).to(device=ctx.device, dtype=dtype)
                n = x.shape[0]
                flat = x.reshape(n * image_transforms.SET_SIZE, *x.shape[2:])
                stats[0].add(flat.reshape(n, image_transforms.SET_SIZE, -1))
                with torch.no_grad():
                    outs = vizkit.layer_activations(model, flat, names)  # one pass where the model can
                for k, name in enumerate(names):
                    acts = vizkit.unit_axis(outs.pop(name), position if name == ctx.layer else None)
                    stats[k + 1].add(acts.reshape(n, image_transforms.SET_SIZE, -1))
            per_kind[kind] = stats

        layer_index = names.index(ctx.layer) + 1
        units = ctx.units.cpu()
        arrays: dict[str, np.ndarray] = {"units": units.numpy().astype(np.int64)}
        meta: dict[str, Any] = {"layer_names": ["input", *names], "transforms": kinds, "sets": len(source),
                                "sets_asked": opts["sets"], "source": source.description, "chunk_sets": chunk,
                                "paper_setting": paper_setting(model, opts["data"])}
        if source.notes:
            meta["notes"] = list(source.notes)
        undefined_layers: dict[str, list[str]] = {}
        for kind in kinds:
            layer_gamma = []
            for k, st in enumerate(per_kind[kind]):
                g, ok = st.gamma()
                if not bool(ok.any()):
                    undefined_layers.setdefault(kind, []).append((["input", *names])[k])
                    layer_gamma.append(float("nan"))
                else:
                    layer_gamma.append(float(g[ok].mean()))
            g, ok = per_kind[kind][layer_index].gamma()
            g, ok = g[units], ok[units]
            if not bool(ok.any()):
                raise vizkit.ProbeFailure(
                    f"gamma is undefined for {ctx.layer!r}: the requested units are constant over all "
                    f"{len(source) * image_transforms.SET_SIZE} transformed copies ({source.description}); "
                    "a dead or saturated layer has no variance to explain")
            arrays[f"gamma_{kind}"] = g.numpy().astype(np.float32)
            arrays[f"layer_gamma_{kind}"] = np.asarray(layer_gamma, dtype=np.float64)
            arrays[f"defined_{kind}"] = ok.numpy()
        first = kinds[0]
        arrays["gamma"] = arrays[f"gamma_{first}"]
        arrays["layer_gamma"] = arrays[f"layer_gamma_{first}"]
        arrays["defined"] = arrays[f"defined_{first}"]
        # finish() refuses non-finite arrays: a layer whose every unit is constant keeps γ⁽ˡ⁾ = 0
        # here and is named in meta["undefined_layers"] (and left out of the depth figure)
        for key in [k for k in arrays if k.startswith("layer_gamma")]:
            arrays[key] = np.nan_to_num(arrays[key], nan=0.0)
        meta["undefined_layers"] = undefined_layers
        meta["undefined_units"] = int((~arrays["defined"]).sum())

        stats = per_kind[first]
        variances = [st.variance() for st in stats]
        sig, sig_kind, connections, below = self._significance(model, ctx.layer, names, variances, opts["significance"])
        arrays["variance"] = variances[layer_index][units].numpy().astype(np.float64)
        arrays["significance"] = sig[units].numpy().astype(np.float64)
        sign, sign_note = self._weight_sign(model, ctx.layer)
        arrays["weight_sign"] = (sign[units].numpy() if sign is not None else np.zeros(len(units))).astype(np.float32)
        meta.update({"significance": sig_kind, "weight_sign": sign_note})
        if meta["paper_setting"]:
            meta["paper_table1_translation"] = {k: list(v) for k, v in PAPER_TABLE1.items()}

        result = Result(arrays=arrays, meta=meta)
        self._figures(ctx, result, kinds, names, connections, below, sig_kind)
        return result

    def unit_view(self, result: Result, index: int) -> UnitView:
        """The unit's γ for each transformation measured, beside its layer's mean."""
        parts = []
        for kind in result.meta.get("transforms", []):
            if f"gamma_{kind}" not in result.arrays:
                continue
            value = (f"{float(result.arrays[f'gamma_{kind}'][index]):.2f}" if result.arrays[f"defined_{kind}"][index]
                     else "undefined (constant)")
            parts.append(f"{kind} {value}")
        sets = result.meta.get("sets")
        return UnitView(text="γ (share of its variance that survives averaging over transformed copies; 1: fully "
                             f"invariant): {', '.join(parts)}" + (f" — over {sets} sets" if sets else ""))

    # -- pieces -----------------------------------------------------------------------------------
    @staticmethod
    def _chunk(source: Any, infos: dict[str, Any], memory_mb: float, dtype: torch.dtype) -> int:
        """Sets per chunk: the copies' inputs and every layer's output, with room for the
        intermediate tensors of a forward pass (x3)."""
        width = math.prod(source.input_shape) + sum(math.prod(info.shape) for info in infos.values())
        per_set = image_transforms.SET_SIZE * width * torch.empty((), dtype=dtype).element_size() * 3
        return max(1, min(len(source), int(memory_mb * 2**20 // per_set)))

    @staticmethod
    def _significance(model: Any, layer: str, names: list[str], variances: list[torch.Tensor],
                      wanted: str) -> tuple[torch.Tensor, str, torch.Tensor | None, str | None]:
        """(per-unit x values, what they are, connection significances [units, lower], lower layer)."""
        k = names.index(layer) + 1
        var = variances[k]
        decoder_ok = {caps.WEIGHTS, caps.RECONSTRUCT} <= set(model.capabilities)
        weights = None
        if decoder_ok:
            try:
                weights = model.weights(layer)
            except vizkit.UsageError:
                weights = None
        below = "input" if k == 1 else names[k - 2]
        usable = (weights is not None and weights.source == below and weights.matrix.dim() == 2
                  and tuple(weights.matrix.shape) == (var.numel(), variances[k - 1].numel()))
        if wanted == "decoder" and not usable:
            raise vizkit.OptionError(
                f"significance 'decoder' needs tied decoder weights from {layer!r} to the layer below "
                "(a model with reconstruct and weights); use -o significance variance")
        if wanted == "variance" or not usable:
            return var, "variance", None, None
        assert weights is not None
        connections = significance(weights.matrix.detach().cpu(), var, variances[k - 1])
        return unit_significance(connections), "decoder", connections, below

    @staticmethod
    def _weight_sign(model: Any, layer: str) -> tuple[torch.Tensor | None, str]:
        if caps.WEIGHTS not in model.capabilities:
            return None, "unavailable (the model has no weights capability); shown as 0"
        try:
            w = model.weights(layer).matrix.detach().cpu().to(torch.float64)
        except vizkit.UsageError:
            return None, f"unavailable (no weights into {layer}); shown as 0"
        return torch.sign(w.reshape(w.shape[0], -1)).mean(dim=1), "mean sign of the unit's encoder weights"

    def _figures(self, ctx: ProbeContext, result: Result, kinds: list[str], names: list[str],
                 connections: torch.Tensor | None, below: str | None, sig_kind: str) -> None:
        arrays, meta = result.arrays, result.meta
        title = f"{getattr(ctx.model, 'kind', 'model')} {ctx.layer}"
        result.figures["scatter"] = scatter_figure(
            {k: arrays[f"gamma_{k}"] for k in kinds}, {k: arrays[f"defined_{k}"] for k in kinds},
            arrays["significance"], arrays["weight_sign"], sig_kind, title,
            {k: float(arrays[f"layer_gamma_{k}"][names.index(ctx.layer) + 1]) for k in kinds})
        n_undef = meta["undefined_units"]
        result.captions["scatter"] = (
            f"How little each unit of {ctx.layer} changes across transformed copies of an image "
            f"({', '.join(kinds)}), against how much the unit matters, one dot per unit. "
            f"γ of {int(arrays['defined'].sum())} units of {ctx.layer} against "
            + ("their significance (share of the variance of the layer below that the unit's tied decoder "
               "weights account for, supplementary 4.3.1)" if sig_kind == "decoder"
               else "their activation variance (no decoder weights used)")
            + f"; colour: {meta['weight_sign']}. {meta['sets']} sets of 16 copies: {meta['source']}."
            + (f" {n_undef} constant units (γ undefined) are left out." if n_undef else ""))
        result.figures["depth"] = depth_figure(
            {k: arrays[f"layer_gamma_{k}"] for k in kinds}, ["input", *names], meta["undefined_layers"], title)
        rows = "; ".join(f"{k}: {_values(arrays[f'layer_gamma_{k}'])}" for k in kinds)
        result.captions["depth"] = (
            f"How little each layer changes on average across transformed copies of an image ({', '.join(kinds)}), "
            f"from the input pixels up. Layer average γ⁽ˡ⁾ for the input and every layer ({rows}), from "
            f"{meta['sets']} sets of 16 copies: "
            f"{meta['source']}." + (f" {_paper_caption()}" if meta["paper_setting"] else ""))
        if connections is None or below is None or below == "input" or ctx.options["pool_starts"] == 0:
            return
        try:
            lower_w = ctx.model.weights(below)
        except vizkit.UsageError:
            return
        if lower_w.source != "input" or lower_w.matrix.dim() != 2:
            return
        groups = pooling_groups(connections, ctx.options["pool_starts"], ctx.options["pool_links"],
                                ctx.options["pool_members"])
        filters = lower_w.matrix.detach().cpu().double().numpy()
        gamma_of = {int(u): float(g) for u, g in zip(arrays["units"], arrays["gamma"])}
        result.figures["pooling"] = pooling_figure(
            groups, filters, tuple(int(s) for s in ctx.model.input_shape), below, ctx.layer, gamma_of)
        arrays["pool_start"] = np.asarray([g["start"][0] for g in groups], dtype=np.int64)
        arrays["pool_upper"] = np.asarray([g["upper"] for g in groups], dtype=np.int64)
        arrays["pool_members"] = np.asarray([g["members"] for g in groups], dtype=np.int64)
        result.captions["pooling"] = (
            f"Pooling groups (Fig. 4): {len(groups)} {below} units with the largest total significance (left "
            f"column); each row is one of the {ctx.options['pool_links']} {ctx.layer} units they feed most, "
            f"shown by the {ctx.options['pool_members']} {below} filters it draws most of its significance "
            "from (strongest first).")


def _values(values: np.ndarray) -> str:
    """A layer's γ values for a caption: all of them, or for a deep network the first and last
    few (every value is in arrays.npz)."""
    text = [f"{v:.2f}" for v in values]
    if len(text) <= 12:
        return " / ".join(text)
    return " / ".join(text[:4]) + f" / … ({len(text) - 8} more in arrays.npz) … / " + " / ".join(text[-4:])


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Gamma)
