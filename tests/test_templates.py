"""The ``templates`` probe: reconstruction rows for any reconstructing model, capsule galleries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vizkit
from vizkit.checkpoint import save_checkpoint
from vizkit.probe_inputs import load_examples

from .conftest import make_sdae
from .test_capsule_model import tiny


def test_reconstruction_is_the_output_model_applied_to_the_saved_contributions(fresh_host, tmp_path):
    model = tiny()
    vizkit.run_probe("templates", model, "code", out=tmp_path / "t", images="0:6", forced_rows=3)
    with np.load(tmp_path / "t" / "arrays.npz") as data:
        a = {k: data[k] for k in data.files}
    c = a["contributions"].astype(np.float64)  # [n, capsules, 1, 8, 8]
    k = c.shape[1]
    m = c.max(1, keepdims=True)  # log Σ exp(100 c) / 100 − log K / 100, written out in NumPy
    expected = (m[:, 0] + np.log(np.exp(100 * (c - m)).sum(1)) / 100) - math.log(k) / 100
    np.testing.assert_allclose(a["reconstructions"], expected, atol=1e-5)
    np.testing.assert_allclose(a["mismatch"], a["originals"] - a["reconstructions"], atol=1e-6)
    assert a["contributions"].shape == (6, 2, 1, 8, 8) and a["templates"].shape == (2, 4, 4)


def test_arrays_agree_with_the_model(fresh_host):
    model = tiny()
    result = vizkit.run_probe("templates", model, "code", images="0:5", forced_rows=2, cog_images=50)
    a = result.arrays
    images = load_examples(model).images
    with torch.no_grad():
        rec = model.reconstruct(images)
        y = model.components(images).numpy()
        forced = model.parts(images[:2].repeat_interleave(3, 0), component=torch.arange(3).repeat(2))
    # MSE and % of variance over the whole test split
    mse = float(((rec - images) ** 2).mean())
    assert float(a["mse"]) == pytest.approx(mse, rel=1e-5)
    variance = float(images.double().reshape(len(images), -1).var(0, unbiased=False).mean())
    assert result.meta["pct_variance"] == pytest.approx(100 * mse / variance, rel=1e-5)
    # templates upsampled through their points: corners and every 8th point are the points themselves
    np.testing.assert_allclose(a["templates_upsampled"][:, ::31, ::31], a["templates"][:, ::3, ::3], atol=1e-6)
    # centres of gravity: the centroid of each capsule's contribution, images spread over the data
    idx = a["cog_indices"]
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == len(images) - 1
    with torch.no_grad():
        c = model.parts(images[idx])["contributions"][:, :, 0].double().numpy()
    rows, cols = np.arange(8)[None, None, :, None], np.arange(8)[None, None, None, :]
    np.testing.assert_allclose(a["cog"][..., 0], (c * rows).sum((2, 3)) / c.sum((2, 3)), atol=1e-4)
    np.testing.assert_allclose(a["cog"][..., 1], (c * cols).sum((2, 3)) / c.sum((2, 3)), atol=1e-4)
    assert a["cog"].shape == (50, 2, 2)
    # usage and the manager's confidence
    assert a["usage"].tolist() == np.bincount(y.argmax(1), minlength=3).tolist()
    assert result.meta["manager"]["max_y_ge_0.9"] == pytest.approx(float(np.mean(y.max(1) >= 0.9)))
    # forced reconstructions: image × component, the manager's choice recorded
    np.testing.assert_allclose(a["forced"], forced["reconstructions"].reshape(2, 3, 1, 8, 8).numpy(), atol=1e-6)
    assert a["forced_chosen"].tolist() == y[:2].argmax(1).tolist()
    # every image under every component: the errors, and the specialisation read from them
    with torch.no_grad():
        every = model.parts(images.repeat_interleave(3, 0), component=torch.arange(3).repeat(len(images)))
    errors = (every["reconstructions"].reshape(len(images), 3, -1) - images.reshape(len(images), 1, -1)).square().mean(2)
    np.testing.assert_allclose(a["forced_errors"], errors.numpy(), rtol=1e-4, atol=1e-8)
    spec = vizkit.mixtures.specialisation(errors.double().numpy(), y.argmax(1))
    assert result.meta["specialisation"]["median_ratio"] == pytest.approx(spec["median_ratio"], rel=1e-4)
    assert f"{spec['median_ratio']:.2f}×" in result.captions["components"]
    # sweeps: the middle column is the undistorted capsule, the same for every variable
    sweeps = a["sweeps"]
    assert sweeps.shape[:3] == (2, 2, 9)
    np.testing.assert_allclose(sweeps[:, 0, 4], sweeps[:, 1, 4], atol=1e-6)
    assert set(result.figures) == {"reconstructions", "templates", "centres", "manager", "components", "sweeps"}


def test_sdae_rows_and_decoder_filters_as_templates(fresh_host):
    model = make_sdae()
    model.data_info = dict(model.data_info, seed=0)
    result = vizkit.run_probe("templates", model, "h1", units="0:4", rows=5)
    a = result.arrays
    assert set(result.figures) == {"reconstructions", "templates"}
    np.testing.assert_allclose(a["templates"], model.weight[0].detach()[:4].reshape(4, 1, 8, 8).numpy(), rtol=1e-6)
    images = load_examples(model).images
    with torch.no_grad():
        rec = model.reconstruct(images)
    idx = a["row_indices"]
    np.testing.assert_allclose(a["reconstructions"], rec[idx].numpy(), atol=1e-6)
    assert float(a["mse"]) == pytest.approx(float(((rec - images) ** 2).mean()), rel=1e-5)
    assert "contributions" not in a


def test_cli_without_layer_on_a_capsule_checkpoint(fresh_host, cli, tmp_path):
    ckpt = save_checkpoint(tiny().to_checkpoint(), tmp_path / "capsule.pt")
    res = cli("probe", "--probe", "templates", ckpt, "--out", tmp_path / "t", "-o", "rows", "4")
    assert res.code == 0, res.err
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert {"reconstructions.png", "templates.png", "centres.png", "sweeps.png", "components.png",
            "manager.png", "arrays.npz", "index.html"} <= names


def test_model_without_reconstruct_is_refused(fresh_host, cli, tmp_path):
    from vizkit.models.tcnn import TCNN

    model = TCNN(input_shape=[1, 12, 12])
    model.data_info = {"name": "patches", "options": {}, "input_shape": [1, 12, 12], "stats": {}}
    ckpt = save_checkpoint(model.to_checkpoint(), tmp_path / "tcnn.pt")
    for layer_args in (["--layer", "simple"], []):  # without --layer: the capability, not the layer, is named
        res = cli("probe", "--probe", "templates", ckpt, *layer_args, "--out", tmp_path / "t")
        assert res.code == 2
        assert "needs capability 'reconstruct'" in res.err and "Traceback" not in res.err
        assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("kind", ["rbm", "dbn"])
def test_rbm_and_dbn_rows_equal_their_reconstruct(fresh_host, kind):
    from vizkit.models.rbm.model import DBN, RBM

    torch.manual_seed(0)
    model = RBM([1, 8, 8]) if kind == "rbm" else DBN([1, 8, 8], layers="10,6")
    model.data_info = {"name": "digits", "options": {}, "input_shape": [1, 8, 8], "stats": {}, "seed": 0}
    model.eval()
    result = vizkit.run_probe("templates", model, "h1", units="0:3", rows=4)
    images = load_examples(model).images
    with torch.no_grad():
        rec = model.reconstruct(images).reshape(images.shape)
    np.testing.assert_allclose(result.arrays["reconstructions"], rec[result.arrays["row_indices"]].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.arrays["templates"],
                               model.weights("h1").matrix.detach()[:3].reshape(3, 1, 8, 8).numpy(), rtol=1e-6)


@pytest.mark.parametrize("acs, xlabels, ylabels", [(2, ["AC0", "AC1"], []),
                                                   (12, [f"+{c}" for c in range(10)], ["AC0–9", "AC10–11"])])
def test_every_template_tile_can_be_named(fresh_host, acs, xlabels, ylabels):
    """Past ten templates the gallery wraps to a second row, whose tiles once sat under the first
    row's AC0–AC9 labels: rows now name their capsules and columns count on from them."""
    result = vizkit.run_probe("templates", tiny(acs=acs), "code", images="0:2", forced_rows=0, cog_images=10)
    ax = result.figures["templates"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == xlabels
    assert [t.get_text() for t in ax.get_yticklabels()] == ylabels
    assert ("is capsule r + c" in result.captions["templates"]) == bool(ylabels)
