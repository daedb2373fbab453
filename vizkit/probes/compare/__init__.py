"""``compare``: clamp mean | lincomb | actmax for the same units, side by side (Erhan et al. Fig. 4).

The three methods answer "what does this unit respond to?" in different ways; seeing them for the
same units on one page is the paper's main argument (sampling and activation maximisation agree,
the linear combination of filters misses what the non-linearities add). Each method runs through
the public ``vizkit.run_probe`` exactly as a user would run it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import vizkit
from vizkit import Option, Probe, ProbeContext, Result
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid
from vizkit.probes.actmax import ActMax
from vizkit.probes.clamp import Clamp
from vizkit.probes.lincomb import LinComb

METHODS = {
    "clamp": ("mean", "sampling (clamp mean)"),
    "lincomb": ("filters", "linear combination"),
    "actmax": ("stimuli", "activation maximisation"),
}

#: The options compare passes on, per method (lincomb first: the order compare has always listed them in).
PASSED_ON: dict[str, tuple[str, ...]] = {
    "lincomb": ("k",),
    "clamp": ("chains", "samples", "every", "burn_in"),
    "actmax": ("steps", "restarts"),
}
_SOURCES: dict[str, type[Probe]] = {"clamp": Clamp, "lincomb": LinComb, "actmax": ActMax}

#: Defaults compare sets apart from the method's own. steps 500, not actmax's 1000: compare's
#: documented default (docs/plugins/compare.md), at which the Fig. 4 figures of
#: gallery/erhan2009.toml were made; a result is reused only for the same options, so following
#: actmax's default would silently recompute, and change, those figures.
OWN_DEFAULTS = {"steps": 500}


def passed_on(method: str, name: str) -> Option:
    """The method's own declaration of an option compare passes on, so compare checks a value
    exactly as the method would (a bad one fails before any of the three runs) and cannot drift
    from it."""
    spec = next(o for o in _SOURCES[method].options if o.name == name)
    return dataclasses.replace(spec, help=f"{method}: {spec.help}", default=OWN_DEFAULTS.get(name, spec.default))


#: Below this share of between-unit energy a panel shows one image for all units (a sampler stuck
#: in one mode of the top RBM, say), and the figure says so instead of presenting it as each unit's.
SAME_FOR_ALL = 0.05


def unit_share(images: np.ndarray) -> float:
    """Share of the panel's energy that varies between units: Σᵢ‖mᵢ − m̄‖² / Σᵢ‖mᵢ‖² (0 when every
    unit shows the same image, about 1 when the units' images are unrelated). One unit: 1."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    if len(flat) < 2:
        return 1.0
    total = float((flat ** 2).sum())
    return float(((flat - flat.mean(axis=0)) ** 2).sum() / total) if total > 0 else 0.0


class Compare(Probe):
    name = "compare"
    summary = "clamp mean | lincomb | actmax for the same units, three panels (Erhan et al. 2009 Fig. 4)"
    requires = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, "clamped_sample"})
    options = tuple(passed_on(method, name) for method, names in PASSED_ON.items() for name in names)

    # each method's rows depend only on their own unit (seeds per unit, shared random numbers), so
    # compare's do too and the units can be split over processes
    unit_arrays = frozenset({"units", *METHODS})

    def compute(self, ctx: ProbeContext) -> Result:
        o = ctx.options
        per_method = {method: {name: o[name] for name in names} for method, names in PASSED_ON.items()}
        shape = tuple(ctx.model.input_shape)
        units = ctx.units.cpu().numpy()
        arrays: dict[str, np.ndarray] = {"units": units.astype(np.int64)}
        for method, (key, _title) in METHODS.items():
            res = vizkit.run_probe(method, ctx.model, ctx.layer, units=ctx.units.cpu(), seed=ctx.seed,
                                   device=ctx.device, show_progress=ctx.show_progress, **per_method[method])
            arrays[method] = np.asarray(res.arrays[key], dtype=np.float32).reshape(len(units), *shape)
        return Result(arrays=arrays)

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        o, units = ctx.options, result.arrays["units"]
        for method in METHODS:
            result.arrays[f"{method}_unit_share"] = np.float32(unit_share(result.arrays[method]))
        result.figures["compare"] = self._figure(result.arrays, units, tuple(ctx.model.input_shape), ctx.layer,
                                                 o["k"])
        same = [METHODS[m][1] for m in METHODS if result.arrays[f"{m}_unit_share"] < SAME_FOR_ALL]
        result.captions["compare"] = (
            f"The same {len(units)} units of {ctx.layer}: left, mean of {o['chains'] * o['samples']} clamped "
            f"samples; middle, linear combination of the top {o['k']} lower filters; right, activation "
            f"maximisation (best of {o['restarts']} restarts). Grey 0, black negative, white positive, one "
            "colour scale per panel. Share of each panel's energy that differs between units: "
            + ", ".join(f"{m} {float(result.arrays[f'{m}_unit_share']):.0%}" for m in METHODS) + "."
            + (f" Not informative about single units: {', '.join(same)} (nearly the same image for every "
               "unit)." if same else "")
        )
        return result

    @staticmethod
    def _figure(arrays: dict[str, np.ndarray], units: np.ndarray, shape: tuple[int, ...], layer: str,
                k: Any) -> Figure:
        n = len(units)
        ncols = max(1, math.ceil(math.sqrt(n)))
        nrows = math.ceil(n / ncols)
        side = min(6.0, max(3.4, 0.45 * ncols))  # narrower panels clip the titles (36 units: 2.7 did)
        fig = Figure(figsize=(3 * side + 0.6, side * nrows / ncols + 1.3), layout="constrained")
        axes = fig.subplots(1, 3)
        for ax, (method, (_key, title)) in zip(axes, METHODS.items()):
            extra = f", k = {k}" if method == "lincomb" else ""
            share = float(arrays[f"{method}_unit_share"])
            note = (f"\nNOT INFORMATIVE: the same image for every unit ({share:.0%} differs)"
                    if share < SAME_FOR_ALL else f"\n{share:.0%} of the energy differs between units")
            image_grid(as_images(arrays[method], shape), labels=units.tolist(), ncols=ncols,
                       shared_scale=True, title=f"{title}{extra}{note}", ax=ax)
        fig.suptitle(f"{layer}: three views of the same {n} units", fontsize=11)
        return fig


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Compare)
