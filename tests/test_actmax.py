"""``actmax``: known optima (linear-sigmoid and quadratic units), reproducibility, batching, outputs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.optim import FourierPreconditioner, counter_uniform, sample_keys, uniform_start

from .conftest import make_sdae


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- known answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"normalize": False, "lr": 0.05}, {"optimizer": "adam", "lr": 0.05}, {"param": "fft"}],
    ids=["paper-default", "raw-gradient-step", "adam", "fft-preconditioned"],
)
def test_first_layer_sigmoid_unit_optimum_is_its_filter(fresh_host, options):
    # h = sigmoid(w·x + b) on |x| = rho peaks at rho·w/|w|. The radius is small enough that w·x stays
    # in the sigmoid's float32 range (at rho = 3, w·x* ≈ 24 and sigmoid is exactly 1.0 in float32,
    # so every point past w·x ≈ 17 would be an equally good "optimum").
    model = make_sdae("6,4")
    rho = 0.25
    result = vizkit.run_probe("actmax", model, "h1", units="0:6", rho=rho, **options)
    weights = model.weight[0].detach().numpy()
    stimuli = result.arrays["stimuli"].reshape(6, -1)
    for unit in range(6):
        assert cosine(stimuli[unit], weights[unit]) > 0.99
    np.testing.assert_allclose(np.linalg.norm(stimuli, axis=1), rho, rtol=1e-5)
    assert result.meta["rho"] == rho and result.meta["rho_source"] == "option rho"
    assert result.arrays["converged"].all()


def berkes_wiskott_optimum(H, f, rho):
    """argmax ½xᵀHx + fᵀx on |x| = rho: x = (λI − H)⁻¹f with λ > λmax(H) and |x| = rho (bisection)."""
    mu, V = np.linalg.eigh(H)
    ft = V.T @ f
    norm = lambda lam: np.sqrt(np.sum(ft**2 / (lam - mu) ** 2))  # noqa: E731, decreasing for lam > mu.max()
    lo, hi = mu.max() + 1e-12, mu.max() + np.linalg.norm(f) / rho
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if norm(mid) > rho else (lo, mid)
    lam = 0.5 * (lo + hi)
    return V @ (ft / (lam - mu))


class QuadraticUnit(nn.Module):
    def __init__(self, H, f):
        super().__init__()
        self.register_buffer("H", torch.as_tensor(H, dtype=torch.float32))
        self.register_buffer("f", torch.as_tensor(f, dtype=torch.float32))

    def forward(self, x):
        return (0.5 * ((x @ self.H) * x).sum(1) + x @ self.f)[:, None]


def test_quadratic_unit_reaches_the_exact_berkes_wiskott_optimum(fresh_host):
    rng = np.random.default_rng(0)
    d, rho = 16, 2.0
    a = rng.normal(size=(d, d))
    H, f = (a + a.T) / 2, 3 * rng.normal(size=d)
    # Well posed: a local maximum that is not global would need λ in (μ₂, μ₁) with |x(λ)| = ρ
    # (Martínez 1994); |x(λ)| stays above ρ on that whole interval, so the maximum is unique.
    mu, V = np.linalg.eigh(H)
    grid = np.linspace(mu[-2], mu[-1], 20002)[1:-1]
    assert (np.sqrt((((V.T @ f)[None] / (grid[:, None] - mu[None])) ** 2).sum(1)) > rho).all()
    model = vizkit.wrap(nn.Sequential(nn.Flatten(), QuadraticUnit(H, f)), input_shape=(d,), layers=["1"])
    result = vizkit.run_probe("actmax", model, "1", rho=rho, steps=3000, tol=1e-9)
    found = result.arrays["stimuli"][0].astype(np.float64)
    exact = berkes_wiskott_optimum(H, f, rho)
    assert abs(np.linalg.norm(exact) - rho) < 1e-9
    assert cosine(found, exact) > 0.99
    value = lambda x: 0.5 * x @ H @ x + f @ x  # noqa: E731
    assert value(found) == pytest.approx(value(exact), rel=1e-4)
    assert result.meta["rho"] == rho


# -- reproducibility and batching ------------------------------------------------------------------
def test_same_seed_gives_identical_arrays_and_another_seed_does_not(fresh_host):
    model = make_sdae("6,4")
    a = vizkit.run_probe("actmax", model, "h2", steps=40, seed=5)
    b = vizkit.run_probe("actmax", model, "h2", steps=40, seed=5)
    c = vizkit.run_probe("actmax", model, "h2", steps=40, seed=6)
    assert set(a.arrays) == set(b.arrays)
    for key in a.arrays:
        assert np.array_equal(a.arrays[key], b.arrays[key]), key
    assert not np.array_equal(a.arrays["restarts"], c.arrays["restarts"])


def test_a_unit_alone_equals_the_same_unit_in_a_batch_of_36(fresh_host):
    # Seeds, start points and the update rule are per sample, so batch composition cannot change a
    # unit's result. Equality is to float rounding, not bitwise: CPU kernels round a row's last
    # bit differently with the batch size (torch.sigmoid's vector tail, MKL's blocking for small M).
    model = make_sdae("40,36")
    alone = vizkit.run_probe("actmax", model, "h2", units="7", steps=60, seed=3)
    batch = vizkit.run_probe("actmax", model, "h2", units="0:36", steps=60, seed=3)
    chunked = vizkit.run_probe("actmax", model, "h2", units="0:36", steps=60, seed=3, chunk=50)
    # a chunk holds whole units (their restarts share one batch): 50 samples are 5 units x 9 restarts
    assert batch.meta["chunks"] == 1 and chunked.meta["chunks"] == 8
    for key in ("stimuli", "restarts", "activations", "initial_activations"):
        np.testing.assert_allclose(alone.arrays[key][0], batch.arrays[key][7], rtol=1e-5, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(chunked.arrays[key], batch.arrays[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for key in ("steps_taken", "converged", "best_restart"):
        assert np.array_equal(alone.arrays[key][0], batch.arrays[key][7]), key
        assert np.array_equal(chunked.arrays[key], batch.arrays[key]), key
    # the stopping rule really is per sample: restarts finish after different numbers of steps
    assert len(np.unique(batch.arrays["steps_taken"])) > 1


def test_sample_keys_depend_on_indices_not_on_batch_position():
    units, restarts = torch.tensor([3, 7, 11]).repeat_interleave(4), torch.arange(4).repeat(3)
    keys = sample_keys(0, units, restarts)
    assert torch.equal(keys[4:8], sample_keys(0, torch.full((4,), 7), torch.arange(4)))
    assert len(set(keys.tolist())) == 12 and not torch.equal(keys, sample_keys(1, units, restarts))
    u = counter_uniform(keys, 5000)
    assert torch.equal(u[5], counter_uniform(keys[5:6], 5000)[0])  # bitwise: integer hashing only
    start = uniform_start(keys, (1, 8, 8), 3.0, torch.float32)
    assert torch.equal(start[5], uniform_start(keys[5:6], (1, 8, 8), 3.0, torch.float32)[0])
    assert u.min() >= 0 and u.max() < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(torch.corrcoef(u[:2])[0, 1])) < 0.05


# -- any model with input_grad ---------------------------------------------------------------------
def small_convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 5, stride=2), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_wrapped_convnet_on_3x64x64_inputs(fresh_host):
    model = vizkit.wrap(small_convnet(), input_shape=(3, 64, 64), layers=["2", "3", "6"])
    result = vizkit.run_probe("actmax", model, "3", units="0:3", restarts=2, steps=20, preset="erhan")
    arrays = result.arrays
    assert arrays["stimuli"].shape == (3, 3, 64, 64) and arrays["restarts"].shape == (3, 2, 3, 64, 64)
    assert arrays["activations"].shape == (3, 2) and arrays["sensitivity"].shape == (3, 3)
    rho = np.sqrt(3 * 64 * 64 / 3)  # no data statistics: the expected norm of uniform [0, 1] noise
    assert result.meta["rho"] == pytest.approx(rho) and "sqrt(D/3)" in result.meta["rho_source"]
    np.testing.assert_allclose(np.linalg.norm(arrays["restarts"].reshape(6, -1), axis=1), rho, rtol=1e-5)
    assert (arrays["activations"] > arrays["initial_activations"]).all()
    # one spatial position of the map instead of the channel mean
    at = vizkit.run_probe("actmax", model, "3", units="1", restarts=2, steps=15, position="6,6", preset="erhan")
    assert at.meta["position"] == [6, 6]
    assert (at.arrays["activations"] > at.arrays["initial_activations"]).all()
    # the classifier output of the same network
    top = vizkit.run_probe("actmax", model, "6", units="0:2", restarts=2, steps=15, optimizer="adam", lr=0.02,
                           preset="erhan")
    assert (top.arrays["activations"] > top.arrays["initial_activations"]).all()


def test_regularisers_and_fft_parametrisation(fresh_host):
    model = vizkit.wrap(small_convnet(), input_shape=(3, 64, 64), layers=["3"])
    result = vizkit.run_probe("actmax", model, "3", units="0:2", restarts=2, steps=15,
                              jitter=4, blur=0.5, tv=0.05, param="fft", preset="erhan")
    assert (result.arrays["activations"] > result.arrays["initial_activations"]).all()
    assert (result.arrays["steps_taken"] == 15).all()  # jitter makes the objective random: no early stop
    assert "jitter 4 px" in result.captions["stimuli"] and "FFT" in result.captions["stimuli"]
    np.testing.assert_allclose(np.linalg.norm(result.arrays["stimuli"].reshape(2, -1), axis=1),
                               result.meta["rho"], rtol=1e-4)


def test_fft_preconditioner_is_symmetric_positive_definite():
    for shape in [(3, 12, 10), (1, 9, 9), (144,)]:
        precondition = FourierPreconditioner(shape)
        u, v = torch.randn(2, 5, *shape, dtype=torch.float64)
        mu, mv = precondition(u), precondition(v)
        torch.testing.assert_close((u * mv).sum(), (mu * v).sum())
        assert ((v * mv).flatten(1).sum(1) > 0).all()
    with pytest.raises(ValueError, match="image-shaped"):
        FourierPreconditioner((10,))


# -- outputs ---------------------------------------------------------------------------------------
def test_outputs_files_and_sensitivity(fresh_host, sdae_ckpt, tmp_path):
    model = vizkit.load(sdae_ckpt)
    out = tmp_path / "am"
    result = vizkit.run_probe("actmax", model, "h2", units="0:4", out=out, steps=40, restarts=5, panel=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["activations.png", "arrays.npz", "index.html", "restarts.png", "result.json",
                     "sensitivity.png", "stimuli.png"]
    with np.load(out / "arrays.npz") as data:
        assert data["stimuli"].shape == (4, 1, 8, 8) and data["restarts"].shape == (4, 5, 1, 8, 8)
        assert data["activations"].shape == (4, 5) and data["steps_taken"].shape == (4, 5)
        best = data["best_restart"]  # chosen in float64 (the SDAE's units: their logit, target auto)
        np.testing.assert_array_equal(data["stimuli"], data["restarts"][np.arange(4), best])
        assert (data["activations"][np.arange(4), best] >= data["activations"].max(1)).all()
        sens, resp = data["sensitivity"], data["responses"]
        np.testing.assert_allclose(sens, resp / np.abs(resp).max(axis=0, keepdims=True), rtol=1e-6)
        np.testing.assert_allclose(np.diag(resp), data["activations"].max(1), rtol=1e-5)
    meta = json.loads((out / "result.json").read_text())
    assert meta["rho"] == 3.0 and "mean norm" in meta["rho_source"]  # from the checkpoint's data stats
    assert meta["options"]["restarts"] == 5 and meta["samples"] == 20
    assert "rho = 3" in result.captions["stimuli"] and "Spread across the 5 restarts" in result.captions["restarts"]
    for png in ("stimuli", "restarts", "sensitivity", "activations"):
        assert (out / f"{png}.png").stat().st_size > 5000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "h1", "-o", "position", "1,1"], "applies to convolutional maps"),
        (["--layer", "h1", "-o", "optimizer", "lbfgs"], "must be one of"),
        (["--layer", "h1", "-o", "rho", "0"], "must be >="),
        (["--layer", "h1", "-o", "jitter", "8"], "smaller than the image"),
    ],
)
def test_bad_options_exit_2_with_one_line(fresh_host, sdae_ckpt, tmp_path, cli, args, message):
    res = cli("probe", "--probe", "actmax", sdae_ckpt, *args, "--out", tmp_path / "o")
    assert res.code == 2 and message in res.err and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_image_options_on_a_flat_input_are_refused(fresh_host):
    model = vizkit.wrap(nn.Sequential(nn.Linear(10, 3)), input_shape=(10,), layers=["0"])
    with pytest.raises(vizkit.OptionError, match="image-shaped"):
        vizkit.run_probe("actmax", model, "0", param="fft")
    bad = vizkit.wrap(nn.Sequential(nn.Conv2d(3, 4, 3)), input_shape=(3, 8, 8), layers=["0"])
    with pytest.raises(vizkit.OptionError, match="outside"):
        vizkit.run_probe("actmax", bad, "0", position="9,0")


def test_cli_run_shows_files(fresh_host, sdae_ckpt, tmp_path, cli):
    res = cli("probe", "--probe", "actmax", sdae_ckpt, "--layer", "h2", "--units", "0:2", "-o", "steps", "20",
              "--out", tmp_path / "c")
    assert res.code == 0, res.err
    assert (tmp_path / "c" / "stimuli.png").exists() and (tmp_path / "c" / "restarts.png").exists()


# -- saturated units: pre-activation target, agreeing restarts, sensitivity scale ----------------
def test_logit_target_gives_the_same_optimum_and_the_pre_activation(fresh_host):
    """For h = sigmoid(w·x + b), logit(h) = w·x + b: same optimum rho·w/|w|, and the value reached is the
    pre-activation rho·|w| + b itself, not a saturated 0.9997. (Recovered from h, so it needs h < 1 in
    the model's float type: w·x below ~16 in float32.)"""
    model = make_sdae("6,4")
    rho = 1.0  # h(x*) = 0.998-0.9999: the saturation of the demo SDAE units
    plain = vizkit.run_probe("actmax", model, "h1", units="0:6", rho=rho, target="activation", restarts=3)
    result = vizkit.run_probe("actmax", model, "h1", units="0:6", rho=rho, target="logit", restarts=3)
    w = model.weight[0].detach().numpy().astype(np.float64)
    b = model.hidden_bias[0].detach().numpy().astype(np.float64)
    expected = rho * np.linalg.norm(w, axis=1) + b
    assert expected.max() < 15 and plain.arrays["activations"].min() > 0.998
    stimuli = result.arrays["stimuli"].reshape(6, -1)
    for unit in range(6):
        assert cosine(stimuli[unit], w[unit]) > 0.99
    np.testing.assert_allclose(result.arrays["activations"].max(axis=1), expected, rtol=2e-3)
    assert "logit" in result.meta["target"] and "logit(h)" in result.captions["stimuli"]
    # every restart converges to the same optimum: the panel says so instead of repeating images
    assert result.arrays["restarts_agree"].all()
    assert "all 3 restarts agree" in "".join(t.get_text() for ax in result.figures["restarts"].axes
                                              for t in ax.texts)
    title = " ".join(result.figures["restarts"]._suptitle.get_text().split())  # wrapped to the figure's width
    assert "units 0-5 (the first 6 of 6)" in title


def test_logit_target_reaches_optima_beyond_float32_saturation(fresh_host):
    """Sigmoid units whose pre-activations on the sphere reach 18-33: float32 gives h = 1 from
    w·x ≈ 16.6 on, so a float32 objective stops short of rho·w/|w|. The probe maximises in float64
    (the model itself stays float32) and reaches the optimum and its exact pre-activation."""
    model = make_sdae("6,4")
    w = model.weight[0].detach().numpy().astype(np.float64)
    b = model.hidden_bias[0].detach().numpy().astype(np.float64)
    rho = float(30.0 / np.linalg.norm(w, axis=1).max())
    expected = rho * np.linalg.norm(w, axis=1) + b
    assert expected.min() > 18 and expected.max() < 33  # past float32's logit (16.6), within float64's (36)
    result = vizkit.run_probe("actmax", model, "h1", units="0:6", rho=rho, target="logit", restarts=3)
    stimuli = result.arrays["stimuli"].reshape(6, -1)
    for unit in range(6):
        assert cosine(stimuli[unit], w[unit]) > 0.999
    np.testing.assert_allclose(result.arrays["activations"].max(axis=1), expected, rtol=2e-3)
    assert result.arrays["restarts_agree"].all()
    assert vizkit.model_dtype(model) == torch.float32


def test_logit_target_on_a_resnet_runs_on_a_float64_copy_and_leaves_the_model_alone(fresh_host):
    """A user's branching network (torchvision-style ResNet, skips, in-place ReLUs) with a sigmoid
    on its logits: with target logit the value reported for each optimum is the ResNet's own logit
    there (sigmoid undone exactly), and the user's float32 module is neither converted nor moved."""
    from .resnets import mynets

    torch.manual_seed(0)
    net = torch.nn.Sequential(mynets().ResNet(widths=(4, 6, 8, 8), num_classes=3), torch.nn.Sigmoid()).eval()
    model = vizkit.wrap(net, input_shape=(3, 32, 32))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = vizkit.run_probe("actmax", model, "1", units="0:3", target="logit", restarts=2, steps=30)
    assert result.meta["dtype"] == "float64"
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        logits = net[0](torch.as_tensor(result.arrays["stimuli"])).double()
    reached = result.arrays["activations"].max(axis=1)
    np.testing.assert_allclose(reached, logits[torch.arange(3), torch.arange(3)].numpy(), rtol=1e-3, atol=1e-3)


def test_unsquash_inverts_sigmoid_and_tanh():
    from vizkit.probes.actmax import unsquash

    z = torch.linspace(-6, 6, 13, dtype=torch.float64)
    torch.testing.assert_close(unsquash(torch.sigmoid(z), "logit"), z)
    torch.testing.assert_close(unsquash(torch.tanh(z), "atanh"), z, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(unsquash(torch.ones(2), "logit")).all()  # saturated: large but finite
    assert torch.equal(unsquash(z, "activation"), z)


def test_sensitivity_scale_stretches_a_saturated_matrix():
    from vizkit.probes.actmax.figures import sensitivity_matrix

    flat = 0.99 + 0.009 * np.eye(4)
    _, scale = sensitivity_matrix(flat, [0, 1, 2, 3], "t")
    assert scale.startswith("stretched to the values' own range [0.99, 0.999]")
    _, scale = sensitivity_matrix(np.eye(4), [0, 1, 2, 3], "t")
    assert scale == "fixed [0, 1]"
    _, scale = sensitivity_matrix(np.eye(4) - 0.5, [0, 1, 2, 3], "t")
    assert scale.startswith("fixed [-1, 1]")


# -- the optvis recipes (issue 22) -------------------------------------------------------------------
def test_colour_preset_is_the_default_on_rgb_inputs_and_shows_thresholds(fresh_host, tmp_path):
    model = vizkit.wrap(small_convnet(), input_shape=(3, 64, 64), layers=["3", "6"])
    out = tmp_path / "colour"
    result = vizkit.run_probe("actmax", model, "6", units="0:2", restarts=2, steps=24, thresholds="4,12", out=out)
    recipe = result.meta["recipe"]
    assert (recipe["preset"], recipe["param"], recipe["transforms"], recipe["constraint"]) == (
        "colour", "fourier", "standard", "sigmoid")
    stimuli = result.arrays["stimuli"]
    assert stimuli.min() >= 0.0 and stimuli.max() <= 1.0  # the sigmoid range
    assert result.arrays["snapshots"].shape == (2, 3, 3, 64, 64) and result.meta["snapshot_steps"] == [4, 12, 24]
    assert (result.arrays["activations"] > result.arrays["initial_activations"]).all()
    assert (out / "thresholds.png").stat().st_size > 5000 and "after 4, 12, 24 steps" in result.captions["thresholds"]
    with pytest.raises(vizkit.OptionError, match="earlier pixel-sphere regularisers"):
        vizkit.run_probe("actmax", model, "6", units="0", steps=5, jitter=2)  # the colour preset has transforms
    grey = vizkit.run_probe("actmax", make_sdae("6,4"), "h1", units="0:2", restarts=2, steps=5)
    assert grey.meta["recipe"]["preset"] == "erhan" and grey.meta["engine"] == "vizkit.optvis.render"


def test_objective_expressions_per_unit_and_alone(fresh_host):
    model = vizkit.wrap(small_convnet(), input_shape=(3, 64, 64), layers=["3", "6"])
    kwargs = dict(restarts=2, steps=20, preset="erhan")
    alone = vizkit.run_probe("actmax", model, "6", units="0", objective="channel(6,0) - 0.5*channel(6,1)", **kwargs)
    assert alone.arrays["stimuli"].shape == (1, 3, 64, 64) and "channel(6,0) - 0.5*channel(6,1)" in alone.meta["target"]
    x = torch.as_tensor(alone.arrays["stimuli"])
    out = model.activations(x, "6")
    np.testing.assert_allclose(alone.arrays["responses"][0, 0], float((out[0, 0] - 0.5 * out[0, 1]).detach()), rtol=1e-4)
    per_unit = vizkit.run_probe("actmax", model, "6", units="0:3", objective="channel(6,{unit})", **kwargs)
    plain = vizkit.run_probe("actmax", model, "6", units="0:3", **kwargs)
    np.testing.assert_allclose(per_unit.arrays["stimuli"], plain.arrays["stimuli"], atol=1e-5)
    diverse = vizkit.run_probe("actmax", model, "3", units="0", restarts=3, steps=20, preset="colour", diversity=5.0)
    assert diverse.meta["recipe"]["diversity"] == 5.0


@pytest.mark.parametrize("args, message", [
    (["-o", "objective", "channel(h9, 1)"], "no layer 'h9'"),
    (["-o", "objective", "channel(h1, 1"], "expected ')'"),
    (["-o", "objective", "channel(h1, 99)"], "channel 99 does not exist"),
    (["-o", "transforms", "standard"], "image-shaped input"),
    (["-o", "thresholds", "a,b"], "step counts"),
])
def test_bad_objectives_and_transforms_exit_2_with_one_line(fresh_host, tmp_path, cli, args, message):
    from vizkit.checkpoint import save_checkpoint
    from vizkit.models.sdae import SDAE

    from .conftest import DATA_INFO

    sdae = SDAE(input_shape=[10], layers="6,4")  # a flat input of 10 values: not an image
    sdae.data_info = dict(DATA_INFO, input_shape=[10])
    ckpt = tmp_path / "s.pt"
    save_checkpoint(sdae.to_checkpoint(), ckpt)
    res = cli("probe", "--probe", "actmax", ckpt, "--layer", "h1", *args, "--out", tmp_path / "o")
    assert res.code == 2 and message in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert not (tmp_path / "o").exists()


def test_a_class_mean_direction_from_the_models_own_data(fresh_host, sdae_ckpt):
    model = vizkit.load(sdae_ckpt)  # trained (here: made) on digits, which has labels
    result = vizkit.run_probe("actmax", model, "h1", units="0", restarts=2, steps=10,
                              objective="direction(h1, classmean(3)) + 0.5*direction(h1, random(1))")
    assert "classmean(3)" in result.meta["target"] and np.isfinite(result.arrays["activations"]).all()


def test_pictures_in_a_sigmoid_range_are_shown_as_they_are():
    """An optimum of the colour preset is pixel values in [0, 1]: the figures show them unchanged
    (stretching each tile, as for patterns around zero, would change its colours)."""
    from vizkit.figure import normalise

    images = np.random.default_rng(0).uniform(0.2, 0.6, size=(3, 4, 4, 3))
    np.testing.assert_array_equal(normalise(images, "unit"), images)
    assert not np.allclose(normalise(images, "minmax"), images)
    from vizkit.probes.actmax import display_mode

    assert display_mode({"constraint": "sigmoid"}) == "unit" and display_mode({"constraint": "sphere"}) == "symmetric"


def test_a_dead_unit_is_marked_not_identifiable(fresh_host, tmp_path):
    """A ReLU unit that is off for every input has zero gradient everywhere: its "optimum" is the start,
    and the result says so (meta, caption, a mark on the figure) instead of showing noise as a result."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.ReLU())
    with torch.no_grad():
        net[1].weight[:2].abs_()  # on at the uniform [0, 1] starts
        net[1].weight[2].zero_()
        net[1].bias[2] = -100.0
    model = vizkit.wrap(net, input_shape=(1, 4, 4))
    result = vizkit.run_probe("actmax", model, "2", units="0:3", restarts=2, steps=20, out=tmp_path / "dead")
    assert result.meta["not_identifiable"]["units"] == [2]
    assert result.arrays["unmoved"].tolist() == [False, False, True]
    assert "Not identifiable (marked): unit(s) 2" in result.captions["stimuli"]
    texts = [t.get_text() for t in result.figures["stimuli"].axes[0].texts]
    assert texts == ["no gradient:\nnot identifiable"]
    from vizkit.probes.actmax import ActMax

    assert ActMax().unit_view(result, 2).text.startswith("not identifiable")
    assert ActMax().unit_view(result, 0).text.startswith("activation reached")


def test_units_that_never_switch_on_are_named_in_the_caption(fresh_host):
    """A sigmoid unit whose bias outweighs anything an input of this norm can add never exceeds ½:
    with the total input as target its best value is negative and the caption says so; a unit that
    does switch on is not named."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 3), torch.nn.Sigmoid())
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(3, 16) * 0.1)
        net[0].bias.copy_(torch.tensor([0.0, -50.0, 0.5]))
    model = vizkit.wrap(net, input_shape=[16])
    result = vizkit.run_probe("actmax", model, "1", units="0:3", rho=1.0, target="logit", restarts=2, steps=50)
    best = result.arrays["activations"].max(axis=1)
    assert best[1] < 0 < min(best[0], best[2])
    assert result.meta["never_on"] == [1]
    assert "Never switched on: unit(s) 1," in result.captions["stimuli"]
    # maximising the output itself, the probe cannot know the unit's midpoint: nothing is claimed
    plain = vizkit.run_probe("actmax", model, "1", units="0:3", rho=1.0, target="activation", restarts=2, steps=50)
    assert "never_on" not in plain.meta and "Never switched on" not in plain.captions["stimuli"]


def test_never_switched_on_on_a_users_resnet(fresh_host):
    """On a branching ResNet with a sigmoid on its logits, a class whose bias no input can overcome
    is named as never switched on, and exactly the units whose best logit is negative are named."""
    from .resnets import mynets

    torch.manual_seed(0)
    resnet = mynets().ResNet(widths=(4, 6, 8, 8), num_classes=3)
    head = [m for m in resnet.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias[1] = -1000.0
    model = vizkit.wrap(torch.nn.Sequential(resnet, torch.nn.Sigmoid()).eval(), input_shape=(3, 32, 32))
    result = vizkit.run_probe("actmax", model, "1", units="0:3", target="logit", restarts=2, steps=30)
    reached = result.arrays["activations"].max(axis=1)
    assert reached[1] < -30  # the sigmoid undone in float64: clamped near -36, far below 0
    assert result.meta["never_on"] == [u for u in range(3) if reached[u] < 0]
    assert 1 in result.meta["never_on"] and "Never switched on: unit(s) " in result.captions["stimuli"]


def test_default_target_is_the_total_input_where_the_layer_says_its_units_are_sigmoid_or_tanh(fresh_host):
    """``target auto`` (the default) maximises what Erhan et al. maximise on the layers that say they
    are sigmoid (the SDAE's, the DBN's, a wrapped nn.Sigmoid) or tanh, and the output elsewhere; the
    optimum and the value reached are those of the explicit target, and the caption names it."""
    from vizkit.probes.actmax import TARGET_TEXT

    from .resnets import mynets

    sdae = make_sdae("6,4")
    auto = vizkit.run_probe("actmax", sdae, "h1", units="0:3", rho=1.0, restarts=2)
    explicit = vizkit.run_probe("actmax", sdae, "h1", units="0:3", rho=1.0, target="logit", restarts=2)
    assert auto.meta["target"] == TARGET_TEXT["logit"] and "logit(h)" in auto.captions["stimuli"]
    np.testing.assert_allclose(auto.arrays["activations"], explicit.arrays["activations"])
    w = sdae.weight[0].detach().numpy().astype(np.float64)
    np.testing.assert_allclose(auto.arrays["activations"].max(axis=1),
                               np.linalg.norm(w[:3], axis=1) + sdae.hidden_bias[0].detach().numpy()[:3], rtol=2e-3)

    torch.manual_seed(0)
    resnet = mynets().ResNet(widths=(4, 6, 8, 8), num_classes=3)
    net = torch.nn.Sequential(resnet, torch.nn.Tanh()).eval()
    model = vizkit.wrap(net, input_shape=(3, 32, 32))
    tanh = vizkit.run_probe("actmax", model, "1", units="0:2", restarts=1, steps=20)
    assert tanh.meta["target"] == TARGET_TEXT["atanh"]
    with torch.no_grad():
        logits = resnet(torch.as_tensor(tanh.arrays["stimuli"])).double()
    np.testing.assert_allclose(tanh.arrays["activations"][:, 0], logits[torch.arange(2), torch.arange(2)].numpy(),
                               rtol=1e-3, atol=1e-3)
    inner = vizkit.run_probe("actmax", model, "0.fc", units="0:2", restarts=1, steps=5)
    assert inner.meta["target"] == TARGET_TEXT["activation"]


def test_layers_say_which_squashing_their_units_end_in(fresh_host):
    """The DBN's and SDAE's layers are sigmoid, a wrapped nn.Sigmoid / nn.Tanh says so and a
    layer that is not a squashing module says nothing (a sigmoid inside forward cannot be seen)."""
    from vizkit.models.rbm import DBN

    dbn = DBN([1, 8, 8], layers="6,5")
    assert {info.squash for info in dbn.layer_infos().values()} == {"sigmoid"}
    assert {info.squash for info in make_sdae("6,4").layer_infos().values()} == {"sigmoid"}
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 2), torch.nn.Tanh())
    infos = vizkit.wrap(net, input_shape=[4]).layer_infos()
    assert [infos[n].squash for n in ("0", "1", "2", "3")] == [None, "sigmoid", None, "tanh"]


@pytest.mark.parametrize("panel", ["thresholds", "restarts"])
def test_long_class_names_stay_inside_their_rows_and_the_title_inside_the_figure(panel):
    """A row label like "6 immunohistochemistry" once ran across the rows beside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from vizkit.probes.actmax.figures import restarts_panel, thresholds_panel

    names = ["astronaut", "hubble_deep_field", "immunohistochemistry", "retina"]
    images = np.random.default_rng(0).random((4, 3, 16, 16, 3))
    title = "actmax logits: the kept optimum after each number of steps, a title longer than the figure"
    if panel == "thresholds":
        fig = thresholds_panel(images, [64, 256, 512], [0, 1, 2, 3], title=title, mode="unit", names=names)
    else:
        fig = restarts_panel(images, np.random.default_rng(1).random((4, 3)), [0, 1, 2, 3], title=title,
                             mode="unit", names=names)
    fig.set_dpi(100)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    rows = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel().split()[0] for ax in rows] == ["0", "1", "2", "3"]
    for ax in rows:  # the label is no taller than the row (tile plus its share of the gap)
        pitch = abs(rows[1].get_position().y0 - rows[0].get_position().y0) * fig.get_figheight() * fig.dpi
        assert ax.yaxis.label.get_window_extent(renderer).height <= pitch, ax.get_ylabel()
    assert "hubble_deep_" in rows[1].get_ylabel() and "\n" in rows[2].get_ylabel()
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi
