"""Shared machinery of the reference models: checkpoints, options and training stages.

A reference model is rebuilt from ``kind`` + primitive ``hparams`` + a state dict, which is what
makes a checkpoint safe to load (no pickled classes) and lets Lightning checkpoints load too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch

from ..checkpoint import HparamError, check_hparams, check_input_shape, make_checkpoint
from ..model import LayerInfo, VizModel, layer_info
from ..options import Option, resolve_options

TrainOption = Option


class ReferenceModel(VizModel, pl.LightningModule):
    """Base of the models ``vizkit train`` builds.

    ``train_options`` declares the model-specific ``vizkit train KIND --name value`` flags; they
    become the hyperparameters stored in the checkpoint. ``stages()`` names greedy layer-wise
    training stages; the harness runs one Lightning ``fit`` per stage after ``set_stage``.
    """

    train_options: ClassVar[tuple[Option, ...]] = ()
    #: hyperparameters set from the data rather than by a flag (e.g. convnet's ``classes``), declared
    #: so that a checkpoint's value is checked like a flag's before the model is built
    stored_options: ClassVar[tuple[Option, ...]] = ()
    summary: ClassVar[str] = ""
    #: ``{dataset name: {option: value}}``: dataset options this kind needs by default (e.g. ZCA
    #: whitening for patches); ``-D KEY=VALUE`` still wins.
    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.data_info: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.stage = 0

    @classmethod
    def hparams_from_options(
        cls, options: Mapping[str, Any], *, input_shape: tuple[int, ...], data: Mapping[str, Any], lr: float | None
    ) -> dict[str, Any]:
        """Validate user options and add what the data dictates (shape, value range)."""
        resolved = resolve_options(cls.train_options, options, f"model {cls.kind!r}")
        resolved["input_shape"] = [int(s) for s in input_shape]
        if lr is not None:
            resolved["lr"] = float(lr)
        return resolved

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ReferenceModel:
        """The model a checkpoint describes, after its hyperparameters pass the declared options
        (:func:`~vizkit.checkpoint.check_hparams`): a file is data, and a value changed by hand
        must be one line, not an error deep inside the constructor or a different network."""
        hparams = ckpt["hparams"]
        check_hparams(hparams, cls.train_options + cls.stored_options)
        if "input_shape" in hparams:
            check_input_shape(hparams["input_shape"])
        try:
            model = cls(**hparams)
        except (ArithmeticError, IndexError) as exc:  # values each valid alone but not together
            raise HparamError(f"its hyperparameters do not build the model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
        model.load_state_dict(ckpt["state_dict"])
        model.data_info = dict(ckpt.get("data") or {})
        model.metrics = dict(ckpt.get("metrics") or {})
        model.eval()
        return model

    def to_checkpoint(self) -> dict[str, Any]:
        return make_checkpoint(
            self.kind, dict(self.hparams), self.state_dict(), self.data_info, self.metrics
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make Lightning ``.ckpt`` files self-describing so ``vizkit.load`` accepts them."""
        checkpoint["vizkit"] = {
            "kind": self.kind,
            "hparams": dict(self.hparams),
            "data": self.data_info,
            "metrics": self.metrics,
            "stage": self.stage,
        }
        checkpoint.pop("hyper_parameters", None)

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(int(s) for s in self.hparams["input_shape"])

    def stages(self) -> list[str]:
        return ["train"]

    def set_stage(self, stage: int) -> None:
        self.stage = stage

    def stage_epochs(self, stage: int, epochs: int) -> int:
        """Epochs for ``stage`` given the user's ``--epochs`` (fine-tuning may differ)."""
        return epochs

    def after_stage(self, stage: int, trainer: pl.Trainer, datamodule: Any) -> None:
        """Hook for end-of-stage evaluation (e.g. log-likelihoods) recorded in ``self.metrics``."""

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class StackedLayers:
    """Layers ``h1`` … ``hN`` of a stack of dense layers whose widths are ``self.sizes[1:]``
    (``sizes[0]`` is the input): the naming the SDAE, RBM/DBN and ladder models share."""

    sizes: list[int]

    def layer_infos(self) -> dict[str, LayerInfo]:
        return {f"h{i + 1}": LayerInfo(f"h{i + 1}", (n,)) for i, n in enumerate(self.sizes[1:])}

    def _depth(self, layer: str) -> int:
        """How many layers of the stack ``layer`` lies above the input (refusing unknown names)."""
        layer_info(self, layer)  # type: ignore[arg-type]
        return int(layer[1:])

