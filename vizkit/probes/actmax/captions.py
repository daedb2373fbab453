"""The actmax captions: what each figure shows, with the run's numbers filled in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def regularisers_text(opts: Mapping[str, Any]) -> str:
    """The image regularisers in use (``jitter``, ``blur``, ``tv``, ``param``), or that there are none."""
    parts = [f"jitter {opts['jitter']} px"] * bool(opts["jitter"]) + [f"blur sigma {opts['blur']:g}"] * bool(opts["blur"])
    parts += [f"TV weight {opts['tv']:g}"] * bool(opts["tv"]) + ["FFT parametrisation"] * (opts["param"] == "fft")
    return "; regularisers: " + ", ".join(parts) if parts else "; no regularisers"


def method_text(target: str, rho: float, rho_source: str, opts: Mapping[str, Any]) -> str:
    """How the optima were found: what was maximised, where the inputs lie, with which optimiser."""
    if opts.get("constraint", "sphere") != "sphere" or opts.get("param") in ("fourier", "lowres", "cppn") \
            or opts.get("transforms", "none") != "none":
        where = {"sigmoid": "inputs in [0, 1] through a sigmoid", "box": "inputs clipped to [0, 1]",
                 "none": "inputs unconstrained", "sphere": f"inputs on the sphere |x| = {rho:.4g}"}[opts["constraint"]]
        extra = f", diversity weight {opts['diversity']:g}" if opts.get("diversity") else ""
        return (f"maximised: {target}; {where}; preset {opts['preset']}: {opts['param']} parameterisation, "
                f"{opts['transforms']} transforms, {opts['optimizer']} lr {opts['lr']:g}, {opts['steps']} steps{extra}")
    return (f"maximised: {target}; rho = {rho:.4g} ({rho_source}); {opts['optimizer']}, lr {opts['lr']:g}"
            f"{' (normalised step)' if opts['normalize'] else ''}, at most {opts['steps']} steps, tol {opts['tol']:g}"
            + regularisers_text(opts))


def spread_text(n_restarts: int, spread_median: float, cosine_mean: float) -> str:
    """How much the restarts of a unit disagree."""
    return (f"Spread across the {n_restarts} restarts (max − min activation, median over units): "
            f"{spread_median:.3g}; mean cosine of a restart with the kept one: {cosine_mean:.3f}.")


def stimuli_caption(layer: str, n_restarts: int, method: str, summary: Mapping[str, float], spread: str,
                    sphere: bool = True) -> str:
    """The grid of optimal inputs; ``summary`` is :func:`vizkit.probes.actmax.summarise`'s."""
    s = summary
    first = (f"The input that excites each unit of {layer} most among inputs of the same length, the best "
             f"of {n_restarts} random starts. The inputs lie on the sphere |x| = rho; {method}." if sphere else
             f"The input that excites each unit of {layer} most, the best of {n_restarts} random starts; {method}.")
    return (f"{first} Steps taken: median {s['steps_median']:g}, "
            f"{100 * s['converged_fraction']:.0f}% stopped by the tolerance. Activation reached: "
            f"{s['activation_min']:.4g} – {s['activation_max']:.4g} (from {s['initial_mean']:.4g} on "
            f"average at the start). {spread}")


def restarts_caption(layer: str, shown_units: str, panel: int, n_units: int, agreeing: int,
                     agree_cosine: float, agree_spread: float, method: str, spread: str) -> str:
    """The restarts panel: one row per unit, one column per random start."""
    return (f"Whether every random start of the search ends at the same best input for a unit. "
            f"Each row: one unit of {layer} ({shown_units}, the first {panel} of "
            f"{n_units}); each column: the optimum reached from one random start, with the "
            f"activation under it (red: kept, the highest). Rows whose restarts all agree "
            f"(cosine >= {agree_cosine} with the kept one, activation spread <= "
            f"{agree_spread:g} of the best) show the optimum once with the measured agreement: "
            f"{agreeing} of {panel} rows here. {method}. {spread}")


def activations_caption(spread: str) -> str:
    """The activation at the start and after ascent."""
    return f"Activation at the start and after ascent, every restart of every unit. {spread}"


def sensitivity_caption(diagonal: float, off_diagonal: float, scale_text: str, target: str) -> str:
    """The sensitivity matrix: how specific each unit's optimum is to that unit."""
    return (f"How specific each unit's best input is to that unit: every unit's response to every "
            f"unit's best input. Row i: the optimal input of unit i; column j: the activation of unit j for "
            f"it, divided by the largest |activation| of unit j over all rows (so units "
            f"that respond to everything do not dominate). A strong diagonal means each "
            f"optimum is specific to its unit. Mean diagonal {diagonal:.3f}, "
            f"mean off-diagonal {off_diagonal:.3f}. Colour scale: "
            f"{scale_text}. Values: {target}.")


def thresholds_caption(layer: str, steps: list[int], panel: int, method: str) -> str:
    """The optimum of the kept restart as the search went on."""
    return (f"How each optimum formed: the kept restart of the first {panel} units of {layer} after "
            f"{', '.join(map(str, steps))} steps (left to right). {method}.")
