"""A torchvision-style ResNet-18 (same module names: conv1, bn1, relu, maxpool, layer1-4, avgpool, fc).

torchvision is not a vizkit dependency, so the example carries its own copy of the architecture:
BasicBlocks whose one ``relu`` runs twice (vizkit offers ``layer1.0.relu#1`` and ``#2``), and
stride-2 1x1 ``downsample`` convolutions on the skip paths (the branches that defeat a naive
receptive-field walk). ``width`` 64 is torchvision's; the example uses 16 so it trains in a
minute on a laptop CPU.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout: a 7x7 stride-2 stem and max pooling, then one stage per entry of
    ``blocks`` (the first block of every stage after the first halves the map), global average
    pooling and a linear classifier. Stage widths are ``widths``, or ``width`` doubling per stage."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 7, width: int = 16,
                 widths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        widths = tuple(widths or (width * 2**i for i in range(len(blocks))))
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stages = [f"layer{i + 1}" for i in range(len(blocks))]
        c_in = widths[0]
        for i, (n, c_out) in enumerate(zip(blocks, widths, strict=True)):
            stage = [BasicBlock(c_in, c_out, 1 if i == 0 else 2)] + [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            setattr(self, self.stages[i], nn.Sequential(*stage))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor, upto: str = "") -> torch.Tensor:
        """The output of stage ``upto`` (default: the last stage)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
            if name == upto:
                break
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def resnet18(num_classes: int = 7, width: int = 16) -> ResNet:
    """What ``--module mynets:resnet18`` builds (then ``--weights`` fills it)."""
    return ResNet((2, 2, 2, 2), num_classes, width)
