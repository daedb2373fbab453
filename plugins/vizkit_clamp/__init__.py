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
from vizkit.render import as_images, image_grid, normalise


class Clamp(Probe):
    name = "clamp"
    summary = "samples of a DBN with one unit clamped on, and their mean (Erhan et al. 2009 §4)"
    requires = frozenset({caps.ACTIVATIONS, caps.CLAMPED_SAMPLE})
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

    def render(self, ctx: ProbeContext, result: Result) -> Result:
        opts = ctx.options
        samples, mean, units = (result.arrays[k] for k in ("samples", "mean", "units"))
        shape = samples.shape[2:]
        shown = min(opts["show"], samples.shape[1])
        # samples are ordered chain-major; take the first kept sample of different chains first
        order = np.arange(samples.shape[1]).reshape(opts["chains"], opts["samples"]).T.reshape(-1)[:shown]
        table = np.concatenate([mean[:, None], samples[:, order]], axis=1).astype(np.float64)
        result.figures["clamp"] = image_grid(
            as_images(table.reshape(-1, *shape), shape),
            ncols=1 + shown,
            mode="minmax",
            shared_scale=True,
            title=f"clamp: {ctx.layer} units on, mean | {shown} samples",
            row_labels=[str(u) for u in units],
            col_labels=["mean"] + [str(i + 1) for i in range(shown)],
        )
        result.captions["clamp"] = (
            f"Each row: one unit of {ctx.layer} clamped to 1; first column the mean of "
            f"{samples.shape[1]} samples ({opts['chains']} chains × {opts['samples']}, one every "
            f"{opts['every']} Gibbs steps after {opts['burn_in']} burn-in), then samples from different chains. "
            f"{'Pixel probabilities E[x | h1]' if opts['probabilities'] else 'Samples'}; one grey scale for all "
            f"tiles, lowest value black, highest white."
        )
        if opts["gif"]:
            frames = as_images(samples[0, : opts["samples"]].astype(np.float64), shape)
            frames = np.clip(normalise(frames, "minmax", shared=True) * 255, 0, 255).astype(np.uint8)
            frames = np.repeat(np.repeat(frames, 8, axis=1), 8, axis=2)
            if frames.ndim == 3:
                frames = np.repeat(frames[..., None], 3, axis=3)
            result.videos["chain"] = Video(frames, fps=4)
            result.captions["chain"] = f"Unit {units[0]}: one chain, a frame every {opts['every']} Gibbs steps"
        return result


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Clamp)
