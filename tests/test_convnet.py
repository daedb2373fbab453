"""The convnet reference model: labelled training, layers, kept epochs, bad input."""

from __future__ import annotations

import pytest
import torch

import vizkit
from vizkit.checkpoint import save_checkpoint
from vizkit.models.convnet import ConvNet

DIGITS = {"name": "digits", "options": {}, "input_shape": [1, 8, 8], "seed": 0,
          "stats": {"mean_norm": 3.0, "pixel_min": 0.0, "pixel_max": 1.0, "n_classes": 10}}


def make_convnet(channels: str = "4,6", seed: int = 0, **kw) -> ConvNet:
    """An untrained convnet on digits (8×8), its data on record so probes rebuild the test split."""
    torch.manual_seed(seed)
    model = ConvNet(input_shape=[1, 8, 8], classes=10, channels=channels, **kw).eval()
    model.data_info = dict(DIGITS)
    return model


def test_layers_shapes_and_forward():
    model = make_convnet()
    infos = model.layer_infos()
    assert {k: v.shape for k, v in infos.items()} == {
        "conv1": (4, 8, 8), "pool1": (4, 4, 4), "conv2": (6, 4, 4), "pool2": (6, 2, 2), "logits": (10,)}
    x = torch.rand(3, 1, 8, 8)
    for name, info in infos.items():
        assert model.activations(x, name).shape == (3, *info.shape)
    conv1 = model.features[0]
    expected = torch.relu(torch.nn.functional.conv2d(x, conv1.weight, conv1.bias, padding=2))
    torch.testing.assert_close(model.activations(x, "conv1"), expected)
    torch.testing.assert_close(model.activations(x, "pool1"), torch.nn.functional.max_pool2d(expected, 2))
    assert model.weights("conv1").source == "input" and model.weights("pool2").source == "pool1"


def test_activations_all_is_one_pass_with_the_same_values():
    model = make_convnet()
    x = torch.rand(3, 1, 8, 8)
    for layers in (["pool2", "logits"], ["logits", "conv1", "pool2"], ["conv2"], ["conv1", "conv1"]):
        out = model.activations_all(x, layers)
        assert list(out) == list(dict.fromkeys(layers))
        for name in layers:
            torch.testing.assert_close(out[name], model.activations(x, name), rtol=0, atol=0)
    with pytest.raises(vizkit.UnknownNameError, match="valid layers"):
        model.activations_all(x, ["pool2", "nope"])


def test_training_uses_labels_and_keeps_epochs(tmp_path, fresh_host):
    from vizkit.training import train

    out = train("convnet", "digits", out=tmp_path / "c.pt", epochs=3, batch_size=50, progress=False,
                model_options={"keep_epochs": "1,3", "channels": "8,16"}, log_dir=tmp_path / "logs")
    model = vizkit.load(out)
    metrics = model.metrics
    assert metrics["test"]["n"] == 359 and metrics["test"]["accuracy"] > 0.5  # chance is 0.1
    assert 0.1 < metrics["train"]["train_acc"] <= 1 and metrics["train"]["train_loss"] > 0  # the epoch's means
    # trained channels_last, written in the ordinary layout
    saved = torch.load(out, weights_only=True)["state_dict"]
    assert all(v.is_contiguous() for v in saved.values())
    kept = model.epoch_models()
    assert sorted(kept) == [1, 3]
    # the epoch-3 snapshot is the final model; epoch 1 differs and is worse on the test split
    for a, b in zip(kept[3].parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert metrics["kept_epochs"]["3"]["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert metrics["kept_epochs"]["1"]["test_accuracy"] < metrics["test"]["accuracy"]


@pytest.mark.parametrize("state_layout", ["as written", "ordinary"])
def test_a_run_cut_into_pieces_is_the_run_in_one_piece(fresh_host, tmp_path, cli, state_layout):
    """The convnet trains channels_last with a fused Adam, which reads its state as raw memory: a
    checkpoint whose optimiser state is in the ordinary layout (as vizkit wrote them before it
    trained channels_last) must resume to the same weights, not to silently scrambled updates."""
    args = ["convnet", "--data", "digits", "--channels", "4,6", "--batch-size", "50", "-q"]
    res = cli("train", *args, "--epochs", "3", "--out", tmp_path / "whole.pt", "--log-dir", tmp_path / "a")
    assert res.code == 0, res.err
    res = cli("train", *args, "--epochs", "2", "--out", tmp_path / "first.pt", "--log-dir", tmp_path / "b")
    assert res.code == 0, res.err
    ckpt = next((tmp_path / "b").rglob("last.ckpt"))
    raw = torch.load(ckpt, weights_only=True)
    states = raw["optimizer_states"][0]["state"]
    assert any(not v.is_contiguous() for s in states.values() for v in s.values() if v.dim() == 4)
    if state_layout == "ordinary":
        for state in states.values():
            for key, value in state.items():
                state[key] = value.contiguous()
    torch.save(raw, tmp_path / "resume.ckpt")
    res = cli("train", *args, "--epochs", "3", "--out", tmp_path / "pieces.pt", "--log-dir", tmp_path / "c",
              "--resume", tmp_path / "resume.ckpt")
    assert res.code == 0, res.err
    one = torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "pieces.pt", weights_only=True)["state_dict"]
    first = torch.load(tmp_path / "first.pt", weights_only=True)["state_dict"]
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(one["features.3.weight"], first["features.3.weight"])  # the last piece trained


def test_checkpoint_round_trip_keeps_snapshots(tmp_path):
    model = make_convnet(keep_epochs="2")
    model.snapshots[0] = torch.arange(model.snapshots.shape[1], dtype=torch.float32)
    model.snapshot_done[0] = True
    loaded = vizkit.load(save_checkpoint(model.to_checkpoint(), tmp_path / "m.pt"))
    assert list(loaded.epoch_models()) == [2]
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(loaded.epoch_models()[2].parameters()),
                               model.snapshots[0])


def test_data_without_labels_is_refused(cli, tmp_path, fresh_host):
    res = cli("train", "convnet", "--data", "patches", "--out", tmp_path / "c.pt")
    assert res.code == 2 and "has none" in res.err and "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) == 1 and not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--channels", "8,x", "comma-separated integers"),
    ("--kernel", "4", "odd"),
    ("--pool", "8", "shrink"),
    ("--keep-epochs", "0", "at least 1"),
])
def test_bad_model_options_are_usage_errors(cli, tmp_path, fresh_host, flag, value, words):
    res = cli("train", "convnet", "--data", "digits", flag, value, "--out", tmp_path / "c.pt")
    assert res.code == 2 and words in res.err and "Traceback" not in res.err


@pytest.mark.slow
def test_mnist_subset_accuracy(tmp_path, fresh_host, measured):
    from vizkit.training import train

    out = train("convnet", "mnist", out=tmp_path / "m.pt", epochs=5, progress=False, log_dir=tmp_path / "logs")
    assert measured("test accuracy", vizkit.load(out).metrics["test"]["accuracy"], "> 0.93") > 0.93


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_on_gpu_keeps_epochs(tmp_path, fresh_host):
    from vizkit.training import train

    out = train("convnet", "digits", out=tmp_path / "g.pt", epochs=2, progress=False, accelerator="gpu",
                model_options={"keep_epochs": "1,2"}, log_dir=tmp_path / "logs")
    model = vizkit.load(out)
    assert sorted(model.epoch_models()) == [1, 2] and model.metrics["test"]["accuracy"] > 0.2
    assert model.metrics["kept_epochs"]["2"]["test_accuracy"] == pytest.approx(model.metrics["test"]["accuracy"])
