"""The probe protocol: what a visualization may ask of a model.

Probes never reach into a model's internals; they go through these calls so that the same probe
runs on the reference models, on user models wrapped with :func:`vizkit.wrap`, and on models a
third-party plugin registers. Which optional calls a model supports is stated by its explicit
``capabilities`` set, never guessed from the methods it happens to have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from . import capabilities as caps
from .errors import OptionError, UnknownNameError, UsageError


@dataclass(frozen=True)
class LayerInfo:
    """A named layer and the per-example shape of its output.

    A three-dimensional shape is a convolutional map (channels, height, width) whose units are
    channels; anything else is flattened and every element is a unit.

    ``squash`` names the squashing function the units end in when the model knows it
    (``"sigmoid"`` or ``"tanh"``, else None): a probe can then work on the pre-activation, which
    the squashing hides, e.g. actmax maximises a sigmoid unit's total input as Erhan et al. do.
    """

    name: str
    shape: tuple[int, ...]
    squash: str | None = None

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    @property
    def n_units(self) -> int:
        return self.shape[0] if self.is_map else math.prod(self.shape)


def squashed(infos: dict[str, LayerInfo], squash: str) -> dict[str, LayerInfo]:
    """``infos`` with every layer's units marked as ending in ``squash`` (see LayerInfo.squash)."""
    return {name: replace(info, squash=squash) for name, info in infos.items()}


@dataclass(frozen=True)
class Weights:
    """Weights feeding a layer: row ``i`` is unit ``i``'s filter over ``source``.

    ``source`` is ``"input"`` when the rows live in input space (so they can be drawn as images) or
    the name of the layer below otherwise.
    """

    matrix: torch.Tensor
    source: str


@runtime_checkable
class ProbeModel(Protocol):
    """Every probe-able model: named layers and their activations."""

    capabilities: frozenset[str]
    input_shape: tuple[int, ...]
    data_info: dict[str, Any]

    def layer_infos(self) -> dict[str, LayerInfo]: ...

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Return ``layer``'s output for the batch ``x`` ([B, *input_shape]) as [B, *shape]."""
        ...


class WeightsModel(ProbeModel, Protocol):
    def weights(self, layer: str) -> Weights: ...


class ReconstructModel(ProbeModel, Protocol):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


class VizModel:
    """Mixin with the shared bookkeeping of a probe-able model.

    Subclasses set ``capabilities`` (validated here) and ``kind``, and implement
    :meth:`layer_infos` and :meth:`activations`, plus the calls of the capabilities they declare.
    """

    kind: ClassVar[str] = "model"
    capabilities: frozenset[str] = frozenset({caps.ACTIVATIONS})
    input_shape: tuple[int, ...] = ()
    data_info: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.capabilities = caps.validate(cls.capabilities)

    def layer_infos(self) -> dict[str, LayerInfo]:
        raise NotImplementedError

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        raise NotImplementedError

    def activations_all(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Several layers' outputs from one batch. A model whose layers stack overrides this with
        one forward pass (exactly :meth:`activations`' values); it is a speed-up, not a capability."""
        return {name: self.activations(x, name) for name in layers}

    def torch_module(self) -> torch.nn.Module | None:
        """The ``nn.Module`` that computes the activations, for what walks a network's modules
        (the deconvnet, device moves, dtypes); None when the model computes them otherwise."""
        return self if isinstance(self, torch.nn.Module) else None


def torch_module(model: ProbeModel) -> torch.nn.Module | None:
    """The ``nn.Module`` behind any probe model: what :meth:`VizModel.torch_module` says, or the
    model itself when it is a module that does not derive from :class:`VizModel`."""
    if isinstance(model, VizModel):
        return model.torch_module()
    return model if isinstance(model, torch.nn.Module) else None


def core_capabilities() -> list[caps.Capability]:
    """The probe protocol's own capabilities, which every plugin host has."""
    return [
        caps.Capability(caps.ACTIVATIONS, "activations(x, layer): a layer's response to a batch of inputs", ProbeModel),
        caps.Capability(caps.INPUT_GRAD, "activations are differentiable with respect to the input"),
        caps.Capability(caps.WEIGHTS, "weights(layer): the weight matrix / filters feeding a layer", WeightsModel),
        caps.Capability(caps.RECONSTRUCT, "reconstruct(x): encode then decode a batch", ReconstructModel),
    ]


def layer_info(model: ProbeModel, layer: str) -> LayerInfo:
    """Look a layer up, failing with the list of valid names."""
    infos = model.layer_infos()
    if layer not in infos:
        calls = [name for name in infos if name.startswith(f"{layer}#")]
        if calls:  # a module that runs several times: its bare name would be ambiguous
            raise UnknownNameError(ambiguous_layer(layer, calls))
        valid = ", ".join(infos) or "(none)"
        raise UnknownNameError(f"unknown layer {layer!r}; valid layers: {valid}")
    return infos[layer]


def ambiguous_layer(layer: str, calls: list[str]) -> str:
    """The one-line refusal of a module name that runs several times in a forward pass."""
    return f"layer {layer!r} runs {len(calls)} times in one forward pass; name one call: {', '.join(calls)}"


def input_weight_layers(model: ProbeModel) -> list[str]:
    """Layers whose filters live in input space (first dense layer, first convolution, tied
    decoder templates): the layers where a filter can be drawn or fitted as an image."""
    out = []
    if caps.WEIGHTS not in model.capabilities:
        return out
    for name in model.layer_infos():
        try:
            if model.weights(name).source == "input":  # type: ignore[attr-defined]
                out.append(name)
        except UsageError:
            continue
    return out


def parse_position(text: str | None, info: LayerInfo) -> tuple[int, int] | None:
    """The ``position`` option of probes on conv maps: ``"row,col"`` picks one spatial unit of
    each channel; None, "" or "mean" keep the channel's spatial mean (what ``unit_axis`` does)."""
    if text is None or str(text).strip() in ("", "mean"):
        return None
    if not info.is_map:
        raise OptionError(f"option 'position' applies to convolutional maps; layer {info.name!r} has shape {info.shape}")
    try:
        row, col = (int(part) for part in str(text).split(","))
    except ValueError:
        raise OptionError(f"option 'position' must be 'row,col' (e.g. 3,4), got {text!r}") from None
    _, height, width = info.shape
    if not (0 <= row < height and 0 <= col < width):
        raise OptionError(f"option 'position' {row},{col} lies outside the {height}x{width} map of {info.name!r}")
    return row, col


def unit_axis(out: torch.Tensor, position: tuple[int, int] | None = None) -> torch.Tensor:
    """[B, units] from a layer's [B, *shape] output: conv maps reduce each channel to its spatial mean
    (or one ``position``), so every probe means the same thing by "unit"."""
    if out.dim() == 4:
        return out[:, :, position[0], position[1]] if position else out.mean(dim=(2, 3))
    return out.reshape(out.shape[0], -1)


def unit_activations(
    model: ProbeModel,
    x: torch.Tensor,
    layer: str,
    units: torch.Tensor,
    position: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Activations of the chosen units as [B, len(units)], the same notion of "unit" for every probe."""
    out = unit_axis(model.activations(x, layer), position)
    return out.index_select(1, units.to(out.device))


def paired_unit_activations(
    model: ProbeModel,
    x: torch.Tensor,
    layer: str,
    units: torch.Tensor,
    position: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Activation of unit ``units[b]`` for input ``x[b]`` ([B]); the batched-probe workhorse."""
    out = unit_axis(model.activations(x, layer), position)
    return out.gather(1, units.to(out.device).reshape(-1, 1)).squeeze(1)


def layer_activations(model: ProbeModel, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Several layers' outputs ``{name: [B, *shape]}`` for one batch.

    A :class:`VizModel` answers with :meth:`VizModel.activations_all` (one forward pass where its
    layers stack); other models get one ``activations`` call per layer.
    """
    if isinstance(model, VizModel):
        return model.activations_all(x, list(layers))
    return {name: model.activations(x, name) for name in layers}


def model_dtype(model: Any) -> torch.dtype:
    """The floating dtype of the model's parameters (float32 when it has none), so probes build
    inputs the model can take."""
    module = torch_module(model)
    if module is not None:
        for param in module.parameters():
            if param.is_floating_point():
                return param.dtype
    return torch.float32
