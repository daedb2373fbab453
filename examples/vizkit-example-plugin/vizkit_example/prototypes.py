"""A new capability, a model kind that provides it and a probe that requires it — all from a
third-party plugin, with no change to vizkit.

* Capability ``prototypes``: the model can say, for each unit of a layer, the input it was built
  to match (``prototypes(layer) -> [units, *input_shape]``).
* Model kind ``protonet``: a nearest-prototype classifier. Unit j of layer ``match`` responds
  −‖x − p_j‖² / D to an input x (D input values), so its best possible input is its prototype.
  Built from prototypes you choose (e.g. class means) with :func:`protonet_checkpoint`.
* Probe ``prototype-match``: draws each unit's prototype and checks the known answer that every
  unit responds more to its own prototype than to any other unit's (``self_best``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

import vizkit
from vizkit import Capability, LayerInfo, Probe, ProbeContext, Result
from vizkit import capabilities as caps

PROTOTYPES = "prototypes"


class PrototypeModel(vizkit.ProbeModel, Protocol):
    def prototypes(self, layer: str) -> torch.Tensor:
        """``[units, *input_shape]``: the input each unit of ``layer`` was built to match."""
        ...


CAPABILITY = Capability(PROTOTYPES, "prototypes(layer): the input each unit was built to match", PrototypeModel)


class ProtoNet(vizkit.VizModel):
    """Nearest-prototype units over the input (no training: the prototypes are the model)."""

    kind = "protonet"
    summary = "nearest-prototype units: unit j responds -|x - p_j|^2 / D (example plugin)"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, PROTOTYPES})

    def __init__(self, prototypes: torch.Tensor, data_info: Mapping[str, Any] | None = None) -> None:
        self.input_shape = tuple(int(s) for s in prototypes.shape[1:])
        self.data_info = dict(data_info or {})
        self._prototypes = prototypes.detach().to(torch.float32)

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ProtoNet:
        prototypes = ckpt["state_dict"]["prototypes"]
        shape = [int(s) for s in ckpt["hparams"]["input_shape"]]
        if list(prototypes.shape[1:]) != shape:
            raise ValueError(f"prototypes of shape {tuple(prototypes.shape[1:])} do not match input_shape {shape}")
        return cls(prototypes, ckpt.get("data"))

    def layer_infos(self) -> dict[str, LayerInfo]:
        return {"match": LayerInfo("match", (self._prototypes.shape[0],))}

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        self._check(layer)
        flat = x.reshape(x.shape[0], -1)
        protos = self._prototypes.to(flat).reshape(self._prototypes.shape[0], -1)
        # expanded rather than torch.cdist, whose backward is not differentiable again (hessian needs it)
        squared = (flat**2).sum(1, keepdim=True) - 2 * flat @ protos.T + (protos**2).sum(1)
        return -squared / flat.shape[1]

    def prototypes(self, layer: str) -> torch.Tensor:
        self._check(layer)
        return self._prototypes.clone()

    def _check(self, layer: str) -> None:
        if layer != "match":
            raise vizkit.UnknownNameError(f"unknown layer {layer!r}; valid layers: match")


def protonet_checkpoint(prototypes: torch.Tensor, data_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A vizkit checkpoint of a :class:`ProtoNet` (``vizkit.checkpoint.save_checkpoint`` writes it)."""
    from vizkit.checkpoint import make_checkpoint

    hparams = {"input_shape": [int(s) for s in prototypes.shape[1:]]}
    return make_checkpoint(ProtoNet.kind, hparams, {"prototypes": prototypes.detach().float().contiguous()},
                           dict(data_info or {}))


class PrototypeMatch(Probe):
    """Each unit's prototype, and whether the unit prefers it to every other unit's prototype."""

    name = "prototype-match"
    summary = "each unit's prototype as an image, and whether it is the unit's best prototype (example plugin)"
    requires = frozenset({caps.ACTIVATIONS, PROTOTYPES})

    def run(self, ctx: ProbeContext) -> Result:
        from vizkit.figure import as_images, image_grid

        protos = ctx.model.prototypes(ctx.layer).to(ctx.device)
        with torch.no_grad():
            # [prototype i, unit j]: unit j's response to prototype i, all units in one pass
            response = vizkit.unit_activations(ctx.model, protos, ctx.layer, ctx.units).cpu()
        own = response[ctx.units.cpu(), torch.arange(len(ctx.units))]
        self_best = (response.argmax(dim=0) == ctx.units.cpu()).numpy()
        shown = protos[ctx.units].cpu().numpy()
        fig = image_grid(as_images(shown, ctx.model.input_shape), labels=[int(u) for u in ctx.units], mode="minmax",
                         title=f"prototypes of {len(ctx.units)} units of {ctx.layer}")
        caption = (f"The prototype of each unit; {int(self_best.sum())} of {len(self_best)} units respond most to "
                   f"their own prototype (known answer for nearest-prototype units: all).")
        return Result(arrays={"prototypes": shown.astype(np.float32), "own_response": own.numpy(),
                              "self_best": self_best},
                      meta={"self_best_fraction": float(self_best.mean()) if len(self_best) else math.nan},
                      figures={"prototypes": fig}, captions={"prototypes": caption})
