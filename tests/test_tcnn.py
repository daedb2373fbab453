"""Tiled CNN: tiling, square-root pooling, orthonormal TICA filters, probe protocol, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vizkit
from vizkit.errors import OptionError
from vizkit.models.tcnn import TCNN, orthonormalise_rows


def random_tcnn(**kwargs) -> TCNN:
    torch.manual_seed(0)
    model = TCNN(input_shape=[1, 12, 12], maps=3, field=4, **kwargs)
    with torch.no_grad():
        model.weight.normal_()
    return model


def test_tile_1_is_an_ordinary_convolution():
    model = random_tcnn(tile=1)
    x = torch.randn(5, 1, 12, 12)
    filters = model.weight[0, 0].reshape(3, 1, 4, 4)
    torch.testing.assert_close(model.simple(x), F.conv2d(x, filters))


def test_tiled_units_use_the_filter_of_their_tile_offset():
    """Unit (m, i, j) = ⟨W[i mod k, j mod k, m], x[i:i+f, j:j+f]⟩, checked position by position."""
    model = random_tcnn(tile=3)
    x = torch.randn(2, 1, 12, 12)
    out = model.simple(x)
    w = model.weight.detach().reshape(3, 3, 3, 4, 4)
    for i in range(9):
        for j in range(9):
            window = x[:, 0, i:i + 4, j:j + 4]
            expected = torch.einsum("bhw,mhw->bm", window, w[i % 3, j % 3])
            torch.testing.assert_close(out[:, :, i, j], expected)


def test_pooling_is_the_root_of_summed_squares_within_one_map():
    model = random_tcnn(tile=2, pool=3, epsilon=1e-3)
    s = torch.randn(2, 3, 9, 9)
    pooled = model.pooled(s)
    assert pooled.shape == (2, 3, 7, 7)
    i, j, m = 4, 2, 1
    expected = torch.sqrt((s[:, m, i:i + 3, j:j + 3] ** 2).sum(dim=(1, 2)) + 1e-3)
    torch.testing.assert_close(pooled[:, m, i, j], expected)


def test_orthonormalisation_is_the_symmetric_projection():
    w = torch.randn(4, 5, 16, dtype=torch.float64)
    q = orthonormalise_rows(w)
    eye = torch.eye(5, dtype=torch.float64).expand(4, 5, 5)
    torch.testing.assert_close(q @ q.transpose(1, 2), eye)
    # (WWᵀ)^-½ W, written out with an eigendecomposition
    lam, vec = torch.linalg.eigh(w @ w.transpose(1, 2))
    inv_sqrt = vec @ torch.diag_embed(lam.rsqrt()) @ vec.transpose(1, 2)
    torch.testing.assert_close(q, inv_sqrt @ w)
    model = random_tcnn(tile=2)
    model.orthonormalise_()
    flat = model.weight.reshape(4, 3, 16)
    torch.testing.assert_close(flat @ flat.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)


def test_probe_protocol_layers_units_and_weights():
    model = random_tcnn(tile=2)
    assert {name: info.shape for name, info in model.layer_infos().items()} == {"simple": (243,), "pool": (147,)}
    x = torch.randn(4, 1, 12, 12)
    pool = model.activations(x, "pool")
    assert pool.shape == (4, 147)
    u = model.unit_index("pool", 2, 3, 5)
    torch.testing.assert_close(pool[:, u], model.pooled(model.simple(x))[:, 2, 3, 5])
    # weights: simple filters placed in input space reproduce the simple layer exactly (it is linear)
    filters = model.weights("simple")
    assert filters.source == "input" and filters.matrix.shape == (243, 1, 12, 12)
    torch.testing.assert_close(x.reshape(4, -1) @ filters.matrix.reshape(243, -1).T, model.activations(x, "simple"),
                               atol=1e-5, rtol=1e-5)
    pooling = model.weights("pool")
    assert pooling.source == "simple" and pooling.matrix.shape == (147, 243)
    assert (pooling.matrix.sum(1) == 9).all()
    s2 = model.activations(x, "simple") ** 2
    torch.testing.assert_close(torch.sqrt(s2 @ pooling.matrix.T + 1e-3), pool)
    with pytest.raises(OptionError, match="outside pool"):
        model.unit_index("pool", 3, 0, 0)


def test_geometry_that_cannot_fit_is_refused():
    with pytest.raises(OptionError, match="--field 14 does not fit 12x12"):
        TCNN(input_shape=[1, 12, 12], field=14)
    with pytest.raises(OptionError, match="--pool 4 exceeds the 3x3 simple units"):
        TCNN(input_shape=[1, 12, 12], field=10, pool=4)
    with pytest.raises(OptionError, match="cannot be orthonormal"):
        TCNN(input_shape=[1, 12, 12], field=2, maps=5)


def test_checkpoint_round_trip_and_cli_errors(fresh_host, tmp_path, cli):
    from vizkit.checkpoint import save_checkpoint

    model = random_tcnn(tile=2)
    model.data_info = {"name": "patches", "stats": {"mean_norm": 5.0}}
    path = save_checkpoint(model.to_checkpoint(), tmp_path / "tcnn.pt")
    loaded = vizkit.load(path)
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(loaded.activations(x, "pool"), model.activations(x, "pool"))
    assert {"actmax", "hessian", "filters"} <= set(vizkit.compatible_probes(loaded))
    res = cli("train", "tcnn", "--data", "patches", "--field", "20", "--out", tmp_path / "x.pt", "-q")
    assert res.code == 2 and "--field 20 does not fit 12x12" in res.err


def test_train_one_epoch_keeps_filters_orthonormal(fresh_host, tmp_path, cli):
    out = tmp_path / "tcnn.pt"
    res = cli("train", "tcnn", "--data", "patches", "-D", "size=14", "-D", "n_train=300", "-D", "n_test=100",
              "--maps", "4", "--epochs", "1", "--batch-size", "50", "--out", out, "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 0, res.err
    model = vizkit.load(out)
    assert model.input_shape == (1, 14, 14) and model.layer_infos()["pool"].shape == (4 * 3 * 3,)
    assert model.metrics["tica"]["orthonormality_error"] < 1e-4
    assert np.isfinite(model.metrics["tica"]["test_objective"])
    # the model kind's data defaults apply (ZCA), and -D wins over them (n_train)
    options = model.data_info["options"]
    assert options["whiten"] == "zca" and options["n_train"] == 300
    assert model.hparams["lr"] == 5e-3


def gabor_likeness(filters: np.ndarray) -> np.ndarray:
    """Share of a filter's spectral energy within one oriented frequency peak (and its mirror).

    A Gabor or a grating concentrates its power near ±k₀ in the 2-D spectrum; white noise spreads it
    evenly (about 4/50 of the bins here). Computed on 4× zero-padded FFTs.
    """
    spec = np.abs(np.fft.fft2(filters, s=(40, 40))) ** 2
    spec = spec.reshape(len(filters), -1)
    spec /= spec.sum(1, keepdims=True)
    top = np.argmax(spec, axis=1)
    grid = np.stack(np.meshgrid(np.fft.fftfreq(40), np.fft.fftfreq(40), indexing="ij"), -1).reshape(-1, 2)
    near = []
    for i, k in enumerate(top):
        peak = grid[k]
        dist = np.minimum(np.linalg.norm(grid - peak, axis=1), np.linalg.norm(grid + peak, axis=1))
        near.append(spec[i, dist <= 0.08].sum())
    return np.asarray(near)


@pytest.mark.slow
def test_tica_learns_oriented_filters_and_pool_units_are_translation_invariant(fresh_host, tmp_path, cli, measured):
    """Real training on whitened natural-image patches (as gallery/le2010.toml): oriented, Gabor-like
    filters, and at a pooling unit's optimum the most invariant direction is a small translation."""
    out = tmp_path / "tcnn.pt"
    res = cli("train", "tcnn", "--data", "patches", "-D", "size=16", "--epochs", "2", "--lr", "5e-4", "--out", out,
              "--log-dir", tmp_path / "logs", "-q")  # as gallery/le2010.toml: ZCA, 2 x 100,000 patches
    assert res.code == 0, res.err
    model = vizkit.load(out)
    bank = model.filter_bank().reshape(-1, 10, 10).numpy()
    random_bank = np.random.default_rng(0).normal(size=bank.shape)
    ratio = measured("median Gabor-likeness, learned / random", np.median(gabor_likeness(bank)) / np.median(gabor_likeness(random_bank)), "> 3")
    assert ratio > 3  # ~0.58 vs 0.10
    from vizkit.probes.gabor.fit import fit_gabors

    assert measured("Gabor-like fraction", fit_gabors(bank).fraction, ">= 0.4") >= 0.4  # the default's goal: most filters Gabor-like, by the gabor probe's measure
    units = [model.unit_index("pool", m, 2, 2) for m in range(4)]
    result = vizkit.run_probe("hessian", model, "pool", units=units, seed=0, top=5, videos=False)
    arrays = result.arrays
    assert (arrays["eigenvalues"] <= 1e-6).all()  # a maximum
    for u in range(len(units)):
        x = arrays["optimum"][u, 0]
        flat = x.reshape(-1)
        invariance = arrays["directions"][u, 0, 0].reshape(-1)
        cosines = []
        for shift in [(0, 1), (1, 0), (1, 1), (1, -1)]:
            moved = np.roll(x, shift, axis=(0, 1)).reshape(-1) - flat
            moved -= (moved @ flat) / (flat @ flat) * flat  # its tangent part
            cosines.append(abs(moved @ invariance) / np.linalg.norm(moved))
        assert measured(f"unit {u}: |cos| of the invariant direction with a shift", max(cosines), "> 0.6") > 0.6, cosines  # random: E|cos| = sqrt(2/(pi*256)) = 0.05
        # it keeps clearly more activation than a direction the unit ignores (curvature -lambda)
        assert arrays["eigenvalues"][u, 0] > -0.95 * arrays["lagrange"][u]
