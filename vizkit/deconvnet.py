"""Projecting unit activations back to pixels (Zeiler & Fergus's deconvnet) and receptive fields.

The deconvnet is a rule for the backward pass, so it is written as one (as zennit and captum do):
max-pool's backward already unpools with the recorded max locations ("switches"), a convolution's
backward already applies the transposed filters, and only the ReLU changes. Its backward becomes

- ``deconv``:   ReLU of the incoming signal (Zeiler & Fergus 2013),
- ``guided``:   ReLU of the incoming signal, kept only where the forward input was positive
  (guided backprop, Springenberg et al. 2015),
- ``gradient``: the ordinary gradient (mask of the forward input; Simonyan et al. 2014).

The rule is installed with forward hooks on the network's ``nn.ReLU`` modules (for the duration
of one call, removed in ``finally``), so it follows the reference convnet and a user's wrapped
``nn.Module`` alike. A network the rule cannot follow (no ``nn.ReLU`` modules, or other
non-linear modules on the way to the layer) is refused by :func:`check_followable` with the
reason, before any compute.

Receptive fields live in :mod:`vizkit.receptive_fields` (re-exported here: :class:`Field`,
:func:`receptive_field`, :func:`field_crops`). They are not read off the modules' kernel sizes in
the order the modules ran, which is wrong for any network with branches (a ResNet's stride-2 skip
convs are not in series with its main path): the field of a map position is the support of the
input gradient of a positive linearisation of the network (all-positive kernels, identity
activations and normalisation, max pooling as average pooling, on an all-ones image), so every
path from a pixel to the unit counts, modules and functional calls alike. When every position of a
layer sees the whole image (a 211-pixel field on a 64-pixel input), or after a global pooling,
``topk``, ``deconv`` and ``evolution`` show whole images and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .model import ProbeModel, torch_module
from .receptive_fields import Field as Field
from .receptive_fields import field_crops as field_crops
from .receptive_fields import receptive_field as receptive_field

RULES = ("deconv", "guided", "gradient")

#: modules the deconvnet and guided rules can pass through: linear maps, ReLU, pooling, reshaping
#: and (in eval mode) affine normalisation.
FOLLOWABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
              nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Dropout,
              nn.Dropout2d, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d, nn.ZeroPad2d)


def executed_modules(model: ProbeModel, layer: str) -> list[nn.Module]:
    """The leaf modules that run, in order, when the model computes ``layer`` (one probe pass)."""
    module = torch_module(model)
    if module is None:
        return []
    ran: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, _i, _o: ran.append(m))
             for m in module.modules() if not list(m.children())]
    try:
        x = torch.zeros(1, *model.input_shape, dtype=_dtype(module), device=_device(module))
        with torch.no_grad():
            model.activations(x, layer)
    finally:
        for hook in hooks:
            hook.remove()
    return ran


def followable_refusal(model: ProbeModel, layer: str, rule: str) -> str | None:
    """Why the ``deconv``/``guided`` rule cannot follow ``model`` down from ``layer`` (one line), or
    None when it can: probes list a layer only where their rule will run."""
    if rule not in RULES:
        return f"unknown rule {rule!r}; choose from {', '.join(RULES)}"
    if rule == "gradient":
        return None
    kind = getattr(model, "kind", type(model).__name__)
    needs = (f"-o rule {rule} follows networks of nn.Conv2d/nn.Linear, nn.ReLU and nn.MaxPool2d modules; "
             f"model {kind!r}")
    ran = executed_modules(model, layer)
    if not ran:
        return (f"{needs} computes layer {layer!r} without such modules (in its own code, where no rule can "
                "reach); use -o rule gradient")
    other = sorted({type(m).__name__ for m in ran if not isinstance(m, FOLLOWABLE)})
    if other:
        return f"{needs} passes through {', '.join(other)} on the way to layer {layer!r} (use -o rule gradient)"
    return None


def check_followable(model: ProbeModel, layer: str, rule: str) -> None:
    """Refuse (UsageError, one line) a network the ``deconv``/``guided`` rule cannot follow."""
    reason = followable_refusal(model, layer, rule)
    if reason is not None:
        raise UsageError(reason)


class _Rectify(torch.autograd.Function):
    """ReLU forward; backward ReLU(incoming) (deconv), optionally masked by the forward sign (guided)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, guided: bool) -> torch.Tensor:
        out = x.clamp(min=0)
        ctx.guided = guided
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.guided:
            grad = grad * (out > 0)
        return grad, None


@contextmanager
def backward_rule(model: ProbeModel, rule: str) -> Iterator[None]:
    """Within the block, the network's ``nn.ReLU`` modules back-propagate by ``rule``."""
    module = torch_module(model)
    if rule == "gradient" or module is None:
        yield
        return
    guided = rule == "guided"
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    inplace = [m.inplace for m in relus]
    hooks = []
    try:
        for m in relus:
            m.inplace = False  # the hook recomputes from the input, which an in-place ReLU would overwrite
            hooks.append(m.register_forward_hook(lambda _m, inputs, _out: _Rectify.apply(inputs[0], guided)))
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for m, flag in zip(relus, inplace, strict=True):
            m.inplace = flag


def project(
    model: ProbeModel,
    x: torch.Tensor,
    layer: str,
    signal: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    rule: str = "deconv",
) -> torch.Tensor:
    """Send ``signal`` (shaped like ``layer``'s output for ``x``, or a function of that output, e.g.
    :func:`unit_signal`) back to the input by ``rule``: the projection [B, *input_shape]."""
    x = x.detach().clone().requires_grad_(True)
    with backward_rule(model, rule), torch.enable_grad():
        out = model.activations(x, layer)
        seed = signal(out.detach()) if callable(signal) else signal
        (grad,) = torch.autograd.grad(out, x, grad_outputs=seed.reshape(out.shape).to(out.dtype))
    return grad.detach()


def unit_signal(
    out: torch.Tensor, units: torch.Tensor, mode: str = "max", position: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The activations to project for unit ``units[b]`` of example ``b``, all else zero, and where.

    Conv maps: ``max`` keeps only the strongest position of the unit's channel (Zeiler & Fergus:
    "all other activations in the layer set to zero"), or the given ``position``; ``map`` keeps
    its whole channel. Flat layers keep the one unit. Returns ``(signal like out, positions [B, 2]
    or [B, 0])``.
    """
    b = torch.arange(out.shape[0], device=out.device)
    units = units.to(out.device)
    signal = torch.zeros_like(out)
    if out.dim() == 4:
        maps = out[b, units]  # [B, h, w]
        flat = maps.flatten(1).argmax(1)
        rows, cols = flat // maps.shape[2], flat % maps.shape[2]
        if position is not None:
            rows, cols = torch.full_like(rows, position[0]), torch.full_like(cols, position[1])
        if mode == "map":
            signal[b, units] = maps
        else:
            signal[b, units, rows, cols] = maps[b, rows, cols]
        return signal, torch.stack([rows, cols], 1)
    flat = signal.reshape(out.shape[0], -1)
    flat[b, units] = out.reshape(out.shape[0], -1)[b, units]
    return signal, torch.zeros(out.shape[0], 0, dtype=torch.long, device=out.device)


def _dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _device(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))
