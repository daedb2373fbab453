"""``sample``: free-running samples of a generative model as an image grid.

Free-running samples are how Tieleman (2014, Fig. 3.2) compares trainers: a PCD-trained RBM
generates digits, a CD-1-trained one mostly does not. Any model with the ``sample`` capability
(the rbm and dbn kinds) qualifies; the layer names the generative model to run (for a DBN, the RBM
under that layer, its state passed down to pixels). ``vizkit sample CKPT`` is the shortcut.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

import vizkit
from vizkit import Option, Probe, ProbeContext, Result
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid
from vizkit.probes.compare import SAME_FOR_ALL, unit_share

#: The capability of models that generate (registered by the rbm/dbn kinds).
SAMPLE = "sample"


class Sample(Probe):
    name = "sample"
    summary = "free-running Gibbs samples of an rbm/dbn (Tieleman 2014, Fig. 3.2) as an image grid"
    requires = frozenset({caps.ACTIVATIONS, SAMPLE})
    options = (
        Option("chains", int, 100, "independent chains", min=1, max=10000),
        Option("samples", int, 1, "samples kept per chain", min=1, max=100),
        Option("every", int, 1000, "Gibbs steps between kept samples", min=1),
        Option("burn_in", int, 0, "Gibbs steps before the first", min=0),
        Option("binary", bool, False, "show binary samples instead of pixel probabilities"),
    )

    def run(self, ctx: ProbeContext) -> Result:
        opts = ctx.options
        chains, samples, every, burn_in = opts["chains"], opts["samples"], opts["every"], opts["burn_in"]
        probabilities = not opts["binary"]
        progress = {"progress": ctx.progress} if ctx.show_progress and _takes_progress(ctx.model.sample) else {}
        x = ctx.model.sample(layer=ctx.layer, chains=chains, samples=samples, every=every, burn_in=burn_in,
                             probabilities=probabilities, generator=ctx.generator(), **progress).cpu()
        shape = tuple(ctx.model.input_shape)
        images = as_images(x.reshape(chains * samples, *shape).numpy(), shape)
        per_chain = samples > 1
        # a sampler stuck in one mode draws one image chains times: say so instead of showing it as samples
        share = unit_share(x.reshape(chains * samples, -1).numpy())
        stuck = share < SAME_FOR_ALL
        fig = image_grid(images, mode="minmax", shared_scale=True, ncols=samples if per_chain else None,
                         row_labels=[str(c) for c in range(chains)] if per_chain else None,
                         col_labels=[str(burn_in + (s + 1) * every) for s in range(samples)] if per_chain else None,
                         title=f"Gibbs samples, {_trainer(ctx.model)}, RBM under {ctx.layer}: {chains} chains"
                               + (f", {every} steps apart" if per_chain else f" after {burn_in + every} steps")
                               + (f"\nALL SAMPLES ALIKE ({share:.1%} of the energy differs): one mode, not "
                                  f"{chains * samples} samples" if stuck else ""))
        fig.axes[0].set_ylabel("chain" + (" (Gibbs step above)" if per_chain else ""), fontsize=8)
        fig.axes[0].set_xlabel("one grey scale for all tiles: lowest value black, highest white", fontsize=8)
        caption = (f"Images the model generates on its own, from {chains} chains that each start from random "
                   f"pixels" + (" (one row per chain)." if per_chain else ".")
                   + f" A sample every {every} Gibbs steps after {burn_in} burn-in ({samples} per chain); "
                   + f"{'pixel probabilities E[x | h1]' if probabilities else 'binary samples'}, black 0, white 1. "
                   + (f"The samples are all alike (only {share:.1%} of their energy differs between them): the "
                      f"chains sit in one mode of the model, so this shows one image, not {chains * samples} samples."
                      if stuck else f"{share:.0%} of the samples' energy differs between them."))
        return Result(arrays={"samples": x.numpy().astype(np.float32), "sample_share": np.asarray(share)},
                      meta={"chains": chains, "samples": samples, "all_alike": stuck},
                      figures={"samples": fig}, captions={"samples": caption})


def _takes_progress(method: Callable[..., Any]) -> bool:
    """Whether a model's ``sample`` shows progress: the rbm/dbn kinds' does (a minute of Gibbs steps),
    but the capability's protocol does not ask for it, so another model's may not take the keyword."""
    try:
        return "progress" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _trainer(model: vizkit.ProbeModel) -> str:
    """``kind (trainer)`` for the title, e.g. ``rbm (cd-1)``, when the model says how it was trained."""
    hparams: dict[str, Any] = dict(getattr(model, "hparams", None) or {})
    kind = getattr(model, "kind", type(model).__name__)
    trainer = hparams.get("trainer")
    if trainer is None:
        return kind
    return f"{kind} ({trainer}" + (f"-{hparams['k']})" if trainer == "cd" and "k" in hparams else ")")


@vizkit.hookimpl
def register_probes(register: Any) -> None:
    register(Sample)



