"""Atomic-capsule rendering (ACR): draw posed templates into images, all in one batched call.

Each output pixel centre is mapped by the pose's world→template matrix into the template, and the
value there is read by bilinear interpolation of the four surrounding template points, times the
capsule's intensity; outside the template the value is 0 (so a capsule draws nothing where it is
not placed). Template pixels are *points*: point ``k`` of an ``h``-point side sits at
``k / (h - 1)``, so the template spans the unit square; output pixel ``(r, c)`` of an ``H × W``
image sits at ``((c + 0.5) / W, (r + 0.5) / H)``.

``affine_grid`` and ``grid_sample`` do the work for images × capsules at once: the unit-frame
matrix is conjugated into PyTorch's normalised coordinates (``affine_grid`` with
``align_corners=False`` yields exactly the output pixel centres; ``grid_sample`` with
``align_corners=True`` puts ±1 on the first and last template points).
"""

from __future__ import annotations

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
    theta = normalised_theta(matrices).reshape(b * k, 2, 3)
    grid = F.affine_grid(theta, [b * k, 1, height, width], align_corners=False)
    if templates.dim() == 3:
        # Shared templates: one sampling "image" per capsule whose grid stacks every image's
        # sample points ([K, B·H, W, 2]), so no template is copied B times and the template
        # gradient is accumulated inside grid_sample instead of summed over B copies afterwards.
        grid = grid.reshape(b, k, height, width, 2).transpose(0, 1).reshape(k, b * height, width, 2)
        drawn = F.grid_sample(templates.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)
        drawn = drawn.reshape(k, b, height, width).transpose(0, 1)
    else:
        source = templates.reshape(b * k, 1, th, tw)
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
