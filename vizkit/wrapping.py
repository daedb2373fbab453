"""Probe any ``torch.nn.Module`` by capturing named submodules with forward hooks.

Every ``named_modules()`` name is a layer, containers and blocks included (their output is the
layer's output), so ``layer3`` of a ResNet is as reachable as ``layer3.1.conv2``. A module that
runs more than once in one forward pass (ResNet's shared ``relu`` inside a block, a weight-shared
conv) is offered once per call, ``relu#1``, ``relu#2``, …, in the order the calls happen; its bare
name is refused with the list of calls, because "its output" would be ambiguous.

Hooks live only for the duration of one forward pass and are removed in a ``finally`` block;
the module is put in eval mode for the pass and its previous mode restored, so wrapping never
changes the user's model. The forward pass stops as soon as the last wanted layer has run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import capabilities as caps
from .errors import UnknownNameError, UsageError
from .model import LayerInfo, VizModel, Weights, ambiguous_layer, layer_info

#: separates a module's name from the number of its call: ``relu#2`` is the second call of ``relu``
CALL_MARK = "#"


class _Captured(Exception):
    """Raised from a hook to end the forward pass once the wanted layers' outputs are in hand."""


def split_call(layer: str) -> tuple[str, int]:
    """``("layer1.0.relu", 2)`` for ``"layer1.0.relu#2"``; a bare name is its first call."""
    name, mark, call = layer.rpartition(CALL_MARK)
    if mark and call.isdigit() and int(call) >= 1:
        return name, int(call)
    return layer, 1


def squash_of(module: nn.Module) -> str | None:
    """The squashing a layer's output went through, when the layer is the squashing module itself
    (``nn.Sigmoid``, ``nn.Tanh``); a sigmoid or tanh called inside ``forward`` cannot be seen."""
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Tanh):
        return "tanh"
    return None


def _tensor_output(output: Any) -> torch.Tensor | None:
    out = output[0] if isinstance(output, tuple | list) and output else output
    return out if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dim() >= 2 else None


class WrappedModel(VizModel):
    """A user module seen through the probe protocol (see :func:`vizkit.wrap`)."""

    kind = "wrapped"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS})

    def __init__(
        self,
        module: nn.Module,
        input_shape: Sequence[int],
        layers: Sequence[str] | None = None,
        data_info: dict[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.input_shape = tuple(int(s) for s in input_shape)
        self.data_info = dict(data_info or {})
        self._named = {name: sub for name, sub in module.named_modules() if name}
        if layers is not None:
            unknown = [name for name in layers if split_call(name)[0] not in self._named]
            if unknown:
                valid = ", ".join(self._named) or "(the module has no submodules)"
                raise UnknownNameError(f"unknown layer {unknown[0]!r} in wrapped module; valid: {valid}")
        calls = self._discover_calls()
        self._infos = self._choose_layers(calls, layers)
        has_weights = any(isinstance(getattr(self._named[split_call(n)[0]], "weight", None), torch.Tensor)
                          for n in self._infos)
        if not has_weights:
            self.capabilities = self.capabilities - {caps.WEIGHTS}

    def torch_module(self) -> nn.Module:
        return self.module

    def _discover_calls(self) -> dict[str, list[tuple[int, ...] | None]]:
        """Every submodule's output shape per call, in the order of first calls (None: not a
        float tensor of a batch, so not a layer)."""
        device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)
        x = torch.zeros(1, *self.input_shape, device=device, dtype=dtype)  # a float64 module gets float64
        calls: dict[str, list[tuple[int, ...] | None]] = {}
        hooks = []

        def recorder(name: str):  # noqa: ANN202
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                out = _tensor_output(output)
                calls.setdefault(name, []).append(None if out is None else tuple(out.shape[1:]))
            return hook

        try:
            for name, sub in self._named.items():
                hooks.append(sub.register_forward_hook(recorder(name)))
            with torch.no_grad(), _eval_mode(self.module):
                self.module(x)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"the module cannot run on inputs of shape {self.input_shape}: {first}") from None
        finally:
            for hook in hooks:
                hook.remove()
        # a hook fires when its module returns, so containers come after their children; order
        # the layers by when they return, which is the order a reader follows the network in
        return calls

    def _choose_layers(self, calls: dict[str, list[tuple[int, ...] | None]],
                       layers: Sequence[str] | None) -> dict[str, LayerInfo]:
        offered: dict[str, LayerInfo] = {}
        for name, shapes in calls.items():
            for i, shape in enumerate(shapes, start=1):
                if shape is not None:
                    label = name if len(shapes) == 1 else f"{name}{CALL_MARK}{i}"
                    offered[label] = LayerInfo(label, shape, squash_of(self._named[name]))
        self._calls = {name: len(shapes) for name, shapes in calls.items()}
        if layers is None:
            return offered
        chosen: dict[str, LayerInfo] = {}
        for layer in layers:
            name, call = split_call(layer)
            runs = self._calls.get(name, 0)
            if runs == 0:
                raise UsageError(f"layer {layer!r} is never called in the module's forward pass")
            if runs > 1 and layer == name:
                raise UnknownNameError(ambiguous_layer(name, [f"{name}{CALL_MARK}{i}" for i in range(1, runs + 1)]))
            label = name if runs == 1 else f"{name}{CALL_MARK}{call}"
            if call > runs:
                raise UnknownNameError(f"layer {name!r} runs {runs} time(s) in one forward pass; there is no "
                                       f"call {call}")
            if label not in offered:
                raise UsageError(f"layer {layer!r} does not output a tensor of features, so it cannot be probed")
            chosen[label] = offered[label]
        return chosen

    def layer_infos(self) -> dict[str, LayerInfo]:
        return dict(self._infos)

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return self.activations_all(x, [layer])[layer]

    def activations_all(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Every named layer's output from one forward pass, stopped once the last of them ran."""
        for layer in layers:
            layer_info(self, layer)
        wanted: dict[str, dict[int, str]] = {}
        for layer in layers:
            name, call = split_call(layer)
            wanted.setdefault(name, {})[call] = layer
        captured: dict[str, torch.Tensor] = {}
        seen: dict[str, int] = {}

        def capture(name: str):  # noqa: ANN202
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                seen[name] = seen.get(name, 0) + 1
                label = wanted[name].get(seen[name])
                if label is not None and label not in captured:
                    out = _tensor_output(output)
                    if len(captured) + 1 == len(set(layers)):
                        captured[label] = out
                        raise _Captured
                    # the pass goes on: an in-place op further down must not change what was read
                    captured[label] = None if out is None else out.clone()
            return hook

        handles = [self._named[name].register_forward_hook(capture(name)) for name in wanted]
        try:
            with _eval_mode(self.module):
                self.module(x)
        except _Captured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [layer for layer in layers if captured.get(layer) is None]
        if missing:
            raise UsageError(f"layer {missing[0]!r} was not reached in the forward pass")
        return {layer: captured[layer] for layer in layers}

    def weights(self, layer: str) -> Weights:
        """Weights of a Linear/Conv layer; ``source`` names the wrapped layer below it when the
        sizes chain up (so weight products across layers make sense), else ``"previous"``."""
        layer_info(self, layer)
        weight = getattr(self._named[split_call(layer)[0]], "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise UsageError(f"layer {layer!r} has no weight tensor")
        weight = weight.detach()
        if weight.dim() == 2 and weight.shape[1] == math.prod(self.input_shape):
            return Weights(weight, "input")
        if weight.dim() == 4 and len(self.input_shape) == 3 and weight.shape[1] == self.input_shape[0]:
            return Weights(weight, "input")
        below = None
        for name in self._infos:
            if name == layer:
                break
            if isinstance(getattr(self._named[split_call(name)[0]], "weight", None), torch.Tensor):
                below = name
        if below is not None and weight.dim() == 2 and weight.shape[1] == math.prod(self._infos[below].shape):
            return Weights(weight, below)
        return Weights(weight, "previous")


class _eval_mode:
    """Context manager: eval mode for the duration, then the module's previous modes restored."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.modes: dict[nn.Module, bool] = {}

    def __enter__(self) -> None:
        self.modes = {m: m.training for m in self.module.modules()}
        self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        for sub, mode in self.modes.items():
            sub.training = mode


def wrap(
    module: nn.Module,
    input_shape: Sequence[int] = (1, 28, 28),
    layers: Sequence[str] | None = None,
    data_info: dict[str, Any] | None = None,
) -> WrappedModel:
    """Make any module probe-able. ``layers`` are dotted ``named_modules()`` names, containers
    included, with ``#k`` for the k-th call of a module that runs more than once (default: every
    submodule that outputs features, in the order they return in the forward pass).

    ``data_info`` may carry ``{"stats": {"mean_norm": ...}}`` for probes that need the data's scale.
    """
    return WrappedModel(module, input_shape, layers, data_info)
