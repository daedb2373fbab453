"""Probe any ``torch.nn.Module`` by capturing named submodules with forward hooks.

Hooks live only for the duration of one forward pass and are removed in a ``finally`` block;
the module is put in eval mode for the pass and its previous mode restored, so wrapping never
changes the user's model. The forward pass stops as soon as the wanted layer has run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import capabilities as caps
from .errors import UnknownNameError, UsageError
from .model import LayerInfo, VizModel, Weights, layer_info


class _Captured(Exception):
    """Raised from a hook to end the forward pass once the wanted layer's output is in hand."""


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
        named = dict(module.named_modules())
        if layers is None:
            layers = [name for name, sub in named.items() if name and not list(sub.children())]
        unknown = [name for name in layers if name not in named or not name]
        if unknown:
            valid = ", ".join(n for n in named if n) or "(the module has no submodules)"
            raise UnknownNameError(f"unknown layer {unknown[0]!r} in wrapped module; valid: {valid}")
        self._modules = {name: named[name] for name in layers}
        self._infos = self._discover_shapes()
        has_weights = any(isinstance(getattr(m, "weight", None), torch.Tensor) for m in self._modules.values())
        if not has_weights:
            self.capabilities = self.capabilities - {caps.WEIGHTS}

    def torch_module(self) -> nn.Module:
        return self.module

    def _discover_shapes(self) -> dict[str, LayerInfo]:
        device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
        x = torch.zeros(1, *self.input_shape, device=device)
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = []
        try:
            for name, sub in self._modules.items():
                hooks.append(sub.register_forward_hook(self._recorder(name, shapes)))
            with torch.no_grad(), _eval_mode(self.module):
                self.module(x)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"the module cannot run on inputs of shape {self.input_shape}: {first}") from None
        finally:
            for hook in hooks:
                hook.remove()
        missing = [name for name in self._modules if name not in shapes]
        if missing:
            raise UsageError(f"layer {missing[0]!r} is never called in the module's forward pass")
        return {name: LayerInfo(name, shapes[name]) for name in self._modules}

    @staticmethod
    def _recorder(name: str, shapes: dict[str, tuple[int, ...]]):  # noqa: ANN205
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple | list) else output
            shapes.setdefault(name, tuple(out.shape[1:]))

        return hook

    def layer_infos(self) -> dict[str, LayerInfo]:
        return dict(self._infos)

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        layer_info(self, layer)
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple | list) else output
            captured.append(out)
            raise _Captured

        handle = self._modules[layer].register_forward_hook(hook)
        try:
            with _eval_mode(self.module):
                self.module(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        if not captured:
            raise UsageError(f"layer {layer!r} was not reached in the forward pass")
        return captured[0]

    def weights(self, layer: str) -> Weights:
        """Weights of a Linear/Conv layer; ``source`` names the wrapped layer below it when the
        sizes chain up (so weight products across layers make sense), else ``"previous"``."""
        layer_info(self, layer)
        weight = getattr(self._modules[layer], "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise UsageError(f"layer {layer!r} has no weight tensor")
        weight = weight.detach()
        if weight.dim() == 2 and weight.shape[1] == math.prod(self.input_shape):
            return Weights(weight, "input")
        if weight.dim() == 4 and len(self.input_shape) == 3 and weight.shape[1] == self.input_shape[0]:
            return Weights(weight, "input")
        below = None
        for name in self._modules:
            if name == layer:
                break
            if isinstance(getattr(self._modules[name], "weight", None), torch.Tensor):
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
    """Make any module probe-able; ``layers`` are dotted ``named_modules()`` names (default: leaves).

    ``data_info`` may carry ``{"stats": {"mean_norm": ...}}`` for probes that need the data's scale.
    """
    return WrappedModel(module, input_shape, layers, data_info)
