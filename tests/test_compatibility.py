"""What listings offer is what runs: on a user's own branching (ResNet-shaped) module, with and
without a data file of theirs, every probe ``vizkit.compatible_probes`` lists runs on every layer
``Probe.can_run`` accepts, and the ones it leaves out are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.errors import CapabilityError


class Block(nn.Module):
    """A residual block with a strided 1x1 projection on the skip path (the paths merge by addition)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.act = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.down = nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.act(self.conv1(x))) + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 5, 1, 2)
        self.relu = nn.ReLU()
        self.layer1 = Block(4, 6, 2, act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer1(self.relu(self.stem(x)))).flatten(1))


def resnet(act: type[nn.Module] = nn.ReLU) -> vizkit.WrappedModel:
    torch.manual_seed(0)
    return vizkit.wrap(TinyResNet(act).eval(), input_shape=(1, 16, 16))


@pytest.fixture
def user_file(tmp_path) -> tuple[str, np.ndarray]:
    images = np.random.default_rng(0).random((40, 1, 16, 16), dtype=np.float32)
    path = tmp_path / "mine.npy"
    np.save(path, images)
    return str(path), images


def runs_everywhere_it_is_listed(model, options: dict, fresh_host) -> list[str]:
    listed = vizkit.compatible_probes(model)
    for name in listed:
        probe_cls = fresh_host.probe(name)
        own = {k: v for k, v in options.items() if k in {o.name for o in probe_cls.options}}
        layer = next(layer for layer in probe_cls.valid_layers(model) if probe_cls.can_run(model, layer))
        result = vizkit.run_probe(name, model, layer, units="0:2", show_progress=False, **own)
        assert result.arrays, name
    return listed


def test_without_data_only_what_needs_no_examples_is_offered(fresh_host):
    model = resnet()
    listed = runs_everywhere_it_is_listed(model, {}, fresh_host)
    assert {"actmax", "filters", "gabor"} <= set(listed)
    # no examples on record: not offered, and refused with the reason when asked for
    for name in ("topk", "deconv", "occlusion", "invcurves", "gamma"):
        assert name not in listed
    with pytest.raises(CapabilityError, match="no training data on record; choose images with -o data"):
        vizkit.api.prepare_run("topk", model, "layer1.conv2")
    # 3x3 kernels of the block are no Gabor candidates; the 5x5 stem is
    assert not fresh_host.probe("gabor").can_run(model, "layer1.conv1")
    assert fresh_host.probe("gabor").can_run(model, "stem")
    # conv kernels are not input-sized images: lincomb offers no layer here
    assert fresh_host.probe("lincomb").valid_layers(model) == []


def test_with_the_users_file_the_example_probes_run_and_topk_is_the_brute_force_top(fresh_host, user_file):
    path, images = user_file
    model = resnet()
    listed = runs_everywhere_it_is_listed(model, {"data": path, "split": "all"}, fresh_host)
    assert "actmax" in listed
    topk = fresh_host.probe("topk")
    assert topk.can_run(model, "layer1.conv2", {**topk.default_options(), "data": path})
    result = vizkit.run_probe("topk", model, "layer1.conv2", units="0:3", data=path, split="all", k=5,
                              show_progress=False)
    with torch.no_grad():
        acts = vizkit.unit_activations(model, torch.from_numpy(images), "layer1.conv2", torch.arange(3))
    expected = torch.sort(acts, dim=0, descending=True).values[:5].T.numpy()
    assert np.allclose(result.arrays["values"], expected, atol=1e-5)


def test_deconv_is_offered_only_where_its_rule_can_follow_the_branches(fresh_host, user_file):
    path, _ = user_file
    deconv = fresh_host.probe("deconv")
    options = {**deconv.default_options(), "data": path}
    relu_net, tanh_net = resnet(), resnet(nn.Tanh)
    assert deconv.can_run(relu_net, "layer1.conv2", options)
    assert deconv.can_run(tanh_net, "layer1.conv1", options)  # below the Tanh
    assert not deconv.can_run(tanh_net, "layer1.conv2", options)  # through it
    assert "passes through Tanh" in deconv.refusal(tanh_net, "layer1.conv2", options)
    assert deconv.can_run(tanh_net, "layer1.conv2", {**options, "rule": "gradient"})
