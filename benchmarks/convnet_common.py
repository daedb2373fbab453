"""The untrained MNIST-shaped ConvNet that the probe-speed benchmarks time.

Timing needs no training, only a fixed seed (every run times the same weights) and a data
description naming MNIST, so that probes reading the model's own examples find them.
"""

from __future__ import annotations

from typing import Any


def untrained_mnist_convnet(channels: str) -> Any:
    import torch

    from vizkit.models.convnet import ConvNet

    torch.manual_seed(0)
    model = ConvNet(input_shape=[1, 28, 28], classes=10, channels=channels).eval()
    model.data_info = {"name": "mnist", "options": {}, "seed": 0}
    return model
