"""``clamp``: what a DBN generates when one unit is held on (Erhan et al. 2009, §4).

For a unit of layer j the model runs block Gibbs in its top RBM (layers j−1, j) with the unit
clamped to 1 and passes the layer-(j−1) state down to pixels every ``every`` steps. The model
does the sampling (capability ``clamped_sample``, batched over unit × chain); this probe chooses
the schedule and shows the samples and their mean, E[x | h_j,i = 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, Video
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid, normalise

from .captions import chain_caption, clamp_caption


def half_agreement(samples: np.ndarray, chains: int) -> np.ndarray:
    """Per unit: cosine between what sets its mean apart from the other units' (its mean minus the
    mean over units), estimated once from the first half of its chains and once from the second.

    Clamped means can differ between units only by sampling noise (a top RBM with one mode plus a
    few chains); the unit share of the compare panel counts that noise as difference. About 1: the
    unit's own pattern is reproducible; about 0: it is noise. NaN with fewer than 2 chains or units.
    ``samples`` is [units, chains × samples_per_chain, ...], chain-major.
    """
    units = samples.shape[0]
    if chains < 2 or units < 2:
        return np.full(units, np.nan, dtype=np.float32)
    half = chains // 2
    rows = samples.reshape(units, chains, -1).astype(np.float64)  # [units, chains, samples × pixels]
    per_chain = rows.reshape(units, chains, samples.shape[1] // chains, -1).mean(axis=2)
    a, b = per_chain[:, :half].mean(axis=1), per_chain[:, half: 2 * half].mean(axis=1)
    # deviations at the rounding level of the means (every unit the same) count as none
    tiny = 1e-9 * max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-300)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    defined = (na > tiny) & (nb > tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, (a * b).sum(axis=1) / (na * nb), np.nan).astype(np.float32)


def row_scaled(table: np.ndarray) -> np.ndarray:
    """Real-valued ``table`` [units, 1 + shown, ...] (each unit's mean, then its samples) divided
    so that the mean fills its own tile's range and a unit's samples share one range, zero kept.

    On whitened patches a fifth of the samples have no first-layer unit on (about as many as the
    data's patches) and are the visible bias alone, some 20 times fainter than a unit's other
    samples: scaled tile by tile, that faint bias looked like a bold checkerboard.
    """
    out = np.asarray(table, dtype=np.float64).copy()
    for block in (out[:, :1], out[:, 1:]):
        scale = np.abs(block).reshape(len(block), -1).max(axis=1)
        block /= np.where(scale > 0, scale, 1.0).reshape(-1, *([1] * (block.ndim - 1)))
    return out


class Clamp(Probe):
    name = "clamp"
    summary = "samples of a DBN with one unit clamped on, and their mean (Erhan et al. 2009 §4)"
    requires = frozenset({caps.ACTIVATIONS, "clamped_sample"})
    options = (
        Option("chains", int, 10, "Gibbs chains per unit (run as one batch with the units)", min=1, max=10000),
        Option("samples", int, 10, "samples kept per chain", min=1, max=10000),
        Option("every", int, 100, "Gibbs steps between kept samples (paper: 100)", min=1),
        Option("burn_in", int, 100, "Gibbs steps before the first kept sample", min=0),
        Option("probabilities", bool, True, "show pixel probabilities (true) or binary samples (false)"),
        Option("show", int, 10, "samples shown per unit in the figure", min=1, max=50),
        Option("gif", bool, False, "also write a GIF/MP4 of the first unit's first chain"),
    )

    # a unit's chains use the same random numbers whatever other units run with it (the models'
    # clamped_sample shares them across units), so parts of the units can run apart
    unit_arrays = frozenset({"samples", "mean", "units"})

    def compute(self, ctx: ProbeContext) -> Result:
        opts = ctx.options
        with torch.no_grad():
            samples = ctx.model.clamped_sample(
                ctx.layer, ctx.units, chains=opts["chains"], samples=opts["samples"], every=opts["every"],
                burn_in=opts["burn_in"], probabilities=opts["probabilities"], generator=ctx.generator(),
            )
        samples = samples.detach().to("cpu", torch.float32)  # what is saved; float64 would double the memory
        samples = samples.reshape(len(ctx.units), -1, *tuple(ctx.model.input_shape)).numpy()
        return Result(arrays={"samples": samples, "mean": samples.mean(axis=1, dtype=np.float64).astype(np.float32),
                              "units": ctx.units.cpu().numpy().astype(np.int64)})

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        opts = ctx.options
        samples, mean, units = (result.arrays[k] for k in ("samples", "mean", "units"))
        shape = samples.shape[2:]
        agreement = half_agreement(samples, opts["chains"])
        finite = agreement[np.isfinite(agreement)]
        median = float(np.median(finite)) if finite.size else float("nan")
        if finite.size == agreement.size:  # saved arrays are finite; undefined means 1 chain or 1 unit
            result.arrays["half_agreement"] = agreement
        result.meta["half_agreement_median"] = median if finite.size else None
        shown = min(opts["show"], samples.shape[1])
        # samples are ordered chain-major; take the first kept sample of different chains first
        order = np.arange(samples.shape[1]).reshape(opts["chains"], opts["samples"]).T.reshape(-1)[:shown]
        table = np.concatenate([mean[:, None], samples[:, order]], axis=1).astype(np.float64)
        # pixel probabilities share one scale; real-valued samples (Gaussian visible units on whitened
        # patches) differ in contrast between units by orders of magnitude, so on one scale most were
        # flat grey: each unit's row gets its own (its mean its own too), zero at mid-grey
        real_valued = bool(table.min() < 0)
        figure = image_grid(
            as_images((row_scaled(table) if real_valued else table).reshape(-1, *shape), shape),
            ncols=1 + shown,
            mode="symmetric" if real_valued else "minmax",
            shared_scale=True,
            title=f"clamp: {ctx.layer} units on, mean | {shown} samples"
            + (f"\nunit vs chain halves: median agreement {median:.2f} (1 = each unit's own pattern, 0 = noise)"
               if finite.size else ""),
            row_labels=[str(u) for u in units],
            col_labels=["mean"] + [str(i + 1) for i in range(shown)],
        )
        if real_valued:
            figure.axes[0].set_xlabel("grey = 0, black negative, white positive;\n"
                                      "each mean on its own scale, each unit's samples on one", fontsize=8)
        result.figures["clamp"] = figure
        result.captions["clamp"] = clamp_caption(ctx.layer, samples.shape[1], opts["chains"], opts["samples"],
                                                 opts["every"], opts["burn_in"], opts["probabilities"],
                                                 median if finite.size else None, real_valued)
        if opts["gif"]:
            frames = as_images(samples[0, : opts["samples"]].astype(np.float64), shape)
            frames = np.clip(normalise(frames, "minmax", shared=True) * 255, 0, 255).astype(np.uint8)
            frames = np.repeat(np.repeat(frames, 8, axis=1), 8, axis=2)
            if frames.ndim == 3:
                frames = np.repeat(frames[..., None], 3, axis=3)
            result.videos["chain"] = Video(frames, fps=4)
            result.captions["chain"] = chain_caption(units[0], opts["every"])
        return result


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Clamp)
