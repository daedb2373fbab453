"""How actmax searches: Erhan et al.'s method, or the colour-network recipe, as a :mod:`vizkit.optvis` render.

``-o preset`` picks the defaults of everything the user did not set:

* ``erhan`` (every grey or vector input): pixels, gradient ascent with a normalised step, the sphere
  ‖x‖ = ρ, 1000 steps — the paper's method, so its figures do not change;
* ``colour`` (3-channel images): lucent's recipe — a Fourier parameterisation with decorrelated
  colour, the standard transforms (pad, jitter, scale, rotate), Adam at 0.05, a sigmoid range
  [0, 1], 512 steps with snapshots at 64 and 256. On natural-image networks pixel ascent finds
  pixel-scale patterns that excite a unit more but do not look like anything.

``-o objective`` replaces "the unit" by an expression (:func:`vizkit.optvis.parse`); ``{unit}`` in it
is each unit in turn, and without it the expression is one objective. ``-o diversity w`` adds
w · diversity(layer) across each unit's restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import vizkit
from vizkit import OptionError, ProbeContext, optvis
from vizkit.optim import image_view
from vizkit.optvis import objectives as O

PRESETS: dict[str, dict[str, Any]] = {
    "erhan": {"param": "pixel", "transforms": "none", "constraint": "sphere", "optimizer": "sgd", "lr": 0.1,
              "steps": 1000, "thresholds": ""},
    "colour": {"param": "fourier", "transforms": "standard", "constraint": "sigmoid", "optimizer": "adam",
               "lr": 0.05, "steps": 512, "thresholds": "64,256"},
}
#: the options a preset fills in when they are left unset (None)
PRESET_OPTIONS = ("param", "transforms", "constraint", "optimizer", "lr", "steps", "thresholds")


def preset_name(opts: dict[str, Any], shape: tuple[int, ...]) -> str:
    """``auto`` is ``colour`` for 3-channel images, else ``erhan``."""
    if opts["preset"] != "auto":
        return str(opts["preset"])
    view = image_view(shape)
    return "colour" if view is not None and len(shape) == 3 and view[0] == 3 else "erhan"


def resolve(opts: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """The options with every unset one filled in from the preset (and the preset's name)."""
    name = preset_name(opts, shape)
    filled = dict(opts)
    for key in PRESET_OPTIONS:
        if filled.get(key) is None:
            filled[key] = PRESETS[name][key]
    filled["preset"] = name
    return filled


def legacy(opts: dict[str, Any]) -> bool:
    """The earlier in-engine regularisers (circular jitter, TV, the FFT preconditioner, tangential
    Adam on the sphere, an unnormalised step) run on :func:`vizkit.optim.maximise_on_sphere`."""
    earlier = bool(opts["jitter"] or opts["tv"] or opts["param"] == "fft" or not opts["normalize"]
                   or (opts["optimizer"] == "adam" and opts["param"] == "pixel" and opts["constraint"] == "sphere"))
    if earlier and uses_optvis_only(opts):
        raise OptionError("jitter, tv, param fft and normalize false are the earlier pixel-sphere regularisers; with "
                          "objective, transforms, thresholds, diversity or another param or constraint use "
                          "transforms (e.g. -o transforms standard) instead")
    return earlier


def uses_optvis_only(opts: dict[str, Any]) -> bool:
    return bool(opts["objective"] or opts["transforms"] != "none" or opts["thresholds"] or opts["diversity"]
                or opts["param"] not in ("pixel", "fft") or opts["constraint"] != "sphere")


def thresholds(opts: dict[str, Any]) -> list[int]:
    """Snapshot steps below ``steps`` (the final image is always kept)."""
    text = str(opts["thresholds"] or "").strip()
    if not text:
        return []
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise OptionError(f"option 'thresholds' must be step counts like 64,256, got {text!r}") from None
    if any(v < 0 for v in values):
        raise OptionError(f"option 'thresholds' must be step counts >= 0, got {text!r}")
    return [v for v in values if v < opts["steps"]]


def constraint(opts: dict[str, Any], rho: float) -> optvis.Constraint:
    return {"sphere": lambda: optvis.Sphere(rho), "sigmoid": lambda: optvis.SigmoidRange(0.0, 1.0),
            "box": lambda: optvis.Box(0.0, 1.0), "none": optvis.Constraint}[opts["constraint"]]()


@dataclass
class Objectives:
    """The objectives rendered, one per entry of ``ids`` (a unit, or 0 for one expression)."""

    items: list[O.Objective]
    ids: torch.Tensor
    text: str  # what is maximised, for captions
    per_unit: bool


def objectives(ctx: ProbeContext, opts: dict[str, Any], unsquash: Any) -> Objectives:
    """One objective per unit (the unit itself, or the ``{unit}`` expression), or one expression."""
    model, layer = ctx.model, ctx.layer
    layers = set(model.layer_infos()) | {O.INPUT}
    units = ctx.units.cpu()
    text = opts["objective"]
    means = class_means(ctx)
    if text and "{unit}" not in text:
        items = [optvis.parse(text, layers, means)]
        ids, per_unit, shown = torch.zeros(1, dtype=torch.long), False, text
    elif text:
        items = [optvis.parse(text.replace("{unit}", str(int(u))), layers, means) for u in units]
        ids, per_unit, shown = units, True, text
    else:
        position = vizkit.parse_position(opts["position"], ctx.layer_info)
        if position is None:
            base = [O.channel(layer, int(u)) for u in units]
        else:
            base = [O.neuron(layer, int(u), *position) for u in units]
        if opts["target"] != "activation":
            target = opts["target"]
            base = [O.mapped(lambda v: unsquash(v, target), b, target) for b in base]
        items, ids, per_unit, shown = base, units, True, ""
    if opts["diversity"]:
        items = [item + opts["diversity"] * O.diversity(layer) for item in items]
    return Objectives(items, ids, shown, per_unit)


def render(ctx: ProbeContext, opts: dict[str, Any], goals: Objectives, rho: float, dtype: torch.dtype,
           chunk: int, model: Any = None) -> optvis.Rendering:
    """The search itself: every (objective, restart) of one chunk in one batch (on ``model``, by
    default the probed one; ``dtype`` is that model's)."""
    shape = tuple(int(s) for s in ctx.model.input_shape)
    param: Any = opts["param"]
    if param == "pixel" and opts["preset"] == "colour":
        param = optvis.param.Pixel(shape, start="uniform")
    return optvis.render(
        ctx.model if model is None else model, goals.items, restarts=opts["restarts"], param=param, transforms=opts["transforms"],
        constraint=constraint(opts, rho), optimizer="ascent" if opts["optimizer"] == "sgd" else opts["optimizer"],
        lr=opts["lr"], thresholds=[*thresholds(opts), opts["steps"]],
        tol=opts["tol"] if opts["transforms"] == "none" else 0.0, blur=opts["blur"], seed=ctx.seed, ids=goals.ids,
        chunk=chunk, device=ctx.device, dtype=dtype, progress=ctx.progress if ctx.show_progress else None,
        desc=f"actmax {ctx.layer}",
    )


def responses(ctx: ProbeContext, goals: Objectives, images: torch.Tensor) -> torch.Tensor:
    """[images, objectives]: every objective's value for every image, from one forward pass."""
    acts = O.activations_for(ctx.model, images, goals.items)
    return torch.stack([O.evaluate_all(goals.items, acts, torch.full((len(images),), j, dtype=torch.long))
                        for j in range(len(goals.items))], dim=1)


def class_means(ctx: ProbeContext) -> Any:
    """``classmean(k)`` in an objective: from the model's own labelled data (its held-out split),
    read only when an objective asks for it."""
    cache: dict[str, Any] = {}

    def resolve(layer: str, k: int) -> torch.Tensor:
        if "examples" not in cache:
            examples = vizkit.probe_inputs.load_examples(ctx.model, None, "auto", 0)
            if examples.labels is None:
                raise OptionError(f"classmean({k}) needs labelled data; {examples.source} has no labels")
            cache["examples"] = examples
        examples = cache["examples"]
        return O.class_mean_vector(ctx.model, examples.images.to(ctx.device), examples.labels, layer, k)

    return resolve
