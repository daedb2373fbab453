"""A tied linear autoencoder, ``x ≈ Wᵀ W (x - μ) + μ``: the smallest complete vizkit model kind.

Known answer (Baldi & Hornik 1989): trained on mean squared error, the rows of ``W`` span the
subspace of the data's top-``k`` principal components. The test checks exactly that.

What makes a model kind (the contract ``vizkit train KIND`` relies on):

1. ``kind`` (its name), ``summary`` (one line for ``vizkit models``), ``capabilities`` (what probes
   may ask of it), ``train_options`` (``vizkit train linae --code 8`` flags, typed ``vizkit.Option``s).
2. ``__init__`` takes only primitive hyperparameters (``input_shape`` plus the train options) and
   calls ``self.save_hyperparameters()``: a checkpoint is kind + hparams + state dict, so
   ``from_checkpoint`` rebuilds the model without executing anything from the file.
3. The probe protocol: ``layer_infos()`` and ``activations(x, layer)``, plus one method per declared
   capability (here ``weights`` and ``reconstruct``; ``input_grad`` needs only differentiability).
4. Lightning: ``training_step``, ``validation_step`` (log ``val_loss``) and
   ``configure_optimizers``; ``stages()`` for greedy layer-wise training (one here).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import vizkit
from vizkit import capabilities as caps


class LinearAE(vizkit.ReferenceModel):
    kind = "linae"
    summary = "tied linear autoencoder (example model kind): learns the data's principal subspace"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, caps.RECONSTRUCT})
    train_options = (
        vizkit.Option("code", int, 8, "code size (number of hidden units)", min=1, max=100_000),
        vizkit.Option("lr", float, 1e-2, "Adam learning rate", min=0.0),
    )

    def __init__(self, input_shape: list[int], code: int = 8, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        n_in = 1
        for size in input_shape:
            n_in *= int(size)
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(code, n_in, generator=gen) / n_in**0.5)
        # the data mean, set from the dataset when training starts (a buffer: saved in the state dict)
        self.register_buffer("mean", torch.zeros(n_in))

    # -- the probe protocol ------------------------------------------------------------------
    def layer_infos(self) -> dict[str, vizkit.LayerInfo]:
        return {"code": vizkit.LayerInfo("code", (int(self.hparams["code"]),))}

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        if layer != "code":
            raise vizkit.UnknownNameError(f"unknown layer {layer!r}; valid layers: code")
        return F.linear(self.flat(x) - self.mean, self.weight)

    def weights(self, layer: str) -> vizkit.Weights:
        self.activations(torch.zeros(1, *self.input_shape), layer)  # the same unknown-layer message
        return vizkit.Weights(self.weight.detach(), "input")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        code = self.activations(x, "code")
        return (code @ self.weight + self.mean).reshape(x.shape)

    # -- Lightning ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        data = self.trainer.datamodule.train_tensor()
        self.mean.copy_(self.flat(data).mean(0).to(self.mean))

    def _loss(self, batch: Any) -> torch.Tensor:
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return F.mse_loss(self.reconstruct(x), x, reduction="sum") / len(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])
