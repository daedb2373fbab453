"""One clear line and the right exit code for each class of mistake that used to be a traceback:
devices, seeds, units, learning rates, damaged checkpoints, hostile sizes, recipes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import vizkit
from tests.test_safety import one_line, tree
from vizkit.errors import CheckpointError, UnitError, UsageError


def probe(cli, ckpt: Path, out: Path, *extra: str):
    return cli("probe", "--probe", "filters", ckpt, "--layer", "h1", "--out", out, *extra)


@pytest.mark.parametrize("extra, fragment", [
    (("--device", "banana"), "unknown device 'banana'"),
    (("--device", "cuda:banana"), "unknown device"),
    (("--device", "tpu"), "unknown device"),
    (("--seed", str(2**64)), "--seed"),
    (("--seed", str(2**32)), "--seed"),
    (("--units", "99999999999999999999"), "out of range"),
    (("--units", "²"), "malformed units"),
    (("--units", "0:99999999999999999999999"), "reach past the layer"),
    (("--devices", "banana"), "--devices must be a count"),
])
def test_probe_flags(fresh_host, sdae_ckpt, tmp_path, cli, extra, fragment):
    one_line(probe(cli, sdae_ckpt, tmp_path / "o", *extra), 2, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(fresh_host, sdae_ckpt, tmp_path, cli):
    one_line(probe(cli, sdae_ckpt, tmp_path / "o", "--device", "cuda"), 2, "no CUDA GPU is available")
    one_line(cli("train", "sdae", "--data", "digits", "--accelerator", "gpu", "--out", tmp_path / "m.pt"), 2,
             "cannot train with --accelerator gpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdae.pt"]


@pytest.mark.parametrize("extra, fragment", [
    (("--seed", str(2**32)), "--seed"),
    (("--seed", str(2**64)), "--seed"),
    (("--lr", "nan"), "finite number above 0"),
    (("--lr", "inf"), "finite number above 0"),
    (("--lr", "-1"), "finite number above 0"),
    (("--devices", "banana"), "--devices must be a count"),
])
def test_train_flags(fresh_host, tmp_path, cli, extra, fragment):
    one_line(cli("train", "sdae", "--data", "digits", "--out", tmp_path / "m.pt", "--log-dir", tmp_path / "logs",
                 *extra), 2, fragment)
    assert list(tmp_path.iterdir()) == []


def test_train_out_that_cannot_be_created_fails_before_training(fresh_host, tmp_path, cli):
    res = cli("train", "sdae", "--data", "digits", "--out", "/proc/vizkit-x.pt", "--log-dir", tmp_path / "logs")
    one_line(res, 2, "cannot write /proc/vizkit-x.pt")
    assert not (tmp_path / "logs").exists()


def test_python_api_checks_seed_and_units(fresh_host, sdae_ckpt):
    model = vizkit.load(sdae_ckpt)
    with pytest.raises(UsageError, match="seed must be an integer from 0 to"):
        vizkit.run_probe("filters", model, "h1", seed=2**64)
    with pytest.raises(UnitError, match="must be integers"):
        vizkit.run_probe("filters", model, "h1", units=np.array([0.5]))
    result = vizkit.run_probe("filters", model, "h1", units=range(2, 5))
    assert result.meta["units"] == [2, 3, 4]
    assert vizkit.run_probe("filters", model, "h1", units=np.arange(3)).meta["units"] == [0, 1, 2]


def _damaged(sdae_ckpt: Path, tmp_path: Path, change) -> Path:
    ckpt = torch.load(sdae_ckpt, weights_only=True)
    ckpt = copy.deepcopy(ckpt)
    change(ckpt)
    path = tmp_path / "damaged.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("change, fragment", [
    (lambda c: c.__setitem__("state_dict", [1, 2]), "'state_dict' must be a dict of named tensors"),
    (lambda c: c.__setitem__("kind", 5), "'kind' must be a string"),
    (lambda c: c.__setitem__("hparams", "x"), "'hparams' must be a dict"),
    (lambda c: c["data"].__setitem__("stats", "x"), "'data.stats' must be a dict"),
    (lambda c: c["hparams"].__setitem__("layers", "abc"), "does not match model kind 'sdae'"),  # file's fault: 1
    (lambda c: c["hparams"].__setitem__("layers", "100000,100000"), "refused before allocating"),
    (lambda c: c["hparams"].__setitem__("layers", "6,5"), "does not match model kind 'sdae'"),
])
def test_damaged_checkpoints_are_one_line_exit_1(fresh_host, sdae_ckpt, tmp_path, cli, change, fragment):
    path = _damaged(sdae_ckpt, tmp_path, change)
    one_line(cli("inspect", path), 1, fragment)
    one_line(probe(cli, path, tmp_path / "o"), 1, fragment)
    assert not (tmp_path / "o").exists()


def test_a_plain_state_dict_points_to_module_and_weights(fresh_host, tmp_path, cli):
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    one_line(cli("inspect", path), 1, "plain state dict", "--module", "--weights")
    with pytest.raises(CheckpointError, match="--module"):
        vizkit.load(path)


RECIPE = """
[[model]]
name = "m"
kind = "sdae"
data = "digits"
options = {{ layers = "8,4" }}

[[probe]]
model = "m"
probe = "filters"
layers = [{layers}]
"""


def test_a_misspelt_recipe_layer_is_one_line_not_an_empty_gallery(fresh_host, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(layers='"hl"'))
    res = cli("gallery", "build", recipe, "--out", tmp_path / "site", "-q")
    one_line(res, 2, "names layer 'hl', which the model does not have", "h1, h2")
    assert not (tmp_path / "site" / "index.html").exists()
    page_dirs = [p for p in (tmp_path / "site").iterdir() if p.name not in ("models", "logs")]
    assert page_dirs == []  # the model was trained (and is kept for the re-run); no probe was written
    assert all(".." not in k for k in tree(tmp_path / "site"))


def test_probe_out_that_cannot_be_created_is_exit_2_before_compute(fresh_host, sdae_ckpt, tmp_path, cli):
    one_line(probe(cli, sdae_ckpt, Path("/proc/vizkit-out")), 2, "cannot write to --out /proc/vizkit-out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdae.pt"]
