"""``render``: optimise images for many objectives × restarts in one batch.

The loop of lucent's ``render_vis`` with what vizkit's actmax already did better built in:

* **one batch** for every (objective, restart), each sample with its own key (its start and every
  transform's random numbers come from it), so results do not depend on what shares the batch and
  a set of units can be split over processes;
* the forward pass reads only the layers the objectives name (a :class:`~vizkit.VizModel` stops at
  the deepest) and gradients are taken for the image parameters only, never the weights;
* the constraint is one choice among several: Erhan et al.'s sphere ‖x‖ = ρ (projected, for pixel
  parameters, or as a normalisation of any other parameterisation), a box, a sigmoid range, or none;
* any torch optimiser (element-wise ones keep samples independent), ``ascent`` (Erhan et al.'s
  normalised gradient step on the sphere), snapshots at ``thresholds`` and, without transforms,
  a per-sample stop when the objective stops growing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import vizkit
from vizkit.errors import OptionError
from vizkit.optim import Progress, gaussian_blur, sample_keys
from vizkit.sphere import project_to_sphere

from . import objectives as obj
from . import param as params_
from . import transforms as tf
from .expression import parse


# -- constraints ---------------------------------------------------------------------------------
class Constraint:
    """Where inputs may lie. ``apply`` maps the parameterisation's image into the set
    (differentiably); ``project`` keeps pixel parameters in it after each step."""

    name = "none"

    def apply(self, x: torch.Tensor, projected: bool) -> torch.Tensor:
        return x

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def step_scale(self, x: torch.Tensor) -> float | torch.Tensor:
        """The length ``ascent``'s lr is a fraction of: ρ, or the image's own norm."""
        return x.flatten(1).norm(dim=1).reshape(-1, *([1] * (x.dim() - 1)))


class Sphere(Constraint):
    """‖x‖ = ρ (Erhan et al. 2009)."""

    name = "sphere"

    def __init__(self, rho: float) -> None:
        if not rho > 0:
            raise OptionError(f"the sphere's radius must be positive, got {rho}")
        self.rho = float(rho)

    def apply(self, x: torch.Tensor, projected: bool) -> torch.Tensor:
        return x if projected else project_to_sphere(x, self.rho)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return project_to_sphere(x, self.rho)

    def step_scale(self, x: torch.Tensor) -> float | torch.Tensor:
        return self.rho


class Box(Constraint):
    """lo ≤ x ≤ hi (clipped)."""

    name = "box"

    def __init__(self, lo: float = 0.0, hi: float = 1.0) -> None:
        self.lo, self.hi = float(lo), float(hi)

    def apply(self, x: torch.Tensor, projected: bool) -> torch.Tensor:
        return x if projected else x.clamp(self.lo, self.hi)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.lo, self.hi)


class SigmoidRange(Constraint):
    """x = lo + (hi − lo)·σ(y): lucent's ``to_valid_rgb``, any parameter value is a valid image."""

    name = "sigmoid"

    def __init__(self, lo: float = 0.0, hi: float = 1.0) -> None:
        self.lo, self.hi = float(lo), float(hi)

    def apply(self, x: torch.Tensor, projected: bool) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(x)


# -- the result ------------------------------------------------------------------------------------
@dataclass
class Rendering:
    """Images and what they reached, rows ordered (objective, restart); tensors on the CPU."""

    images: torch.Tensor  # [n, *input_shape], the final (or best) image per sample
    values: torch.Tensor  # [n] each sample's objective at its image, without transforms
    initial: torch.Tensor  # [n] the objective at the start, without transforms
    trace: torch.Tensor  # [n, steps + 1] the objective as optimised (with transforms) at each step
    steps: torch.Tensor  # [n] steps taken
    converged: torch.Tensor  # [n] stopped because the objective stopped growing
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # threshold -> [n, *input_shape]
    objective_of_row: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def per_objective(self, name: str = "images") -> torch.Tensor:
        """``images``/``values``/... reshaped to [objectives, restarts, ...]."""
        value = getattr(self, name)
        n_obj = int(self.objective_of_row.max()) + 1 if len(self.objective_of_row) else 0
        return value.reshape(n_obj, -1, *value.shape[1:])


# -- the loop --------------------------------------------------------------------------------------
def as_objectives(objective: Any, layers: set[str] | None = None) -> list[obj.Objective]:
    items = list(objective) if isinstance(objective, (list, tuple)) else [objective]
    if not items:
        raise OptionError("render needs at least one objective")
    return [parse(o, layers) if isinstance(o, str) else obj.as_objective(o) for o in items]


def _model_of(model: Any) -> Any:
    if isinstance(model, torch.nn.Module) and not hasattr(model, "layer_infos"):
        raise OptionError("render takes a vizkit model: wrap a torch module first "
                          "(vizkit.wrap(module, input_shape=...))")
    return model


def _param_of(param: Any, shape: tuple[int, ...]) -> params_.Param:
    if isinstance(param, params_.Param):
        return param
    return params_.make_param(str(param), shape)


def _transforms_of(transforms: Any, shape: tuple[int, ...]) -> tf.Compose:
    if transforms is None:
        return tf.Compose([])
    if isinstance(transforms, str):
        view = params_.need_image(shape, f"transforms {transforms!r}") if transforms != "none" else (0, 0, 0)
        return tf.named(transforms, view[1], view[2])
    if isinstance(transforms, tf.Compose):
        return transforms
    listed = list(transforms) if isinstance(transforms, Iterable) else [transforms]
    if listed:
        params_.need_image(shape, "transforms")
    return tf.Compose(listed)


def _optimizer_of(optimizer: Any, lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None:
    """A factory for a torch optimiser, or None for ``ascent`` (handled by the loop)."""
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer
    name = str(optimizer)
    if name == "ascent":
        return None
    known = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
             "adagrad": torch.optim.Adagrad}
    if name not in known:
        raise OptionError(f"unknown optimizer {name!r} (known: ascent, {', '.join(known)}, or a callable)")
    cls = known[name]
    return lambda tensors: cls(tensors, lr=lr)


def render(
    model: Any,
    objective: Any,
    *,
    restarts: int = 1,
    param: Any = "pixel",
    transforms: Any = None,
    constraint: Constraint | None = None,
    optimizer: Any = "adam",
    lr: float = 0.05,
    thresholds: Sequence[int] = (512,),
    tol: float = 0.0,
    blur: float = 0.0,
    seed: int = 0,
    ids: torch.Tensor | Sequence[int] | None = None,
    chunk: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    desc: str = "render",
) -> Rendering:
    """Optimise ``restarts`` images for each objective (an :class:`~vizkit.optvis.objectives.Objective`,
    an expression such as ``"channel(conv2,3) - 0.5*channel(conv2,5)"``, a callable on activations, or a
    list of them) and return them with the activation trace and snapshots at ``thresholds``.

    ``ids`` (default 0…k−1) identify the objectives in the samples' keys: give a unit its own id and
    its images are the same whatever else is rendered with it. ``chunk`` caps the objectives per
    batch (all restarts of an objective always share one, as ``diversity`` couples them).
    """
    model = _model_of(model)
    shape = tuple(int(s) for s in model.input_shape)
    known_layers = set(model.layer_infos()) | {obj.INPUT}
    objectives = as_objectives(objective, known_layers)
    for o in objectives:
        unknown = sorted(o.layers() - known_layers)
        if unknown:
            raise OptionError(f"the objective {o.describe()} reads {unknown[0]!r}, which this model does not have")
    if restarts < 1:
        raise OptionError(f"restarts must be at least 1, got {restarts}")
    steps_at = sorted({int(t) for t in thresholds})
    if not steps_at or steps_at[0] < 0:
        raise OptionError(f"thresholds must be step counts >= 0, got {list(thresholds)}")
    p = _param_of(param, shape)
    chain = _transforms_of(transforms, shape)
    make_optimizer = _optimizer_of(optimizer, lr)
    constraint = constraint or Constraint()
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or vizkit.model_dtype(model)
    n_obj = len(objectives)
    ids_t = torch.arange(n_obj) if ids is None else torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if len(ids_t) != n_obj:
        raise OptionError(f"{len(ids_t)} ids for {n_obj} objectives")
    keys = sample_keys(seed, ids_t.repeat_interleave(restarts), torch.arange(restarts).repeat(n_obj))
    objective_of_row = torch.arange(n_obj).repeat_interleave(restarts)
    per_chunk = n_obj if not chunk else max(1, min(int(chunk), n_obj))
    parts = []
    n_chunks = math.ceil(n_obj / per_chunk)
    for i, first in enumerate(range(0, n_obj, per_chunk)):
        members = list(range(first, min(n_obj, first + per_chunk)))
        rows = slice(first * restarts, (first + len(members)) * restarts)
        label = desc if n_chunks == 1 else f"{desc} (chunk {i + 1}/{n_chunks})"
        parts.append(_render_chunk(
            model, [objectives[k] for k in members], objective_of_row[rows] - first, keys[rows], p, chain,
            constraint, make_optimizer, lr, steps_at, tol, blur, dtype, device, progress, label))
    out = Rendering(*(torch.cat([getattr(part, f) for part in parts]) for f in
                      ("images", "values", "initial", "trace", "steps", "converged")))
    out.snapshots = {t: torch.cat([part.snapshots[t] for part in parts]) for t in steps_at}
    out.objective_of_row = objective_of_row
    return out


def _render_chunk(
    model: Any,
    objectives: list[obj.Objective],
    rows: torch.Tensor,
    keys: torch.Tensor,
    p: params_.Param,
    chain: tf.Compose,
    constraint: Constraint,
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None,
    lr: float,
    steps_at: list[int],
    tol: float,
    blur: float,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None,
    desc: str,
) -> Rendering:
    n = len(rows)
    # Pixels are kept in the constraint by projection after each step, except on the sphere under a
    # torch optimiser: Adam's per-coordinate steps, projected, circle the optimum (they end at
    # sign(w) for a linear unit); normalising in the forward pass gives it the tangential gradient.
    projected = isinstance(p, params_.Pixel) and (make_optimizer is None or not isinstance(constraint, Sphere))
    tensors = [t.detach() for t in p.start(keys, dtype, device)]
    if projected:
        tensors[0] = constraint.project(tensors[0])
    tensors = [t.requires_grad_(True) for t in tensors]
    opt = make_optimizer(tensors) if make_optimizer is not None else None
    if opt is None and not isinstance(p, params_.Pixel):
        raise OptionError("the ascent optimizer steps pixels on the sphere; use adam or sgd with "
                          f"the {p.name} parameterisation")
    stochastic = len(chain) > 0
    device_keys, device_rows = keys.to(device), rows.to(device)

    def image() -> torch.Tensor:
        return constraint.apply(p.image(tensors), projected)

    def score(x: torch.Tensor, step: int | None) -> torch.Tensor:
        seen = chain(x, device_keys, step) if (stochastic and step is not None) else x
        return obj.evaluate_all(objectives, obj.activations_for(model, seen, objectives), device_rows)

    last = steps_at[-1]
    trace = torch.full((n, last + 1), math.nan, dtype=torch.float64)
    snapshots: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        initial = score(image(), None).detach()
    best_x = image().detach().clone()
    best = torch.full((n,), -math.inf, dtype=dtype, device=device)
    best_value = initial.clone()
    prev = torch.full((n,), math.nan, dtype=dtype, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    converged = torch.zeros(n, dtype=torch.bool, device=device)
    taken = torch.zeros(n, dtype=torch.long, device=device)
    bshape = (n,) + (1,) * (best_x.dim() - 1)
    steps_iter: Iterable[int] = range(last + 1)
    if progress is not None:
        steps_iter = progress(steps_iter, desc, last + 1)
    for t in steps_iter:
        with torch.enable_grad():
            x = image()
            value = score(x, t)
            if t < last and bool(active.any()):
                grads = torch.autograd.grad(value.sum(), tensors)
            else:
                grads = None
        value = value.detach()
        trace[:, t] = value.double().cpu()
        if not stochastic:
            better = active & (value > best)
            best_x = torch.where(better.reshape(bshape), x.detach(), best_x)
            best = torch.where(better, value, best)
            best_value = torch.where(better, value, best_value)
            if tol > 0:
                growth = (value - prev) / prev.abs().clamp_min(torch.finfo(dtype).tiny)
                stop = active & (growth < tol)
                converged |= stop
                active &= ~stop
        if t in snapshots or t in steps_at:
            snapshots[t] = (best_x if not stochastic else x.detach()).cpu().clone()
        if grads is None:
            break
        prev = torch.where(active, value, prev)
        _step(tensors, grads, opt, constraint, lr, active, projected, blur, x.detach())
        taken += active.long()
    for t in steps_at:  # stopped early (every sample converged): later snapshots are the best
        snapshots.setdefault(t, best_x.cpu().clone())
    done = int((~torch.isnan(trace[0])).sum())  # frozen samples keep their value to the end
    trace[:, done:] = trace[:, done - 1 : done]
    if stochastic:
        with torch.no_grad():
            final = image().detach()
            best_x, best_value = final, score(final, None).detach()
    return Rendering(best_x.cpu(), best_value.cpu(), initial.cpu(), trace, taken.cpu(), converged.cpu(), snapshots)


def _step(tensors: list[torch.Tensor], grads: Sequence[torch.Tensor], opt: torch.optim.Optimizer | None,
          constraint: Constraint, lr: float, active: torch.Tensor, projected: bool, blur: float,
          x: torch.Tensor) -> None:
    """One update of every active sample; finished samples keep their parameters."""
    before = [t.detach().clone() for t in tensors] if not bool(active.all()) else None
    with torch.no_grad():
        if opt is None:  # Erhan et al.: x <- x + lr·ρ·g/‖g‖, then back onto the constraint
            g = grads[0]
            norm = g.flatten(1).norm(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
            scale = constraint.step_scale(x)
            tensors[0].add_(lr * scale * g / norm.reshape(-1, *([1] * (g.dim() - 1))))
        else:
            for tensor, grad in zip(tensors, grads, strict=True):
                tensor.grad = -grad  # torch optimisers minimise
            opt.step()
            opt.zero_grad(set_to_none=True)
        if projected:
            moved = tensors[0]
            if blur:
                moved = gaussian_blur(moved, blur)
            tensors[0].copy_(constraint.project(moved))
        if before is not None:
            for tensor, old in zip(tensors, before, strict=True):
                keep = (~active).reshape(-1, *([1] * (tensor.dim() - 1))).to(tensor.device)
                tensor.copy_(torch.where(keep, old, tensor))
