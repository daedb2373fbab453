"""``occlusion``: equals captum's Occlusion; zero outside a unit's receptive field; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.checkpoint import save_checkpoint

from .conftest import make_sdae
from .test_convnet import make_convnet


def small_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 25, 3)).eval()


def saved_images(tmp_path, n: int = 6) -> str:
    data = np.random.default_rng(0).random((n, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    return str(tmp_path / "x.npy")


@pytest.mark.parametrize(("window", "stride"), [(5, 3), (4, 4), (3, 1)])
def test_equals_captum_occlusion(fresh_host, tmp_path, window, stride):
    from captum.attr import Occlusion

    net = small_net()
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["1", "4"])
    result = vizkit.run_probe("occlusion", model, "1", units="0,2,3", data=saved_images(tmp_path), split="all",
                              images="0:3", window=window, stride=stride, fill=0.25, output="4")
    images = torch.from_numpy(result.arrays["images"])

    def summed(x: torch.Tensor) -> torch.Tensor:  # the unit's activation summed over its feature map
        return net[:2](x).sum(dim=(2, 3))

    for j, unit in enumerate([0, 2, 3]):
        expected = Occlusion(summed).attribute(images, sliding_window_shapes=(1, window, window),
                                               strides=(1, stride, stride), baselines=0.25, target=unit)
        np.testing.assert_allclose(result.arrays["attribution"][j], expected[:, 0].numpy(), rtol=1e-4, atol=1e-4)


def test_zero_outside_the_receptive_field_and_the_direct_difference_inside(fresh_host, tmp_path):
    net = small_net()
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["0", "4"])
    # unit 1 of the 3x3 conv at position (4, 6) sees rows 4..6 and columns 6..8
    result = vizkit.run_probe("occlusion", model, "0", units="1", data=saved_images(tmp_path), split="all",
                              images="0:2", window=2, stride=1, fill=0.5, position="4,6", output="4")
    maps = result.arrays["activation_maps"][0]  # [images, 11, 11] window positions
    base = result.arrays["baseline_activation"][0]
    images = torch.from_numpy(result.arrays["images"])
    touched = 0
    for i in range(2):
        for r in range(11):
            for c in range(11):
                overlaps = r + 2 > 4 and r <= 6 and c + 2 > 6 and c <= 8
                if not overlaps:
                    assert maps[i, r, c] == base[i]
                    continue
                x = images[i:i + 1].clone()
                x[..., r:r + 2, c:c + 2] = 0.5
                with torch.no_grad():
                    direct = float(net[0](x)[0, 1, 4, 6])
                assert maps[i, r, c] == pytest.approx(direct, abs=1e-5)
                touched += maps[i, r, c] != base[i]
    assert touched > 0
    attribution = result.arrays["attribution"][0]
    outside = np.ones((12, 12), bool)
    outside[3:8, 5:10] = False  # pixels whose 2x2 windows can reach the receptive field
    assert np.abs(attribution[:, outside]).max() == 0.0


def test_probability_and_label_maps(fresh_host, tmp_path):
    model = make_convnet()
    result = vizkit.run_probe("occlusion", model, "pool2", units="0:2", images="0,100", window=3, out=tmp_path / "o")
    from vizkit.datasets.digits import build

    dm = build(seed=0)
    x, y = dm.test_tensor()[[0, 100]], dm.test_labels()[[0, 100]]
    with torch.no_grad():
        probs = torch.softmax(model(x).double(), 1)
    np.testing.assert_allclose(result.arrays["baseline_probability"], probs[[0, 1], y].numpy(), rtol=1e-5)
    assert result.arrays["true_labels"].tolist() == y.tolist()
    # a window position's probability and label are the model's on that occluded copy
    occluded = x[1:].clone()
    occluded[..., 2:5, 3:6] = result.meta["fill"]
    with torch.no_grad():
        p = torch.softmax(model(occluded).double(), 1)[0]
    assert result.arrays["probability_maps"][1, 2, 3] == pytest.approx(float(p[y[1]]), rel=1e-5)
    assert result.arrays["label_maps"][1, 2, 3] == int(p.argmax())
    assert result.arrays["activation_maps"].shape == (2, 2, 6, 6)
    assert (tmp_path / "o" / "occlusion.png").stat().st_size > 10000


def test_window_larger_than_the_image_is_refused(cli, fresh_host, tmp_path):
    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    res = cli("probe", "--probe", "occlusion", ckpt, "--layer", "conv1", "-o", "window", "9", "--out", tmp_path / "o")
    assert res.code == 2 and "larger than the 8x8 image" in res.err and "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) == 1
    res = cli("probe", "--probe", "occlusion", ckpt, "--layer", "conv1", "-o", "images", "5000", "--out", tmp_path / "o")
    assert res.code == 2 and "must pick examples 0..358" in res.err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    sdae = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "sdae.pt")  # digits labels 0-9, h2 has 4 units
    res = cli("probe", "--probe", "occlusion", sdae, "--layer", "h1", "--out", tmp_path / "s")
    assert res.code == 2 and "layer 'h2' has 4 outputs, too few for class labels up to" in res.err
    maps_only = vizkit.wrap(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, 12, 12), layers=["0"])
    with pytest.raises(vizkit.OptionError, match="-o output LAYER"):
        vizkit.run_probe("occlusion", maps_only, "0", data=saved_images(tmp_path), split="all")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_occlusion_on_cuda_equals_cpu(fresh_host):
    model = make_convnet()
    kw = dict(units="0:6", images="0,100,200", window=3)
    on_gpu = vizkit.run_probe("occlusion", model, "pool2", device="cuda", **kw)
    on_cpu = vizkit.run_probe("occlusion", model, "pool2", device="cpu", **kw)
    for key in ("activation_maps", "attribution", "probability_maps"):
        np.testing.assert_allclose(on_gpu.arrays[key], on_cpu.arrays[key], rtol=1e-3, atol=1e-4)


def test_one_pass_equals_captum_all_targets_despite_an_in_place_relu(fresh_host, tmp_path):
    """Units and classifier come from one forward pass; the conv's output must be read before the
    in-place ReLU after it overwrites it. captum with target=None attributes every unit at once."""
    from captum.attr import Occlusion

    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 10 * 10, 6)).eval()
    np.save(tmp_path / "rgb.npy", np.random.default_rng(1).random((3, 3, 12, 12)).astype(np.float32))
    model = vizkit.wrap(net, input_shape=(3, 12, 12), layers=["0", "3"])
    result = vizkit.run_probe("occlusion", model, "0", data=str(tmp_path / "rgb.npy"), split="all", images="0:3",
                              window=4, stride=2, fill=0.0, output="3")
    images = torch.from_numpy(result.arrays["images"])
    with torch.no_grad():
        expected = Occlusion(lambda x: net[0](x).sum(dim=(2, 3))).attribute(
            images, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0, target=None)
    expected = expected[:, 0].reshape(3, 4, 12, 12).transpose(0, 1)  # [B·units, C, H, W] → [units, B, H, W]
    np.testing.assert_allclose(result.arrays["attribution"], expected.numpy(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert result.arrays["baseline_activation"] == pytest.approx(net[0](images).sum(dim=(2, 3)).T.numpy(), rel=1e-5)


def window_classifier(classes: int = 1000) -> tuple[nn.Module, list[int]]:
    """A 1×12×12 → ``classes`` linear model whose top class names the 3×3 window (of 16, stride 3)
    that was blanked: class 100 + 37·p for window p; unoccluded, class 100 leads."""
    lin = nn.Linear(144, classes)
    window_class = [100 + 37 * p for p in range(16)]
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(-1000.0)
        for p, cls in enumerate(window_class):
            r, c = divmod(p, 4)
            mask = torch.zeros(12, 12)
            mask[3 * r:3 * r + 3, 3 * c:3 * c + 3] = 1
            lin.weight[cls] = -mask.flatten()  # logit −(sum of the window's pixels): 0 once blanked
            lin.bias[cls] = 0.5 if cls == 100 else 0.0
    return nn.Sequential(nn.Flatten(), lin).eval(), window_class


def key_texts(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}


def test_label_panel_of_a_thousand_classes_names_the_classes_present(fresh_host, tmp_path):
    net, window_class = window_classifier()
    np.save(tmp_path / "ones.npy", np.ones((2, 1, 12, 12), np.float32))
    (tmp_path / "names.txt").write_text("".join(f"name{i}\n" for i in range(1000)))
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["1"])
    result = vizkit.run_probe("occlusion", model, "1", units="0:2", data=str(tmp_path / "ones.npy"), split="all",
                              images="0:2", window=3, stride=3, fill=0.0, labels=str(tmp_path / "names.txt"))
    assert result.arrays["label_maps"][0].reshape(-1).tolist() == window_class
    # 16 classes, each twice: the first ten by class number get colours, six are "other"
    assert result.meta["classes_shown"] == window_class[:10]
    label_keys = [[t.get_text() for t in ax.get_yticklabels()] for ax in result.figures["occlusion"].axes
                  if "other (6 classes)" in {t.get_text() for t in ax.get_yticklabels()}]
    assert label_keys == [[f"{c} (name{c})" for c in window_class[:10]] + ["other (6 classes)"]] * 2
    assert result.meta["class_names"]["100"] == "name100"
    titles = [ax.get_title() for ax in result.figures["occlusion"].axes]
    assert "example 0: predicted 100\nname100" in titles


def test_class_names_from_the_npz_data_file(fresh_host, tmp_path):
    net, _ = window_classifier()
    names = np.array([f"thing {i}" for i in range(1000)])
    np.savez(tmp_path / "d.npz", x=np.ones((2, 1, 12, 12), np.float32), class_names=names)
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["1"])
    result = vizkit.run_probe("occlusion", model, "1", units="0", data=str(tmp_path / "d.npz"), split="all",
                              images="0", window=6, stride=6, fill=0.0)
    # 2×2 windows of 6: blanking one covers four of the 3×3 class windows; the lowest class wins
    assert result.meta["classes_shown"] == sorted(set(result.arrays["label_maps"].reshape(-1).tolist()))
    assert result.meta["class_names"]["100"] == "thing 100"
    assert "100 (thing 100)" in key_texts(result.figures["occlusion"])


def test_ten_classes_without_names_are_numbers(fresh_host):
    model = make_convnet()
    result = vizkit.run_probe("occlusion", model, "pool2", units="0", images="0,100,200", window=3)
    maps = result.arrays["label_maps"]
    counts = np.bincount(maps.reshape(-1))
    shown = result.meta["classes_shown"]
    assert sorted(shown) == sorted(np.flatnonzero(counts).tolist()) and len(shown) <= 10
    assert [counts[c] for c in shown] == sorted(counts[shown], reverse=True)
    assert result.meta["class_names"] == {}
    assert {str(c) for c in shown} <= key_texts(result.figures["occlusion"])


def test_bad_labels_file_is_one_line(cli, fresh_host, tmp_path):
    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "broken.json").write_text("{not json")
    for name, message in [("three.txt", "names 3 classes, but the classifier has 10 outputs"),
                          ("empty.json", "holds no class names"), ("broken.json", "is not a JSON list"),
                          ("missing.txt", "cannot be read")]:
        res = cli("probe", "--probe", "occlusion", ckpt, "--layer", "pool2", "-o", "labels", str(tmp_path / name),
                  "--out", tmp_path / "o")
        assert res.code == 2 and message in res.err and "Traceback" not in res.err, (name, res.err)
        assert len(res.err.strip().splitlines()) == 1
