"""The gamma invariance probe: known answers on white noise, an independent NumPy computation, a
naive per-set loop, figures and bad input."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit import image_transforms
from vizkit.checkpoint import save_checkpoint
from vizkit.probes.gamma import paper_setting


def _crop_average(w: np.ndarray, step: int = 1) -> np.ndarray:
    """w̄: the filter placed at the 16 crop offsets of the source frame and averaged."""
    h, wd = w.shape
    frame = np.zeros((h + 3 * step, wd + 3 * step))
    for i in range(4):
        for j in range(4):
            frame[i * step:i * step + h, j * step:j * step + wd] += w / 16
    return frame


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory):
    """i.i.d. unit-variance noise images 3 px larger than a 6x6 model input (3,000 test images)."""
    path = tmp_path_factory.mktemp("noise") / "noise.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.standard_normal((30_000, 9, 9)).astype(np.float32))
    return path


def _linear_units(filters: np.ndarray) -> vizkit.WrappedModel:
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, len(filters), bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.from_numpy(filters.reshape(len(filters), 36)))
    return vizkit.wrap(net, input_shape=(1, 6, 6), layers=["1"])


def test_white_noise_linear_units_have_the_closed_form_gamma(fresh_host, noise_file):
    rng = np.random.default_rng(1)
    pixel = np.zeros((6, 6))
    pixel[2, 3] = 1.0
    mean = np.full((6, 6), 1 / 36)
    filters = np.stack([pixel, mean, rng.standard_normal((6, 6))])
    model = _linear_units(filters)
    result = vizkit.run_probe("gamma", model, "1", data=str(noise_file), sets=3000)
    expected = np.array([(_crop_average(f) ** 2).sum() / (f ** 2).sum() for f in filters])
    assert expected[0] == pytest.approx(1 / 16)
    # docs/methods.md's value (§gamma) for the mean of a 16x16 crop (the crops overlap): 0.85
    assert (_crop_average(np.ones((16, 16))) ** 2).sum() / 256 == pytest.approx(0.85, abs=0.001)
    # sampling error of a variance ratio over 3,000 sets: relative sd about sqrt(2 / 3000) = 2.6%
    np.testing.assert_allclose(result.arrays["gamma"], expected, rtol=0.1)
    assert result.meta["sets"] == 3000 and result.meta["layer_names"] == ["input", "1"]
    # the input's own γ: every pixel is a one-pixel unit
    assert result.arrays["layer_gamma"][0] == pytest.approx(1 / 16, rel=0.1)


def test_step_two_crops_overlap_less(fresh_host, noise_file):
    mean = np.full((1, 6, 6), 1 / 36)
    one = vizkit.run_probe("gamma", _linear_units(mean), "1", data=str(noise_file), sets=3000)
    two = vizkit.run_probe("gamma", _linear_units(mean), "1", data=str(noise_file), sets=3000, step=2)
    # a 9x9 source is too small for step 2 (needs 12x12): the frame is zero-padded, so compare
    # with the formula on the padded frame, which is the same as for i.i.d. noise on the overlap
    w = mean[0]
    assert one.arrays["gamma"][0] == pytest.approx((_crop_average(w) ** 2).sum() / (w ** 2).sum(), rel=0.1)
    assert two.arrays["gamma"][0] < one.arrays["gamma"][0]


@pytest.fixture(scope="module")
def ladder_file(tmp_path_factory):
    """A small Mod ladder on 8x8 PCA-whitened patches (random weights), saved once per module."""
    from vizkit.datasets import patches
    from vizkit.models.ladder import Ladder

    dm = patches.build(size=8, whiten="pca", n_train=2000, n_test=10)
    torch.manual_seed(0)
    model = Ladder(input_shape=[1, 8, 8], decoder="mod", layers="20,6", data_std=float(dm.stats["pixel_std"]))
    with torch.no_grad():
        model.weight[1].mul_(-1.0)  # negative pooling weights: the invariant kind (supplementary 4.3.2)
    model.data_info = dm.describe()
    return save_checkpoint(model.to_checkpoint(), tmp_path_factory.mktemp("ladder") / "ladder.pt")


def test_gamma_equals_an_independent_numpy_computation(fresh_host, ladder_file):
    model = vizkit.load(ladder_file)
    result = vizkit.run_probe("gamma", model, "h1", sets=300, transform="rotation", memory_mb=1.0)
    assert result.meta["chunk_sets"] < 300  # several chunks were accumulated
    source = image_transforms.set_source(model, "rotation", n_sets=300, seed=0)
    x = source.sets("rotation").reshape(300 * 16, -1).double().numpy() / model.hparams["data_std"]
    w = [p.detach().double().numpy() for p in model.weight]
    b = [p.detach().double().numpy() for p in model.bias]
    c = [model.centre(i).double().numpy() for i in range(2)]
    h1 = np.maximum(x @ w[0].T + b[0], 0) + c[0]
    h2 = np.maximum(h1 @ w[1].T + b[1], 0) + c[1]

    def gamma(a):
        a = a.reshape(300, 16, -1)
        return a.mean(axis=1).var(axis=0) / a.reshape(300 * 16, -1).var(axis=0)

    np.testing.assert_allclose(result.arrays["gamma"], gamma(h1), rtol=1e-4, atol=1e-6)
    expected_layers = [gamma(x).mean(), gamma(h1).mean(), gamma(h2).mean()]
    np.testing.assert_allclose(result.arrays["layer_gamma"], expected_layers, rtol=1e-4)
    np.testing.assert_allclose(result.arrays["weight_sign"], np.sign(w[0] / 1.0).mean(axis=1), atol=1e-6)
    # the chunking does not change the answer
    whole = vizkit.run_probe("gamma", model, "h1", sets=300, transform="rotation")
    np.testing.assert_allclose(whole.arrays["gamma"], result.arrays["gamma"], rtol=1e-4)


def test_gamma_agrees_with_a_naive_per_set_loop(fresh_host, ladder_file):
    """A second implementation: every set on its own, every copy its own forward pass, two-pass
    variances in Python floats."""
    model = vizkit.load(ladder_file)
    result = vizkit.run_probe("gamma", model, "h2", sets=25, transform="translation")
    source = image_transforms.set_source(model, "translation", n_sets=25, seed=0)
    acts = []
    for s in range(25):
        copies = source.sets("translation", s, s + 1)[0]
        acts.append([model.activations(copies[k:k + 1], "h2")[0].detach().double().numpy() for k in range(16)])
    acts = np.array(acts)  # [sets, 16, units]
    for u in range(acts.shape[2]):
        values = acts[:, :, u]
        grand = sum(sum(row) for row in values) / values.size
        total = sum(sum((v - grand) ** 2 for v in row) for row in values) / values.size
        between = sum((sum(row) / 16 - grand) ** 2 for row in values) / 25
        assert result.arrays["gamma"][u] == pytest.approx(between / total, rel=1e-5, abs=1e-7)


def test_significance_follows_the_supplementary_definition(fresh_host, ladder_file):
    model = vizkit.load(ladder_file)
    result = vizkit.run_probe("gamma", model, "h2", sets=60, pool_starts=2, pool_links=2, pool_members=5)
    assert result.meta["significance"] == "decoder"
    source = image_transforms.set_source(model, "translation", n_sets=60, seed=0)
    x = source.sets("translation").reshape(60 * 16, 1, 8, 8)
    h1 = model.activations(x, "h1").detach().double()
    h2 = model.activations(x, "h2").detach().double()
    w = model.weight[1].detach().double()
    feed = w ** 2 * h2.var(dim=0, unbiased=False)[:, None]
    sig = feed / feed.sum(dim=0) * h1.var(dim=0, unbiased=False)
    np.testing.assert_allclose(result.arrays["significance"], (sig.sum(dim=1) / sig.sum()).numpy(), rtol=1e-4)
    assert result.arrays["significance"].sum() == pytest.approx(1.0)
    # pooling groups: the start units are the h1 units with the largest total significance
    assert result.arrays["pool_start"].tolist() == torch.argsort(sig.sum(dim=0), descending=True)[:2].tolist()
    assert result.arrays["pool_members"].shape == (2, 2, 5)
    assert set(result.figures) == {"scatter", "depth", "pooling"}


def test_all_transforms_and_the_written_result(fresh_host, ladder_file, tmp_path, cli):
    out = tmp_path / "g"
    res = cli("probe", "--probe", "gamma", str(ladder_file), "--layer", "h2", "-o", "transform", "all",
              "-o", "sets", "20", "-o", "pool_starts", "2", "--out", str(out))
    assert res.code == 0, res.err
    meta = json.loads((out / "result.json").read_text())
    assert meta["transforms"] == ["translation", "rotation", "scale"]
    with np.load(out / "arrays.npz") as arrays:
        for kind in image_transforms.KINDS:
            assert arrays[f"gamma_{kind}"].shape == (6,) and arrays[f"layer_gamma_{kind}"].shape == (3,)
            assert ((arrays[f"gamma_{kind}"] >= 0) & (arrays[f"gamma_{kind}"] <= 1)).all()
        np.testing.assert_array_equal(arrays["gamma"], arrays["gamma_translation"])
    for name in ("scatter.png", "depth.png", "pooling.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_size_images_and_conv_maps(fresh_host, tmp_path):
    """MNIST-like data the size of the input: copies shifted with zero fill; a conv layer's units
    are its channels' spatial means."""
    path = tmp_path / "imgs.npy"
    np.save(path, np.random.default_rng(0).random((200, 1, 10, 10)).astype(np.float32))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    model = vizkit.wrap(net, input_shape=(1, 10, 10), layers=["0", "1"])
    result = vizkit.run_probe("gamma", model, "1", data=str(path), sets=20, transform="scale")
    assert result.arrays["gamma"].shape == (4,) and result.meta["significance"] == "variance"
    assert "zero fill" in result.meta["source"]
    at = vizkit.run_probe("gamma", model, "1", data=str(path), sets=20, transform="scale", position="3,3")
    assert not np.allclose(at.arrays["gamma"], result.arrays["gamma"])


def test_bad_input_is_refused(fresh_host, ladder_file, tmp_path, cli, noise_file):
    ckpt = str(ladder_file)
    res = cli("probe", "--probe", "gamma", ckpt, "--layer", "h1", "-o", "transform", "shear", "--out", str(tmp_path / "o"))
    assert res.code == 2 and "translation" in res.err and "Traceback" not in res.err
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((50, 5, 5), dtype=np.float32))
    res = cli("probe", "--probe", "gamma", ckpt, "--layer", "h1", "-o", "data", str(small), "--out", str(tmp_path / "o"))
    assert res.code == 2 and "too small" in res.err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    # a layer whose units never change: γ is undefined, said in one line, no NaN figure
    dead = nn.Sequential(nn.Flatten(), nn.Linear(36, 3), nn.ReLU())
    with torch.no_grad():
        dead[1].weight.zero_()
        dead[1].bias.fill_(-1.0)
    wrapped = vizkit.wrap(dead, input_shape=(1, 6, 6), layers=["2"])
    with pytest.raises(vizkit.ProbeFailure, match="gamma is undefined for '2'.*constant"):
        vizkit.run_probe("gamma", wrapped, "2", data=str(noise_file), sets=10)
    with pytest.raises(vizkit.OptionError, match="significance 'decoder' needs"):
        vizkit.run_probe("gamma", wrapped, "2", data=str(noise_file), sets=10, significance="decoder")


def test_dead_units_are_left_out_not_nan(fresh_host, noise_file):
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 3), nn.ReLU())
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor([-100.0, 0.0, 0.0]))
    model = vizkit.wrap(net, input_shape=(1, 6, 6), layers=["2"])
    result = vizkit.run_probe("gamma", model, "2", data=str(noise_file), sets=50)
    assert result.arrays["defined"].tolist() == [False, True, True]
    assert result.meta["undefined_units"] == 1 and np.isfinite(result.arrays["gamma"]).all()
    assert result.arrays["layer_gamma"][1] == pytest.approx(result.arrays["gamma"][1:].mean())


def test_the_paper_column_is_read_from_the_one_data_file(fresh_host, noise_file):
    """Table 1 of the paper is written once, in vizkit/paper_numbers.toml (package data): what the
    probe stores and prints beside its own γ is exactly that file's rows."""
    import tomllib
    from importlib import resources

    from vizkit import papers

    raw = tomllib.loads(resources.files("vizkit").joinpath("paper_numbers.toml").read_text(encoding="utf-8"))
    rows = raw["rasmus2015"]["table1"]
    assert len(rows) == 12 and {r["data"] for r in rows} == {"CIFAR-10", "O&F"}
    assert all(len(r["gamma_translation"]) == r["sizes"].count("-") + 1 for r in rows if r["model"] != "Linear")
    assert papers.rasmus2015_row("CIFAR-10", "Mod").gamma_translation == (0.20, 0.31, 0.84)
    assert papers.rasmus2015_row("O&F", "Add", hidden_layers=1).cost == 0.11891  # the one-layer "Add/Mod"
    assert papers.tieleman2014_capsule_mnist().test_mse == raw["tieleman2014"]["capsule_mnist"]["test_mse"]

    # the paper's setting (the reference ladder on its own 16x16 natural-image patches): the caption
    # quotes Table 1, and result.json holds exactly the file's rows
    from vizkit.datasets import patches
    from vizkit.models.ladder import Ladder

    dm = patches.build(size=16, whiten="pca", n_train=500, n_test=10)
    torch.manual_seed(0)
    ladder = Ladder(input_shape=[1, 16, 16], decoder="mod", layers="12,4", data_std=float(dm.stats["pixel_std"]))
    ladder.data_info = dm.describe()
    assert paper_setting(ladder, None) and not paper_setting(ladder, str(noise_file))
    result = vizkit.run_probe("gamma", ladder, "h2", sets=10, pool_starts=0)
    assert result.meta["paper_setting"] is True
    want = {f"{r['data']} {r['model']} {r['sizes']}": r["gamma_translation"] for r in rows if "gamma_translation" in r}
    assert result.meta["paper_table1_translation"] == want
    caption = result.captions["depth"]
    for r in rows:
        if r["data"] == "CIFAR-10" and "gamma_translation" in r and r["sizes"].count("-") == 2:
            assert f"{r['model']} " + "/".join(f"{g:.2f}" for g in r["gamma_translation"]) in caption


def test_the_paper_is_quoted_only_in_its_setting(fresh_host, noise_file, ladder_file):
    """A user's module, or the ladder on other patches, is not the paper's experiment: the caption
    says what was measured and quotes no Table 1 numbers."""
    result = vizkit.run_probe("gamma", _linear_units(np.eye(36)[:2].reshape(2, 6, 6)), "1",
                              data=str(noise_file), sets=20)
    assert result.meta["paper_setting"] is False and "paper_table1_translation" not in result.meta
    caption = result.captions["depth"]
    assert "CIFAR" not in caption and "Table 1" not in caption and "20 sets of 16 copies" in caption
    ladder = vizkit.load(ladder_file)  # the ladder on 8x8 patches: not the paper's 16x16
    assert not paper_setting(ladder, None)
    assert "CIFAR" not in vizkit.run_probe("gamma", ladder, "h2", sets=10, pool_starts=0).captions["depth"]


def _folder(path, n: int, side: int = 9):
    """``n`` grey PNG images of noise in ``path``."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray((rng.random((side, side)) * 255).astype(np.uint8)).save(path / f"photo_{i:02d}.png")
    return path


def test_a_small_folder_uses_every_image_and_says_so(fresh_host, tmp_path, cli):
    """15 photographs: all 15 become sets (not a 10% test split), the shortfall against the default
    1,000 sets is one line on stderr and in result.json."""
    folder = _folder(tmp_path / "photos", 15)
    model = _linear_units(np.random.default_rng(0).standard_normal((3, 6, 6)))
    result = vizkit.run_probe("gamma", model, "1", data=str(folder))
    assert result.meta["sets"] == 15 and result.meta["sets_asked"] == 1000
    assert result.meta["notes"] == ["used 15 of 1000 transformation sets: the data holds 15 images"]
    assert "15 sets of 16 copies" in result.captions["depth"]
    source = image_transforms.set_source(model, "translation", data=str(folder), n_sets=1000)
    from vizkit.datasets.user import load_image_folder

    np.testing.assert_array_equal(source.sources.numpy(), load_image_folder(folder))  # file order, all of it


def test_too_few_images_are_refused_in_one_line(fresh_host, tmp_path, cli):
    import torch.nn as tnn

    from vizkit.probes.gamma import MIN_SETS

    folder = _folder(tmp_path / "few", MIN_SETS - 1)
    net = tnn.Sequential(tnn.Flatten(), tnn.Linear(36, 2))
    model = vizkit.wrap(net, input_shape=(1, 6, 6), layers=["1"])
    with pytest.raises(vizkit.DataError, match=f"at least {MIN_SETS} transformation sets.*only {MIN_SETS - 1}"):
        vizkit.run_probe("gamma", model, "1", data=str(folder))
    with pytest.raises(vizkit.OptionError):
        vizkit.run_probe("gamma", model, "1", data=str(folder), sets=MIN_SETS - 1)


def test_a_deep_networks_depth_figure_stays_narrow(fresh_host, noise_file):
    """60 layers (a ResNet's worth of wrapped modules): the depth figure caps its width instead of
    growing ~1.2 inches a layer, and the caption abbreviates the values."""
    from PIL import Image

    from vizkit.output import figure_png

    torch.manual_seed(0)
    blocks = [nn.Flatten()] + [m for _ in range(30) for m in (nn.Linear(36, 36), nn.Tanh())]
    net = nn.Sequential(*blocks)
    for m in blocks[1::2]:  # norm-preserving, so 30 layers deep the units still vary
        nn.init.orthogonal_(m.weight, gain=1.5)
        nn.init.zeros_(m.bias)
    names = [str(i) for i in range(1, 61)]
    model = vizkit.wrap(net, input_shape=(1, 6, 6), layers=names)
    result = vizkit.run_probe("gamma", model, "60", data=str(noise_file), sets=10)
    assert len(result.meta["layer_names"]) == 61
    import io

    width, height = Image.open(io.BytesIO(figure_png(result.figures["depth"]))).size
    assert width <= 2500 and height <= 1500
    assert "more in arrays.npz" in result.captions["depth"]
