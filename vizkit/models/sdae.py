"""Stacked denoising autoencoder (Vincent et al.), the SDAE of Erhan et al. (2009).

Each layer is h = sigmoid(W x + b) with a tied decoder sigmoid(Wᵀ h + c) (linear at the input for
real-valued data). Layers are trained greedily, each on the clean codes of the layers below, then
optionally fine-tuned jointly to reconstruct the input from a corrupted input.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import capabilities as caps
from ..epoch_means import EpochMeans
from ..errors import OptionError
from ..model import LayerInfo, Weights, squashed
from ..options import Option
from .base import ReferenceModel, StackedLayers


def parse_layer_sizes(text: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"1000,1000,1000"`` → [1000, 1000, 1000], refusing anything but positive integers."""
    parts = text if isinstance(text, list | tuple) else str(text).split(",")
    sizes = []
    for part in parts:
        try:
            size = int(str(part).strip())
        except ValueError:
            size = 0
        if size <= 0:
            raise OptionError(f"--layers must be positive integers separated by commas, got {text!r}")
        sizes.append(size)
    return sizes


class SDAE(StackedLayers, ReferenceModel):
    kind = "sdae"
    summary = "stacked denoising autoencoder, tied weights, greedy layer-wise (+ fine-tuning)"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, caps.RECONSTRUCT})
    #: dataset options this kind uses unless ``-D`` says otherwise: ZCA whitening with a large
    #: regulariser (a low-pass roll-off, as in Olshausen's pre-whitened images; a tiny one amplifies
    #: pixel noise and the filters learn noise), and enough fresh patches per epoch for the
    #: 3,000 updates (batch 100) the sparse code needs in one default epoch (docs/models/sdae.md, "Natural-image patches").
    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "patches": {"whiten": "zca", "whiten_eps": 1.0, "n_train": 300000}}
    #: Defaults that change for real-valued (not [0, 1]) data such as whitened patches, unless given:
    #: the sparse-autoencoder recipe (UFLDL; Ng's lecture notes) — KL sparsity target 0.01 with
    #: weight 6 on the summed squared error (UFLDL's β = 3 with its ½), weight decay 1e-4, Adam 2e-2.
    REAL_VALUED_DEFAULTS: ClassVar[dict[str, float]] = {"sparsity": 0.01, "weight_decay": 1e-4, "lr": 2e-2}
    train_options = (
        Option("layers", str, "1000,1000,1000", "hidden layer sizes, bottom to top"),
        Option("corruption", str, "masking", "input corruption", choices=("masking", "salt_pepper", "gaussian")),
        Option("noise", float, 0.25, "corrupted fraction (masking, salt_pepper) or noise std (gaussian)", min=0.0, max=1.0),
        Option("loss", str, "auto", "reconstruction loss (auto: cross-entropy for [0,1] data, else MSE)", choices=("auto", "xent", "mse")),
        Option("optimizer", str, "adam", "optimiser", choices=("adam", "sgd")),
        Option("lr", float, 1e-3, "learning rate (default 2e-2 for real-valued data)", min=0.0),
        Option("finetune_epochs", int, 0, "epochs of joint fine-tuning after the greedy stages", min=0),
        Option("sparsity", float, 0.0, "target mean activation ρ of each hidden unit for the KL sparsity penalty "
               "(0: none; default 0.01 for real-valued data)", min=0.0, max=0.5),
        Option("upper_sparsity", float, None, "KL sparsity target of the layers above the first (default: "
               "--sparsity; 0 on real-valued data, where the target is the first layer's recipe for edge "
               "detectors and on the sparse codes above it every unit of a layer collapsed to the same "
               "weights)", min=0.0, max=0.5),
        Option("sparsity_weight", float, 6.0, "weight β of the KL sparsity penalty", min=0.0),
        Option("weight_decay", float, 0.0, "L2 penalty on the weights, added to the loss "
               "(default 1e-4 for real-valued data)", min=0.0),
        Option("binary_input", bool, True, "data lies in [0,1] (set from the dataset)"),
    )

    def __init__(
        self,
        input_shape: list[int],
        layers: str = "1000,1000,1000",
        corruption: str = "masking",
        noise: float = 0.25,
        loss: str = "auto",
        optimizer: str = "adam",
        lr: float = 1e-3,
        finetune_epochs: int = 0,
        binary_input: bool = True,
        sparsity: float = 0.0,
        upper_sparsity: float | None = None,
        sparsity_weight: float = 6.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_means = EpochMeans()
        sizes = [int(torch.tensor(input_shape).prod())] + parse_layer_sizes(layers)
        self.sizes = sizes
        self.weight = nn.ParameterList()
        self.hidden_bias = nn.ParameterList()
        self.visible_bias = nn.ParameterList()
        gen = torch.Generator().manual_seed(0)
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            # Small initial weights: the learned structure, not the initial noise, shows in filters
            # after even one epoch, and sigmoid units start in their linear range.
            self.weight.append(nn.Parameter(torch.randn(n_out, n_in, generator=gen) * 0.01))
            self.hidden_bias.append(nn.Parameter(torch.zeros(n_out)))
            self.visible_bias.append(nn.Parameter(torch.zeros(n_in)))

    # -- probe protocol -----------------------------------------------------------------------
    def layer_infos(self) -> dict[str, LayerInfo]:
        """Every encoder layer is sigmoid (encode_layer): probes can reach its total input."""
        return squashed(super().layer_infos(), "sigmoid")

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        h = self.flat(x)
        for i in range(self._depth(layer)):
            h = self.encode_layer(h, i)
        return h

    def weights(self, layer: str) -> Weights:
        depth = self._depth(layer)
        source = "input" if depth == 1 else f"h{depth - 1}"
        return Weights(self.weight[depth - 1].detach(), source)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flat(x)
        for i in range(len(self.weight)):
            h = self.encode_layer(h, i)
        for i in reversed(range(len(self.weight))):
            h = self.decode_layer(h, i)
        return h.reshape(x.shape)

    # -- the model ------------------------------------------------------------------------------
    def encode_layer(self, h: torch.Tensor, i: int) -> torch.Tensor:
        return torch.sigmoid(F.linear(h, self.weight[i], self.hidden_bias[i]))

    def decode_layer(self, h: torch.Tensor, i: int) -> torch.Tensor:
        pre = self.decode_input(h, i)
        return pre if self._loss_at(i) == "mse" else torch.sigmoid(pre)

    def decode_input(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """The decoder's total input at layer ``i``: what the training loss reads, so the
        cross-entropy is taken from logits (one fused, stable kernel, no clamped sigmoid)."""
        return F.linear(h, self.weight[i].t(), self.visible_bias[i])

    def _loss_at(self, i: int) -> str:
        if i > 0:
            return "xent"
        loss = self.hparams["loss"]
        if loss == "auto":
            return "xent" if self.hparams["binary_input"] else "mse"
        return loss

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        noise = self.hparams["noise"]
        kind = self.hparams["corruption"]
        if noise == 0:
            return x
        if kind == "masking":
            return x * (torch.rand_like(x) >= noise)
        if kind == "salt_pepper":
            hit = torch.rand_like(x) < noise
            lo, hi = (0.0, 1.0) if self.hparams["binary_input"] else (float(x.min()), float(x.max()))
            salt = torch.where(torch.rand_like(x) < 0.5, lo, hi)
            return torch.where(hit, salt, x)
        return x + noise * torch.randn_like(x)

    def reconstruction_loss(self, pre: torch.Tensor, target: torch.Tensor, i: int) -> torch.Tensor:
        """Summed over pixels, averaged over the batch, from the decoder's total input ``pre``
        (:meth:`decode_input`): cross-entropy of sigmoid(pre), or squared error of the linear output."""
        if self._loss_at(i) == "xent":
            return F.binary_cross_entropy_with_logits(pre, target, reduction="sum") / len(target)
        return F.mse_loss(pre, target, reduction="sum") / len(target)

    # -- Lightning ------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        names = [f"layer {i + 1}" for i in range(len(self.weight))]
        return names + (["fine-tune"] if self.hparams["finetune_epochs"] > 0 else [])

    def stage_epochs(self, stage: int, epochs: int) -> int:
        return self.hparams["finetune_epochs"] if stage >= len(self.weight) else epochs

    def _stage_loss(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flat(x)
        if self.stage >= len(self.weight):
            h = self.corrupt(x)
            for i in range(len(self.weight)):
                h = self.encode_layer(h, i)
            for i in reversed(range(1, len(self.weight))):
                h = self.decode_layer(h, i)
            return self.reconstruction_loss(self.decode_input(h, 0), x, 0)
        with torch.no_grad():
            for i in range(self.stage):
                x = self.encode_layer(x, i)
        code = self.encode_layer(self.corrupt(x), self.stage)
        loss = self.reconstruction_loss(self.decode_input(code, self.stage), x, self.stage)
        return loss + self.penalties(code, self.stage)

    def penalties(self, code: torch.Tensor, i: int) -> torch.Tensor | float:
        """KL(ρ ‖ mean activation) summed over units, and weight decay, for greedy stage ``i``.

        Why: on whitened patches every direction has the same variance, so the plain (denoising)
        reconstruction is nearly indifferent to how the filters are rotated and they stay at their
        random initial directions; making each unit rarely active (ρ ≪ ½) prefers the heavy-tailed,
        sparse directions of natural images, which are localized oriented edges (Olshausen & Field
        1996; the UFLDL sparse-autoencoder exercise).
        """
        total: torch.Tensor | float = 0.0
        rho = self.hparams.get("sparsity", 0.0)
        if i > 0 and self.hparams.get("upper_sparsity") is not None:
            rho = self.hparams["upper_sparsity"]
        if rho > 0 and self.hparams.get("sparsity_weight", 0.0) > 0:
            q = code.mean(0).clamp(1e-6, 1 - 1e-6)
            kl = rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))
            total = total + self.hparams["sparsity_weight"] * kl.sum()
        decay = self.hparams.get("weight_decay", 0.0)
        if decay > 0:
            total = total + decay * self.weight[i].pow(2).sum()
        return total

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._stage_loss(batch)
        self.train_means.add(len(batch), train_loss=loss)
        return loss

    def on_train_epoch_end(self) -> None:
        self.train_means.log(self, prog_bar={"train_loss"})

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        # the same corruption at every validation, drawn outside the training's random stream: how
        # often a run validates (vizkit.training.CHECK_EVERY) must not change what it learns, and
        # the losses of different epochs compare like for like
        with torch.random.fork_rng(devices=[batch.device] if batch.device.type != "cpu" else [],
                                   device_type=batch.device.type):
            torch.manual_seed(10_007 + batch_idx)
            loss = self._stage_loss(batch)
        self.log("val_loss", loss, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.stage >= len(self.weight):
            params = list(self.parameters())
        else:
            params = [self.weight[self.stage], self.hidden_bias[self.stage], self.visible_bias[self.stage]]
        # fused: one pass over each tensor per update instead of Adam's dozen, a quarter of the
        # step on a CPU core (benchmarks/train_step_rate.py)
        if self.hparams["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=self.hparams["lr"], momentum=0.9, fused=True)
        return torch.optim.Adam(params, lr=self.hparams["lr"], fused=True)

    @classmethod
    def hparams_from_options(cls, options, *, input_shape, data, lr):  # type: ignore[override]
        hp = super().hparams_from_options(options, input_shape=input_shape, data=data, lr=lr)
        parse_layer_sizes(hp["layers"])
        if "binary_input" not in options:
            hp["binary_input"] = bool(data.get("stats", {}).get("binary_like", True))
        if not hp["binary_input"]:
            for name, value in cls.REAL_VALUED_DEFAULTS.items():
                if name not in options and not (name == "lr" and lr is not None):
                    hp[name] = value
            # the layers above the first see sparse codes in [0, 1], not whitened pixels: with the
            # KL target there every unit of layer 2 and 3 collapsed to one all-negative weight vector
            # (docs/models/sdae.md, "Upper layers")
            if options.get("upper_sparsity") is None:
                hp["upper_sparsity"] = 0.0
        return hp
