"""Objectives: what an image should make a network do, as values with arithmetic.

An :class:`Objective` maps one batch's layer activations to **one value per image** ([n]), to be
maximised. Leaves read one layer (``channel``, ``neuron``, ``direction``, weighted and interpolated
readouts, ``diversity``, ``alignment``, any callable); ``+ - * /``, negation and ``sum`` combine
them. The vocabulary is lucent's (and the Distill articles'), with two differences that come from
rendering many objectives in one batch:

* values are per image, not a batch mean, so the render of one objective never depends on which
  other objectives share its batch (a unit's optimum is the same alone, in any batch, or split
  over processes);
* objectives of the same shape (``channel(conv2, 0)`` … ``channel(conv2, 63)``, or the same
  expression with other numbers) are **stacked**: one gather or one ``einsum`` for all of them,
  never a Python loop over units. Objectives whose values couple images (``diversity``,
  ``alignment``) couple only the restarts of one objective.

lucent minimises ``-objective``; here the objective is maximised, so ``-channel(l, c)`` minimises
the channel, as in lucent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from vizkit.errors import OptionError

#: One batch's activations ``{layer: [n, *shape]}``; the special layer ``"input"`` is the image the
#: network saw (after transforms and preprocessing).
Activations = Mapping[str, torch.Tensor]
INPUT = "input"


class Objective:
    """A per-image value to maximise; combine with ``+ - * /`` and numbers."""

    def layers(self) -> frozenset[str]:
        """The layers it reads (the forward pass stops at the deepest)."""
        return frozenset().union(*(leaf.layers() for leaf in self.leaves())) if self.leaves() else frozenset()

    def leaves(self) -> list[Leaf]:
        raise NotImplementedError

    def signature(self) -> tuple[Any, ...]:
        """The objective's shape without its numbers: objectives with equal signatures are stacked."""
        raise NotImplementedError

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        """Values [n] of the stacked objectives ``group`` (this one among them, all of one signature);
        row b of the batch is scored by ``group[rows[b]]``."""
        raise NotImplementedError

    def __call__(self, acts: Activations) -> torch.Tensor:
        """This objective alone on every image of the batch."""
        n = next(iter(acts.values())).shape[0]
        return self.evaluate(acts, [self], torch.zeros(n, dtype=torch.long))

    # -- arithmetic -----------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Objective:
        return Combination("+", self, as_objective(other))

    def __radd__(self, other: Any) -> Objective:
        return Combination("+", as_objective(other), self)

    def __sub__(self, other: Any) -> Objective:
        return Combination("-", self, as_objective(other))

    def __rsub__(self, other: Any) -> Objective:
        return Combination("-", as_objective(other), self)

    def __mul__(self, other: Any) -> Objective:
        return Combination("*", self, as_objective(other))

    def __rmul__(self, other: Any) -> Objective:
        return Combination("*", as_objective(other), self)

    def __truediv__(self, other: Any) -> Objective:
        return Combination("/", self, as_objective(other))

    def __rtruediv__(self, other: Any) -> Objective:
        return Combination("/", as_objective(other), self)

    def __neg__(self) -> Objective:
        return Combination("*", Constant(-1.0), self)

    def __pos__(self) -> Objective:
        return self

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        raise NotImplementedError


def as_objective(value: Any) -> Objective:
    if isinstance(value, Objective):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(float(value))
    if callable(value):
        return Custom(value)
    raise TypeError(f"an objective combines with numbers and objectives, not {type(value).__name__}")


def total(objectives: Sequence[Objective]) -> Objective:
    """The sum of several objectives (``sum()`` works too, starting from 0)."""
    out: Objective = Constant(0.0)
    for objective in objectives:
        out = out + objective
    return out


class Combination(Objective):
    _OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div}

    def __init__(self, op: str, left: Objective, right: Objective) -> None:
        self.op, self.left, self.right = op, left, right

    def leaves(self) -> list[Leaf]:
        return self.left.leaves() + self.right.leaves()

    def signature(self) -> tuple[Any, ...]:
        return (self.op, self.left.signature(), self.right.signature())

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        left = self.left.evaluate(acts, [g.left for g in group], rows)  # type: ignore[attr-defined]
        right = self.right.evaluate(acts, [g.right for g in group], rows)  # type: ignore[attr-defined]
        return self._OPS[self.op](left, right)

    def describe(self) -> str:
        return f"({self.left.describe()} {self.op} {self.right.describe()})"


class Leaf(Objective):
    """An objective that reads activations directly; subclasses say how a stack of them is scored."""

    layer: str = ""

    def leaves(self) -> list[Leaf]:
        return [self]

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer}) if self.layer else frozenset()

    def signature(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.layer)


def _rows_of(values: Sequence[Any], rows: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The per-objective values ``values[k]`` laid out per row: ``values[rows[b]]``."""
    table = torch.as_tensor(values, device=device, dtype=dtype)
    return table[rows.to(device)]


def _layer(acts: Activations, layer: str) -> torch.Tensor:
    try:
        return acts[layer]
    except KeyError:
        raise OptionError(f"the objective reads layer {layer!r}, which was not computed") from None


def _spatial(act: torch.Tensor) -> torch.Tensor:
    """[n, C, P] positions of a map (a dense layer is C units at one position)."""
    return act.reshape(act.shape[0], act.shape[1], -1) if act.dim() >= 3 else act.reshape(act.shape[0], -1, 1)


def _position(act: torch.Tensor, y: int | None, x: int | None) -> int:
    """The flat spatial index of (y, x), the centre by default (lucent's convention)."""
    if act.dim() != 4:
        if y is not None or x is not None:
            raise OptionError(f"a position needs a convolutional map; this layer's output has shape {tuple(act.shape[1:])}")
        return 0
    h, w = act.shape[2:]
    y = h // 2 if y is None else int(y)
    x = w // 2 if x is None else int(x)
    if not (0 <= y < h and 0 <= x < w):
        raise OptionError(f"position ({y}, {x}) is outside the {h}x{w} map")
    return y * w + x


def _index(value: Any, what: str) -> int:
    """A channel or position given as a whole number (1.5 is a mistake, not channel 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise OptionError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _check_channel(act: torch.Tensor, channel: int, layer: str) -> None:
    n_channels = _spatial(act).shape[1]
    if not 0 <= channel < n_channels:
        raise OptionError(f"layer {layer!r} has {n_channels} channels; channel {channel} does not exist")


class Constant(Leaf):
    def __init__(self, value: float) -> None:
        self.value = float(value)

    def layers(self) -> frozenset[str]:
        return frozenset()

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        ref = next(iter(acts.values()))
        return _rows_of([g.value for g in group], rows, ref.device, ref.dtype)  # type: ignore[attr-defined]

    def describe(self) -> str:
        return f"{self.value:g}"


class Channel(Leaf):
    """The mean of one channel over the map (a dense layer's unit): vizkit's "unit" of a conv layer."""

    def __init__(self, layer: str, channel: int) -> None:
        self.layer, self.channel = layer, _index(channel, "a channel")

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        act = _spatial(_layer(acts, self.layer))
        for g in group:
            _check_channel(act, g.channel, self.layer)  # type: ignore[attr-defined]
        index = _rows_of([g.channel for g in group], rows, act.device)  # type: ignore[attr-defined]
        return act.gather(1, index.reshape(-1, 1, 1).expand(-1, 1, act.shape[2]))[:, 0].mean(1)

    def describe(self) -> str:
        return f"channel({self.layer},{self.channel})"


class Neuron(Leaf):
    """One channel at one position (the centre by default)."""

    def __init__(self, layer: str, channel: int, y: int | None = None, x: int | None = None) -> None:
        self.layer, self.channel = layer, _index(channel, "a channel")
        self.y = None if y is None else _index(y, "a position")
        self.x = None if x is None else _index(x, "a position")

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        full = _layer(acts, self.layer)
        act = _spatial(full)
        for g in group:
            _check_channel(act, g.channel, self.layer)  # type: ignore[attr-defined]
        flat = act.shape[1] * act.shape[2]
        index = [g.channel * act.shape[2] + _position(full, g.y, g.x) for g in group]  # type: ignore[attr-defined]
        return act.reshape(act.shape[0], flat).gather(1, _rows_of(index, rows, act.device).reshape(-1, 1))[:, 0]

    def describe(self) -> str:
        where = "" if self.y is None and self.x is None else f",{self.y},{self.x}"
        return f"neuron({self.layer},{self.channel}{where})"


class Vector:
    """A vector over a layer's channels, given now or made when the layer's width is known
    (``random(seed)``, ``classmean(k)``)."""

    def __init__(self, values: Sequence[float] | torch.Tensor | None = None, *,
                 make: Callable[[str, int], torch.Tensor] | None = None, text: str = "") -> None:
        self._values = None if values is None else torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        self._make, self.text = make, text or "vector"

    def resolve(self, layer: str, channels: int) -> torch.Tensor:
        if self._values is None:
            assert self._make is not None
            self._values = torch.as_tensor(self._make(layer, channels), dtype=torch.float64).reshape(-1)
        if self._values.numel() != channels:
            raise OptionError(f"layer {layer!r} has {channels} channels; the vector {self.text} has "
                              f"{self._values.numel()}")
        return self._values


def as_vector(value: Any) -> Vector:
    return value if isinstance(value, Vector) else Vector(value)


def random_vector(seed: int) -> Vector:
    """A random unit direction, the same for a given seed and width."""

    def make(layer: str, channels: int) -> torch.Tensor:
        v = torch.randn(channels, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        return v / v.norm()

    return Vector(make=make, text=f"random({seed})")


def class_mean_vector(model: Any, images: torch.Tensor, labels: torch.Tensor, layer: str, k: int,
                      batch: int = 256) -> torch.Tensor:
    """The mean channel vector (spatial mean on maps) of class ``k``'s images minus that of all images:
    the direction in ``layer`` that tells class k apart (a "class-mean direction")."""
    import vizkit

    labels = torch.as_tensor(labels).reshape(-1)
    if not bool((labels == k).any()):
        raise OptionError(f"classmean({k}): the data holds no example of class {k}")
    total, in_class = None, None
    with torch.no_grad():
        for start in range(0, len(images), batch):
            act = _spatial(vizkit.layer_activations(model, images[start : start + batch], [layer])[layer]).mean(2)
            act = act.double().cpu()
            part_all, part_k = act.sum(0), act[labels[start : start + batch] == k].sum(0)
            total = part_all if total is None else total + part_all
            in_class = part_k if in_class is None else in_class + part_k
    assert total is not None and in_class is not None
    return in_class / int((labels == k).sum()) - total / len(images)


class _ChannelReadout(Leaf):
    """Σ_c v_c a_c at each position, averaged over positions (or at one): the shared body of the
    direction and weight objectives, stacked as one einsum with a vector per row."""

    cosine = False
    name = ""

    def __init__(self, layer: str, vector: Any, y: int | None = None, x: int | None = None,
                 window: tuple[int, int] | None = None, at: bool = False) -> None:
        self.layer, self.vector, self.y, self.x, self.window, self.at = layer, as_vector(vector), y, x, window, at

    def signature(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.layer, self.at, self.window)

    def _mask(self, full: torch.Tensor, positions: int) -> torch.Tensor:
        """Which positions count, [positions]."""
        mask = torch.zeros(positions, dtype=full.dtype, device=full.device)
        if self.window is not None:
            h, w = full.shape[2:]
            y0, x0 = int(self.y or 0), int(self.x or 0)
            hh, ww = self.window
            if not (0 <= y0 and 0 <= x0 and y0 + hh <= h and x0 + ww <= w):
                raise OptionError(f"the group at ({y0}, {x0}) of size {hh}x{ww} is outside the {h}x{w} map")
            mask.reshape(h, w)[y0 : y0 + hh, x0 : x0 + ww] = 1.0
        elif self.at:
            mask[_position(full, self.y, self.x)] = 1.0
        else:
            mask[:] = 1.0
        return mask

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        full = _layer(acts, self.layer)
        act = _spatial(full)  # [n, C, P]
        vectors = torch.stack([g.vector.resolve(self.layer, act.shape[1]) for g in group])  # type: ignore[attr-defined]
        masks = torch.stack([g._mask(full, act.shape[2]) for g in group])  # type: ignore[attr-defined]
        v = vectors.to(act.device, act.dtype)[rows.to(act.device)]  # [n, C]
        m = masks[rows.to(act.device)]  # [n, P]
        dots = torch.einsum("ncp,nc->np", act, v)
        if self.cosine:  # cosine between the channel vector at each position and v
            dots = dots / (act.norm(dim=1) * v.norm(dim=1, keepdim=True)).clamp_min(1e-12)
            return (dots * m).sum(1) / m.sum(1)
        # lucent's weight objectives average over channels too
        return (dots * m).sum(1) / (m.sum(1) * act.shape[1])

    def describe(self) -> str:
        where = ""
        if self.window is not None:
            where = f",{self.y},{self.x},{self.window[0]},{self.window[1]}"
        elif self.at and (self.y is not None or self.x is not None):
            where = f",{self.y},{self.x}"
        return f"{self.name}({self.layer},{self.vector.text}{where})"


class Direction(_ChannelReadout):
    cosine, name = True, "direction"


class DirectionNeuron(_ChannelReadout):
    cosine, name = True, "direction_neuron"


class ChannelWeight(_ChannelReadout):
    name = "channel_weight"


class NeuronWeight(_ChannelReadout):
    name = "neuron_weight"


class LocalGroupWeight(_ChannelReadout):
    name = "localgroup_weight"


class RowWeight(Leaf):
    """A number per restart: ``t`` for the r-th of R restarts is r / (R − 1) (0 for one restart).
    ``channel_interpolate`` uses it to blend two objectives across the restarts of one render."""

    def __init__(self) -> None:
        self.layer = ""

    def layers(self) -> frozenset[str]:
        return frozenset()

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        ref = next(iter(acts.values()))
        t = torch.zeros(len(rows), dtype=ref.dtype, device=ref.device)
        for k in range(len(group)):
            where = (rows == k).nonzero().reshape(-1).to(ref.device)
            if len(where) > 1:
                t[where] = torch.arange(len(where), dtype=ref.dtype, device=ref.device) / (len(where) - 1)
        return t

    def describe(self) -> str:
        return "t"


class Diversity(Leaf):
    """Minus the mean cosine between this image's Gram matrix of the layer's channels and those of
    the other restarts of the same objective (Olah et al. 2017). Identical images score −1, the least."""

    def __init__(self, layer: str) -> None:
        self.layer = layer

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        act = _spatial(_layer(acts, self.layer))
        gram = torch.einsum("ncp,ndp->ncd", act, act).flatten(1)
        gram = gram / gram.norm(dim=1, keepdim=True).clamp_min(1e-12)
        rows = rows.to(act.device)
        same = (rows[:, None] == rows[None, :]).to(act.dtype)
        same.fill_diagonal_(0.0)
        others = same.sum(1)
        cosines = (gram @ gram.T * same).sum(1)
        return torch.where(others > 0, -cosines / others.clamp_min(1.0), torch.zeros_like(cosines))

    def describe(self) -> str:
        return f"diversity({self.layer})"


class Alignment(Leaf):
    """Minus the mean squared difference between the activations of restarts k = 1…4 apart,
    weighted 1/decay^k: consecutive images change gradually (lucent's ``alignment``)."""

    def __init__(self, layer: str, decay: float = 2.0) -> None:
        self.layer, self.decay = layer, float(decay)

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        act = _layer(acts, self.layer).flatten(1)
        rows = rows.to(act.device)
        n = len(rows)
        order = torch.arange(n, device=act.device)
        gap = (order[:, None] - order[None, :]).abs().to(act.dtype)
        same = (rows[:, None] == rows[None, :]) & (gap > 0) & (gap <= 4)
        weight = torch.where(same, self.decay ** (-gap), torch.zeros_like(gap))
        dist = torch.cdist(act, act).pow(2) / act.shape[1]  # mean squared difference
        return -(weight * dist).sum(1) / 2.0  # each pair's term split between its two images

    def describe(self) -> str:
        return f"alignment({self.layer},{self.decay:g})"


class Custom(Leaf):
    """Any callable on activations: ``fn(acts)`` gets ``{layer: tensor}`` and returns one value per
    image [n]. ``layers`` names what it reads (``fn`` of one tensor when there is one layer)."""

    def __init__(self, fn: Callable[..., torch.Tensor], layers: Sequence[str] = (), name: str = "") -> None:
        self.fn, self._layers = fn, tuple(layers)
        self.name = name or getattr(fn, "__name__", "custom")
        self.layer = self._layers[0] if len(self._layers) == 1 else ""

    def layers(self) -> frozenset[str]:
        return frozenset(self._layers)

    def signature(self) -> tuple[Any, ...]:
        return ("Custom", id(self.fn), self._layers)

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        arg = acts[self._layers[0]] if len(self._layers) == 1 else acts
        value = self.fn(arg)
        n = len(rows)
        if not isinstance(value, torch.Tensor) or value.shape != (n,):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise OptionError(f"the objective {self.name} must return one value per image ({n},), got {got}")
        return value

    def describe(self) -> str:
        return f"{self.name}({','.join(self._layers)})"


class Mapped(Objective):
    """``fn`` applied to an objective's values, e.g. the pre-activation logit(h) of a sigmoid unit."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], child: Objective, name: str = "") -> None:
        self.fn, self.child, self.name = fn, child, name or getattr(fn, "__name__", "f")

    def leaves(self) -> list[Leaf]:
        return self.child.leaves()

    def signature(self) -> tuple[Any, ...]:
        return ("map", self.name, self.child.signature())

    def evaluate(self, acts: Activations, group: Sequence[Objective], rows: torch.Tensor) -> torch.Tensor:
        return self.fn(self.child.evaluate(acts, [g.child for g in group], rows))  # type: ignore[attr-defined]

    def describe(self) -> str:
        return f"{self.name}({self.child.describe()})"


# -- the public constructors, lucent's names ---------------------------------------------------------
def channel(layer: str, n_channel: int) -> Objective:
    return Channel(layer, n_channel)


def neuron(layer: str, n_channel: int, y: int | None = None, x: int | None = None) -> Objective:
    return Neuron(layer, n_channel, y, x)


def direction(layer: str, vector: Any) -> Objective:
    return Direction(layer, vector)


def direction_neuron(layer: str, vector: Any, y: int | None = None, x: int | None = None) -> Objective:
    return DirectionNeuron(layer, vector, y, x, at=True)


def channel_weight(layer: str, weight: Any) -> Objective:
    return ChannelWeight(layer, weight)


def neuron_weight(layer: str, weight: Any, y: int | None = None, x: int | None = None) -> Objective:
    return NeuronWeight(layer, weight, y, x, at=True)


def localgroup_weight(layer: str, weight: Any, y: int, x: int, height: int, width: int) -> Objective:
    return LocalGroupWeight(layer, weight, y, x, window=(int(height), int(width)))


def channel_interpolate(layer1: str, n_channel1: int, layer2: str, n_channel2: int) -> Objective:
    """Restart r of R maximises (1 − t)·channel1 + t·channel2 with t = r / (R − 1)."""
    t = RowWeight()
    return (1.0 - t) * Channel(layer1, n_channel1) + t * Channel(layer2, n_channel2)


def diversity(layer: str) -> Objective:
    return Diversity(layer)


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
    return Alignment(layer, decay_ratio)


def custom(fn: Callable[..., torch.Tensor], layers: Sequence[str], name: str = "") -> Objective:
    return Custom(fn, layers, name)


def mapped(fn: Callable[[torch.Tensor], torch.Tensor], objective: Objective, name: str = "") -> Objective:
    """``fn`` of the objective's values; objectives mapped by functions of one ``name`` stack."""
    return Mapped(fn, objective, name)


def stack_groups(objectives: Sequence[Objective]) -> list[tuple[Objective, list[int]]]:
    """Objectives grouped by signature, in order of first appearance: (representative, indices)."""
    groups: dict[tuple[Any, ...], tuple[Objective, list[int]]] = {}
    for i, objective in enumerate(objectives):
        groups.setdefault(objective.signature(), (objective, []))[1].append(i)
    return list(groups.values())


def evaluate_all(objectives: Sequence[Objective], acts: Activations, objective_of_row: torch.Tensor) -> torch.Tensor:
    """Values [n]: row b scored by ``objectives[objective_of_row[b]]``, one stacked evaluation per
    signature (usually one)."""
    groups = stack_groups(objectives)
    if len(groups) == 1:
        return groups[0][0].evaluate(acts, objectives, objective_of_row)
    ref = next(iter(acts.values()))
    out = torch.empty(len(objective_of_row), dtype=ref.dtype, device=ref.device)
    for representative, members in groups:
        lookup = torch.full((len(objectives),), -1, dtype=torch.long)
        lookup[members] = torch.arange(len(members))
        local = lookup[objective_of_row.cpu()]
        where = (local >= 0).nonzero().reshape(-1)
        sub = {k: v[where.to(v.device)] for k, v in acts.items()}
        out[where.to(out.device)] = representative.evaluate(sub, [objectives[i] for i in members], local[where])
    return out


def needed_layers(objectives: Sequence[Objective]) -> list[str]:
    """The model layers the objectives read (not ``"input"``), for one forward pass."""
    return sorted(set().union(*(o.layers() for o in objectives)) - {INPUT})


def activations_for(model: Any, x: torch.Tensor, objectives: Sequence[Objective]) -> dict[str, torch.Tensor]:
    """What the objectives read of ``x``: their layers from one forward pass, and the input itself."""
    import vizkit

    layers = needed_layers(objectives)
    acts = dict(vizkit.layer_activations(model, x, layers)) if layers else {}
    acts[INPUT] = x
    return acts


FUNCTIONS: dict[str, Callable[..., Objective]] = {
    "channel": channel, "neuron": neuron, "direction": direction, "direction_neuron": direction_neuron,
    "channel_weight": channel_weight, "neuron_weight": neuron_weight, "localgroup_weight": localgroup_weight,
    "channel_interpolate": channel_interpolate, "diversity": diversity, "alignment": alignment,
}
#: which arguments of each function name layers (read verbatim: ``features.0``, ``layer1.0.relu#2``)
LAYER_ARGS: dict[str, tuple[int, ...]] = {name: (0,) for name in FUNCTIONS} | {"channel_interpolate": (0, 2)}


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
