"""EpochMeans: the epoch means a model logs once, weighted by batch size as Lightning's are."""

from __future__ import annotations

import pytest
import torch

from vizkit.epoch_means import EpochMeans


class Logged:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, bool]] = []

    def log(self, name: str, value: torch.Tensor, prog_bar: bool = False) -> None:
        self.calls.append((name, float(value), prog_bar))


def test_means_are_weighted_by_batch_size_and_start_again_after_logging():
    means, module = EpochMeans(), Logged()
    loss = torch.tensor(2.0, requires_grad=True)
    means.add(100, loss=loss * 1, acc=torch.tensor(0.5))
    means.add(50, loss=torch.tensor(5.0), acc=torch.tensor(1.0))  # a short last batch counts less
    means.log(module, prog_bar={"loss"})
    assert module.calls == [("loss", pytest.approx(3.0), True), ("acc", pytest.approx(2 / 3), False)]
    means.add(10, loss=torch.tensor(7.0), acc=torch.tensor(0.0))
    means.log(module)
    assert module.calls[2:] == [("loss", pytest.approx(7.0), False), ("acc", 0.0, False)]
    means.log(module)  # an epoch without steps logs nothing
    assert len(module.calls) == 4


def test_values_are_detached_and_not_aliased():
    means, module = EpochMeans(), Logged()
    value = torch.tensor(1.0, requires_grad=True)
    means.add(1, loss=value)
    value.data.fill_(100.0)  # the step's own tensor changing later does not change the sum
    means.add(1, loss=torch.tensor(3.0))
    means.log(module)
    assert module.calls == [("loss", pytest.approx(2.0), False)]
