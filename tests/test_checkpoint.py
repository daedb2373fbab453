"""Checkpoints: round trip, and every way a file can be bad, from the CLI's point of view."""

import os
import re

import pytest
import torch

import vizkit
from vizkit.checkpoint import make_checkpoint, save_checkpoint
from vizkit.errors import CheckpointError

from .conftest import make_sdae


def test_round_trip_rebuilds_the_same_model(sdae_ckpt):
    model = vizkit.load(sdae_ckpt)
    original = make_sdae()
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model.activations(x, "h2"), original.activations(x, "h2"))
    assert model.source["sha256"] and model.data_info["stats"]["mean_norm"] == 3.0
    raw = torch.load(sdae_ckpt, weights_only=True)
    assert raw["format"] == "vizkit-checkpoint" and raw["kind"] == "sdae"


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, cli):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "vizkit-checkpoint", "x": Evil()}, path)
    res = cli("inspect", path)
    assert res.code == 1
    assert "refusing to load" in res.err and "could run code" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda p: p.write_text("hello"), 1, "is not a checkpoint (not a torch file)"),
        (lambda p: torch.save(torch.zeros(3), p), 1, "is a torch file but not a vizkit checkpoint"),
        (lambda p: p.mkdir(), 2, "is a directory"),
    ],
)
def test_not_a_checkpoint(tmp_path, cli, make, code, message):
    path = tmp_path / "x.pt"
    make(path)
    res = cli("inspect", path)
    assert res.code == code and message in res.err and "Traceback" not in res.err


def test_missing_file(tmp_path, cli):
    res = cli("inspect", tmp_path / "nope.pt")
    assert res.code == 2 and "no such file" in res.err


def test_truncated_checkpoint(sdae_ckpt, tmp_path, cli):
    data = sdae_ckpt.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    res = cli("inspect", path)
    assert res.code == 1 and "truncated or corrupted" in res.err


def test_unknown_model_kind(tmp_path, cli):
    ckpt = make_checkpoint("capsule-9000", {}, {"w": torch.zeros(2)}, {})
    path = save_checkpoint(ckpt, tmp_path / "k.pt")
    res = cli("inspect", path)
    assert res.code == 1
    assert "holds model kind 'capsule-9000', which no installed plugin provides" in res.err
    assert "sdae" in res.err


def test_nan_weights_are_refused(tmp_path, cli):
    model = make_sdae()
    ckpt = model.to_checkpoint()
    ckpt["state_dict"]["weight.0"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(ckpt, path)
    res = cli("inspect", path)
    assert res.code == 1 and "non-finite values" in res.err and "weight.0" in res.err


def test_state_dict_that_does_not_fit_the_kind(tmp_path, cli):
    ckpt = make_sdae().to_checkpoint()
    ckpt["state_dict"]["weight.0"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    res = cli("inspect", path)
    assert res.code == 1 and "does not match model kind 'sdae'" in res.err


def test_inspect_lists_layers_capabilities_and_probes(sdae_ckpt, cli):
    res = cli("inspect", sdae_ckpt)
    assert res.code == 0
    assert "kind         sdae" in res.out
    assert re.search(r"h1 +6 units", res.out) and re.search(r"h2 +4 units", res.out)
    assert "capabilities activations, input_grad, reconstruct, weights" in res.out
    assert "filters" in res.out


def test_a_diverged_model_is_never_written(tmp_path):
    """save_checkpoint checks the weights before writing: a model with NaN is refused, no file
    appears, and a file already at the path is left as it was."""
    model = make_sdae()
    ckpt = model.to_checkpoint()
    ckpt["state_dict"]["weight.0"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="nothing was written"):
        save_checkpoint(ckpt, tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()
    kept = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "kept.pt")
    before = kept.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(ckpt, kept)
    assert kept.read_bytes() == before


def test_training_that_diverges_exits_1_and_writes_nothing(fresh_host, tmp_path, cli, monkeypatch):
    """Through the CLI: a model whose weights end up NaN (forced here after training) gives one line,
    exit 1, and no file at --out."""
    from vizkit.models.rbm.model import RBM

    def diverge(self, stage, trainer, datamodule):
        with torch.no_grad():
            next(self.parameters()).fill_(float("nan"))

    monkeypatch.setattr(RBM, "after_stage", diverge)
    out = tmp_path / "m.pt"
    res = cli("train", "rbm", "--data", "digits", "--binarize", "--hidden", "6", "--epochs", "1", "--out", out,
              "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 1 and "training diverged" in res.err and "Traceback" not in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and not out.exists()
