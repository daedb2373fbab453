"""``lincomb``: known answers on linear networks and the top-k rule."""

import numpy as np
import pytest
import torch
from torch import nn

import vizkit

from .conftest import make_sdae


def linear_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8, bias=False), nn.Linear(8, 6), nn.Linear(6, 5))


def test_k_all_on_a_linear_network_is_the_weight_product(fresh_host):
    net = linear_net()
    model = vizkit.wrap(net, input_shape=(16,), layers=["0", "1", "2"])
    result = vizkit.run_probe("lincomb", model, "2", k="all")
    w0, w1, w2 = (net[i].weight.detach().double() for i in range(3))
    expected = (w2 @ w1 @ w0).numpy()
    np.testing.assert_allclose(result.arrays["filters"], expected, rtol=1e-6, atol=1e-7)
    assert result.meta["depth"] == 3 and result.meta["k"] == "all"


def test_top_k_keeps_the_strongest_connections(fresh_host):
    model = make_sdae("6,4")
    result = vizkit.run_probe("lincomb", model, "h2", units="1", k=2)
    w1 = model.weight[0].detach().double()
    row = model.weight[1].detach().double()[1]
    top = row.abs().argsort(descending=True)[:2]
    expected = (row[top] @ w1[top]).numpy().reshape(1, 1, 8, 8)
    np.testing.assert_allclose(result.arrays["filters"], expected, rtol=1e-6)


def test_first_layer_is_the_filter_itself(fresh_host):
    model = make_sdae()
    result = vizkit.run_probe("lincomb", model, "h1", units="0:3")
    np.testing.assert_allclose(result.arrays["filters"].reshape(3, -1), model.weight[0].detach()[:3].numpy(), rtol=1e-6)


def test_layers_without_a_chain_to_the_input_are_refused(fresh_host):
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    model = vizkit.wrap(net, input_shape=(16,), layers=["1", "2"])  # "2"'s source is not wrapped
    with pytest.raises(vizkit.UnknownNameError, match="valid layers for it: \\(none in this model\\)"):
        vizkit.run_probe("lincomb", model, "2")


def test_png_caption_names_k(fresh_host, tmp_path):
    vizkit.run_probe("lincomb", make_sdae(), "h2", out=tmp_path, k=3)
    assert "top k = 3" in (tmp_path / "index.html").read_text() or (tmp_path / "lincomb.png").exists()
    assert "3 strongest connections" in (tmp_path / "index.html").read_text()
