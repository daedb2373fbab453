"""``topk``: equals a brute-force sort over the data; receptive-field crops; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.checkpoint import save_checkpoint

from .test_convnet import make_convnet


def brute_force(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[units, k] values and indices of a full sort by (value descending, index ascending)."""
    n = scores.shape[0]
    idx = np.stack([np.lexsort((np.arange(n), -scores[:, u]))[:k] for u in range(scores.shape[1])])
    return np.take_along_axis(scores.T, idx, 1), idx


def digits_test_split() -> torch.Tensor:
    from vizkit.datasets.digits import build

    return build(seed=0).test_tensor()


@pytest.mark.parametrize(("layer", "options"), [
    ("conv1", {}), ("conv2", {"max": True}), ("pool1", {"position": "1,2"}), ("logits", {}),
])
def test_topk_equals_a_brute_force_sort(fresh_host, layer, options):
    model = make_convnet()
    with torch.no_grad():
        model.features[0].bias[1] = -100.0  # a dead unit: all activations 0, so ties decide the order
    x = digits_test_split()
    result = vizkit.run_probe("topk", model, layer, k=5, batch=37, **options)  # batches that split the data
    out = model.activations(x, layer).detach()
    if out.dim() == 4:
        if "position" in options:
            scores = out[:, :, 1, 2]
        else:
            scores = out.amax(dim=(2, 3)) if options.get("max") else out.mean(dim=(2, 3))
    else:
        scores = out
    values, indices = brute_force(scores.double().numpy(), 5)
    np.testing.assert_array_equal(result.arrays["indices"], indices)
    np.testing.assert_allclose(result.arrays["values"], values, rtol=1e-6)
    np.testing.assert_array_equal(result.arrays["images"], x[torch.from_numpy(indices)].numpy())
    if layer == "conv1":
        assert result.arrays["indices"][1].tolist() == [0, 1, 2, 3, 4]  # dead unit: lowest indices win ties


def test_crops_are_the_receptive_field_around_the_strongest_position(fresh_host):
    model = make_convnet()
    x = digits_test_split()
    result = vizkit.run_probe("topk", model, "pool1", units="0:3", k=4)
    # pool1 = 2x2 max-pool of a 5x5 conv with padding 2: position (r, c) sees rows 2r-2 .. 2r+3
    assert result.meta["receptive_field"] == {"size": [6, 6], "jump": [2, 2], "start": [-2, -2]}
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    out = model.activations(x, "pool1").detach()
    for u in range(3):
        for j in range(4):
            n = result.arrays["indices"][u, j]
            r, c = divmod(int(out[n, u].flatten().argmax()), out.shape[3])
            assert result.arrays["positions"][u, j].tolist() == [r, c]
            np.testing.assert_array_equal(result.arrays["crops"][u, j], padded[n, :, 2 * r:2 * r + 6, 2 * c:2 * c + 6])


def test_wrapped_module_on_user_data(fresh_host, tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 25, 4))
    data = np.random.default_rng(0).random((30, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    model = vizkit.wrap(net, input_shape=(1, 12, 12), layers=["1", "4"])
    result = vizkit.run_probe("topk", model, "4", data=str(tmp_path / "x.npy"), k=3)
    # by default all of the user's file, and the indices are rows of it
    values, indices = brute_force(net(torch.from_numpy(data)).detach().double().numpy(), 3)
    np.testing.assert_array_equal(result.arrays["indices"], indices)
    np.testing.assert_allclose(result.arrays["values"], values, rtol=1e-5)
    assert result.meta["receptive_field"] is None  # a linear layer: whole images are shown
    assert "all 30 rows" in result.meta["data_source"]
    every = vizkit.run_probe("topk", model, "4", data=str(tmp_path / "x.npy"), split="all", k=3)
    np.testing.assert_array_equal(every.arrays["indices"], indices)


def test_figure_is_written(fresh_host, tmp_path):
    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    vizkit.run_probe("topk", vizkit.load(ckpt), "conv2", units="0:4", out=tmp_path / "out", k=3)
    assert (tmp_path / "out" / "topk.png").stat().st_size > 5000


def test_bad_input(cli, fresh_host, tmp_path):
    ckpt = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    res = cli("probe", "--probe", "topk", ckpt, "--layer", "conv1", "-o", "k", "400", "--out", tmp_path / "o")
    assert res.code == 2 and "only 359 examples" in res.err and "Traceback" not in res.err
    res = cli("probe", "--probe", "topk", ckpt, "--layer", "conv1", "-o", "data", "mnist", "--out", tmp_path / "o")
    assert res.code == 2 and "(1, 28, 28)" in res.err and "(1, 8, 8)" in res.err
    model = vizkit.wrap(nn.Sequential(nn.Linear(4, 2)), input_shape=(4,), layers=["0"])
    with pytest.raises(vizkit.UsageError, match="no training data on record; choose images with -o data NAME"):
        vizkit.run_probe("topk", model, "0")  # refused before any compute (exit 2), as inspect leaves it out
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())  # nothing half-written


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_topk_on_cuda_equals_cpu(fresh_host):
    model = make_convnet()
    on_gpu = vizkit.run_probe("topk", model, "pool1", k=5, device="cuda")
    on_cpu = vizkit.run_probe("topk", model, "pool1", k=5, device="cpu")
    np.testing.assert_array_equal(on_gpu.arrays["indices"], on_cpu.arrays["indices"])
    np.testing.assert_allclose(on_gpu.arrays["values"], on_cpu.arrays["values"], rtol=1e-4)
    np.testing.assert_array_equal(on_gpu.arrays["crops"], on_cpu.arrays["crops"])
