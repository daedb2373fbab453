"""vizkit.wrap: any module becomes probe-able, and is left exactly as it was."""

import pytest
import torch
from torch import nn

import vizkit
from vizkit.errors import UnknownNameError


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5),
        nn.Sequential(nn.Conv2d(4, 5, 3), nn.ReLU()), nn.Flatten(), nn.Linear(5 * 6 * 6, 7),
    )


def test_layers_shapes_and_units():
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8), layers=["0", "3.0", "5"])
    infos = model.layer_infos()
    assert infos["0"].shape == (4, 8, 8) and infos["0"].n_units == 4 and infos["0"].is_map
    assert infos["3.0"].shape == (5, 6, 6)
    assert infos["5"].shape == (7,) and infos["5"].n_units == 7


def test_default_layers_are_the_leaves():
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8))
    assert list(model.layer_infos()) == ["0", "1", "2", "3.0", "3.1", "4", "5"]


def test_hooks_removed_and_modes_restored():
    net = convnet()
    net.train()
    model = vizkit.wrap(net, input_shape=(3, 8, 8), layers=["2", "5"])
    x = torch.rand(2, 3, 8, 8)
    a = model.activations(x, "2")
    b = model.activations(x, "2")
    assert torch.equal(a, b)  # dropout was off: eval mode during the pass
    assert net.training and all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())


def test_hooks_removed_even_when_forward_fails():
    net = convnet()
    model = vizkit.wrap(net, input_shape=(3, 8, 8), layers=["5"])
    with pytest.raises(RuntimeError):
        model.activations(torch.rand(2, 3, 9, 9), "5")
    assert all(not m._forward_hooks for m in net.modules())


def test_unit_activations_are_channel_means_for_maps():
    net = convnet()
    model = vizkit.wrap(net, input_shape=(3, 8, 8), layers=["0"])
    x = torch.rand(2, 3, 8, 8)
    full = net[0](x)
    got = vizkit.unit_activations(model, x, "0", torch.tensor([1, 3]))
    assert torch.allclose(got, full[:, [1, 3]].mean(dim=(2, 3)))
    at = vizkit.unit_activations(model, x, "0", torch.tensor([2]), position=(4, 5))
    assert torch.allclose(at[:, 0], full[:, 2, 4, 5])
    paired = vizkit.paired_unit_activations(model, x, "0", torch.tensor([1, 3]))
    assert torch.allclose(paired, torch.stack([full[0, 1].mean(), full[1, 3].mean()]))


def test_gradients_flow_to_the_input():
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8), layers=["5"])
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    model.activations(x, "5")[0, 2].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_layer_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown layer 'nope'.*valid: 0, 1, 2, 3, 3.0"):
        vizkit.wrap(convnet(), input_shape=(3, 8, 8), layers=["nope"])
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8), layers=["0"])
    with pytest.raises(UnknownNameError, match="valid layers: 0"):
        model.activations(torch.rand(1, 3, 8, 8), "5")


def test_weights_capability_and_source():
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8), layers=["0", "3.0"])
    assert "weights" in model.capabilities
    assert model.weights("0").source == "input" and model.weights("0").matrix.shape == (4, 3, 3, 3)
    assert model.weights("3.0").source == "previous"
    relu_only = vizkit.wrap(nn.Sequential(nn.ReLU()), input_shape=(4,), layers=["0"])
    assert "weights" not in relu_only.capabilities
