"""``actmax``: activation maximisation on the sphere ‖x‖ = ρ (Erhan, Bengio, Courville & Vincent 2009, §3).

For each unit, x* = argmax h(x) subject to ‖x‖ = ρ, found by gradient ascent from uniform noise
with re-projection onto the sphere after every step, from several random starts; the start that
reaches the highest activation is kept, and all are shown (the paper's "9 random
initialisations"). Every (unit, restart) pair is one sample of a single batch (see
:mod:`vizkit.optim`); the sensitivity matrix then asks how specific each optimum is.

The optima are also the starting point of the ``hessian`` probe, which reads ``stimuli`` from
this probe's arrays.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from textwrap import fill
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, UnitView
from vizkit import capabilities as caps
from vizkit.figure import as_images, captioned_tiles, image_grid
from vizkit.optim import (
    AscentConfig,
    bytes_per_sample,
    chunk_size,
    image_view,
    maximise_on_sphere,
    sample_keys,
    saved_bytes_per_sample,
)
from vizkit.optvis import objectives as O
from vizkit.sphere import data_radius

from . import recipe
from .captions import (
    activations_caption,
    method_text,
    restarts_caption,
    sensitivity_caption,
    spread_text,
    stimuli_caption,
    thresholds_caption,
)
from .figures import activation_spread, restarts_panel, sensitivity_matrix, thresholds_panel


def default_radius(input_shape: tuple[int, ...]) -> float:
    """ρ when the model carries no data statistics: the expected norm of the uniform [0, 1] start,
    √(D/3), so the start point is (on average) left at its own scale."""
    return math.sqrt(math.prod(input_shape) / 3.0)


class ActMax(Probe):
    name = "actmax"
    summary = ("activation maximisation, batched over unit x restart: on the sphere |x| = rho (Erhan et al. 2009), "
               "or lucent's recipe on colour networks; any objective expression (vizkit.optvis)")
    requires = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD})
    options = (
        Option("preset", str, "auto", "defaults for every option left unset: erhan (pixels on the sphere |x| = "
               "rho, the paper's method) or colour (lucent's recipe: fourier param, standard transforms, adam, "
               "sigmoid range); auto: colour for 3-channel images, else erhan", choices=("auto", "erhan", "colour")),
        Option("objective", str, None, "what is maximised instead of the unit, e.g. \"channel(conv2,3) - "
               "0.5*channel(conv2,5)\"; {unit} in it is each unit in turn (see vizkit.optvis)"),
        Option("transforms", str, None, "random transforms the optimum must survive: none, light, standard "
               "(default: the preset's)", choices=("none", "light", "standard")),
        Option("constraint", str, None, "where inputs lie: sphere |x| = rho, sigmoid range [0, 1], box [0, 1] or "
               "none (default: the preset's)", choices=("sphere", "sigmoid", "box", "none")),
        Option("thresholds", str, None, "steps at which the optimum is also kept and shown, e.g. 64,256 "
               "(default: the preset's)"),
        Option("diversity", float, 0.0, "weight of a diversity term across each unit's restarts", min=0.0),
        Option("steps", int, None, "maximum gradient steps per restart (default: the preset's, 1000 or 512)",
               min=1, max=1_000_000),
        Option("lr", float, None, "step length: a fraction of rho with sgd on the sphere (normalize), else the "
               "optimiser's learning rate (default: the preset's, 0.1 or 0.05)", min=0.0),
        Option("restarts", int, 9, "random starts per unit (the paper: 9); the best is kept", min=1, max=1000),
        Option("tol", float, 1e-6, "stop a restart when its activation's relative growth per step is below this "
               "(0: always run all steps)", min=0.0),
        Option("rho", float, None, "radius of the sphere |x| = rho (default: the training data's mean norm from "
               "the checkpoint, else sqrt(D/3))", min=1e-12),
        Option("optimizer", str, None, "update rule (default: the preset's, sgd or adam)",
               choices=("sgd", "adam", "rmsprop")),
        Option("normalize", bool, True, "scale each step to lr*rho along the gradient direction (false: lr * gradient)"),
        Option("position", str, None, "conv maps: 'row,col' of the unit maximised (default: the channel's mean)"),
        Option("jitter", int, 0, "regulariser: random circular shift of up to this many pixels each step", min=0),
        Option("blur", float, 0.0, "regulariser: Gaussian blur of this sigma (pixels) after each step", min=0.0),
        Option("tv", float, 0.0, "regulariser: weight of the total variation subtracted from the activation", min=0.0),
        Option("param", str, None, "parameterisation: pixel, fourier (1/f spectrum, decorrelated colour), lowres, "
               "cppn, or fft (the earlier FFT gradient preconditioner on the sphere) (default: the preset's)",
               choices=("pixel", "fourier", "lowres", "cppn", "fft")),
        Option("memory_mb", float, 1024.0, "memory budget of one chunk of (unit x restart) samples, MB", min=1.0),
        Option("chunk", int, 0, "samples per chunk (0: as many as fit in memory_mb)", min=0),
        Option("panel", int, 8, "units shown in the restarts panel (0: no panel)", min=0, max=100),
        Option("target", str, "auto", "what is maximised: the unit's output h, or the pre-activation "
               "of a squashing unit, recovered exactly from its output: logit(h) for sigmoid units (SDAE, "
               "RBM/DBN; what Erhan et al. maximise, their footnote 1: the total input plus bias), atanh(h) for "
               "tanh units. Same optimum direction in principle, but gradients and values that do not saturate. "
               "auto: the pre-activation where the layer says its units are sigmoid or tanh (the SDAE's and "
               "DBN's layers, a wrapped nn.Sigmoid or nn.Tanh), else the output",
               choices=("auto", "activation", "logit", "atanh")),
    )

    # every (unit, restart) has its own seed, so a unit's optimum does not depend on the batch
    unit_arrays = frozenset({"stimuli", "restarts", "activations", "initial_activations", "steps_taken", "converged",
                             "best_restart", "restart_cosine", "units", "snapshots", "trace"})

    def compute(self, ctx: ProbeContext) -> Result:
        model = ctx.model
        shape = tuple(int(s) for s in model.input_shape)
        opts = self._options(ctx, shape)
        self._check_regularisers(opts, shape)
        rho, rho_source = self._radius(model, opts, shape)
        dtype = vizkit.model_dtype(model)
        if recipe.legacy(opts):
            found, chunk, per_sample, units = self._sphere_engine(ctx, opts, shape, rho, dtype)
            dtype = found.x.dtype
            goals, snapshots, trace, steps_at = None, None, None, []
        else:
            goals = recipe.objectives(ctx, opts, unsquash)
            per_sample = self._bytes_per_sample(ctx, goals, shape, dtype)
            wide, wide_dtype = (model, dtype) if opts["objective"] else resolving_model(model, opts["target"], dtype)
            per_sample *= wide_dtype.itemsize / dtype.itemsize  # measured on the model, run on its copy
            dtype = wide_dtype
            samples = opts["chunk"] or chunk_size(len(goals.ids) * opts["restarts"], opts["memory_mb"] * 2**20, per_sample)
            chunk = max(samples // opts["restarts"], 1) * opts["restarts"]
            rendering = recipe.render(ctx, opts, goals, rho, dtype, chunk // opts["restarts"], model=wide)
            found = SimpleNamespace(x=rendering.images, value=rendering.values, initial=rendering.initial,
                                    steps=rendering.steps, converged=rendering.converged)
            units = goals.ids if goals.per_unit else torch.zeros(1, dtype=torch.long)
            steps_at = sorted(rendering.snapshots) if recipe.thresholds(opts) else []
            snapshots = torch.stack([rendering.snapshots[t] for t in steps_at], 1) if steps_at else None
            trace = rendering.trace
        n_units, n_restarts = len(units), opts["restarts"]

        restarts = found.x.reshape(n_units, n_restarts, *shape)
        activations = found.value.reshape(n_units, n_restarts)
        best = activations.argmax(dim=1)
        stimuli = restarts[torch.arange(n_units), best]
        agreement = torch.nn.functional.cosine_similarity(restarts.flatten(2), stimuli.flatten(1)[:, None], dim=2)
        arrays = {
            "stimuli": stimuli, "restarts": restarts, "activations": activations,
            "initial_activations": found.initial.reshape(n_units, n_restarts),
            "steps_taken": found.steps.reshape(n_units, n_restarts),
            "converged": found.converged.reshape(n_units, n_restarts),
            "best_restart": best, "restart_cosine": agreement, "units": units.cpu(),
        }
        if snapshots is not None:
            # the kept restart of each unit at every threshold: [units, thresholds, *shape]
            kept = snapshots.reshape(n_units, n_restarts, len(steps_at), *shape)[torch.arange(n_units), best]
            arrays["snapshots"], arrays["trace"] = kept, trace.reshape(n_units, n_restarts, -1)
        arrays = {k: v.numpy() for k, v in arrays.items()}
        for key in ("stimuli", "restarts", "activations", "initial_activations", "restart_cosine", "snapshots", "trace"):
            if key in arrays:
                arrays[key] = arrays[key].astype(np.float32)
        position = vizkit.parse_position(opts["position"], ctx.layer_info)
        meta = {
            "rho": rho, "rho_source": rho_source, "position": list(position) if position else "channel mean",
            "chunk": chunk, "bytes_per_sample": int(per_sample), "dtype": str(dtype).replace("torch.", ""),
            "target": TARGET_TEXT[opts["target"]] if not (goals and goals.text) else f"the objective {goals.text}",
            "recipe": {k: opts[k] for k in ("preset", *recipe.PRESET_OPTIONS, "diversity", "objective", "restarts")},
            "engine": "vizkit.optim.maximise_on_sphere" if goals is None else "vizkit.optvis.render",
            "snapshot_steps": steps_at,
        }
        return Result(arrays=arrays, meta=meta)

    def _sphere_engine(self, ctx: ProbeContext, opts: dict[str, Any], shape: tuple[int, ...], rho: float,
                       dtype: torch.dtype) -> tuple[Any, int, float, torch.Tensor]:
        """The earlier regularisers (jitter, tv, the FFT preconditioner, tangential Adam) on the sphere."""
        model, dtype = resolving_model(ctx.model, opts["target"], dtype)
        position = vizkit.parse_position(opts["position"], ctx.layer_info)
        config = AscentConfig(
            steps=opts["steps"], lr=opts["lr"], tol=opts["tol"], optimizer=opts["optimizer"],
            normalize=opts["normalize"], jitter=opts["jitter"], blur=opts["blur"], tv=opts["tv"], param=opts["param"],
        )
        units = ctx.units
        n_units, n_restarts = len(units), opts["restarts"]
        unit_of_row = units.repeat_interleave(n_restarts)  # sample b = (unit b // R, restart b % R)
        target = opts["target"]

        def objective(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return unsquash(vizkit.paired_unit_activations(model, x, ctx.layer, unit_of_row[rows], position), target)

        keys = sample_keys(ctx.seed, units.cpu().repeat_interleave(n_restarts),
                           torch.arange(n_restarts).repeat(n_units))
        per_sample = bytes_per_sample(objective, shape, dtype, config, ctx.device)
        chunk = opts["chunk"] or chunk_size(len(keys), opts["memory_mb"] * 2**20, per_sample)
        found = maximise_on_sphere(
            objective, keys, shape, rho, config, chunk=chunk, dtype=dtype, device=ctx.device,
            progress=ctx.progress if ctx.show_progress else None, desc=f"actmax {ctx.layer}",
        )
        return found, chunk, per_sample, units.cpu()

    @staticmethod
    def _bytes_per_sample(ctx: ProbeContext, goals: recipe.Objectives, shape: tuple[int, ...],
                          dtype: torch.dtype) -> float:
        """What one (objective, restart) sample costs in memory, measured on the model (twice what
        autograd saves, as for the sphere engine) plus the image's own buffers."""
        def objective(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            first = goals.items[:1]
            return O.evaluate_all(first, O.activations_for(ctx.model, x, first), torch.zeros(len(x), dtype=torch.long))

        return 2 * saved_bytes_per_sample(objective, shape, dtype, ctx.device) + 12 * math.prod(shape) * 8

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        """The sensitivity matrix (every unit's response to every unit's optimum), the summary and
        the figures: the parts of the result that compare units with each other."""
        arrays, meta = result.arrays, result.meta
        model, shape = ctx.model, tuple(int(s) for s in ctx.model.input_shape)
        opts = self._options(ctx, shape)
        position = vizkit.parse_position(opts["position"], ctx.layer_info)
        dtype = vizkit.model_dtype(model)
        if not opts["objective"]:
            model, dtype = resolving_model(model, opts["target"], dtype)
        stimuli = torch.as_tensor(arrays["stimuli"]).to(dtype)
        with torch.no_grad():
            if opts["objective"]:  # every objective's value for every optimum
                goals = recipe.objectives(ctx, opts, unsquash)
                responses = torch.cat([recipe.responses(ctx, goals, part.to(ctx.device)).cpu()
                                       for part in stimuli.split(meta["chunk"])])
            else:
                responses = torch.cat([
                    unsquash(vizkit.unit_activations(model, part.to(ctx.device), ctx.layer, ctx.units, position),
                             opts["target"]).cpu()
                    for part in stimuli.split(meta["chunk"])
                ])
        sensitivity = responses / responses.abs().amax(dim=0, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        arrays["responses"] = responses.numpy().astype(np.float32)
        arrays["sensitivity"] = sensitivity.numpy().astype(np.float32)
        agree, cos_min, spread = restart_agreement(arrays)
        arrays["restarts_agree"] = agree
        samples = arrays["activations"].size
        meta.update({
            "chunks": math.ceil(samples / meta["chunk"]), "samples": samples,
            "summary": summarise(arrays),
            "sensitivity_normalisation": "responses[i, j] / max_k |responses[k, j]| (each column divided by its "
                                         "largest absolute value)",
            "restarts_agree": {"units": arrays["units"][agree].tolist(),
                               "rule": f"every restart has cosine >= {AGREE_COSINE} with the kept one and the "
                                       f"activations differ by <= {AGREE_SPREAD:g} of the best"},
        })
        meta["summary"]["agreeing_units"] = int(agree.sum())
        stuck = unmoved_units(arrays)
        arrays["unmoved"] = stuck
        if stuck.any():
            meta["not_identifiable"] = {
                "units": arrays["units"][stuck].tolist(),
                "reason": "no restart changed the objective from its start (zero gradient everywhere the search "
                          "went, e.g. a ReLU channel that is off for every input tried): the image shown is the "
                          "start, not an optimum"}
        arrays["restart_cosine_min"], arrays["restart_spread"] = cos_min, spread
        figures, captions = self._figures(ctx, opts, arrays, meta, shape)
        result.figures.update(figures)
        result.captions.update(captions)
        return result

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _check_regularisers(opts: dict[str, Any], shape: tuple[int, ...]) -> None:
        """Image-only options on a non-image input fail before any compute."""
        view = image_view(shape)
        wanted = [name for name in ("jitter", "blur", "tv") if opts[name]] + (["param fft"] if opts["param"] == "fft" else [])
        if wanted and view is None:
            raise OptionError(f"{', '.join(wanted)} need an image-shaped input; this model's input has shape {shape}")
        if view is not None and opts["jitter"] >= min(view[1:]):
            raise OptionError(f"option 'jitter' must be smaller than the image ({view[1]}x{view[2]}), got {opts['jitter']}")

    def unit_view(self, result: Result, index: int) -> UnitView:
        """The unit's restarts, best first, each with the activation it reached."""
        restarts, act = result.arrays["restarts"][index], result.arrays["activations"][index].astype(np.float64)
        order = np.argsort(-act, kind="stable")
        shape = restarts.shape[1:]
        figure = captioned_tiles(as_images(restarts[order].astype(np.float64), shape),
                                 [f"activation {act[i]:.3g}" for i in order],
                                 mode="unit" if display_mode(result.meta.get("recipe", {})) == "unit" else "minmax",
                                 shared_scale=False,
                                 title="optimal input from each restart, best first")
        cos = float(result.arrays["restart_cosine"][index].min()) if "restart_cosine" in result.arrays else float("nan")
        text = (f"activation reached {act.max():.4g} (restarts {act.min():.4g}-{act.max():.4g}; lowest cosine to "
                f"the best {cos:.2f})")
        if "unmoved" in result.arrays and bool(result.arrays["unmoved"][index]):
            text = ("not identifiable: no restart changed the activation from its start (zero gradient), so these "
                    "are the starts, not optima; " + text)
        return UnitView(figure=figure, text=text)

    @staticmethod
    def _class_names(ctx: ProbeContext, units: list[int]) -> list[str] | None:
        """The class names of a classifier's output units, when the model's data names them."""
        if ctx.layer != "logits" or ctx.options["objective"]:
            return None
        try:
            names = vizkit.class_names.class_names(ctx.model)
        except vizkit.UsageError:
            return None
        if not names or max(units) >= len(names):
            return None
        return [names[u] for u in units]

    @staticmethod
    def _options(ctx: ProbeContext, shape: tuple[int, ...]) -> dict[str, Any]:
        """The options with the preset filled in and ``target auto`` made concrete for this layer."""
        opts = recipe.resolve(ctx.options, shape)
        if opts["target"] == "auto":
            opts["target"] = AUTO_TARGET.get(ctx.layer_info.squash, "activation")
        return opts

    @staticmethod
    def _radius(model: Any, opts: dict[str, Any], shape: tuple[int, ...]) -> tuple[float, str]:
        if opts["rho"] is not None:
            return float(opts["rho"]), "option rho"
        radius = data_radius(model)
        if radius:
            return radius, "mean norm of the training data (checkpoint)"
        return default_radius(shape), "default sqrt(D/3): expected norm of a uniform [0,1] input (no data statistics)"

    def _figures(self, ctx: ProbeContext, opts: dict[str, Any], arrays: dict[str, np.ndarray], meta: dict[str, Any],
                 shape: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, str]]:
        s = meta["summary"]
        units = arrays["units"].tolist()
        n_units, n_restarts = arrays["activations"].shape
        target = meta.get("target", TARGET_TEXT["activation"])
        method = method_text(target, meta["rho"], meta["rho_source"], opts)
        spread = spread_text(n_restarts, s["spread_median"], s["cosine_mean"])
        best_images = as_images(arrays["stimuli"], shape)
        mode = display_mode(opts)
        title = f"actmax: optimal inputs of {ctx.layer} ({n_units} units, best of {n_restarts} restarts)"
        names = self._class_names(ctx, units)
        if opts["objective"] and "{unit}" not in opts["objective"]:  # one expression: its optimum, named
            stimuli_figure = captioned_tiles(
                best_images, [f"{fill(opts['objective'], 44)}\nreached {arrays['activations'].max():.4g}"],
                mode=mode, shared_scale=False, title=f"actmax: best of {n_restarts} restarts", ncols=1, tile_inches=3.0)
        elif names:  # a classifier's outputs: each optimum under its class's name
            acts = arrays["activations"].max(axis=1)
            stimuli_figure = captioned_tiles(best_images, [f"{u} {n}\n{a:.3g}" for u, n, a in zip(units, names, acts, strict=True)],
                                             mode=mode, shared_scale=False, title=title, ncols=5, tile_inches=1.5)
        else:
            stimuli_figure = image_grid(best_images, labels=units, title=title, mode=mode,
                                        tile_inches=1.1 if max(best_images.shape[1:3]) >= 32 else 0.55)
        stuck = arrays["unmoved"]
        if stuck.any() and not (opts["objective"] and "{unit}" not in opts["objective"]):
            mark_unmoved(stimuli_figure, stuck, best_images.shape[1:3], captioned=bool(names))
        figures = {"stimuli": stimuli_figure}
        captions = {"stimuli": stimuli_caption(ctx.layer, n_restarts, method, s, spread,
                                               sphere=opts["constraint"] == "sphere")}
        if stuck.any():
            captions["stimuli"] += (f" Not identifiable (marked): unit(s) {', '.join(map(str, arrays['units'][stuck]))}, "
                                    f"whose objective no restart changed from its start (zero gradient): the image is "
                                    f"the start, not an optimum.")
        off = never_on(arrays["activations"].max(axis=1), opts["target"]) if not opts["objective"] else np.zeros(0, bool)
        if off.any():
            meta["never_on"] = arrays["units"][off].tolist()
            captions["stimuli"] += (f" Never switched on: unit(s) {', '.join(map(str, arrays['units'][off]))}, whose "
                                    f"largest total input at this norm is still below 0 (the unit's output stays under "
                                    f"its midpoint): their image is the least-off input, not a pattern the unit "
                                    f"responds to.")
        panel = min(opts["panel"], n_units)
        if panel:
            images = as_images(arrays["restarts"][:panel].reshape(panel * n_restarts, *shape), shape)
            agree = arrays["restarts_agree"][:panel]
            shown_units = (f"unit {units[0]}" if panel == 1 else
                           f"units {units[0]}-{units[panel - 1]}" if units[:panel] == list(range(units[0], units[0] + panel))
                           else "units " + ", ".join(map(str, units[:panel])))
            figures["restarts"] = restarts_panel(
                images.reshape(panel, n_restarts, *images.shape[1:]), arrays["activations"][:panel], units[:panel],
                mode=mode, names=names[:panel] if names else None,
                reached="activation reached" if not (opts["objective"] or opts["diversity"])
                else "objective reached (with its diversity term)" if not opts["objective"] else "objective reached",
                title=(f"actmax: {n_restarts} random initialisations of {opts['objective']}"
                       if opts["objective"] and "{unit}" not in opts["objective"] else
                       f"actmax {ctx.layer}: {n_restarts} random initialisations per unit, {shown_units} "
                       f"(the first {panel} of {n_units})"),
                agree=agree, cosine_min=arrays["restart_cosine_min"][:panel], spread=arrays["restart_spread"][:panel],
            )
            captions["restarts"] = restarts_caption(ctx.layer, shown_units, panel, n_units, int(agree.sum()),
                                                    AGREE_COSINE, AGREE_SPREAD, method, spread)
        if "snapshots" in arrays and panel:
            steps_at = meta["snapshot_steps"]
            tiles = as_images(arrays["snapshots"][:panel].reshape(-1, *shape), shape)
            figures["thresholds"] = thresholds_panel(
                tiles.reshape(panel, len(steps_at), *tiles.shape[1:]), steps_at, units[:panel],
                title=f"actmax {ctx.layer}: the kept optimum after each number of steps", mode=mode,
                names=names[:panel] if names else None)
            captions["thresholds"] = thresholds_caption(ctx.layer, steps_at, panel, method)
        figures["activations"] = activation_spread(
            arrays["activations"], arrays["initial_activations"], units,
            title=f"actmax {ctx.layer}: activation reached per restart",
        )
        captions["activations"] = activations_caption(spread)
        if n_units < 2:  # one optimum: nothing to compare it with (arrays keep the 1 x 1 response)
            return figures, captions
        figures["sensitivity"], scale_text = sensitivity_matrix(
            arrays["sensitivity"], units,
            title=f"actmax {ctx.layer}: sensitivity (diagonal {s['sensitivity_diagonal']:.2f}, "
                  f"off-diagonal {s['sensitivity_off_diagonal']:.2f} on average)",
        )
        captions["sensitivity"] = sensitivity_caption(s["sensitivity_diagonal"], s["sensitivity_off_diagonal"],
                                                      scale_text, target)
        return figures, captions


#: Restarts "agree" when every one is this close (cosine) to the kept optimum ...
AGREE_COSINE = 0.999
#: ... and their activations differ by at most this share of the best one's magnitude.
AGREE_SPREAD = 1e-3

#: what ``target auto`` maximises for a layer whose units end in this squashing (LayerInfo.squash)
AUTO_TARGET = {"sigmoid": "logit", "tanh": "atanh"}

TARGET_TEXT = {
    "activation": "the unit's activation h",
    "logit": "the total input (pre-activation) logit(h) = log(h / (1 - h)) of a sigmoid unit",
    "atanh": "the pre-activation atanh(h) of a tanh unit",
}


def unmoved_units(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Units none of whose restarts changed the objective from its start: a dead unit (zero gradient
    everywhere the search went) has no optimum to show."""
    act = arrays["activations"].astype(np.float64)
    start = arrays["initial_activations"].astype(np.float64)
    return np.all(np.abs(act - start) <= 1e-6 * np.maximum(1.0, np.abs(start)), axis=1)


def mark_unmoved(figure: Any, stuck: np.ndarray, tile: tuple[int, ...], captioned: bool) -> None:
    """Write "not identifiable" over the tiles of units whose search never moved."""
    h, w = int(tile[0]), int(tile[1])
    if captioned:  # one axes per tile
        for ax, flag in zip(figure.axes, stuck, strict=False):
            if flag:
                ax.text(0.5, 0.5, "no gradient:\nnot identifiable", transform=ax.transAxes, ha="center", va="center",
                        fontsize=7, color="tab:red", bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
        return
    ax = figure.axes[0]
    ncols = max(1, math.ceil(math.sqrt(len(stuck))))
    for i in np.flatnonzero(stuck):
        r, c = divmod(int(i), ncols)
        ax.text(1 + c * (w + 1) + w / 2 - 0.5, 1 + r * (h + 1) + h / 2 - 0.5, "no gradient:\nnot identifiable",
                ha="center", va="center", fontsize=6, color="tab:red",
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})


def display_mode(opts: dict[str, Any]) -> str:
    """Optima in [0, 1] (sigmoid range, box) are pictures, shown as they are; optima on the sphere
    are patterns around zero, shown with zero at mid-grey."""
    return "unit" if opts.get("constraint") in ("sigmoid", "box") else "symmetric"


def resolving_model(model: Any, target: str, dtype: torch.dtype) -> tuple[Any, torch.dtype]:
    """The model to maximise a squashing unit's pre-activation with: a float64 copy when the model
    is in a narrower float type. The pre-activation is recovered from the output h, and float32
    resolves logit(h) only below about 16, where a first-layer unit on the data's sphere often
    still has far to go: the ascent stopped there, short of its optimum. float64 resolves it up to
    about 36. The model itself is left as it is."""
    module = vizkit.torch_module(model)
    if target == "activation" or dtype == torch.float64 or module is None:
        return model, dtype
    wide = copy.deepcopy(model)
    vizkit.torch_module(wide).double()
    return wide, torch.float64


def never_on(best: np.ndarray, target: str) -> np.ndarray:
    """Units whose best pre-activation is negative: a sigmoid unit whose optimum leaves it below ½
    (a tanh unit below 0) never switches on at this norm. Known only when the pre-activation is what
    was maximised (``target`` logit or atanh); for the unit's output the probe cannot tell its type."""
    if target not in ("logit", "atanh"):
        return np.zeros(len(best), dtype=bool)
    return np.asarray(best) < 0


def unsquash(values: torch.Tensor, target: str) -> torch.Tensor:
    """The quantity maximised: ``values`` themselves, or the pre-activation of a sigmoid/tanh unit.

    Clamped one float-resolution step inside the open interval so a saturated unit gives a large,
    finite number instead of ±inf (the gradient there is still the unit's own).
    """
    if target == "activation":
        return values
    eps = torch.finfo(values.dtype).eps
    if target == "logit":
        v = values.clamp(eps, 1 - eps)
        return torch.log(v) - torch.log1p(-v)
    return torch.atanh(values.clamp(-1 + eps, 1 - eps))


def restart_agreement(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit: whether all restarts agree, the smallest cosine with the kept one, the activation spread."""
    act = arrays["activations"].astype(np.float64)
    cos_min = arrays["restart_cosine"].astype(np.float64).min(axis=1)
    spread = act.max(axis=1) - act.min(axis=1)
    scale = np.maximum(np.abs(act).max(axis=1), 1e-30)
    agree = (cos_min >= AGREE_COSINE) & (spread <= AGREE_SPREAD * scale)
    return agree, cos_min.astype(np.float32), spread.astype(np.float32)


def summarise(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Numbers for captions and result.json: activation reached, spread, steps, specificity."""
    act, sens = arrays["activations"].astype(np.float64), arrays["sensitivity"].astype(np.float64)
    n = len(sens)
    off = (sens.sum() - np.trace(sens)) / (n * n - n) if n > 1 else float("nan")
    return {
        "activation_min": float(act.max(axis=1).min()), "activation_max": float(act.max(axis=1).max()),
        "activation_mean": float(act.max(axis=1).mean()),
        "initial_mean": float(arrays["initial_activations"].mean()),
        "spread_median": float(np.median(act.max(axis=1) - act.min(axis=1))),
        "cosine_mean": float(arrays["restart_cosine"].mean()),
        "steps_median": float(np.median(arrays["steps_taken"])),
        "converged_fraction": float(arrays["converged"].mean()),
        "sensitivity_diagonal": float(np.trace(sens) / n), "sensitivity_off_diagonal": float(off),
    }


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(ActMax)
