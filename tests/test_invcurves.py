"""``invcurves``: a circularly shift-invariant feature gives a flat translation curve; distances
are the direct ones; the probability curve is the classifier's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.checkpoint import save_checkpoint

from .test_convnet import make_convnet


def margin_images(tmp_path, margin: int = 4) -> str:
    """Random 16x16 images that are zero within ``margin`` pixels of the border: shifting them by
    up to ``margin`` pixels with zero fill is the same as a circular shift."""
    data = np.zeros((6, 1, 16, 16), np.float32)
    data[:, :, margin:-margin, margin:-margin] = np.random.default_rng(0).random((6, 1, 16 - 2 * margin,
                                                                                  16 - 2 * margin))
    np.save(tmp_path / "x.npy", data)
    return str(tmp_path / "x.npy")


def circular_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Identity(), nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_circularly_shift_invariant_feature_gives_a_flat_translation_curve(fresh_host, tmp_path):
    net = circular_net()
    model = vizkit.wrap(net, input_shape=(1, 16, 16), layers=["0", "2", "4"])
    result = vizkit.run_probe("invcurves", model, "4", data=margin_images(tmp_path), split="all", images="0:4",
                              layers="0,2,4", kinds="translation", shift=4, points=9, output="none")
    dist = result.arrays["translation_distance"]  # [layers, images, points]
    assert result.arrays["translation_values"][:, 0].tolist() == [-4, -3, -2, -1, 0, 1, 2, 3, 4]
    assert dist[2].max() < 1e-5  # the global mean of a circular convolution: flat
    assert dist[1][:, [0, -1]].min() > 0.1  # the conv map itself moves
    # the input layer: the distance is the norm of (image - rolled image)
    images = result.arrays["images"]
    for i in range(4):
        for j, dy in enumerate(range(-4, 5)):
            expected = np.linalg.norm(images[i] - np.roll(images[i], dy, axis=1))
            assert dist[0, i, j] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_rotation_is_not_flat_for_the_same_feature(fresh_host, tmp_path):
    model = vizkit.wrap(circular_net(), input_shape=(1, 16, 16), layers=["4"])
    result = vizkit.run_probe("invcurves", model, "4", data=margin_images(tmp_path), split="all", images="0:2",
                              kinds="rotation", angle=90, points=5, output="none")
    assert result.arrays["rotation_distance"][0][:, 2].max() < 1e-5  # 0 degrees: the image itself
    assert result.arrays["rotation_distance"][0][:, 0].min() > 1e-3


def test_probability_curves_and_figure(fresh_host, tmp_path):
    model = make_convnet()
    result = vizkit.run_probe("invcurves", model, "pool1", images="0,200", points=5, out=tmp_path / "o")
    assert result.meta["layers"] == ["conv1", "pool1", "pool2"]
    from vizkit.datasets.digits import build

    dm = build(seed=0)
    x, y = dm.test_tensor()[[0, 200]], dm.test_labels()[[0, 200]]
    with torch.no_grad():
        p = torch.softmax(model(x).double(), 1)[[0, 1], y].numpy()
    for kind, identity in (("translation", 2), ("rotation", 2), ("scale", 2)):
        np.testing.assert_allclose(result.arrays[f"{kind}_probability"][:, identity], p, rtol=1e-5)
    assert result.arrays["scale_values"].tolist() == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.5])
    assert (tmp_path / "o" / "invcurves.png").stat().st_size > 20000


def test_bad_options(cli, fresh_host, tmp_path):
    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    for key, value, words in (("kinds", "shear", "shear"), ("layers", "conv9", "unknown layer 'conv9'"),
                              ("zoom_min", "2", "zoom_min < zoom_max")):
        res = cli("probe", "--probe", "invcurves", ckpt, "--layer", "conv1", "-o", key, value, "--out", tmp_path / "o")
        assert res.code == 2 and words in res.err and "Traceback" not in res.err, res.err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_invcurves_on_cuda(fresh_host, tmp_path):
    model = vizkit.wrap(circular_net(), input_shape=(1, 16, 16), layers=["2", "4"])
    kw = dict(data=margin_images(tmp_path), split="all", images="0:3", layers="2,4", shift=4, points=9,
              output="none")
    on_gpu = vizkit.run_probe("invcurves", model, "4", device="cuda", **kw)
    assert on_gpu.arrays["translation_distance"][1].max() < 1e-4
    on_cpu = vizkit.run_probe("invcurves", model, "4", device="cpu", **kw)
    for kind in ("translation", "rotation", "scale"):
        np.testing.assert_allclose(on_gpu.arrays[f"{kind}_distance"], on_cpu.arrays[f"{kind}_distance"],
                                   rtol=1e-3, atol=1e-4)
