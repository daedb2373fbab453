"""The example model kind (examples/vizkit-example-model): trained by ``vizkit train``, loaded by
``vizkit.load``, probed like a built-in model, and checked against its known answer."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import vizkit
from vizkit.registry import PluginHost, reset_host

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vizkit-example-model"


@pytest.fixture
def linae_host(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("VIZKIT_CACHE_DIR", str(tmp_path / "cache"))
    for name in [m for m in sys.modules if m.startswith("vizkit_example_model")]:
        sys.modules.pop(name)
    host = PluginHost().load()  # the installed probes, plus the example kind added by hand below
    host.add_plugin(importlib.import_module("vizkit_example_model"), "example-model",
                    distribution="vizkit-example-model")
    reset_host(host)
    yield host
    reset_host(None)


def _train(cli, tmp_path, epochs: str) -> Path:
    res = cli("train", "linae", "--data", "digits", "--code", "4", "--epochs", epochs, "--lr", "0.02",
              "--out", tmp_path / "linae.pt", "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 0, res.err
    return tmp_path / "linae.pt"


def test_example_kind_trains_loads_lists_and_probes(linae_host, tmp_path, cli):
    path = _train(cli, tmp_path, "1")
    assert vizkit.load(path).kind == "linae"
    listing = cli("models")
    assert "linae  [plugin example-model]" in listing.out and "--code int [1..100000] = 8" in listing.out
    res = cli("probe", "--probe", "filters", path, "--layer", "code", "--out", tmp_path / "f")
    assert res.code == 0, res.err
    info = cli("inspect", path).out
    assert "code            4 units" in info and "reconstruct" in info


@pytest.mark.slow
def test_example_kind_learns_the_principal_subspace(linae_host, tmp_path, cli, measured):
    """Baldi & Hornik (1989): a linear autoencoder's weights span the top-k principal subspace."""
    model = vizkit.load(_train(cli, tmp_path, "40"))
    data = vizkit.load_dataset("digits", split="train").images.reshape(-1, 64).double().numpy()
    centred = data - data.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:4]  # rows: the top-4 principal directions
    learned = np.linalg.qr(model.weight.detach().double().numpy().T)[0]  # orthonormal basis of rowspace(W)
    cosines = np.linalg.svd(top @ learned, compute_uv=False)  # cosines of the principal angles
    assert measured("smallest principal-angle cosine", cosines.min(), "> 0.95") > 0.95, cosines
