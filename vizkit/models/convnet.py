"""A small convolutional classifier for the Zeiler–Fergus probes (topk, deconv, occlusion, invcurves, evolution).

Blocks of convolution → ReLU → max-pool (Zeiler & Fergus 2013, without their contrast
normalisation) followed by one linear classifier, trained with labels by cross-entropy. The
blocks are ordinary ``nn.Conv2d`` / ``nn.ReLU`` / ``nn.MaxPool2d`` modules in one ``nn.Sequential``,
so the deconvnet rules of :mod:`vizkit.deconvnet` can follow them exactly as they follow a user's
wrapped network.

Layers: ``conv1`` (rectified map before pooling), ``pool1``, ``conv2``, ``pool2``, ... and
``logits`` (the classifier's output; its softmax is the class probability the occlusion and
invariance probes plot).

``--keep-epochs 1,2,5`` keeps a copy of the parameters at the end of those epochs inside the
model (a buffer, so the checkpoint stays one ``weights_only`` file); :meth:`ConvNet.epoch_models`
rebuilds them for the ``evolution`` probe (Zeiler & Fergus Fig. 4).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import capabilities as caps
from ..epoch_means import EpochMeans
from ..errors import DataError, OptionError
from ..model import LayerInfo, Weights, layer_info
from ..options import Option
from .base import ReferenceModel
from .registration import EPOCH_SNAPSHOTS


def _int_list(text: Any, name: str, *, minimum: int) -> list[int]:
    """``"8,16"`` → ``[8, 16]``; an empty string is the empty list."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise OptionError(f"--{name} must be comma-separated integers (e.g. 8,16), got {text!r}") from None
    if any(v < minimum for v in values):
        raise OptionError(f"--{name} values must be at least {minimum}, got {text!r}")
    return values


class ConvNet(ReferenceModel):
    kind = "convnet"
    summary = "conv-ReLU-maxpool blocks + linear classifier, trained with labels (Zeiler-Fergus probes)"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, EPOCH_SNAPSHOTS})
    train_options = (
        Option("channels", str, "16,32", "output channels of each conv block, comma-separated"),
        Option("kernel", int, 5, "convolution kernel side (padding keeps the map size)", min=1, max=31),
        Option("pool", int, 2, "max-pool window and stride", min=1, max=8),
        Option("lr", float, 1e-3, "Adam learning rate", min=0.0),
        Option("keep_epochs", str, "", "epochs (1-based, comma-separated) whose parameters are kept in the "
               "checkpoint for the evolution probe, e.g. 1,2,5"),
    )
    stored_options = (Option("classes", int, 10, "classifier outputs (from the dataset's labels)", min=1,
                             max=1_000_000),)

    def __init__(
        self,
        input_shape: list[int],
        classes: int = 10,
        channels: str = "16,32",
        kernel: int = 5,
        pool: int = 2,
        lr: float = 1e-3,
        keep_epochs: str = "",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_means = EpochMeans()
        widths = _int_list(channels, "channels", minimum=1)
        self.sizes = _check_geometry(input_shape, widths, kernel, pool)
        blocks: list[nn.Module] = []
        self.layer_slices: dict[str, int] = {}  # layer name -> number of `features` modules that produce it
        in_ch = int(input_shape[0])
        for i, width in enumerate(widths, start=1):
            blocks += [nn.Conv2d(in_ch, width, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(pool)]
            self.layer_slices[f"conv{i}"] = len(blocks) - 1
            self.layer_slices[f"pool{i}"] = len(blocks)
            in_ch = width
        self.features = nn.Sequential(*blocks)
        side_h, side_w = self.sizes[-1]
        self.classifier = nn.Linear(in_ch * side_h * side_w, classes)
        self.widths = widths
        kept = sorted(set(_int_list(keep_epochs, "keep_epochs", minimum=1)))
        n_params = sum(p.numel() for p in self.parameters())
        self.register_buffer("kept_epochs", torch.tensor(kept, dtype=torch.long))
        self.register_buffer("snapshots", torch.zeros(len(kept), n_params))
        self.register_buffer("snapshot_done", torch.zeros(len(kept), dtype=torch.bool))

    # -- the model ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        return self.classifier(self.features(x).flatten(1))

    def layer_infos(self) -> dict[str, LayerInfo]:
        infos: dict[str, LayerInfo] = {}
        for i, width in enumerate(self.widths, start=1):
            infos[f"conv{i}"] = LayerInfo(f"conv{i}", (width, *self.sizes[2 * i - 2]))
            infos[f"pool{i}"] = LayerInfo(f"pool{i}", (width, *self.sizes[2 * i - 1]))
        infos["logits"] = LayerInfo("logits", (self.hparams["classes"],))
        return infos

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        layer_info(self, layer)
        x = x.reshape(x.shape[0], *self.input_shape)
        if layer == "logits":
            return self(x)
        return self.features[: self.layer_slices[layer]](x)

    def activations_all(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Several layers from one pass that stops at the deepest of them (occlusion reads a unit
        layer and the logits of every occluded copy); the values :meth:`activations` gives."""
        for name in layers:
            layer_info(self, name)
        at = {self.layer_slices[name]: name for name in layers if name != "logits"}
        depth = len(self.features) if "logits" in layers else max(at, default=0)
        h = x.reshape(x.shape[0], *self.input_shape)
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features[:depth], start=1):
            h = module(h)
            if i in at:
                out[at[i]] = h
        if "logits" in layers:
            out["logits"] = self.classifier(h.flatten(1))
        return {name: out[name] for name in layers}

    def weights(self, layer: str) -> Weights:
        """The convolution filters feeding ``conv<i>``/``pool<i>`` ([out, in, k, k]; ``input`` for block 1)
        or the classifier matrix feeding ``logits``."""
        layer_info(self, layer)
        if layer == "logits":
            return Weights(self.classifier.weight.detach(), f"pool{len(self.widths)}")
        block = int(layer.removeprefix("conv").removeprefix("pool"))
        conv = self.features[3 * (block - 1)]
        return Weights(conv.weight.detach(), "input" if block == 1 else f"pool{block - 1}")

    # -- kept epochs ----------------------------------------------------------------------------
    def epoch_models(self) -> dict[int, ConvNet]:
        """``{epoch: model}`` for every kept epoch that training reached, plus nothing else."""
        out: dict[int, ConvNet] = {}
        for row, epoch in enumerate(self.kept_epochs.tolist()):
            if not bool(self.snapshot_done[row]):
                continue
            copy = type(self)(**dict(self.hparams))
            torch.nn.utils.vector_to_parameters(self.snapshots[row].clone(), copy.parameters())
            copy.data_info, copy.metrics = dict(self.data_info), dict(self.metrics)
            out[int(epoch)] = copy.eval()
        return out

    def on_train_epoch_end(self) -> None:
        self.train_means.log(self, prog_bar={"train_loss"})
        epoch = self.current_epoch + 1
        hits = (self.kept_epochs == epoch).nonzero().flatten()
        if len(hits):
            with torch.no_grad():  # reshape, not view: the filters are channels_last while training
                self.snapshots[hits[0]] = torch.cat([p.detach().reshape(-1) for p in self.parameters()])
                self.snapshot_done[hits[0]] = True

    # -- Lightning ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Ask the data module for ``(inputs, labels)`` batches, and train with the filters
        channels_last: on a CPU the default layout's max-pooling alone cost as much as the forward
        convolutions, and the whole update runs 1.3x faster this way (benchmarks/train_step_rate.py)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            datamodule.with_labels = True
        if stage == "fit":
            self.to(memory_format=torch.channels_last)

    def on_train_start(self) -> None:
        """Give a resumed run's optimiser state the filters' layout: a checkpoint written in the
        ordinary layout (before vizkit trained channels_last) would otherwise be read by the fused
        update as raw memory in the wrong order, silently (tests/test_convnet.py)."""
        for optimizer in self.trainer.optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                        state[key] = torch.empty_like(param).copy_(value)

    def on_fit_end(self) -> None:
        """Back to the ordinary layout, so the checkpoint and the probes see plain tensors."""
        self.to(memory_format=torch.contiguous_format)

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, tuple | list):
            raise DataError("convnet needs (inputs, labels) batches; its data has no labels")
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, acc = self._step(batch)
        self.train_means.add(len(batch[0]), train_loss=loss, train_acc=acc)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc = self._step(batch)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_acc", acc, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"], fused=True)  # one pass per tensor

    def after_stage(self, stage: int, trainer: Any, datamodule: Any) -> None:
        """Test accuracy of the final model (and of every kept epoch) into the checkpoint's metrics."""
        test = datamodule.test_tensor()
        labels = datamodule.test_labels().to(torch.long)
        device = next(self.parameters()).device

        def accuracy(model: ConvNet) -> float:
            model.to(device).eval()
            with torch.no_grad():
                hits = sum(int((model(x.to(device)).argmax(1) == y.to(device)).sum())
                           for x, y in zip(test.split(500), labels.split(500), strict=True))
            return hits / len(labels)

        self.metrics["test"] = {"accuracy": accuracy(self), "n": len(labels)}
        self.metrics["kept_epochs"] = {str(e): {"test_accuracy": accuracy(m)} for e, m in self.epoch_models().items()}
        self.train()

    @classmethod
    def hparams_from_options(cls, options, *, input_shape, data, lr):  # type: ignore[override]
        hp = super().hparams_from_options(options, input_shape=input_shape, data=data, lr=lr)
        classes = (data.get("stats") or {}).get("n_classes")
        if not classes:
            raise DataError(f"convnet trains with labels, and dataset {data.get('name')!r} has none "
                            "(mnist, digits and photos have labels)")
        hp["classes"] = int(classes)
        _check_geometry(hp["input_shape"], _int_list(hp["channels"], "channels", minimum=1), hp["kernel"], hp["pool"])
        _int_list(hp["keep_epochs"], "keep_epochs", minimum=1)
        return hp


def _check_geometry(input_shape: list[int], widths: list[int], kernel: int, pool: int) -> list[tuple[int, int]]:
    """Map sizes after each conv and pool; refuse inputs the blocks would shrink to nothing."""
    if len(input_shape) != 3:
        raise OptionError(f"convnet needs image inputs [channels, height, width], got shape {list(input_shape)}")
    if not widths:
        raise OptionError("--channels must name at least one conv block (e.g. 16,32)")
    if kernel % 2 == 0:
        raise OptionError(f"--kernel must be odd so padding keeps the map size, got {kernel}")
    h, w = int(input_shape[1]), int(input_shape[2])
    sizes = []
    for i in range(len(widths)):
        sizes.append((h, w))
        h, w = h // pool, w // pool
        if h < 1 or w < 1:
            raise OptionError(f"{len(widths)} blocks with --pool {pool} shrink {input_shape[1]}x{input_shape[2]} "
                              f"inputs to nothing at block {i + 1}; use fewer --channels or a smaller --pool")
        sizes.append((h, w))
    return sizes
