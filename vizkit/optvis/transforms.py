"""Transforms: random, differentiable changes of the image before the network sees it.

An optimum that survives small shifts, scalings and rotations cannot be made of pixel-exact
patterns the network happens to respond to, so it reads as an image (Olah et al. 2017, "transformation
robustness"). Every transform here is **per sample and seeded**: sample b's shift at step t comes
from its own key and t (``transform(x, keys, step)``), so a sample's trajectory does not depend on
the batch it runs in, and a batch of images with different shifts, scales and angles is still one
tensor operation (index gathers and one ``grid_sample``), never a loop over samples.

``standard`` is lucent's ``standard_transforms`` (pad 12 with grey, jitter 8, scale 0.9–1.1,
rotate −10…10°, jitter 4), then a centre crop back to the model's input size: lucent's InceptionV1
accepts any size, the models vizkit probes often do not.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from vizkit.errors import OptionError
from vizkit.optim import counter_uniform

#: ``transform(x [n, C, H, W], keys [n], step) -> x'``
Transform = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _uniform(keys: torch.Tensor, step: int, salt: int, count: int, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers [n, count] for this sample, step and transform."""
    return counter_uniform(keys, count, salt=(int(step) * 7919 + int(salt) * 104729) & 0x7FFFFFFF).to(device)


class Seeded:
    """A transform that draws random numbers; ``salt`` tells its draws apart from its neighbours'."""

    salt = 0

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError


class Pad(Seeded):
    """Pad every side by ``width`` pixels (``constant`` with ``value``, or ``reflect``)."""

    def __init__(self, width: int, mode: str = "constant", value: float = 0.5) -> None:
        self.width, self.mode, self.value = int(width), mode, float(value)

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        w = self.width
        if self.mode == "constant":
            return F.pad(x, (w, w, w, w), mode="constant", value=self.value)
        return F.pad(x, (w, w, w, w), mode=self.mode)

    def __repr__(self) -> str:
        return f"pad({self.width})"


class Jitter(Seeded):
    """A random crop ``d`` pixels smaller in each direction: a shift by 0…d−1 (lucent's ``jitter``)."""

    def __init__(self, d: int) -> None:
        if d < 1:
            raise OptionError(f"jitter must be at least 1 pixel, got {d}")
        self.d = int(d)

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.d >= min(h, w):
            raise OptionError(f"jitter {self.d} is not smaller than the {h}x{w} image")
        offsets = (_uniform(keys, step, self.salt, 2, x.device) * self.d).floor().long()  # [n, 2]
        rows = torch.arange(h - self.d, device=x.device).reshape(1, -1) + offsets[:, :1]  # [n, h - d]
        cols = torch.arange(w - self.d, device=x.device).reshape(1, -1) + offsets[:, 1:]
        out = x.gather(2, rows[:, None, :, None].expand(-1, c, -1, w))
        return out.gather(3, cols[:, None, None, :].expand(-1, c, out.shape[2], -1))

    def __repr__(self) -> str:
        return f"jitter({self.d})"


class _Affine(Seeded):
    """A per-sample affine map about the image centre, as one ``grid_sample`` for the batch."""

    def matrices(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    draws = 1

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        theta = self.matrices(_uniform(keys, step, self.salt, self.draws, x.device).to(x.dtype))
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pick(u: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """One of ``choices`` per sample, uniformly, from u in [0, 1)."""
    index = (u * len(choices)).floor().long().clamp_max(len(choices) - 1)
    return choices.to(u.device, u.dtype)[index]


class RandomScale(_Affine):
    """Zoom by one of ``scales`` about the centre (size kept, so a batch stays one tensor)."""

    def __init__(self, scales: Sequence[float]) -> None:
        if not scales or min(scales) <= 0:
            raise OptionError(f"random scale needs positive scales, got {list(scales)}")
        self.scales = torch.tensor([float(s) for s in scales], dtype=torch.float64)

    def matrices(self, u: torch.Tensor) -> torch.Tensor:
        s = _pick(u[:, 0], self.scales)
        theta = torch.zeros(len(u), 2, 3, dtype=u.dtype, device=u.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s  # sampling grid: zoom in by s
        return theta

    def __repr__(self) -> str:
        return f"random_scale({self.scales.min():.2f}..{self.scales.max():.2f})"


class RandomRotate(_Affine):
    """Rotate by one of ``angles`` (degrees) about the centre."""

    def __init__(self, angles: Sequence[float]) -> None:
        if not angles:
            raise OptionError("random rotate needs at least one angle")
        self.angles = torch.tensor([float(a) for a in angles], dtype=torch.float64)

    def matrices(self, u: torch.Tensor) -> torch.Tensor:
        a = _pick(u[:, 0], self.angles) * (math.pi / 180.0)
        theta = torch.zeros(len(u), 2, 3, dtype=u.dtype, device=u.device)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        return theta

    def __repr__(self) -> str:
        return f"random_rotate({self.angles.min():g}..{self.angles.max():g})"


class CentreCrop(Seeded):
    """The central ``height`` × ``width`` pixels (after padding and jitter, back to the model's size)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        h, w = x.shape[2:]
        if h < self.height or w < self.width:
            return F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False)
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return x[:, :, top : top + self.height, left : left + self.width]

    def __repr__(self) -> str:
        return f"centre_crop({self.height}x{self.width})"


class Normalise(Seeded):
    """(x − mean) / std per channel: a model's input preprocessing kept outside the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float64).reshape(1, -1, 1, 1)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float64).reshape(1, -1, 1, 1)
        if (self.std <= 0).any():
            raise OptionError("normalise needs positive standard deviations")

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def __repr__(self) -> str:
        return "normalise"


class Lifted(Seeded):
    """A user's callable: ``fn(x)``, or ``fn(x, keys, step)`` to draw its own per-sample numbers."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        try:
            self.full = len(inspect.signature(fn).parameters) >= 3
        except (TypeError, ValueError):
            self.full = False

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        return self.fn(x, keys, step) if self.full else self.fn(x)

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", "custom")


class Compose(Seeded):
    """Transforms applied in order, each with its own salt."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = [t if isinstance(t, Seeded) else Lifted(t) for t in transforms]
        for i, t in enumerate(self.transforms):
            t.salt = i + 1

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, keys, step)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return " -> ".join(repr(t) for t in self.transforms) or "none"


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Pad:
    return Pad(width, mode, value)


def jitter(d: int) -> Jitter:
    return Jitter(d)


def random_scale(scales: Sequence[float]) -> RandomScale:
    return RandomScale(scales)


def random_rotate(angles: Sequence[float]) -> RandomRotate:
    return RandomRotate(angles)


def compose(transforms: Sequence[Any]) -> Compose:
    return Compose(transforms)


def standard(height: int, width: int) -> Compose:
    """lucent's standard transforms, then a centre crop to ``height`` × ``width``."""
    return Compose([
        pad(12, "constant", 0.5),
        jitter(8),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
        CentreCrop(height, width),
    ])


def light(height: int, width: int) -> Compose:
    """Small shifts only (pad 2, jitter 4, crop back): for small inputs such as 28×28 digits, where
    the standard's 12-pixel pad and 10° turns are a large part of the image."""
    return Compose([pad(2, "reflect"), jitter(4), CentreCrop(height, width)])


NAMED = {"none": lambda h, w: Compose([]), "standard": standard, "light": light}


def named(name: str, height: int, width: int) -> Compose:
    try:
        return NAMED[name](height, width)
    except KeyError:
        raise OptionError(f"unknown transforms {name!r} (known: {', '.join(NAMED)})") from None
