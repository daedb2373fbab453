"""Denoising autoencoders with lateral connections (Rasmus, Raiko & Valpola 2015).

One model kind, ``ladder``, with the paper's decoders chosen by ``--decoder``:

- ``nolat``: an ordinary deep denoising autoencoder: ĥ⁽ᴸ⁾ = h⁽ᴸ⁾ and ĥ⁽ˡ⁾ = φ(Wᵍ⁽ˡ⁾ĥ⁽ˡ⁺¹⁾ + bᵍ⁽ˡ⁾);
- ``add``: additive lateral connections (Eq. 6–7): ĥ⁽ˡ⁾ = (h⁽ˡ⁾ + bₐ) ⊙ σ(a ⊙ h⁽ˡ⁾ + b_b) +
  φ(Wᵍ⁽ˡ⁾ĥ⁽ˡ⁺¹⁾ + bᵍ⁽ˡ⁾), the top layer without the last term;
- ``mod``: modulated lateral connections (Eq. 8): ĥ⁽ˡ⁾ = (h⁽ˡ⁾ + bₐ) ⊙ σ(a ⊙ h⁽ˡ⁾ + Wᵍ⁽ˡ⁾ĥ⁽ˡ⁺¹⁾ + b_b):
  the layer above *modulates* the lateral path, which is what lets the top layer discard details
  (where a patch is, exactly) and keep invariant features;
- ``linear``: the paper's linear denoising baseline x̂ = A x̃ + c (A a full matrix; ``--layers`` is
  ignored and the one layer ``h1`` is the denoised output).

Shared by all (supplementary 4.2): encoder h⁽ˡ⁾ = φ(W⁽ˡ⁾h⁽ˡ⁻¹⁾ + b⁽ˡ⁾) + β⁽ˡ⁾ with φ = ReLU and the
auxiliary centring bias β of Raiko, Valpola & LeCun (2012), which keeps each unit's output at zero
mean; inputs are scaled to unit standard deviation (by the training data's pixel std, stored as
``data_std``) and corrupted with Gaussian noise σ = 0.5; the cost is ‖x̂ − x‖² averaged per
element; decoder weights are tied (Wᵍ⁽ˡ⁾ = W⁽ˡ⁺¹⁾ᵀ) and the bottom decoder is affine,
x̂ = W⁽¹⁾ᵀĥ⁽¹⁾ + bᵍ⁽⁰⁾; weight vectors start with norm 1 and orthogonalised; ADADELTA (momentum
0.99, ε = 1e-8); all layers train at once. The paper counts minibatch updates (1 million of 50 on
continuously drawn patches), hence ``vizkit train --max-steps``.

The centring bias is not learned by gradient: after every update β ← m·β − (1 − m)·mean(φ(·)) over
the batch (m = ``centring``), and every consumer of h (the next encoder layer, the lateral path,
the decoder above the top) has its bias shifted by the opposite amount so the network's function
does not jump when β moves (Raiko et al.'s compensation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import capabilities as caps
from ..compiled_step import CompiledStep, wants_compile
from ..errors import OptionError
from ..model import Weights
from ..options import Option
from .base import ReferenceModel, StackedLayers
from .sdae import parse_layer_sizes

DECODERS = ("nolat", "add", "mod", "linear")


def unit_norm_orthogonal(n_out: int, n_in: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[n_out, n_in]`` weights whose rows have norm 1 and are as orthogonal as the shape allows.

    Normal draws orthogonalised by QR (rows orthonormal when n_out ≤ n_in, columns otherwise, as
    ``nn.init.orthogonal_``), then every row rescaled to norm 1 (supplementary 4.2).
    """
    flat = torch.randn(max(n_out, n_in), min(n_out, n_in), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    signs = torch.diagonal(r).sign()
    q = q * torch.where(signs == 0, torch.ones_like(signs), signs)  # a unique, uniformly random basis
    w = q if n_out >= n_in else q.t()
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return w.to(torch.float32).contiguous()


class Ladder(StackedLayers, ReferenceModel):
    kind = "ladder"
    summary = "denoising autoencoder with lateral connections: --decoder nolat|add|mod|linear (Rasmus et al. 2015)"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, caps.RECONSTRUCT})
    # The paper's input (supplementary 4.1: 16x16 patches, PCA-whitened keeping 99% of the variance),
    # and each patch divided by its own RMS: windows of the shipped photographs differ in contrast by
    # orders of magnitude, and without it Add's top layer spends itself on local energy, which gamma
    # counts as translation invariance (docs/models/ladder.md, "Why Add looked like Mod").
    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "patches": {"size": 16, "whiten": "pca", "contrast": "divisive"}}
    train_options = (
        Option("decoder", str, "mod", "decoder: nolat (none), add (additive) or mod (modulated) lateral "
               "connections, or linear (the linear denoising baseline)", choices=DECODERS),
        Option("layers", str, "1622,50", "hidden layer sizes, bottom to top (paper: mod 1622,50; add 839,336; "
               "nolat 590,589)"),
        Option("noise", float, 0.5, "std of the Gaussian corruption of the unit-std input", min=0.0),
        Option("lr", float, 1.0, "ADADELTA learning rate (the step scale; 1.0 as in Zeiler 2012)", min=0.0),
        Option("rho", float, 0.99, "ADADELTA momentum (decay of its running averages)", min=0.0, max=1.0),
        Option("eps", float, 1e-8, "ADADELTA epsilon", min=0.0),
        Option("centring", float, 0.99, "decay of the running mean the centring bias follows", min=0.0, max=1.0),
        Option("data_std", float, 1.0, "pixel std of the training data (set from the dataset); inputs are "
               "divided by it", min=1e-12),
        Option("compile", str, "auto", "fuse the ADADELTA update with torch.compile: auto (runs of 20,000 "
               "updates or more, where the ~30 s it takes pays back), on or off", choices=("auto", "on", "off")),
    )

    def __init__(
        self,
        input_shape: list[int],
        decoder: str = "mod",
        layers: str = "1622,50",
        noise: float = 0.5,
        lr: float = 1.0,
        rho: float = 0.99,
        eps: float = 1e-8,
        centring: float = 0.99,
        data_std: float = 1.0,
        compile: str = "auto",
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise OptionError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.save_hyperparameters()
        n_in = int(torch.tensor(input_shape).prod())
        self.linear = decoder == "linear"
        self.sizes = [n_in, n_in] if self.linear else [n_in] + parse_layer_sizes(layers)
        depth = len(self.sizes) - 1
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        for n_lo, n_hi in zip(self.sizes[:-1], self.sizes[1:]):
            init = torch.zeros(n_hi, n_lo) if self.linear else unit_norm_orthogonal(n_hi, n_lo)
            self.weight.append(nn.Parameter(init))
            self.bias.append(nn.Parameter(torch.zeros(n_hi)))
        # decoder biases: bᵍ⁽⁰⁾ at the input, and bᵍ⁽ˡ⁾ of the top-down ReLU where there is one
        # (no-lat, add; mod folds it into b_b); none for the linear baseline, whose bias is bias[0]
        n_dec = 0 if self.linear else (1 if decoder == "mod" else depth)
        self.dec_bias = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in self.sizes[:n_dec]])
        lateral = decoder in ("add", "mod")
        # lateral parameters a, bₐ, b_b for levels 1..L
        self.lat_a = nn.ParameterList([nn.Parameter(torch.ones(n)) for n in self.sizes[1:]] if lateral else [])
        self.lat_ba = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in self.sizes[1:]] if lateral else [])
        self.lat_bb = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in self.sizes[1:]] if lateral else [])
        for i, n in enumerate(self.sizes[1:]):
            self.register_buffer(f"centre{i}", torch.zeros(n))
        self.best_val = float("inf")
        self._fused_step: CompiledStep | None = None
        self._train_sum, self._train_count = torch.zeros(()), 0
        self._val_sum = 0.0
        self._val_count = 0

    # -- probe protocol -----------------------------------------------------------------------
    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return self.encode(self.scale(x), self._depth(layer))[-1]

    def activations_all(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Several layers from one pass through the encoder (see :func:`vizkit.layer_activations`)."""
        depth = max((self._depth(name) for name in layers), default=0)
        hs = self.encode(self.scale(x), depth) if depth else []
        return {name: hs[int(name[1:]) - 1] for name in layers}

    def weights(self, layer: str) -> Weights:
        depth = self._depth(layer)
        w = self.weight[depth - 1].detach()
        if depth == 1:  # the filter in the units of the unscaled input
            return Weights(w / float(self.hparams["data_std"]), "input")
        return Weights(w, f"h{depth - 1}")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The denoised reconstruction of a (clean) batch, in the units of ``x``."""
        x_hat = self.denoise(self.scale(x))
        return (x_hat * float(self.hparams["data_std"])).reshape(x.shape)

    # -- the model ------------------------------------------------------------------------------
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return self.flat(x) / float(self.hparams["data_std"])

    def centre(self, i: int) -> torch.Tensor:
        return getattr(self, f"centre{i}")

    def encode(self, x: torch.Tensor, depth: int | None = None, record: bool = False) -> list[torch.Tensor]:
        """[h⁽¹⁾, …, h⁽ᵈᵉᵖᵗʰ⁾] of the (scaled) input; the linear baseline's one layer is x̂.

        ``record`` keeps each layer's batch mean of φ(·) for the centring update after the step.
        """
        if self.linear:
            return [F.linear(x, self.weight[0], self.bias[0])]
        hs, h = [], x
        means = []
        for i in range(len(self.weight) if depth is None else depth):
            relu = F.relu(F.linear(h, self.weight[i], self.bias[i]))
            if record:
                means.append(relu.detach().mean(dim=0))
            h = relu + self.centre(i)
            hs.append(h)
        if record:
            self._relu_means = means
        return hs

    def _lateral(self, i: int, h: torch.Tensor, top_down: torch.Tensor | None = None) -> torch.Tensor:
        gate = self.lat_a[i] * h + self.lat_bb[i]
        if top_down is not None:
            gate = gate + top_down
        return (h + self.lat_ba[i]) * torch.sigmoid(gate)

    def decode(self, hs: list[torch.Tensor]) -> torch.Tensor:
        """x̂ from the encoder's (noisy) activations, through the chosen decoder."""
        if self.linear:
            return hs[0]
        decoder = self.hparams["decoder"]
        top = len(hs) - 1
        d = hs[top] if decoder == "nolat" else self._lateral(top, hs[top])
        for i in range(top - 1, -1, -1):  # level i + 1 (1-based) receives from level i + 2
            down = F.linear(d, self.weight[i + 1].t())
            if decoder == "mod":
                d = self._lateral(i, hs[i], down)
            elif decoder == "add":
                d = self._lateral(i, hs[i]) + F.relu(down + self.dec_bias[i + 1])
            else:
                d = F.relu(down + self.dec_bias[i + 1])
        return F.linear(d, self.weight[0].t(), self.dec_bias[0])

    def denoise(self, x: torch.Tensor, record: bool = False) -> torch.Tensor:
        return self.decode(self.encode(x, record=record))

    def cost(self, x: torch.Tensor, noise: torch.Tensor | None = None, record: bool = False) -> torch.Tensor:
        """‖x̂ − x‖² per element for a scaled clean batch ``x`` and its corruption."""
        if noise is None:
            noise = torch.randn_like(x)
        x_hat = self.denoise(x + self.hparams["noise"] * noise, record=record)
        return (x_hat - x).pow(2).mean()

    # -- centring (Raiko et al. 2012) -----------------------------------------------------------
    @torch.no_grad()
    def update_centring(self, relu_means: list[torch.Tensor]) -> None:
        """Move every β towards minus the batch mean of its ReLU output (from the step's own forward
        pass) and compensate the consumers of h so the network function is unchanged by the move."""
        if self.linear:
            return
        m = float(self.hparams["centring"])
        decoder = self.hparams["decoder"]
        top = len(self.weight) - 1
        for i, mean in enumerate(relu_means):
            beta = self.centre(i)
            delta = (m * beta - (1.0 - m) * mean) - beta
            beta.add_(delta)
            if i < top:  # next encoder layer: W(h + Δ) + b
                self.bias[i + 1].sub_(self.weight[i + 1] @ delta)
            if decoder in ("add", "mod"):  # (h + Δ + bₐ) ⊙ σ(a(h + Δ) + b_b)
                self.lat_ba[i].sub_(delta)
                self.lat_bb[i].sub_(self.lat_a[i] * delta)
            elif i == top:  # no-lat passes h⁽ᴸ⁾ straight down: Wᵀ(h + Δ) + bᵍ
                self.dec_bias[i].sub_(self.weight[i].t() @ delta)

    # -- Lightning ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.cost(self.scale(batch), record=True)
        # summed here and logged once per epoch: Lightning's per-step self.log bookkeeping costs a
        # tenth of a small model's update (benchmarks/train_step_rate.py)
        self._train_sum = self._train_sum + loss.detach()
        self._train_count += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_sum, self._train_count = torch.zeros(()), 0

    def on_train_epoch_end(self) -> None:
        if self._train_count:
            self.log("train_cost", self._train_sum / self._train_count, prog_bar=True)

    def on_train_start(self) -> None:
        planned = float(self.trainer.estimated_stepping_batches)
        if self._fused_step is None and wants_compile(self.hparams.get("compile", "auto"), planned):
            self._fused_step = CompiledStep(self.optimizers().optimizer)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the optimiser step, so the compensation acts on the updated weights
        self.update_centring(getattr(self, "_relu_means", []))

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_count = 0.0, 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.scale(batch)
        # the same corruption at every validation, so the costs of different epochs (and models
        # trained with different seeds) compare like for like
        gen = torch.Generator().manual_seed(10_007 + batch_idx)
        noise = torch.randn(x.shape, generator=gen).to(x)
        self._val_sum += float(self.cost(x, noise)) * x.numel()
        self._val_count += x.numel()

    def on_validation_epoch_end(self) -> None:
        if self._val_count == 0:
            return
        val = self._val_sum / self._val_count
        self.best_val = min(self.best_val, val)
        self.log("val_cost", val, prog_bar=True)
        self.log("val_cost_min", self.best_val, prog_bar=False)

    @torch.no_grad()
    def validation_cost(self, data: torch.Tensor, batch_size: int = 500) -> float:
        """Denoising cost per element over ``data`` with the fixed validation corruption."""
        total, count = 0.0, 0
        for idx, start in enumerate(range(0, data.shape[0], batch_size)):
            x = self.scale(data[start:start + batch_size].to(self.device))
            gen = torch.Generator().manual_seed(10_007 + idx)
            noise = torch.randn(x.shape, generator=gen).to(x)
            total += float(self.cost(x, noise)) * x.numel()
            count += x.numel()
        return total / max(count, 1)

    def after_stage(self, stage: int, trainer: Any, datamodule: Any) -> None:
        """The denoising cost at the end of training (a run stopped by ``--max-steps`` mid-epoch
        has not validated its last updates) and the lowest seen: Table 1's "min cost"."""
        was_training = self.training
        self.eval()
        final = self.validation_cost(datamodule.test_tensor())
        self.train(was_training)
        self.best_val = min(self.best_val, final)
        self.metrics["denoising"] = {"val_cost": final, "val_cost_min": self.best_val,
                                     "noise": float(self.hparams["noise"]), "steps": int(trainer.global_step)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adadelta(self.parameters(), lr=self.hparams["lr"], rho=self.hparams["rho"],
                                    eps=self.hparams["eps"])

    @classmethod
    def hparams_from_options(cls, options, *, input_shape, data, lr):  # type: ignore[override]
        hp = super().hparams_from_options(options, input_shape=input_shape, data=data, lr=lr)
        if hp["decoder"] != "linear":
            parse_layer_sizes(hp["layers"])
        if "data_std" not in options:
            std = (data.get("stats") or {}).get("pixel_std")
            if std:
                hp["data_std"] = float(std)
        return hp
