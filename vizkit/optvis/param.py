"""Parameterisations: how an image is made from the numbers the optimiser moves.

Each :class:`Param` turns a batch of parameters into images ``[n, C, H, W]`` (or a model's flat
input) and draws its start from the samples' keys, so sample b's start depends on its key alone.
The image then passes the render's constraint (the sphere ‖x‖ = ρ, a box, a sigmoid range).

* :class:`Pixel`: the image itself (Erhan et al.: uniform noise in [0, 1] at the start).
* :class:`Fourier`: the image's spectrum, scaled by 1/f^decay (Olah et al. 2017, lucent's ``fft_image``)
  and, for RGB, mixed by the square root of natural images' colour covariance ("decorrelated").
  Equal steps in every coefficient then move low frequencies as much as high ones, which is what
  keeps the optimum from being pixel-scale noise. It is exactly invertible (:meth:`Fourier.parameters_of`).
* :class:`LowRes`: an image ``factor`` times smaller, upsampled bilinearly.
* :class:`CPPN`: a small network of the pixel coordinates per sample (Mordvintsev et al. 2018),
  smooth by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vizkit.errors import OptionError
from vizkit.optim import COLOUR, counter_uniform, image_view


def counter_normal(keys: torch.Tensor, count: int, salt: int = 0) -> torch.Tensor:
    """Standard normal numbers [len(keys), count] from the keys alone (Box–Muller on counter uniforms)."""
    u = counter_uniform(keys, 2 * count, salt=salt)
    u1 = u[:, :count].clamp_min(2.0**-25)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u[:, count:])


def need_image(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    view = image_view(shape)
    if view is None:
        raise OptionError(f"{what} needs an image-shaped input; this model's input has shape {tuple(shape)}")
    return view


class Param:
    """A parameterisation for inputs of ``shape``; ``image(params)`` is differentiable in params."""

    name = ""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)

    def start(self, keys: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
        raise NotImplementedError

    def image(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def per_sample_numel(self) -> int:
        """Parameters per sample (for memory estimates)."""
        return math.prod(self.shape)


class Pixel(Param):
    """The input itself. ``start``: uniform [0, 1] (Erhan et al.) or normal with ``sd`` (lucent)."""

    name = "pixel"

    def __init__(self, shape: Sequence[int], start: str = "uniform", sd: float = 0.01) -> None:
        super().__init__(shape)
        self.start_kind, self.sd = start, float(sd)

    def start(self, keys: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
        d = math.prod(self.shape)
        noise = counter_uniform(keys, d) if self.start_kind == "uniform" else self.sd * counter_normal(keys, d)
        return [noise.to(device=device, dtype=dtype).reshape(len(keys), *self.shape)]

    def image(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        return params[0]


class Fourier(Param):
    """x = colour · irfft2(p · s) with s = 1/max(f, 1/max(H, W))^decay / 4; p complex [n, C, H, W/2+1]."""

    name = "fourier"

    def __init__(self, shape: Sequence[int], decay: float = 1.0, decorrelate: bool = True, sd: float = 0.01) -> None:
        super().__init__(shape)
        self.c, self.h, self.w = need_image(self.shape, "the fourier parameterisation")
        self.decay, self.sd = float(decay), float(sd)
        self.decorrelate = bool(decorrelate) and self.c == 3
        fy = torch.fft.fftfreq(self.h, dtype=torch.float64).reshape(-1, 1)
        fx = torch.fft.rfftfreq(self.w, dtype=torch.float64).reshape(1, -1)
        freq = torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(self.h, self.w))
        # 1/f^decay, and lucent's "magic" 1/4: a unit step in every coefficient then moves pixels by
        # about what lucent's does, so its learning rates (Adam 0.05) carry over
        self.scale = freq ** (-self.decay) / 4.0  # [H, W/2+1]

    def per_sample_numel(self) -> int:
        return self.c * self.h * (self.w // 2 + 1) * 2

    def start(self, keys: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
        noise = self.sd * counter_normal(keys, self.per_sample_numel())
        return [noise.to(device=device, dtype=dtype).reshape(len(keys), self.c, self.h, self.w // 2 + 1, 2)]

    def image(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        p = params[0]
        spectrum = torch.view_as_complex(p.contiguous()) * self.scale.to(p.device, p.dtype)
        x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        if self.decorrelate:
            x = torch.einsum("ij,njhw->nihw", COLOUR.to(x.device, x.dtype), x)
        return x.reshape(p.shape[0], *self.shape)

    def parameters_of(self, x: torch.Tensor) -> torch.Tensor:
        """The parameters whose image is ``x`` exactly (the inverse of :meth:`image`)."""
        img = x.reshape(x.shape[0], self.c, self.h, self.w)
        if self.decorrelate:
            img = torch.einsum("ij,njhw->nihw", torch.linalg.inv(COLOUR).to(x.device, x.dtype), img)
        spectrum = torch.fft.rfft2(img, norm="ortho") / self.scale.to(x.device, x.dtype)
        return torch.view_as_real(spectrum)


class LowRes(Param):
    """An image ``factor`` times smaller in each direction, upsampled bilinearly to the input size."""

    name = "lowres"

    def __init__(self, shape: Sequence[int], factor: int = 4) -> None:
        super().__init__(shape)
        self.c, self.h, self.w = need_image(self.shape, "the lowres parameterisation")
        if factor < 1:
            raise OptionError(f"lowres factor must be >= 1, got {factor}")
        self.small = (max(1, math.ceil(self.h / factor)), max(1, math.ceil(self.w / factor)))

    def per_sample_numel(self) -> int:
        return self.c * self.small[0] * self.small[1]

    def start(self, keys: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
        u = counter_uniform(keys, self.per_sample_numel())
        return [u.to(device=device, dtype=dtype).reshape(len(keys), self.c, *self.small)]

    def image(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        p = params[0]
        x = F.interpolate(p, size=(self.h, self.w), mode="bilinear", align_corners=False)
        return x.reshape(p.shape[0], *self.shape)


class CPPN(Param):
    """x(y, x) = network(y, x, r) per sample, ``layers`` hidden layers of ``width`` units with the
    composite arctan activation of lucent's CPPN; the weights are the parameters (one set per sample,
    applied with batched matrix products)."""

    name = "cppn"

    def __init__(self, shape: Sequence[int], width: int = 24, layers: int = 8) -> None:
        super().__init__(shape)
        self.c, self.h, self.w = need_image(self.shape, "the cppn parameterisation")
        self.width, self.depth = int(width), int(layers)
        ys = torch.linspace(-3 ** 0.5, 3 ** 0.5, self.h, dtype=torch.float64)
        xs = torch.linspace(-3 ** 0.5, 3 ** 0.5, self.w, dtype=torch.float64)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        self.coords = torch.stack([yy, xx, torch.sqrt(yy**2 + xx**2)], dim=-1).reshape(-1, 3)  # [HW, 3]

    def _shapes(self) -> list[tuple[int, int]]:
        sizes = [(3, self.width)] + [(2 * self.width, self.width)] * (self.depth - 1) + [(2 * self.width, self.c)]
        return sizes

    def per_sample_numel(self) -> int:
        return sum(a * b + b for a, b in self._shapes())

    def start(self, keys: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
        params = []
        for i, (fan_in, fan_out) in enumerate(self._shapes()):
            w = counter_normal(keys, fan_in * fan_out, salt=2 * i + 1) / math.sqrt(fan_in)
            params.append(w.to(device=device, dtype=dtype).reshape(len(keys), fan_in, fan_out))
            params.append(torch.zeros(len(keys), 1, fan_out, dtype=dtype, device=device))
        return params

    def image(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        n = params[0].shape[0]
        h = self.coords.to(params[0].device, params[0].dtype).expand(n, -1, -1)
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i + 2 < len(params):
                a = torch.atan(h)
                h = torch.cat([a / 0.67, a * a / 0.6], dim=-1)  # lucent's composite activation
        x = torch.sigmoid(h)  # [n, HW, C] in (0, 1)
        return x.transpose(1, 2).reshape(n, *self.shape)


PARAMS = {"pixel": Pixel, "fourier": Fourier, "lowres": LowRes, "cppn": CPPN}


def make_param(name: str, shape: Sequence[int], **options: object) -> Param:
    """A parameterisation by name (the CLI's ``-o param``)."""
    try:
        cls = PARAMS[name]
    except KeyError:
        raise OptionError(f"unknown parameterisation {name!r} (known: {', '.join(PARAMS)})") from None
    return cls(shape, **options)  # type: ignore[arg-type]
