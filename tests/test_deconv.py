"""``deconv``: the transposed filter for a linear conv net; an independent NumPy deconvnet
(unpool with switches, rectify, transposed convolution) for conv–ReLU–pool nets; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.checkpoint import save_checkpoint

from .conftest import make_sdae


def saved_images(tmp_path, n: int = 12) -> str:
    data = np.random.default_rng(1).random((n, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    return str(tmp_path / "x.npy")


def test_linear_conv_net_gives_the_filter_at_the_max_location(fresh_host, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 5, bias=False))
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["0"])
    result = vizkit.run_probe("deconv", model, "0", data=saved_images(tmp_path), split="all", k=4, max=True)
    weight = net[0].weight.detach().numpy()
    for u in range(3):
        for j in range(4):
            r, c = result.arrays["positions"][u, j]
            expected = np.zeros((1, 12, 12), np.float32)
            expected[:, r:r + 5, c:c + 5] = result.arrays["values"][u, j] * weight[u]
            np.testing.assert_allclose(result.arrays["projections"][u, j], expected, rtol=1e-5, atol=1e-6)


# --- an independent NumPy deconvnet -------------------------------------------------------------

def np_conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((w.shape[0], h, wd))
    for i in range(h):
        for j in range(wd):
            out[:, i, j] = np.tensordot(w, x[:, i:i + k, j:j + k], axes=3) + b
    return out


def np_pool(x):
    c, h, w = x.shape
    out = np.zeros((c, h // 2, w // 2))
    switch = np.zeros((c, h // 2, w // 2, 2), int)
    for ch in range(c):
        for i in range(h // 2):
            for j in range(w // 2):
                win = x[ch, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                a = int(np.argmax(win))  # first maximum in row-major order, as torch
                out[ch, i, j] = win.flat[a]
                switch[ch, i, j] = (2 * i + a // 2, 2 * j + a % 2)
    return out, switch


def np_unpool(g, switch, shape):
    out = np.zeros(shape)
    for ch, i, j in np.ndindex(*g.shape):
        r, c = switch[ch, i, j]
        out[ch, r, c] += g[ch, i, j]
    return out


def np_conv_transpose(g, w, pad, in_shape):
    k = w.shape[2]
    out = np.zeros((w.shape[1], in_shape[1] + 2 * pad, in_shape[2] + 2 * pad))
    for o, i, j in np.ndindex(*g.shape):
        out[:, i:i + k, j:j + k] += w[o] * g[o, i, j]
    return out[:, pad:out.shape[1] - pad, pad:out.shape[2] - pad]


def np_rule(g, forward, rule):
    if rule == "deconv":
        return np.maximum(g, 0)
    if rule == "guided":
        return np.maximum(g, 0) * (forward > 0)
    return g * (forward > 0)


def np_deconvnet(x, params, unit, rule):
    """Forward conv(pad 1)-ReLU-pool-conv-ReLU-pool, keep the unit's strongest pooled activation,
    and go back down: unpool by the switches, the rule at each ReLU, transposed filters."""
    (w1, b1), (w2, b2) = params
    a1 = np_conv(x, w1, b1, 1)
    r1 = np.maximum(a1, 0)
    p1, s1 = np_pool(r1)
    a2 = np_conv(p1, w2, b2, 0)
    r2 = np.maximum(a2, 0)
    p2, s2 = np_pool(r2)
    signal = np.zeros_like(p2)
    r, c = divmod(int(np.argmax(p2[unit])), p2.shape[2])
    signal[unit, r, c] = p2[unit, r, c]
    g = np_rule(np_unpool(signal, s2, r2.shape), a2, rule)
    g = np_conv_transpose(g, w2, 0, p1.shape)
    g = np_rule(np_unpool(g, s1, r1.shape), a1, rule)
    return np_conv_transpose(g, w1, 1, x.shape), (r, c)


@pytest.mark.parametrize("rule", ["deconv", "guided", "gradient"])
def test_conv_relu_pool_net_equals_numpy(fresh_host, tmp_path, rule):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["5"])
    result = vizkit.run_probe("deconv", model, "5", data=saved_images(tmp_path), split="all", k=3, rule=rule,
                              batch=5)
    assert net[1].inplace  # the rule's hooks are gone and the module is as it was
    params = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in (net[0], net[3])]
    for u in range(4):
        for j in range(3):
            x = result.arrays["images"][u, j].astype(np.float64)
            expected, pos = np_deconvnet(x, params, u, rule)
            assert tuple(result.arrays["positions"][u, j]) == pos
            np.testing.assert_allclose(result.arrays["projections"][u, j], expected, rtol=1e-4, atol=1e-5)
    if rule == "deconv":
        # the deconvnet is not the gradient: a ReLU's backward ignores the forward sign
        grad = vizkit.run_probe("deconv", model, "5", data=saved_images(tmp_path), split="all", k=3,
                                rule="gradient").arrays["projections"]
        assert not np.allclose(grad, result.arrays["projections"])


def test_reference_convnet_crops_and_figure(fresh_host, tmp_path):
    from .test_convnet import make_convnet

    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    result = vizkit.run_probe("deconv", vizkit.load(ckpt), "pool2", units="0:3", k=4, out=tmp_path / "o")
    assert result.arrays["projections"].shape == (3, 4, 1, 8, 8)
    # pool2's 16-pixel field covers the whole 8x8 image from every position: whole images, and said
    assert result.arrays["projection_crops"].shape == (3, 4, 1, 8, 8)
    assert result.meta["receptive_field"] == {"note": "every position of pool2 sees the whole 8x8 image"}
    assert np.abs(result.arrays["projections"]).sum(axis=(2, 3, 4)).min() > 0
    assert (tmp_path / "o" / "deconv.png").stat().st_size > 10000


def test_models_the_rule_cannot_follow_are_refused(cli, fresh_host, tmp_path):
    ckpt = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "sdae.pt")
    res = cli("probe", "--probe", "deconv", ckpt, "--layer", "h1", "--out", tmp_path / "o")
    assert res.code == 2 and "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    assert "nn.ReLU" in res.err and "nn.MaxPool2d" in res.err and "-o rule gradient" in res.err
    ok = cli("probe", "--probe", "deconv", ckpt, "--layer", "h1", "-o", "rule", "gradient", "-o", "k", "2",
             "--units", "0:2", "--out", tmp_path / "g")
    assert ok.code == 0, ok.err
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Sigmoid(), nn.Linear(5, 3))
    model = vizkit.wrap(net, input_shape=(1, 8, 8), layers=["3"], data_info={"name": "digits"})
    with pytest.raises(vizkit.UsageError, match="passes through Sigmoid on the way to layer '3'"):
        vizkit.run_probe("deconv", model, "3")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_deconv_on_cuda_equals_numpy(fresh_host, tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    params = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in (net[0], net[3])]
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["5"])
    result = vizkit.run_probe("deconv", model, "5", data=saved_images(tmp_path), split="all", k=3, device="cuda")
    for u in range(4):
        for j in range(3):
            expected, _ = np_deconvnet(result.arrays["images"][u, j].astype(np.float64), params, u, "deconv")
            np.testing.assert_allclose(result.arrays["projections"][u, j], expected, rtol=1e-3, atol=1e-4)
