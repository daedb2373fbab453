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


def test_default_layers_are_every_module_in_the_order_they_return():
    model = vizkit.wrap(convnet(), input_shape=(3, 8, 8))
    # the container "3" returns after its children; its output is theirs
    assert list(model.layer_infos()) == ["0", "1", "2", "3.0", "3.1", "3", "4", "5"]
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(model.activations(x, "3"), model.activations(x, "3.1"))


class SharedRelu(nn.Module):
    """A residual block that calls one ``relu`` twice (as torchvision's BasicBlock does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        return self.relu(self.conv2(h) + x)


def test_a_module_called_twice_is_offered_per_call_and_its_bare_name_refused():
    torch.manual_seed(0)
    net = SharedRelu()
    model = vizkit.wrap(net, input_shape=(2, 6, 6))
    assert "relu#1" in model.layer_infos() and "relu#2" in model.layer_infos()
    assert "relu" not in model.layer_infos()
    x = torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        first = torch.relu(net.conv1(x))
        second = torch.relu(net.conv2(first) + x)
        got = model.activations_all(x, ["relu#1", "relu#2", "conv2"])
    assert torch.allclose(got["relu#1"], first) and torch.allclose(got["relu#2"], second)
    assert torch.allclose(got["conv2"], net.conv2(first))  # read before the in-place relu ran on it
    with pytest.raises(UnknownNameError, match=r"runs 2 times.*relu#1, relu#2"):
        model.activations(x, "relu")
    with pytest.raises(UnknownNameError, match=r"runs 2 times"):
        vizkit.wrap(net, input_shape=(2, 6, 6), layers=["relu"])
    with pytest.raises(UnknownNameError, match="no call 3"):
        vizkit.wrap(net, input_shape=(2, 6, 6), layers=["relu#3"])
    only = vizkit.wrap(net, input_shape=(2, 6, 6), layers=["relu#2"])
    assert torch.allclose(only.activations(x, "relu#2"), second)


def test_activations_all_is_one_forward_pass_stopped_at_the_deepest_layer():
    calls = []
    net = convnet()
    for name, sub in net.named_modules():
        if name:
            sub.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    model = vizkit.wrap(net, input_shape=(3, 8, 8))
    calls.clear()
    x = torch.rand(2, 3, 8, 8)
    got = model.activations_all(x, ["0", "3.0"])
    assert calls == ["0", "1", "2", "3.0"]  # once each, nothing after the deepest wanted layer
    assert torch.equal(got["0"], model.activations(x, "0"))


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


def test_a_float64_module_wraps_and_runs_in_float64():
    """Layer discovery feeds the module its own dtype (it used to send float32 to a .double() net)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    model = vizkit.wrap(net, input_shape=(3, 2, 2))
    assert model.layer_infos()["1"].shape == (3,)
    assert model.activations(torch.zeros(2, 3, 2, 2, dtype=torch.float64), "1").dtype == torch.float64
