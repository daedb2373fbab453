"""Your own model from the command line: --module pkg.mod:Factory --weights w.pt --input-shape C,H,W."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vizkit
from tests.test_safety import one_line

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


def small():
    return Net()


def not_a_module():
    return 42
'''


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_vizkit_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("mypkg_vizkit_test.nets", None)
    torch.manual_seed(0)
    from mypkg_vizkit_test.nets import Net

    net = Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    yield tmp_path, net
    sys.modules.pop("mypkg_vizkit_test.nets", None)
    sys.modules.pop("mypkg_vizkit_test", None)


def test_probe_a_users_own_model(fresh_host, user_model, cli):
    tmp_path, net = user_model
    res = cli("probe", "--probe", "filters", "--module", "mypkg_vizkit_test.nets:Net", "--weights", tmp_path / "net.pt",
              "--input-shape", "1,8,8", "--layer", "conv1", "--out", tmp_path / "o")
    assert res.code == 0, res.err
    model = vizkit.load_module("mypkg_vizkit_test.nets:small", tmp_path / "net.pt", "1,8,8")
    assert torch.equal(model.module.conv1.weight, net.conv1.weight)  # the weights were loaded
    assert model.source["sha256"] and list(model.layer_infos()) == ["conv1", "conv2", "fc"]


@pytest.mark.parametrize("args, code, fragment", [
    (("--module", "mypkg_vizkit_test.nets"), 2, "must look like package.module:Factory"),
    (("--module", "nope_vizkit_pkg.x:Net"), 2, "cannot import 'nope_vizkit_pkg.x'"),
    (("--module", "mypkg_vizkit_test.nets:Missing"), 2, "has no 'Missing'"),
    (("--module", "mypkg_vizkit_test.nets:not_a_module"), 2, "not a torch.nn.Module"),
    (("--module", "mypkg_vizkit_test.nets:Net", "--input-shape", "1,x"), 2, "--input-shape must be"),
    (("--module", "mypkg_vizkit_test.nets:Net", "--input-shape", "3,8,8"), 2, "cannot run on inputs of shape (3, 8, 8)"),
    (("--module", "mypkg_vizkit_test.nets:Net"), 2, "--input-shape is required"),
    (("--weights", "net.pt"), 2, "go with --module"),
])
def test_module_mistakes_are_one_line(fresh_host, user_model, cli, args, code, fragment):
    tmp_path, _ = user_model
    extra = () if "--input-shape" in args or "--weights" in args or fragment.startswith("--input-shape is") \
        else ("--input-shape", "1,8,8")
    res = cli("probe", "--probe", "filters", *args, *extra, "--layer", "conv1", "--out", tmp_path / "o")
    one_line(res, code, fragment)
    assert not (tmp_path / "o").exists()


def test_weights_that_do_not_fit_the_module_are_exit_1(fresh_host, user_model, cli):
    tmp_path, _ = user_model
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
    res = cli("probe", "--probe", "filters", "--module", "mypkg_vizkit_test.nets:Net", "--weights",
              tmp_path / "other.pt", "--input-shape", "1,8,8", "--layer", "conv1", "--out", tmp_path / "o")
    one_line(res, 1, "does not fit mypkg_vizkit_test.nets:Net")


def test_a_plain_state_dict_given_as_checkpoint_says_what_to_do(fresh_host, user_model, cli):
    tmp_path, _ = user_model
    res = cli("probe", "--probe", "filters", tmp_path / "net.pt", "--layer", "conv1", "--out", tmp_path / "o")
    one_line(res, 1, "plain state dict", "--module yourpkg.module:Factory --weights")


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resnet-gallery"


@pytest.fixture
def example_resnet(tmp_path, monkeypatch):
    """The example's torchvision-style ResNet-18 (width 16), named as a user names it, with 12 images."""
    monkeypatch.chdir(EXAMPLE)
    sys.modules.pop("mynets", None)
    images = np.random.default_rng(0).random((12, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "mine.npy", images)
    yield tmp_path
    sys.modules.pop("mynets", None)


def test_inspect_lists_blocks_and_each_call_of_a_shared_relu(fresh_host, example_resnet, cli):
    res = cli("inspect", "--module", "mynets:resnet18", "--input-shape", "3,64,64")
    assert res.code == 0, res.err
    lines = {line.split()[0]: line for line in res.out.splitlines() if line.startswith("  ")}
    assert "shape (64, 4, 4)" in lines["layer3"] and "shape (64, 4, 4)" in lines["layer3.1"]
    assert "layer1.0.relu#1" in lines and "layer1.0.relu#2" in lines and "layer1.0.relu" not in lines
    assert "shape (128,)" not in lines["fc"] and "shape (7,)" in lines["fc"]
    assert "actmax" in res.out and "topk" not in res.out  # what runs without data of the user's


def test_probe_a_block_layer_from_the_cli(fresh_host, example_resnet, cli):
    out = example_resnet / "o"
    res = cli("probe", "--probe", "topk", "--module", "mynets:resnet18", "--input-shape", "3,64,64",
              "--layer", "layer2", "--units", "0:3", "-o", "data", example_resnet / "mine.npy", "-o", "k", "4",
              "--out", out)
    assert res.code == 0, res.err
    meta = json.loads((out / "result.json").read_text())
    assert meta["layer"] == "layer2" and meta["layer_shape"] == [32, 8, 8]
    res = cli("probe", "--probe", "topk", "--module", "mynets:resnet18", "--input-shape", "3,64,64",
              "--layer", "layer1.0.relu#2", "--units", "0:2", "-o", "data", example_resnet / "mine.npy",
              "-o", "k", "2", "--out", example_resnet / "o2")
    assert res.code == 0, res.err


@pytest.mark.parametrize("layer, fragment", [
    ("layer9", "unknown layer 'layer9'"),
    ("layer1.0.relu", "runs 2 times in one forward pass; name one call: layer1.0.relu#1, layer1.0.relu#2"),
    ("layer1.0.relu#3", "unknown layer 'layer1.0.relu#3'"),
])
def test_bad_layers_of_a_module_are_one_line(fresh_host, example_resnet, cli, layer, fragment):
    res = cli("probe", "--probe", "topk", "--module", "mynets:resnet18", "--input-shape", "3,64,64",
              "--layer", layer, "-o", "data", example_resnet / "mine.npy", "--out", example_resnet / "o")
    one_line(res, 2, fragment)
    assert not (example_resnet / "o").exists()


def test_crops_asked_for_after_global_pooling_are_one_line(fresh_host, example_resnet, cli):
    common = ("--module", "mynets:resnet18", "--input-shape", "3,64,64", "-o", "data", example_resnet / "mine.npy",
              "-o", "crop", "yes", "--out", example_resnet / "o")
    one_line(cli("probe", "--probe", "topk", "--layer", "avgpool", *common), 2,
             "-o crop yes: after a global pooling there is no local field")
    one_line(cli("probe", "--probe", "topk", "--layer", "fc", *common), 2, "-o crop yes needs a map of positions")
    assert not (example_resnet / "o").exists()
    res = cli("probe", "--probe", "topk", "--layer", "layer1", "--units", "0:2", "-o", "k", "3", *common)
    assert res.code == 0, res.err  # a local field: crops, as asked
    meta = json.loads((example_resnet / "o" / "result.json").read_text())
    assert meta["receptive_field"]["size"] == [43, 43] and "note" not in meta["receptive_field"]
