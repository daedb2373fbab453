"""SDAE layers above the first on real-valued data: no KL sparsity target by default.

On whitened patches the KL target is the first layer's recipe for edge detectors; on the sparse
[0, 1] codes above it, every unit of layers 2 and 3 of the erhan2009 patch SDAE collapsed to one
all-negative weight vector (docs/models/sdae.md, "Upper layers").
"""

import math

import numpy as np
import pytest
import torch

import vizkit
from vizkit.models.sdae import SDAE

REAL = {"stats": {"binary_like": False}}


def test_upper_layers_on_real_valued_data_default_to_no_sparsity_target():
    hp = SDAE.hparams_from_options({"layers": "4,3"}, input_shape=(1, 12, 12), data=REAL, lr=None)
    assert (hp["sparsity"], hp["upper_sparsity"]) == (0.01, 0.0)
    hp = SDAE.hparams_from_options({"layers": "4,3", "upper_sparsity": 0.05}, input_shape=(1, 12, 12), data=REAL,
                                   lr=None)
    assert hp["upper_sparsity"] == 0.05
    # [0, 1] data: one target for every layer, as before (None = --sparsity)
    hp = SDAE.hparams_from_options({"layers": "4,3", "sparsity": 0.05}, input_shape=(1, 28, 28),
                                   data={"stats": {"binary_like": True}}, lr=None)
    assert (hp["sparsity"], hp["upper_sparsity"]) == (0.05, None)


def test_each_layer_is_penalised_with_its_own_target():
    code = torch.full((4, 3), 0.5)
    kl = 0.1 * math.log(0.1 / 0.5) + 0.9 * math.log(0.9 / 0.5)
    model = SDAE(input_shape=[1, 2, 2], layers="3,3", binary_input=False, sparsity=0.1, upper_sparsity=0.0,
                 sparsity_weight=2.0)
    assert float(model.penalties(code, 0)) == pytest.approx(2.0 * 3 * kl, rel=1e-5)
    assert float(model.penalties(code, 1)) == 0.0
    # checkpoints from before the option (no upper_sparsity) trained every layer with --sparsity
    old = SDAE(input_shape=[1, 2, 2], layers="3,3", binary_input=False, sparsity=0.1, sparsity_weight=2.0)
    assert float(old.penalties(code, 1)) == pytest.approx(2.0 * 3 * kl, rel=1e-5)


@pytest.mark.slow
def test_second_layer_on_patches_learns_distinct_units(fresh_host, tmp_path, cli, measured):
    """With the old shared target every row of W2 was the same vector (mean cosine 1.00)."""
    out = tmp_path / "sdae.pt"
    res = cli("train", "sdae", "--data", "patches", "--layers", "100,50", "-D", "n_train=100000", "--out", out,
              "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 0, res.err
    w = vizkit.load(out).weights("h2").matrix.double()
    w = w / w.norm(dim=1, keepdim=True)
    cos = (w @ w.T).numpy()
    assert measured("mean |cosine| between h2 rows", np.abs(cos[~np.eye(len(cos), dtype=bool)]).mean(), "< 0.3") < 0.3


def test_the_loss_from_logits_is_the_cross_entropy_of_the_reconstruction():
    """Known answer: the stage loss reads the decoder's total input; for moderate logits it is the
    summed binary cross-entropy of sigmoid(pre) (and the squared error of the linear output on
    real-valued data), averaged over the batch."""
    torch.manual_seed(0)
    pre, target = torch.randn(4, 6) * 3, torch.rand(4, 6)
    binary = SDAE(input_shape=[6], layers="5", binary_input=True)
    expected = -(target * torch.log(torch.sigmoid(pre)) + (1 - target) * torch.log(1 - torch.sigmoid(pre))).sum() / 4
    torch.testing.assert_close(binary.reconstruction_loss(pre, target, 0), expected)
    torch.testing.assert_close(binary.reconstruction_loss(pre, target, 0),
                               binary.reconstruction_loss(pre, target, 1))  # layers above: always cross-entropy
    real = SDAE(input_shape=[6], layers="5", binary_input=False)
    torch.testing.assert_close(real.reconstruction_loss(pre, target, 0), (pre - target).square().sum() / 4)
    h = torch.rand(4, 5)
    torch.testing.assert_close(binary.decode_layer(h, 0), torch.sigmoid(binary.decode_input(h, 0)))
    torch.testing.assert_close(real.decode_layer(h, 0), real.decode_input(h, 0))
