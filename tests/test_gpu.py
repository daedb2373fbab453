"""The probes on a CUDA device: the same known answers as on the CPU. Skipped without a GPU (CI)."""

import numpy as np
import pytest
import torch

import vizkit

from .conftest import make_sdae
from .test_clamp_compare import exact_clamped_mean, tiny_dbn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_clamp_on_cuda_converges_to_the_exact_conditional_mean(fresh_host):
    model = tiny_dbn()
    result = vizkit.run_probe("clamp", model, "h2", units="0,3", chains=300, samples=20, every=3, burn_in=30,
                              device="cuda")
    assert result.meta["device"] == "cuda"
    for row, unit in enumerate((0, 3)):
        np.testing.assert_allclose(result.arrays["mean"][row].reshape(-1), exact_clamped_mean(model.cpu(), unit),
                                   atol=0.03)


def test_actmax_on_cuda_finds_the_first_layer_filter_and_agrees_with_cpu(fresh_host):
    model = make_sdae("6,4")
    on_gpu = vizkit.run_probe("actmax", model, "h1", units="0:6", rho=0.25, device="cuda")
    on_cpu = vizkit.run_probe("actmax", model.cpu(), "h1", units="0:6", rho=0.25, device="cpu")
    weights = model.weight[0].detach().cpu().numpy()
    for unit in range(6):
        stim = on_gpu.arrays["stimuli"][unit].ravel()
        assert stim @ weights[unit] / (np.linalg.norm(stim) * np.linalg.norm(weights[unit])) > 0.99
    np.testing.assert_allclose(on_gpu.arrays["stimuli"], on_cpu.arrays["stimuli"], atol=1e-3)


def test_train_on_gpu_then_probe(fresh_host, tmp_path, cli):
    out = tmp_path / "sdae.pt"
    res = cli("train", "sdae", "--data", "digits", "--layers", "16", "--epochs", "1", "--accelerator", "gpu",
              "--out", out, "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 0, res.err
    res = cli("probe", "--probe", "filters", out, "--layer", "h1", "--device", "cuda", "--out", tmp_path / "f")
    assert res.code == 0, res.err
