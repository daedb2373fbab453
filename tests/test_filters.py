"""The ``filters`` probe and the result path: known answer, outputs, determinism, reuse."""

import json

import numpy as np
import torch
from torch import nn

import vizkit

from .conftest import make_sdae


def test_filters_equal_the_first_layer_weights(fresh_host):
    model = make_sdae()
    result = vizkit.run_probe("filters", model, "h1", units="1,3,5")
    expected = model.weight[0].detach()[[1, 3, 5]].reshape(3, 1, 8, 8).numpy()
    np.testing.assert_allclose(result.arrays["filters"], expected, rtol=1e-6)
    np.testing.assert_allclose(result.arrays["norms"], np.linalg.norm(expected.reshape(3, -1), axis=1), rtol=1e-5)
    assert result.arrays["units"].tolist() == [1, 3, 5]
    assert "filters" in result.figures and result.files == []


def test_filters_of_a_wrapped_convnet_are_its_kernels(fresh_host):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU())
    model = vizkit.wrap(net, input_shape=(3, 16, 16), layers=["0", "1"])
    result = vizkit.run_probe("filters", model, "0")
    np.testing.assert_allclose(result.arrays["filters"], net[0].weight.detach().numpy(), rtol=1e-6)


def test_written_files_and_metadata(fresh_host, sdae_ckpt, tmp_path):
    model = vizkit.load(sdae_ckpt)
    out = tmp_path / "out"
    result = vizkit.run_probe("filters", model, "h1", units="0:4", out=out, seed=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["arrays.npz", "filters.png", "index.html", "result.json"]
    assert sorted(p.name for p in result.files) == names
    meta = json.loads((out / "result.json").read_text())
    assert meta["probe"] == "filters" and meta["layer"] == "h1" and meta["units"] == [0, 1, 2, 3]
    assert meta["seed"] == 3 and meta["options"] == {"columns": 0, "order": "index", "scale": "unit"}
    assert meta["model"]["kind"] == "sdae" and len(meta["model"]["checkpoint"]["sha256"]) == 64
    assert meta["data"] == "digits" and set(meta["versions"]) >= {"vizkit", "torch"}
    assert "run_s" in meta["timings"]
    html = (out / "index.html").read_text()
    assert 'src="filters.png"' in html and "arrays.npz" in html
    with np.load(out / "arrays.npz") as data:
        assert data["filters"].shape == (4, 1, 8, 8)
    png = (out / "filters.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_same_seed_gives_identical_bytes(fresh_host, sdae_ckpt, tmp_path):
    model = vizkit.load(sdae_ckpt)
    a = vizkit.run_probe("filters", model, "h1", out=tmp_path / "a", order="norm")
    b = vizkit.run_probe("filters", model, "h1", out=tmp_path / "b", order="norm")
    for name in ("arrays.npz", "filters.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not a.meta.get("reused") and not b.meta.get("reused")


def test_rerun_reuses_a_finished_identical_result(fresh_host, sdae_ckpt, tmp_path):
    model = vizkit.load(sdae_ckpt)
    vizkit.run_probe("filters", model, "h1", out=tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = vizkit.run_probe("filters", model, "h1", out=tmp_path)
    assert again.meta["reused"] and "filters" in again.arrays
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    changed = vizkit.run_probe("filters", model, "h1", out=tmp_path, scale="shared")
    assert not changed.meta.get("reused")


def test_no_temporary_files_are_left(fresh_host, sdae_ckpt, tmp_path):
    vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
