"""Receptive fields of conv-map positions, read off the network itself, and crops of them.

A field is not composed from the modules' kernel sizes in the order they ran: on a network with
branches (residual adds, concatenations) the modules do not run in series, and the stride-2 1x1
convs of a ResNet's skip path would be counted as if they were stacked on the main path. Instead
the field of a position is the set of pixels that can influence it at all, found as the support
of the input gradient of a *positive linearisation* of the network. The forward pass runs under a
:class:`torch.overrides.TorchFunctionMode` that gives every convolution and linear map an
all-positive kernel of the same shape (bias dropped), makes normalisation, dropout and the
activation functions identities, turns max pooling into average pooling of the same geometry
(and maxima into means), and feeds an all-ones image. Every path from a pixel to the unit then
carries a strictly positive gradient, so no dead ReLU or max-pool switch can hide a pixel and the
support is exactly the union over paths, whether the paths are modules or functional calls
(``F.relu``, ``F.max_pool2d``). Values do not matter, only which are non-zero; the pass runs in
float64 so the thin edges of a deep field do not underflow.

Positions along the map's diagonal give a row extent and a column extent each (for a conv net a
row's extent does not depend on the column), so a few of them — both ends of the map, where the
border clips the field, and its middle — go through one or two batched backward passes. The
extents are clipped by the image border; the unclipped linear model (``jump``, ``size``,
``start``) is fitted from the edges that are not at the border and checked against every extent.
When the image is too small to show those edges, the model is fitted on a larger input (where the
model takes one). When every position sees the whole image, after a global pooling, or when the
extents are not regular windows, the probes show whole images and say why
(:attr:`LayerField.note`). Nothing is cached: each probe asks once per run, and the answer costs
about one forward and backward pass of a few all-ones images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .model import ProbeModel, model_dtype, torch_module
from .options import Option

#: how a probe that shows examples of conv units cuts them: its ``crop`` option
CROP_OPTION = Option("crop", str, "auto", "conv units: crop each example to the receptive field of the unit's "
                     "position (auto: where the field is local, else whole images and why; yes: refuse a layer "
                     "without a local field; no: whole images)", choices=("auto", "yes", "no"))

#: most input pixels in one batched backward pass of the linearised network (bounds its memory)
PIXEL_BUDGET = 2**17
#: largest side of the larger input tried when every position sees the whole image
CANVAS_LIMIT = 256


@dataclass(frozen=True)
class Field:
    """Input window of conv-map positions: position (r, c) sees rows ``start[0] + r·jump[0]`` …
    ``+ size[0] − 1`` (same for columns), before clipping to the image."""

    jump: tuple[int, int]
    size: tuple[int, int]
    start: tuple[int, int]

    def box(self, row: int, col: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(r0, r1, c0, c1)``: the window of position (row, col), clipped to the image (end exclusive)."""
        r0, c0 = self.start[0] + row * self.jump[0], self.start[1] + col * self.jump[1]
        return max(r0, 0), min(r0 + self.size[0], height), max(c0, 0), min(c0 + self.size[1], width)


@dataclass(frozen=True)
class LayerField:
    """What the positions of one layer see, and so how probes show them: crops of ``field``, or
    whole images when ``note`` says why crops would not help."""

    layer: str
    field: Field | None
    note: str | None = None
    #: set when the units are also scaled by a pooling of the whole image (a squeeze-and-excitation
    #: gate), which the window leaves out
    context: str | None = None

    @property
    def crops(self) -> bool:
        return self.field is not None and self.note is None

    def meta(self) -> dict[str, Any]:
        """For ``result.json``: size, jump and start where known, and the note when whole images are shown."""
        out: dict[str, Any] = {}
        if self.field is not None:
            out = {"size": list(self.field.size), "jump": list(self.field.jump), "start": list(self.field.start)}
        if self.note is not None:
            out["note"] = self.note
        if self.context is not None:
            out["context"] = self.context
        return out

    def crop(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The field crops of ``images`` [M, C, H, W] around ``positions`` [M, 2], or the images
        themselves when whole images are shown."""
        if not self.crops:
            return images
        assert self.field is not None
        return field_crops(images, positions, self.field)


def describe(meta: dict[str, Any] | None, short: bool = False) -> str:
    """Caption words for a result's ``receptive_field`` meta: what the tiles are (``short``: for a
    title, without the reason)."""
    if not meta or "note" in meta:
        return "whole images" if short or not meta else f"whole images: {meta['note']}"
    what = f"{meta['size'][0]}x{meta['size'][1]} receptive-field crops"
    return what if short or "context" not in meta else f"{what}; {meta['context']}"


def field_crops(images: torch.Tensor, positions: torch.Tensor, field: Field) -> torch.Tensor:
    """[M, C, size_h, size_w]: the receptive-field window of map position ``positions[m]`` cut out
    of ``images[m]`` ([M, C, H, W]); parts of the window outside the image are zero, so a crop at
    the border keeps its alignment.

    One image at a time into a zero tile: memory is the output, never a padded copy of every image
    at field size (which, for a field several times the image, is gigabytes for a few images).
    """
    m, c, height, width = images.shape
    out = images.new_zeros(m, c, *field.size)
    pos = positions.long().cpu().tolist()
    for i, (row, col) in enumerate(pos):
        r0, r1, c0, c1 = field.box(row, col, height, width)
        top, left = field.start[0] + row * field.jump[0], field.start[1] + col * field.jump[1]
        if r1 > r0 and c1 > c0:
            out[i, :, r0 - top:r1 - top, c0 - left:c1 - left] = images[i, :, r0:r1, c0:c1]
    return out


def layer_field(model: ProbeModel, layer: str) -> LayerField:
    """The receptive field of ``layer``'s map positions, computed from the network (see the module
    docstring), with a note instead of crops where whole images say more."""
    height, width = model.input_shape[-2:]
    try:
        _, h, w = model.layer_infos()[layer].shape
        positions = sorted(set(_sample(h)) | set(_sample(w)))
        dtype = torch.float64
        try:
            rows, cols, context = extents(model, layer, (height, width), positions, dtype)
        except RuntimeError:  # code of the model's own that mixes in its parameters' dtype
            dtype = model_dtype(model)
            rows, cols, context = extents(model, layer, (height, width), positions, dtype)
    except GlobalOnly:
        return LayerField(layer, None, f"after a global pooling there is no local field: every position of {layer} "
                                       f"sees the whole {height}x{width} image")
    except Exception as exc:  # a model the linearisation cannot run: say so, show whole images
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return LayerField(layer, None, f"the receptive field of {layer} could not be computed ({first})")
    whole = all(e == (0, height) for e in rows.values()) and all(e == (0, width) for e in cols.values())
    fit = _fit(rows, height), _fit(cols, width)
    field, is_global = None, False
    if isinstance(fit[0], tuple) and isinstance(fit[1], tuple):
        field = _combine(fit[0], fit[1])
    elif fit[0] is not False and fit[1] is not False:
        field, is_global = _from_canvas(model, layer, (height, width), rows, cols, dtype)
    if whole:
        note = f"every position of {layer} sees the whole {height}x{width} image"
        if field is not None:
            note += f" (its field is {field.size[0]}x{field.size[1]})"
        elif is_global:
            note = f"after a global pooling there is no local field: {note} at any size"
        return LayerField(layer, field, note)
    if field is None and False in fit:
        return LayerField(layer, None, f"the positions of {layer} do not see regular windows of the image")
    if field is None:
        return LayerField(layer, None, f"the field of {layer} cannot be told from a {height}x{width} image")
    if context:
        return LayerField(layer, field, context=f"the units of {layer} are also scaled by a pooling of the whole "
                                                "image (a gate), which the window leaves out")
    return LayerField(layer, field)


def crop_view(model: ProbeModel, layer: str, crop: str) -> LayerField | None:
    """How a probe with :data:`CROP_OPTION` shows ``layer``'s examples: a field to crop by, one
    that says why whole images are shown, or None (a flat layer, or ``-o crop no``)."""
    if crop == "no" or not model.layer_infos()[layer].is_map or len(model.input_shape) != 3:
        return None
    return layer_field(model, layer)


def crop_refusal(model: ProbeModel, layer: str, crop: str) -> str | None:
    """Why ``-o crop yes`` cannot be honoured on ``layer`` (one line), or None."""
    if crop != "yes":
        return None
    if not model.layer_infos()[layer].is_map or len(model.input_shape) != 3:
        return (f"-o crop yes needs a map of positions over an image; layer {layer!r} has shape "
                f"{tuple(model.layer_infos()[layer].shape)} (use -o crop auto for whole images)")
    view = layer_field(model, layer)
    return None if view.crops else f"-o crop yes: {view.note} (use -o crop auto for whole images)"


def receptive_field(model: ProbeModel, layer: str) -> Field | None:
    """The input window of ``layer``'s map positions when crops of it are meaningful, else None
    (every position sees the whole image, or the layer is not a local map)."""
    view = layer_field(model, layer)
    return view.field if view.crops else None


def _sample(n: int) -> list[int]:
    """Map indices that pin a regular field down: both ends (where the border clips it) and the middle."""
    mid = n // 2
    return sorted({i for i in (0, 1, 2, mid - 1, mid, mid + 1, n - 3, n - 2, n - 1) if 0 <= i < n})


Spans = dict[int, tuple[int, int]]


def extents(
    model: ProbeModel, layer: str, size: tuple[int, int], positions: Sequence[int],
    dtype: torch.dtype = torch.float64,
) -> tuple[Spans, Spans, bool]:
    """``{row: (first, end)}`` pixel rows and ``{col: (first, end)}`` pixel columns (end exclusive)
    of the pixels that reach map position (i, i), clamped to the map, for i in ``positions``, on an
    input of ``size``: batched backward passes of the linearised network, in chunks. Also whether a
    global pooling fed the layer on a side path (left out of the extents)."""
    module = torch_module(model)
    device = _device(module)
    rows: Spans = {}
    cols: Spans = {}
    chunk = max(1, min(16, PIXEL_BUDGET // (size[0] * size[1])))
    with _eval(module):
        for lo in range(0, len(positions), chunk):
            which = list(positions[lo:lo + chunk])
            x = torch.ones(len(which), model.input_shape[0], *size, dtype=dtype, device=device, requires_grad=True)
            mode = PositiveLinearisation()
            with torch.enable_grad(), mode:
                out = model.activations(x, layer)
            if out.dim() != 4:
                raise ValueError(f"layer {layer!r} is not a spatial map")
            if not out.requires_grad:
                if mode.global_context:
                    raise GlobalOnly(layer)
                raise ValueError(f"layer {layer!r} does not depend on the input differentiably")
            h, w = out.shape[2:]
            seed = torch.zeros_like(out)
            for b, i in enumerate(which):
                seed[b, :, min(i, h - 1), min(i, w - 1)] = 1.0
            (grad,) = torch.autograd.grad(out, x, seed)
            support = (grad != 0).any(1)  # [b, H, W]
            for b, i in enumerate(which):
                if i < h:
                    rows[i] = _span(support[b].any(1))
                if i < w:
                    cols[i] = _span(support[b].any(0))
            context = mode.global_context
    return rows, cols, context


def _span(mask: torch.Tensor) -> tuple[int, int]:
    idx = mask.nonzero().flatten()
    if idx.numel() == 0:
        raise ValueError("a map position does not depend on the input")
    return int(idx[0]), int(idx[-1]) + 1


def _fit(spans: Spans, length: int) -> tuple[int, int, int] | None | bool:
    """``(jump, size, start)`` of one axis from the extents of some positions on an axis of
    ``length`` pixels: None when the unclipped edges do not determine it, False when they
    contradict a regular window."""
    tops = [(i, a) for i, (a, _) in sorted(spans.items()) if a > 0]  # an edge inside the image is exact
    ends = [(i, b) for i, (_, b) in sorted(spans.items()) if b < length]
    jump = _slope(tops) if len(tops) > 1 else _slope(ends) if len(ends) > 1 else None
    if jump is False:
        return False
    if jump is None or not tops or not ends:
        return None
    start = tops[0][1] - tops[0][0] * jump
    size = ends[0][1] - ends[0][0] * jump - start
    model = (int(jump), size, start)
    return model if _agrees(model, spans, length) else False


def _slope(points: list[tuple[int, int]]) -> int | bool:
    (i0, a0), (i1, a1) = points[0], points[1]
    step, rem = divmod(a1 - a0, i1 - i0)
    if rem or step < 1 or any(a != a0 + (i - i0) * step for i, a in points):
        return False
    return step


def _agrees(model: tuple[int, int, int], spans: Spans, length: int) -> bool:
    jump, size, start = model
    return size > 0 and all((max(start + i * jump, 0), min(start + i * jump + size, length)) == s
                            for i, s in spans.items())


def _combine(rows: tuple[int, int, int], cols: tuple[int, int, int]) -> Field:
    return Field((rows[0], cols[0]), (rows[1], cols[1]), (rows[2], cols[2]))


def _from_canvas(
    model: ProbeModel, layer: str, size: tuple[int, int], rows: Spans, cols: Spans, dtype: torch.dtype,
) -> tuple[Field | None, bool]:
    """The field fitted on a larger input (conv geometry does not depend on the image size), when
    the real image is too small to show a position's edges, and whether the map stays a single
    position at any size (a global pooling). No field when no larger input shows the edges or the
    model takes no other size."""
    sides = [(min(size[0] * f, max(CANVAS_LIMIT, size[0])), min(size[1] * f, max(CANVAS_LIMIT, size[1])))
             for f in (4, 16)]
    canvases = [c for i, c in enumerate(sides) if c != size and c not in sides[:i]]
    for canvas in canvases or [(2 * size[0], 2 * size[1])]:  # past the limit: only whether the map grows
        try:
            h, w = _map_shape(model, layer, canvas, dtype)
            if h * w == 1:
                return None, True  # one position on a larger input too: a global pooling
            if not canvases:
                return None, False
            mid = min(h, w) // 2
            c_rows, c_cols, _ = extents(model, layer, canvas, [max(mid - 1, 0), mid, min(mid + 1, min(h, w) - 1)], dtype)
        except Exception:  # the model takes only its own input size
            return None, False
        fit = _fit(c_rows, canvas[0]), _fit(c_cols, canvas[1])
        if fit[0] is False or fit[1] is False:
            return None, False
        if isinstance(fit[0], tuple) and isinstance(fit[1], tuple):
            ok = _agrees(fit[0], rows, size[0]) and _agrees(fit[1], cols, size[1])
            return (_combine(fit[0], fit[1]) if ok else None), False
    return None, False


def _device(module: torch.nn.Module | None) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu")) if module else torch.device("cpu")


def _map_shape(model: ProbeModel, layer: str, size: tuple[int, int], dtype: torch.dtype) -> tuple[int, int]:
    module = torch_module(model)
    x = torch.ones(1, model.input_shape[0], *size, dtype=dtype, device=_device(module))
    with torch.no_grad(), _eval(module), PositiveLinearisation():
        out = model.activations(x, layer)
    return int(out.shape[2]), int(out.shape[3])


@contextmanager
def _eval(module: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode for the pass (dropout off), the previous modes restored."""
    if module is None:
        yield
        return
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


# --- the positive linearisation -------------------------------------------------------------------

_IDENTITY = frozenset({
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "selu_", "celu", "celu_",
    "gelu", "silu", "mish", "hardtanh", "hardtanh_", "hardswish", "hardsigmoid", "sigmoid", "sigmoid_", "tanh",
    "tanh_", "softplus", "softsign", "prelu", "rrelu", "rrelu_", "threshold", "threshold_", "clamp", "clamp_",
    "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "softmax", "neg", "neg_", "__neg__",
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm", "rms_norm",
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
})
_CONV = frozenset({"conv1d", "conv2d", "conv3d", "linear"})
_CONV_T = frozenset({"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"})
_SUB = frozenset({"sub", "sub_", "subtract", "__sub__", "__isub__", "rsub", "__rsub__"})
_PAIR = frozenset({"maximum", "minimum", "fmax", "fmin"})
_REDUCE = frozenset({"amax", "amin", "max", "min"})


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


class GlobalOnly(Exception):
    """The layer sees the input only through a global pooling: there is no local field."""


class PositiveLinearisation(TorchFunctionMode):
    """Within the block, the network computes a linear map with strictly positive weights along
    every path (see the module docstring); only for the support of input gradients.

    A pooling over all spatial positions (adaptive pooling to 1, a mean or maximum over every
    spatial dimension) is cut from the graph: what it feeds (a squeeze-and-excitation gate, an
    image-pooling branch) scales or shifts whole channels alike for every position, so it is not
    part of a position's window; ``global_context`` records that one was met.
    """

    def __init__(self) -> None:
        super().__init__()
        self.global_context = False

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        out = self._linear(func, name, args, kwargs)
        if _is_global(name, args, kwargs):
            self.global_context = True
            return _detach(out)
        return out

    @staticmethod
    def _linear(func: Callable, name: str, args: tuple, kwargs: dict) -> Any:
        floating = bool(args) and isinstance(args[0], torch.Tensor) and args[0].is_floating_point()
        if name in _IDENTITY and floating:  # not index arithmetic: only on float tensors
            return args[0]
        if name in _CONV or name in _CONV_T:
            return _positive_conv(func, name, args, kwargs)
        if "max_pool" in name:
            return _average_pool(func, name, args, kwargs)
        if name in _SUB and floating and len(args) > 1 and isinstance(args[1], torch.Tensor):
            a, b = args[0], args[1]
            return a.add_(b) if name in ("sub_", "__isub__") else a + b
        if name in ("rsub", "__rsub__") and floating:  # scalar − x: the same pixels, with a positive sign
            return args[0]
        if name in _PAIR and floating and len(args) > 1 and isinstance(args[1], torch.Tensor):
            return (args[0] + args[1]) / 2
        if name in _REDUCE and floating:
            return _mean_reduce(func, name, args, kwargs)
        return func(*args, **kwargs)


def _positive_conv(func: Callable, name: str, args: tuple, kwargs: dict) -> torch.Tensor:
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    if name in _CONV_T:
        groups = _arg(args, kwargs, 6, "groups", 1)
        fan = weight.shape[0] // groups * math.prod(weight.shape[2:])
    else:
        fan = math.prod(weight.shape[1:])
    ones = torch.full(weight.shape, 1.0 / fan, dtype=x.dtype, device=x.device)
    rest = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    return func(x, ones, None, *args[3:], **rest)


_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _average_pool(func: Callable, name: str, args: tuple, kwargs: dict) -> Any:
    """Max pooling → average pooling of the same geometry (adaptive ones likewise): every input of
    a window reaches the output, not only the maximum."""
    x = args[0]
    if name.startswith("adaptive_max_pool"):
        dims = int(name[len("adaptive_max_pool")])
        out = getattr(F, f"adaptive_avg_pool{dims}d")(x, _arg(args, kwargs, 1, "output_size"))
        wants_indices = "with_indices" in name or _arg(args, kwargs, 2, "return_indices", False)
    else:
        dims = int(name[len("max_pool")])
        opts = {k: _arg(args, kwargs, i, k) for i, k in enumerate(_POOL_ARGS) if i}
        kernel = _tuple(opts["kernel_size"], dims)
        stride = _tuple(opts["stride"] or kernel, dims)
        padding, dilation = _tuple(opts["padding"] or 0, dims), _tuple(opts["dilation"] or 1, dims)
        if all(d == 1 for d in dilation):
            out = getattr(F, f"avg_pool{dims}d")(x, kernel, stride, padding, bool(opts["ceil_mode"]))
        else:  # a dilated window: a depthwise all-ones convolution with the same geometry
            c = x.shape[1]
            ones = torch.full((c, 1, *kernel), 1.0 / math.prod(kernel), dtype=x.dtype, device=x.device)
            out = getattr(F, f"conv{dims}d")(x, ones, None, stride, padding, dilation, c)
        wants_indices = "with_indices" in name or bool(opts["return_indices"])
    if wants_indices:
        with torch.no_grad():
            indices = func(*args, **kwargs)[1]
        return out, indices
    return out


def _tuple(v: Any, dims: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, Sequence) else (int(v),) * dims


def _mean_reduce(func: Callable, name: str, args: tuple, kwargs: dict) -> Any:
    """Maxima over dimensions → means over them (a global max pool reaches every position)."""
    x = args[0]
    dim = _arg(args, kwargs, 1, "dim")
    if isinstance(dim, torch.Tensor):  # torch.max(a, b): elementwise
        return (x + dim) / 2
    keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
    if dim is None:
        return x.mean()
    mean = x.mean(dim, keepdim=keepdim)
    if name in ("max", "min"):
        with torch.no_grad():
            indices = func(*args, **kwargs)[1]
        return torch.return_types.max((mean, indices)) if name == "max" else torch.return_types.min((mean, indices))
    return mean


_GLOBAL_REDUCE = frozenset({"mean", "sum", "amax", "amin", "max", "min", "nanmean", "nansum", "logsumexp"})


def _is_global(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether the call pools every spatial position of a [B, C, *spatial] tensor into one."""
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point() or args[0].dim() < 3:
        return False
    x = args[0]
    if name.startswith("adaptive_") and "pool" in name:
        size = _arg(args, kwargs, 1, "output_size")
        return all(s == 1 for s in (size if isinstance(size, Sequence) else (size,)))
    if name not in _GLOBAL_REDUCE:
        return False
    dim = _arg(args, kwargs, 1, "dim")
    if isinstance(dim, torch.Tensor):
        return False
    if dim is None:
        return True
    dims = {d % x.dim() for d in (dim if isinstance(dim, Sequence) else (dim,))}
    return set(range(2, x.dim())) <= dims


def _detach(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return type(out)((out[0].detach(), *out[1:]))
    return out
