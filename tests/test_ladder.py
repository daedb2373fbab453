"""The ladder denoising autoencoders (Rasmus, Raiko & Valpola 2015): decoders, centring, training."""

import math

import pytest
import torch

import vizkit
from vizkit.checkpoint import read_checkpoint
from vizkit.models.ladder import Ladder, unit_norm_orthogonal


def _perturbed(decoder: str, layers: str = "12,5", seed: int = 0) -> Ladder:
    torch.manual_seed(seed)
    model = Ladder(input_shape=[1, 4, 4], decoder=decoder, layers=layers, data_std=2.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for i in range(len(model.sizes) - 1):
            model.centre(i).copy_(0.1 * torch.randn(model.sizes[i + 1]))
    return model


def _by_hand(model: Ladder, x: torch.Tensor) -> torch.Tensor:
    """Eqs. (2)–(8) of the paper written out for two layers, independently of the model's loops."""
    W1, W2 = model.weight[0].detach(), model.weight[1].detach()
    b1, b2 = model.bias[0].detach(), model.bias[1].detach()
    relu, sig = torch.relu, torch.sigmoid
    h1 = relu(x @ W1.T + b1) + model.centre(0)
    h2 = relu(h1 @ W2.T + b2) + model.centre(1)
    dec = model.hparams["decoder"]
    if dec == "nolat":
        g1 = relu(h2 @ W2 + model.dec_bias[1].detach())
    else:
        a = [p.detach() for p in model.lat_a]
        ba = [p.detach() for p in model.lat_ba]
        bb = [p.detach() for p in model.lat_bb]
        g2 = (h2 + ba[1]) * sig(a[1] * h2 + bb[1])
        if dec == "add":
            g1 = (h1 + ba[0]) * sig(a[0] * h1 + bb[0]) + relu(g2 @ W2 + model.dec_bias[1].detach())
        else:
            g1 = (h1 + ba[0]) * sig(a[0] * h1 + g2 @ W2 + bb[0])
    return g1 @ W1 + model.dec_bias[0].detach()


@pytest.mark.parametrize("decoder", ["nolat", "add", "mod"])
def test_decoders_are_the_papers_equations(decoder):
    model = _perturbed(decoder)
    x = torch.randn(7, 16)
    torch.testing.assert_close(model.denoise(x), _by_hand(model, x))
    # reconstruct() works in the data's units: scaled by data_std on the way in and out
    torch.testing.assert_close(model.reconstruct(2.0 * x.reshape(7, 1, 4, 4)).reshape(7, 16), 2.0 * _by_hand(model, x))


def test_weights_are_tied_and_no_decoder_matrix_exists():
    model = Ladder(input_shape=[1, 4, 4], decoder="mod", layers="12,5")
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert [s for s in shapes.values() if len(s) == 2] == [(12, 16), (5, 12)]
    assert "dec_bias.1" not in shapes  # Mod folds the top-down bias into b_b (paper, after Eq. 8)
    assert "dec_bias.1" in {n for n, _ in Ladder(input_shape=[1, 4, 4], decoder="add", layers="12,5").named_parameters()}


def test_initial_weight_vectors_have_norm_one_and_are_orthogonal():
    gen = torch.Generator().manual_seed(1)
    under = unit_norm_orthogonal(50, 200, gen)
    torch.testing.assert_close(under @ under.T, torch.eye(50), atol=1e-5, rtol=0)
    over = unit_norm_orthogonal(300, 40, gen)
    torch.testing.assert_close(over.norm(dim=1), torch.ones(300), atol=1e-5, rtol=0)
    # an overcomplete layer cannot have orthogonal rows; its columns are orthogonal before the
    # rows are rescaled, so the rows span the space evenly: the Gram matrix of the columns is
    # close to (rows / columns) times the identity
    gram = over.T @ over
    assert torch.allclose(gram.diagonal().mean(), torch.tensor(300 / 40), rtol=1e-4)


@pytest.mark.parametrize("decoder,layers", [("nolat", "12,5"), ("add", "12,5"), ("mod", "10,8,6"), ("nolat", "9")])
def test_centring_update_leaves_the_function_unchanged(decoder, layers):
    model = _perturbed(decoder, layers)
    x = torch.randn(32, 16)
    before = model.denoise(x).detach()
    means = [torch.rand(n) for n in model.sizes[1:]]
    old = [model.centre(i).clone() for i in range(len(means))]
    model.update_centring(means)
    for i, mean in enumerate(means):  # β moved towards −mean by (1 − m)
        torch.testing.assert_close(model.centre(i), 0.99 * old[i] - 0.01 * mean)
    torch.testing.assert_close(model.denoise(x).detach(), before, atol=1e-5, rtol=1e-5)


def test_linear_baseline_at_the_wiener_solution_has_the_closed_form_cost():
    """For data with covariance Σ and noise σ²I, the best linear denoiser is Σ(Σ + σ²I)⁻¹ and its
    cost per element tr(Σ − Σ(Σ + σ²I)⁻¹Σ)/D; the model must compute exactly that cost."""
    torch.manual_seed(0)
    d = 16
    basis = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))[0]
    lam = torch.linspace(0.2, 3.0, d, dtype=torch.float64)
    sigma2 = 0.25
    cov = basis @ torch.diag(lam) @ basis.T
    model = Ladder(input_shape=[d], decoder="linear", data_std=1.0).double()
    with torch.no_grad():
        model.weight[0].copy_(cov @ torch.linalg.inv(cov + sigma2 * torch.eye(d, dtype=torch.float64)))
    x = torch.randn(200_000, d, dtype=torch.float64) @ (basis * lam.sqrt()).T
    expected = float((lam * sigma2 / (lam + sigma2)).mean())
    with torch.no_grad():
        assert math.isclose(float(model.cost(x)), expected, rel_tol=0.01)
    assert list(model.layer_infos()) == ["h1"]


def test_probe_protocol(fresh_host):
    model = _perturbed("mod")
    x = torch.randn(5, 1, 4, 4)
    assert model.activations(x, "h1").shape == (5, 12) and model.activations(x, "h2").shape == (5, 5)
    w = model.weights("h1")
    assert w.source == "input"
    torch.testing.assert_close(w.matrix, model.weight[0].detach() / 2.0)  # in the units of the unscaled data
    assert model.weights("h2").source == "h1"
    with pytest.raises(vizkit.UnknownNameError, match="valid layers: h1, h2"):
        model.activations(x, "h3")


def test_train_with_max_steps_records_the_denoising_cost(fresh_host, cli, tmp_path):
    out = tmp_path / "m.pt"
    res = cli("train", "ladder", "--decoder", "mod", "--layers", "8,4", "--data", "patches", "-D", "size=8",
              "-D", "n_train=200", "-D", "n_test=50", "--max-steps", "7", "--batch-size", "10", "-q",
              "--log-dir", str(tmp_path / "logs"), "--out", str(out))
    assert res.code == 0, res.err
    ckpt = read_checkpoint(out)
    assert ckpt["metrics"]["train"]["steps"] == 7
    denoising = ckpt["metrics"]["denoising"]
    assert denoising["steps"] == 7 and 0 < denoising["val_cost_min"] <= denoising["val_cost"] < 10
    assert ckpt["hparams"]["data_std"] == pytest.approx(ckpt["data"]["stats"]["pixel_std"])
    shown = cli("inspect", str(out))
    assert shown.code == 0 and "denoising: val_cost=" in shown.out


def test_bad_training_options_are_refused(fresh_host, cli, tmp_path):
    res = cli("train", "ladder", "--decoder", "gated", "--data", "digits", "--out", str(tmp_path / "m.pt"))
    assert res.code == 2 and "nolat" in res.err and "mod" in res.err and "Traceback" not in res.err
    res = cli("train", "ladder", "--data", "digits", "--max-steps", "0", "--out", str(tmp_path / "m.pt"))
    assert res.code == 2 and "--max-steps" in res.err
    res = cli("train", "ladder", "--layers", "8,x", "--data", "digits", "--out", str(tmp_path / "m.pt"))
    assert res.code == 2 and "--layers" in res.err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_training_beats_the_identity_and_mod_beats_no_lat(fresh_host, tmp_path, measured):
    """A short real run on whitened patches: the modulated decoder learns to denoise (cost below
    the noise variance 0.25 that copying the input would give) and is ahead of No-lat; the paper's
    sizes (smaller models start more slowly under ADADELTA)."""
    from vizkit.training import train

    costs = {}
    for decoder, layers in (("mod", "1622,50"), ("nolat", "590,589")):
        out = train("ladder", "patches", out=tmp_path / f"{decoder}.pt", max_steps=1500, batch_size=50,
                    model_options={"decoder": decoder, "layers": layers},
                    data_options={"size": 16, "whiten": "pca", "n_train": 5000}, log_dir=tmp_path / "logs",
                    progress=False)
        costs[decoder] = measured(f"{decoder} validation cost", read_checkpoint(out)["metrics"]["denoising"]["val_cost"],
                                  "mod < 0.25 and mod < nolat")
    assert costs["mod"] < 0.25 and costs["mod"] < costs["nolat"]


@pytest.mark.slow
def test_modulated_top_layer_is_invariant_where_the_additive_one_is_not(fresh_host, cli, tmp_path, measured):
    """Table 1's contrast, the paper's point: with the ladder's default data (whitened patches, each
    divided by its own RMS) Mod's h2 is far more translation invariant than Add's. Untrained, both
    are at 0.19; without the contrast normalisation Add's h2 follows local energy and comes out
    nearly as invariant as Mod's (docs/models/ladder.md)."""
    import numpy as np

    gammas = {}
    for decoder, layers in (("mod", "1622,50"), ("add", "839,336")):
        out = tmp_path / f"{decoder}.pt"
        res = cli("train", "ladder", "--decoder", decoder, "--layers", layers, "--data", "patches", "-D", "n_train=5000",
                  "--max-steps", "3000", "--batch-size", "50", "-q", "--log-dir", tmp_path / "logs", "--out", out)
        assert res.code == 0, res.err
        res = cli("probe", "--probe", "gamma", out, "--layer", "h2", "-o", "sets", "500", "-o", "pool_starts", "0",
                  "--out", tmp_path / f"{decoder}-gamma")
        assert res.code == 0, res.err
        layer_gamma = np.load(tmp_path / f"{decoder}-gamma" / "arrays.npz")["layer_gamma_translation"]
        gammas[decoder] = measured(f"{decoder} translation gamma of h2 after 3000 updates", float(layer_gamma[2]),
                                   "mod >= 0.8 and mod - add >= 0.3 (untrained: 0.19 both)")
    assert gammas["mod"] >= 0.8 and gammas["mod"] - gammas["add"] >= 0.3


def test_all_layers_from_one_pass_equal_the_layer_by_layer_activations():
    model = _perturbed("add", "12,7,5")
    x = torch.randn(9, 1, 4, 4)
    together = vizkit.layer_activations(model, x, ["h3", "h1"])
    assert list(together) == ["h3", "h1"]
    for name in ("h1", "h3"):
        torch.testing.assert_close(together[name], model.activations(x, name))
