"""``evolution``: each checkpoint's column is that checkpoint's own top-1 example and deconvnet
projection; kept epochs or a list of files; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vizkit
from vizkit.checkpoint import save_checkpoint

from .test_convnet import make_convnet


def with_kept_epochs():
    """A convnet 'trained' through two kept epochs: the snapshots are two other random convnets."""
    model = make_convnet(keep_epochs="1,2", seed=0)
    earlier = [make_convnet(seed=s) for s in (1, 2)]
    for row, other in enumerate(earlier):
        model.snapshots[row] = torch.nn.utils.parameters_to_vector(other.parameters()).detach()
        model.snapshot_done[row] = True
    return model, earlier


def test_columns_are_each_checkpoints_top_example_and_projection(fresh_host, tmp_path):
    model, earlier = with_kept_epochs()
    result = vizkit.run_probe("evolution", model, "pool2", units="0:4", split="test", out=tmp_path / "o")
    assert result.meta["checkpoints"] == ["epoch 1", "epoch 2", "final"]
    for col, m in enumerate([*earlier, model]):
        top = vizkit.run_probe("deconv", m, "pool2", units="0:4", k=1)
        np.testing.assert_array_equal(result.arrays["indices"][:, col], top.arrays["indices"][:, 0])
        np.testing.assert_allclose(result.arrays["values"][:, col], top.arrays["values"][:, 0], rtol=1e-6)
        np.testing.assert_allclose(result.arrays["projections"][:, col], top.arrays["projections"][:, 0],
                                   rtol=1e-5, atol=1e-7)
    assert result.arrays["projection_crops"].shape == (4, 3, 1, 8, 8)  # pool2 sees the whole 8x8 image
    assert result.meta["receptive_field"] == {"note": "every position of pool2 sees the whole 8x8 image"}
    assert (tmp_path / "o" / "evolution.png").stat().st_size > 10000


def test_checkpoint_files_in_order(fresh_host, tmp_path):
    paths = [save_checkpoint(make_convnet(seed=s).to_checkpoint(), tmp_path / f"e{s}.pt") for s in (3, 4)]
    model = vizkit.load(paths[-1])
    result = vizkit.run_probe("evolution", model, "conv1", units="0:2", checkpoints=",".join(map(str, paths)))
    assert result.meta["checkpoints"] == ["e3.pt", "e4.pt"] and result.arrays["values"].shape == (2, 2)


def test_bad_input(cli, fresh_host, tmp_path):
    plain = save_checkpoint(make_convnet().to_checkpoint(), tmp_path / "c.pt")
    res = cli("probe", "--probe", "evolution", plain, "--layer", "conv1", "--out", tmp_path / "o")
    assert res.code == 2 and "--keep-epochs" in res.err and "-o checkpoints" in res.err and "Traceback" not in res.err
    other = save_checkpoint(make_convnet(channels="5,6").to_checkpoint(), tmp_path / "d.pt")
    res = cli("probe", "--probe", "evolution", plain, "--layer", "conv1", "-o", "checkpoints", f"{plain},{other}",
              "--out", tmp_path / "o")
    assert res.code == 2 and "share the probed model's architecture" in res.err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evolution_on_cuda_equals_cpu(fresh_host):
    model, _ = with_kept_epochs()
    on_gpu = vizkit.run_probe("evolution", model, "pool2", units="0:4", split="test", device="cuda")
    on_cpu = vizkit.run_probe("evolution", model, "pool2", units="0:4", split="test", device="cpu")
    np.testing.assert_array_equal(on_gpu.arrays["indices"], on_cpu.arrays["indices"])
    np.testing.assert_allclose(on_gpu.arrays["projections"], on_cpu.arrays["projections"], rtol=1e-3, atol=1e-5)
