"""The capsule autoencoder: shapes, the probe protocol, ablation options, refusals, divergence, recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vizkit
from vizkit.models.capsule import poses
from vizkit.models.capsule.model import CapsuleAE
from vizkit.models.capsule.renderer import render

TINY = dict(ccs=3, acs=2, distortion=2, template_size=4, hidden=8, dist_hidden=6)


def tiny(**kw) -> CapsuleAE:
    torch.manual_seed(0)
    model = CapsuleAE([1, 8, 8], **{**TINY, **kw})
    model.data_info = {"name": "digits", "options": {}, "input_shape": [1, 8, 8], "stats": {}}
    return model.eval()


def test_shapes_layers_and_capabilities():
    model = tiny()
    x = torch.rand(5, 1, 8, 8)
    assert set(model.capabilities) == {"activations", "input_grad", "reconstruct", "templates"}
    assert {k: v.shape for k, v in model.layer_infos().items()} == {
        "h1": (8,), "h2": (8,), "h3": (8,), "code": (3 * (7 + 2 + 1),), "manager": (3,)}
    for name, info in model.layer_infos().items():
        assert model.activations(x, name).shape == (5, *info.shape)
    parts = model.parts(x)
    assert parts["contributions"].shape == (5, 2, 1, 8, 8)
    assert parts["reconstructions"].shape == model.reconstruct(x).shape == (5, 1, 8, 8)
    assert model.templates()["templates"].shape == (2, 4, 4)
    assert (model.templates()["templates"] >= 0).all()


def test_reconstruction_is_the_output_model_of_the_contributions():
    model = tiny()
    parts = model.parts(torch.rand(4, 1, 8, 8))
    combined = poses.max_semi_soft(parts["contributions"][:, :, 0], dim=1)
    torch.testing.assert_close(parts["reconstructions"][:, 0], combined)


def test_components_are_noise_free_probabilities_in_any_mode():
    model = tiny()
    x = torch.rand(6, 1, 8, 8)
    y = model.components(x)
    torch.testing.assert_close(y.sum(1), torch.ones(6))
    model.train()
    # training mode: dropout would change the encoder, so compare the noise-free manager only
    model.encoder.p = 0.0
    torch.testing.assert_close(model.components(x), y)
    # the training forward adds uniform(0, 10) noise: its y differs from the noise-free one
    assert not torch.allclose(model.forward_parts(x)["y"], y)


def test_manager_init_scales_only_the_first_logits():
    """``manager_init`` multiplies the logit rows of the encoder's output layers and nothing else,
    so the initial noise-free logits are exactly that multiple and the poses are unchanged."""
    x = torch.rand(6, 1, 8, 8)
    one, five = tiny(manager_init=1.0), tiny(manager_init=5.0)
    c1, c5 = one.code(x), five.code(x)
    torch.testing.assert_close(c5[..., -1], 5.0 * c1[..., -1])
    torch.testing.assert_close(c5[..., :-1], c1[..., :-1])


def test_default_manager_starts_image_dependent_on_the_scale_of_its_noise():
    """With the default settings (logit gain 20) the first noise-free logits differ between images
    by ~9 with rectified units (~2.9 with the thesis's logistic ones; 20x the 0.14 of plain
    initialisation), of the order of the uniform(0, 10) noise: the thesis's manager needs a choice
    to sharpen; with logits 0.1 apart the training-time y is pure noise and the CCs never
    specialise (docs/models/capsule.md)."""
    from vizkit.datasets.mnist import _load_subset

    torch.manual_seed(0)
    x = torch.as_tensor(np.array(_load_subset(0)[0][:200])).reshape(-1, 1, 28, 28)
    model = CapsuleAE([1, 28, 28], dist_hidden=8).eval()
    with torch.no_grad():
        logits = model.code(x)[..., -1] * model.hparams["logit_gain"]
    spread = float(logits.std(0).mean())
    assert 6.0 < spread < 12.0, spread
    logistic = CapsuleAE([1, 28, 28], dist_hidden=8, activation="logistic").eval()
    with torch.no_grad():
        spread = float((logistic.code(x)[..., -1] * logistic.hparams["logit_gain"]).std(0).mean())
    assert 1.4 < spread < 6.0, spread


def test_forcing_a_component_uses_its_own_pose():
    model = tiny()
    x = torch.rand(2, 1, 8, 8)
    code = model.code(x)
    forced = model.forward_parts(x, component=torch.tensor([2, 0]))
    torch.testing.assert_close(forced["cc_pose"], torch.stack([code[0, 2, :7], code[1, 0, :7]]))
    torch.testing.assert_close(forced["y"], torch.tensor([[0.0, 0, 1], [1, 0, 0]]))


def test_sweep_at_zero_distortion_equals_decoding_the_pose():
    model = tiny()
    pose = torch.randn(7) * 0.1
    swept = model.sweep(torch.tensor([1, 1, 1]), pose.expand(3, 7), torch.zeros(3, 2))
    assert swept.shape == (3, 1, 8, 8)
    torch.testing.assert_close(swept[0], swept[2])
    direct = model.decode(pose[None], torch.zeros(1, 2), torch.tensor([[0.0, 1.0, 0.0]]))["reconstruction"]
    torch.testing.assert_close(swept[0, 0], direct[0])


@pytest.mark.parametrize("options", [dict(skip=False), dict(squaring=False), dict(dist_dropout=0.0),
                                     dict(negative_ink=True), dict(ccs=1), dict(distortion=0),
                                     dict(output_model="sum"), dict(optimizer="rmsprop"),
                                     dict(optimizer="conservative")])
def test_ablation_options_build_and_train_one_step(options):
    model = tiny(**options).train()
    opt = model.configure_optimizers()
    terms = model.loss_terms(torch.rand(4, 1, 8, 8))
    loss = sum(v for k, v in terms.items() if k != "mse")
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    if not options.get("skip", True):
        assert not hasattr(model.encoder, "out1")


def test_negative_ink_allows_negative_templates():
    model = tiny(negative_ink=True)
    with torch.no_grad():
        model.template_raw.fill_(-0.5)
    assert (model.templates()["templates"] < 0).all()
    assert (tiny().templates()["templates"] >= 0).all()


def test_penalties():
    model = tiny()
    terms = model.loss_terms(torch.rand(4, 1, 8, 8))
    assert set(terms) == {"sq_error", "det", "code", "canvas", "weight", "usage", "mse"}
    # with the default AC scale 2 no capsule is over-scaled, so the determinant penalty is 0
    assert float(terms["det"].detach()) == 0.0
    # the canvas term: Σ over ACs of how far each centre lies outside the unit square, squared
    from vizkit.models.capsule import poses

    x = torch.rand(4, 1, 8, 8)
    before = float(model.loss_terms(x)["canvas"].detach())
    with torch.no_grad():
        model.distortion_net.out3.bias.view(2, 7)[0, 1] -= 2.0  # AC 0 moves 2 image widths right
    centre = poses.template_centre(model.forward_parts(x)["matrices"])
    want = model.hparams["canvas_penalty"] * torch.relu((centre - 0.5).abs() - 0.5).square().sum((1, 2)).mean()
    got = float(model.loss_terms(x)["canvas"].detach())
    assert got == pytest.approx(float(want), rel=1e-4) and got > before + 1.0
    # the use-all-components term is smallest for uniform usage: K log K
    model.hparams["noise"] = 0.0
    with torch.no_grad():
        model.encoder.out3.weight_raw.zero_()
        model.encoder.out1.weight_raw.zero_()
        model.encoder.out2.weight_raw.zero_()
    usage = float(model.loss_terms(torch.rand(4, 1, 8, 8))["usage"].detach())
    assert usage == pytest.approx(model.hparams["usage_penalty"] * 3 * math.log(3), rel=1e-5)


def test_weight_decay_equals_the_thesis_formula_on_the_weights_in_use():
    """The fused excess decay is Σ max(0, |θ| − 0.1)² of the effective numbers, with that gradient."""
    from vizkit.models.capsule.model import excess_decay

    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)  # plenty of numbers above 0.1 so the test can fail
    plain = sum(torch.nn.functional.relu(p.abs() - 0.1).square().sum() for p in model.effective_parameters())
    fused = sum(excess_decay(p, s) for p, s in model.scaled_parameters())
    assert float(plain.detach()) > 1.0
    assert float(fused.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    for scale in (1.0, 0.05):
        raw = (torch.randn(6, 5, dtype=torch.float64) * 3).requires_grad_()
        assert torch.autograd.gradcheck(lambda r, s=scale: excess_decay(r, s), (raw,))


def test_weight_decay_skips_tensors_inside_the_limit_and_gives_the_same_bits():
    """A tensor with no number past the limit adds exactly 0 and no gradient, as the full path
    would; one number past it (even by one float32 step at the limit) takes the full path."""
    from vizkit.models.capsule.model import _ExcessSquare, excess_decay

    scale = 0.05
    limit = torch.tensor(0.1 / scale, dtype=torch.float32)  # the clamp's limit, in float32
    inside = (torch.rand(40, 30) * 2 - 1) * limit
    inside[0, 0] = limit  # on the limit: no excess
    past = inside.clone()
    past[3, 4] = torch.nextafter(limit, torch.tensor(math.inf))
    for raw, skipped in ((inside, True), (past, False)):
        a = raw.clone().requires_grad_()
        b = raw.clone().requires_grad_()
        fast, full = excess_decay(a, scale), _ExcessSquare.apply(b, scale)
        assert torch.equal(fast.detach(), full.detach()) and (fast.grad_fn is None) == skipped
        ((a * 3).sum() + fast).backward()
        ((b * 3).sum() + full).backward()
        assert torch.equal(a.grad, b.grad)
    assert float(_ExcessSquare.apply(past, scale)) > 0


def test_cosine_schedule_runs_from_lr_to_its_final_fraction():
    model = tiny(lr_final=0.05, warmup=0.1)
    total = 100
    factors = [model.lr_factor(step, total) for step in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # linear warm-up
    assert factors[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))  # then only down
    assert tiny(lr_schedule="constant").lr_factor(50, total) == 1.0
    assert tiny().lr_factor(0, total) == 1.0  # no warm-up by default


def test_harness_decays_the_learning_rate_over_the_whole_run(cli, tmp_path, fresh_host):
    """The scheduler is sized from the trainer's run (epochs × batches), so the last step of
    ``--epochs 2`` trains at lr_final × lr."""
    out = tmp_path / "m.pt"
    args = ["train", "capsule", "--data", "digits", "--epochs", "2", "--out", str(out), "--lr", "0.01",
            "--log-dir", str(tmp_path / "logs")] + [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    res = cli(*args)
    assert res.code == 0, res.err
    ckpt = torch.load(next((tmp_path / "logs").rglob("last.ckpt")), weights_only=False)
    (sched,) = ckpt["lr_schedulers"]
    steps = ckpt["global_step"]
    assert steps > 10 and sched["last_epoch"] == steps
    assert sched["_last_lr"][0] == pytest.approx(0.01 * 0.02, rel=0.05)


def test_the_thesis_optimiser_records_which_rule_set_the_steps(cli, tmp_path, fresh_host):
    """Fig. 2.13's data: every RULE_EVERY updates, the share of numbers each rule set, in the model file."""
    from vizkit.models.capsule.model import RULE_EVERY

    out = tmp_path / "m.pt"
    args = ["train", "capsule", "--data", "digits", "--epochs", "2", "--out", str(out), "--optimizer", "conservative",
            "--log-dir", str(tmp_path / "logs")] + [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    res = cli(*args)
    assert res.code == 0, res.err
    rules = vizkit.load(out).metrics["optimizer_rules"]
    assert len(rules["step"]) >= 2 and all(s % RULE_EVERY == 0 for s in rules["step"])
    shares = np.asarray(rules["share"])
    np.testing.assert_allclose(shares.sum(1), 1.0, atol=1e-4)
    assert (shares[:, 2:].sum(1) > 0.95).all()  # the thesis: rules 1 and 2 almost never set a step


def test_data_that_is_not_2d_images_is_refused(cli, tmp_path, fresh_host):
    np.save(tmp_path / "flat.npy", np.random.rand(50, 10).astype(np.float32))
    res = cli("train", "capsule", "--data", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "m.pt"))
    assert res.code == 2
    assert "2-D single-channel images" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(vizkit.DataError):
        CapsuleAE.hparams_from_options({}, input_shape=(3, 8, 8), data={}, lr=None)


def test_nan_stops_training_with_the_last_good_checkpoint_kept(cli, tmp_path, fresh_host, monkeypatch):
    original = CapsuleAE.loss_terms

    def poisoned(self, x):
        terms = original(self, x)
        if self.current_epoch >= 1:
            terms["sq_error"] = terms["sq_error"] * float("nan")
        return terms

    monkeypatch.setattr(CapsuleAE, "loss_terms", poisoned)
    monkeypatch.setattr("vizkit.training.CHECK_EVERY", 1)  # last.ckpt after every epoch
    out = tmp_path / "m.pt"
    args = ["train", "capsule", "--data", "digits", "--epochs", "3", "--out", str(out),
            "--log-dir", str(tmp_path / "logs")] + [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    res = cli(*args)
    assert res.code == 1, res.err
    assert "diverged" in res.err and "last good checkpoint" in res.err and "Traceback" not in res.err
    last = next((tmp_path / "logs").rglob("last.ckpt"))  # the harness's, written after epoch 0
    assert str(last) in res.err
    assert not out.exists()
    model = vizkit.load(last)  # the kept checkpoint loads and reconstructs
    assert torch.isfinite(model.reconstruct(torch.rand(2, 1, 8, 8))).all()


def _true_template(h: int = 7) -> torch.Tensor:
    t = torch.zeros(h, h, dtype=torch.float64)
    t[1:6, 1] = 1.0
    t[5, 1:6] = 1.0
    t[1, 1:4] = 0.6  # an L with a short top bar: no symmetry to hide behind
    return t


def _posed_data(n: int, seed: int, side: int = 16):
    g = torch.Generator().manual_seed(seed)
    nice = torch.zeros(n, 6, dtype=torch.float64)
    nice[:, :2] = (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 0.3
    nice[:, 2:4] = 1.6 + 0.6 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    nice[:, 5] = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 0.6
    intensity = 0.6 + 0.4 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    matrices = poses.nice_to_matrix(nice)
    x = render(_true_template()[None], matrices[:, None], intensity, (side, side))
    return x.float(), matrices


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double() - a.double().mean(), b.flatten().double() - b.double().mean()
    return float(a @ b / (a.norm() * b.norm()))


def _template_in_learned_frame(frame: torch.Tensor, h: int = 7) -> torch.Tensor:
    """The true template resampled on the learned template's points (``frame``: learned → true)."""
    s = h / (h - 1)  # output pixel centres of an h×h rendering = template points
    fix = poses.nice_to_matrix(torch.tensor([0, 0, s, s, 0, 0], dtype=torch.float64))
    return render(_true_template()[None], (frame @ fix).reshape(1, 1, 3, 3),
                  torch.ones(1, 1, dtype=torch.float64), (h, h))[0, 0]


def test_given_the_true_poses_the_decoder_recovers_the_template():
    """Fast half of the recovery check: the renderer's template gradient alone finds the template."""
    x, matrices = _posed_data(400, seed=0)
    raw = torch.nn.Parameter(poses.ink_inverse(torch.full((1, 7, 7), 0.2, dtype=torch.float64)))
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(150):
        rec = poses.max_semi_soft(render(poses.ink(raw), matrices[:, None], torch.ones(400, 1, dtype=torch.float64),
                                         (16, 16)) * 0.8)
        loss = (rec - x[:, 0].double()).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _corr(poses.ink(raw).detach()[0], _true_template()) > 0.95


@pytest.mark.slow
def test_one_capsule_model_recovers_a_known_template_and_its_poses(measured):
    """Data = one known template at random poses; a 1-CC, 1-AC model recovers both.

    The template is identified up to one fixed change of its frame (any warp G of the template
    is undone by the poses), so G = M_true · M_learned⁻¹ is estimated from the data, the true
    template is resampled on the learned template's points through G, and then compared.
    """
    x, true_m = _posed_data(2000, seed=0)
    torch.manual_seed(0)
    model = CapsuleAE([1, 16, 16], ccs=1, acs=1, distortion=0, template_size=7, hidden=64, dist_hidden=8,
                      dropout=0.0, dist_dropout=0.0, ac_scale=1.0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _epoch in range(30):
        for i in range(0, len(x), 50):
            terms = model.loss_terms(x[i : i + 50])
            loss = sum(v for k, v in terms.items() if k != "mse")
            opt.zero_grad()
            loss.backward()
            opt.step()
    x_test, m_test = _posed_data(300, seed=1)
    model.eval()
    with torch.no_grad():
        learned_m = model.forward_parts(x_test)["matrices"][:, 0].double()
    frames = m_test @ torch.linalg.inv(learned_m)
    frame = frames.mean(0)
    learned = model.templates()["templates"].detach()[0]
    assert measured("template correlation", _corr(_template_in_learned_frame(frame), learned), "> 0.95") > 0.95
    # the poses: where each image's true template centre lands, found from the learned pose
    centre = torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)
    true_pos = torch.linalg.solve(m_test, centre.expand(300, 3).unsqueeze(-1))[..., :2, 0]
    found = torch.linalg.solve(frame @ learned_m, centre.expand(300, 3).unsqueeze(-1))[..., :2, 0]
    along = [measured(f"pose correlation, {axis}", _corr(true_pos[:, i], found[:, i]), "> 0.9") for i, axis in enumerate("xy")]
    assert min(along) > 0.9


@pytest.mark.slow
def test_default_mnist_model_specialises_and_clusters_at_half_the_kmeans_error(measured, tmp_path, fresh_host):
    """Issue 24: the 50-epoch default on the MNIST subset clusters at most half as wrongly as k-means
    (25 clusters, same protocol, same split), its manager is sure (max y >= 0.9) on at least 80% of
    the training images (measured 84%; the thesis 90%), and its components specialise: forced onto
    another digit's image a component draws its own digit far more often than the input's (measured
    58% / 17% for this seed; the 30-variable defaults before: 4% / 73%). An untrained or
    unspecialised model fails every bound."""
    from vizkit.models.capsule.evaluate import kmeans_cluster_error, pca_mse
    from vizkit.training import build_data, train

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        path = train("capsule", "mnist", out=tmp_path / "c.pt", epochs=50, batch_size=100, seed=0,
                     log_dir=tmp_path / "logs", progress=False)
    finally:
        torch.set_num_threads(threads)
    model = vizkit.load(path)
    ev = model.metrics["evaluation"]
    c, spec = ev["clustering"], ev["clustering"]["specialisation"]
    dm = build_data("mnist", {}, 100, 0)
    xtr, xte = dm.train_tensor().numpy(), dm.test_tensor().numpy()
    km = kmeans_cluster_error(xtr, dm.train_labels().numpy(), xte, dm.test_labels().numpy(), 25, 0)["error"]
    error = measured("25-label clustering error / k-means'", c["error"] / km, "<= 0.5")
    own = measured("wrong component draws its own digit", spec["wrong_draws_own"], "> 1.5 x the input's")
    drawn_input = measured("wrong component draws the input's digit", spec["wrong_draws_input"], "< own / 1.5")
    ratio = measured("specialisation ratio (others' error / own)", spec["median_ratio"], ">= 2.5")
    pca = pca_mse(xtr, xte, 7 + model.n_dist)["test_mse"]
    mse = measured("held-out MSE / PCA with one CC's code size", ev["test_mse"] / pca, "< 0.75")
    sure = measured("manager max y >= 0.9 (training images)", c["max_y_ge_0.9"], ">= 0.8")
    assert error <= 0.5 and own > 1.5 * drawn_input and ratio >= 2.5 and mse < 0.75 and sure >= 0.8


def test_faces_dataset_is_the_scikit_image_lfw_subset(fresh_host):
    from skimage.data import lfw_subset

    from vizkit.training import build_data

    dm = build_data("faces", {}, 50, 0)
    assert dm.input_shape == (1, 25, 25) and dm.stats["n_train"] == 80 and dm.stats["n_test"] == 20
    faces = np.asarray(lfw_subset(), dtype=np.float32)[:100]  # the first 100 are faces, then background crops
    train = dm.train_tensor().numpy()[:, 0]
    # every training image is one of the 100 shipped faces (none of the background crops)
    rows = {f.tobytes() for f in (faces - faces.min()) / (faces.max() - faces.min())}
    assert all(t.tobytes() in rows for t in train)
    test = dm.test_tensor().numpy()[:, 0]
    assert not {t.tobytes() for t in train} & {t.tobytes() for t in test}


def test_cluster_protocol_names_each_cluster_by_its_most_confident_member():
    from vizkit.models.capsule.evaluate import cluster_error, manager_confidence, pca_mse

    clusters = np.array([0, 0, 0, 1, 1, 2])
    confidence = np.array([0.2, 0.9, 0.5, 0.7, 0.6, 0.1])
    labels = np.array([3, 5, 3, 1, 1, 7])  # cluster 0's most confident member says 5, not the majority 3
    out = cluster_error(clusters, confidence, labels, np.array([0, 1, 2, 3]), np.array([5, 1, 7, 4]), 4)
    assert out["cluster_labels"] == [5, 1, 7, -1]
    assert out["error"] == pytest.approx(0.25)  # cluster 3 had no training image: counted wrong
    y = np.array([[1.0, 0.0], [0.5, 0.5], [0.95, 0.05]])
    conf = manager_confidence(y)
    assert conf["max_y_ge_0.99"] == pytest.approx(1 / 3) and conf["max_y_ge_0.9"] == pytest.approx(2 / 3)
    # PCA with as many components as the data's rank reconstructs exactly
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 16))
    assert pca_mse(x, x[:10], 3)["test_mse"] < 1e-20
