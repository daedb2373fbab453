"""The ``templates`` capability: what the capsule autoencoder offers beyond reconstruction.

The ``templates`` probe draws the thesis's galleries (Tieleman 2014, ch. 2) from these calls alone,
so another part-based model that implements them gets the same galleries.
"""

from __future__ import annotations

from typing import Protocol

import torch

from vizkit import Capability, ProbeModel

TEMPLATES = "templates"


class TemplateModel(ProbeModel, Protocol):
    def templates(self) -> dict[str, torch.Tensor]:
        """The learned templates as drawn, ``{"templates": [parts, h, w]}``."""
        ...

    def parts(self, x: torch.Tensor, component: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-part view of a batch: ``contributions`` [n, parts, *input_shape], ``reconstructions``,
        ``components`` (mixture responsibilities), ``cc_pose`` and ``distortion``; with ``component``
        every image is drawn by that mixture component."""
        ...

    def combine(self, contributions: torch.Tensor) -> torch.Tensor:
        """The output model: part images [B, parts, H, W] → images [B, H, W]."""
        ...

    def sweep(self, component: torch.Tensor, cc_pose: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
        """Images of ``component[i]`` at pose ``cc_pose[i]`` with distortion ``distortion[i]``."""
        ...

    def components(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture responsibilities [n, components] without noise."""
        ...


CAPABILITY = Capability(TEMPLATES, "templates(), parts(x), combine, sweep, components: part-based galleries",
                        TemplateModel)
