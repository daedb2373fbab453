"""Shared set-up of the RBM benchmarks: binarised MNIST and a per-epoch timer for Lightning fits."""

from __future__ import annotations

import logging
import time
import warnings

import pytorch_lightning as pl
import torch


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def binarised_mnist(data_dir: str | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) MNIST as 0/1 float32 ``[N, 1, 28, 28]``, each pixel sampled once with ``seed``.

    Every contender trains and is evaluated on exactly these tensors.
    """
    from vizkit.datasets import mnist

    dm = mnist.build(data_dir=data_dir, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    train = (torch.rand(dm.train_tensor().shape, generator=gen) < dm.train_tensor()).float()
    test = (torch.rand(dm.test_tensor().shape, generator=gen) < dm.test_tensor()).float()
    return train, test


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (inside ``fit``: no start-up, no teardown)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._start)


def fit_vizkit_rbm(train: torch.Tensor, test: torch.Tensor, *, hidden: int, epochs: int, batch_size: int,
                   lr: float, trainer: str = "pcd", seed: int = 0, progress: bool = False,
                   **options) -> tuple[object, list[float]]:
    """Train a vizkit ``rbm`` with Lightning as ``vizkit train`` does; returns (model, epoch times)."""
    from vizkit.datasets.base import VizDataModule
    from vizkit.models.rbm import RBM

    pl.seed_everything(seed, verbose=False)
    dm = VizDataModule("mnist-binarised", train, test, batch_size=batch_size, seed=seed)
    model = RBM(input_shape=list(train.shape[1:]), hidden=hidden, trainer=trainer, lr=lr,
                **{"loglik": "none", **options})
    model.data_info = dm.describe()
    timer = EpochTimer()
    fit = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                     enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    fit.fit(model, datamodule=dm)
    model.eval()
    return model, timer.times
