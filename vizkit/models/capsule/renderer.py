"""Atomic-capsule rendering (ACR): draw posed templates into images, all in one batched call.

Each output pixel centre is mapped by the pose's world→template matrix into the template, and the
value there is read by bilinear interpolation of the four surrounding template points, times the
capsule's intensity; outside the template the value is 0 (so a capsule draws nothing where it is
not placed). Template pixels are *points*: point ``k`` of an ``h``-point side sits at
``k / (h - 1)``, so the template spans the unit square; output pixel ``(r, c)`` of an ``H × W``
image sits at ``((c + 0.5) / W, (r + 0.5) / H)``.

:func:`sample_grid` and ``grid_sample`` do the work for images × capsules at once: the unit-frame
matrix is conjugated into PyTorch's normalised coordinates (the grid holds exactly the output pixel
centres, as ``affine_grid`` with ``align_corners=False`` does; ``grid_sample`` with
``align_corners=True`` puts ±1 on the first and last template points).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# unit frame → normalised [-1, 1] frame (u_n = 2u - 1) and back (u = (u_n + 1) / 2), homogeneous
_TO_NORMALISED = ((2.0, 0.0, -1.0), (0.0, 2.0, -1.0), (0.0, 0.0, 1.0))
_FROM_NORMALISED = ((0.5, 0.0, 0.5), (0.0, 0.5, 0.5), (0.0, 0.0, 1.0))


def normalised_theta(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` unit-frame world→template matrices → ``[..., 2, 3]`` ``affine_grid`` thetas."""
    to_n = torch.tensor(_TO_NORMALISED, dtype=matrix.dtype, device=matrix.device)
    from_n = torch.tensor(_FROM_NORMALISED, dtype=matrix.dtype, device=matrix.device)
    return (to_n @ matrix @ from_n)[..., :2, :]


def _centres(n: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel centres of an ``n``-pixel side in normalised coordinates, as ``affine_grid`` makes them."""
    return torch.linspace(-1, 1, n, dtype=like.dtype, device=like.device) * (n - 1) / n


class _SampleGrid(torch.autograd.Function):
    """``affine_grid`` (``align_corners=False``) for any leading shape, built without its base grid.

    ``affine_grid`` writes an ``[N, H, W, 3]`` grid of pixel coordinates with strided copies and
    multiplies it by every theta in a batched product of depth 3, forward and again backward: a
    quarter of the capsule's training step (benchmarks/train_step_rate.py). Here the forward is
    ``x·θ₀ + y·θ₁ + θ₂`` by broadcasting along whole image rows, and the backward the same batched
    product against one image's pixel coordinates expanded over the batch (not copied). The sums are
    ``affine_grid``'s, in its order: tests/test_capsule_renderer.py compares the two, and the
    gallery's three capsule models retrained with this grid were identical bit for bit, so a model
    trains exactly as before, only faster.
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
        xs, ys = _centres(width, theta), _centres(height, theta)
        ctx.shape = (height, width)
        by_coordinate = theta.movedim(-2, 0)[..., None, None]  # [2, ..., 3, 1, 1]
        grid = theta.new_empty((2, *theta.shape[:-2], height, width))  # this layout, whatever theta's
        torch.add(xs * by_coordinate[..., 0, :, :], ys[:, None] * by_coordinate[..., 1, :, :], out=grid)
        grid += by_coordinate[..., 2, :, :]
        # x and y stay in two planes: grid_sample reads the strided view as fast (and the same),
        # and the leading dimensions with H still merge into a view, so nothing is interleaved
        return grid.movedim(0, -1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        height, width = ctx.shape
        lead = grad.shape[:-3]
        m = lead.numel()
        xs, ys = _centres(width, grad), _centres(height, grad)
        base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                            torch.ones(height, width, dtype=grad.dtype, device=grad.device)], -1).reshape(1, -1, 3)
        grad_theta = base.expand(m, -1, -1).transpose(1, 2).bmm(grad.reshape(m, height * width, 2).contiguous())
        return grad_theta.transpose(1, 2).reshape(*lead, 2, 3), None, None


def sample_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[..., 2, 3]`` thetas → ``[..., H, W, 2]`` sample points: ``F.affine_grid(theta, [N, 1, H, W],
    align_corners=False)`` for any leading shape, about three times faster forward and backward.

    The result is a strided view (x and y in separate planes); reshaping its leading dimensions
    together with H, as the renderer does, stays a view."""
    return _SampleGrid.apply(theta, height, width)


def render(
    templates: torch.Tensor,
    matrices: torch.Tensor,
    intensities: torch.Tensor,
    out_shape: tuple[int, int],
) -> torch.Tensor:
    """Render every capsule of every image: ``[B, K, H, W]``.

    ``templates``: ``[K, h, w]`` (shared by all images) or ``[B, K, h, w]``; ``matrices``:
    ``[B, K, 3, 3]`` world→template; ``intensities``: ``[B, K]``. One ``grid_sample`` call over
    the ``B·K`` (image, capsule) pairs; differentiable in templates, matrices and intensities.
    """
    b, k = matrices.shape[:2]
    height, width = out_shape
    th, tw = templates.shape[-2:]
    theta = normalised_theta(matrices)
    if templates.dim() == 3:
        # Shared templates: one sampling "image" per capsule whose grid stacks every image's
        # sample points ([K, B·H, W, 2]), so no template is copied B times and the template
        # gradient is accumulated inside grid_sample instead of summed over B copies afterwards.
        grid = sample_grid(theta.transpose(0, 1), height, width).reshape(k, b * height, width, 2)
        drawn = F.grid_sample(templates.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)
        drawn = drawn.reshape(k, b, height, width).transpose(0, 1)
    else:
        source = templates.reshape(b * k, 1, th, tw)
        grid = sample_grid(theta, height, width).reshape(b * k, height, width, 2)
        drawn = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        drawn = drawn.reshape(b, k, height, width)
    return drawn * intensities.reshape(b, k, 1, 1)


def render_one_by_one(
    templates: torch.Tensor,
    matrices: torch.Tensor,
    intensities: torch.Tensor,
    out_shape: tuple[int, int],
) -> torch.Tensor:
    """The same images drawn capsule by capsule (one ``grid_sample`` per capsule).

    Kept only as the baseline of ``benchmarks/capsule_renderer.py`` and as a cross-check in the
    tests; the model always uses :func:`render`.
    """
    k = matrices.shape[1]
    parts = [render(templates[..., i : i + 1, :, :], matrices[:, i : i + 1], intensities[:, i : i + 1], out_shape)
             for i in range(k)]
    return torch.cat(parts, 1)
