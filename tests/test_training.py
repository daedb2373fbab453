"""The Lightning harness and the SDAE: greedy stages, checkpoints, resume, real training."""

import math
import subprocess
import sys

import pytest
import torch

import vizkit
from vizkit.models.sdae import SDAE


def test_train_sdae_on_digits_then_probe(fresh_host, tmp_path, cli):
    out = tmp_path / "sdae.pt"
    res = cli("train", "sdae", "--data", "digits", "--layers", "16,8", "--epochs", "2", "--out", out,
              "--log-dir", tmp_path / "logs", "-q", "--finetune-epochs", "1")
    assert res.code == 0, res.err
    model = vizkit.load(out)
    assert model.hparams["layers"] == "16,8" and model.data_info["name"] == "digits"
    assert set(model.metrics) == {"layer 1", "layer 2", "fine-tune"}
    assert model.metrics["layer 1"]["epochs"] == 2 and model.metrics["fine-tune"]["epochs"] == 1
    metrics_csv = tmp_path / "logs" / "sdae" / "sdae-stage0" / "metrics.csv"
    assert metrics_csv.exists() and "train_loss" in metrics_csv.read_text()
    res = cli("probe", "--probe", "filters", out, "--layer", "h1", "--out", tmp_path / "f")
    assert res.code == 0, res.err


def test_progress_off_a_terminal_is_one_line_per_epoch(fresh_host, tmp_path, cli):
    # stdout/stderr are captured here, as in a log file or CI: no redrawn bar, one line per epoch
    res = cli("train", "sdae", "--data", "digits", "--layers", "8", "--epochs", "2", "--out", tmp_path / "a.pt",
              "--log-dir", tmp_path / "logs")
    assert res.code == 0, res.err
    lines = [line for line in (res.out + res.err).splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in lines] == ["[sdae] epoch 1/2", "[sdae] epoch 2/2"]
    # 15 updates an epoch: validated only after the last (vizkit.training.CHECK_EVERY), and an
    # unvalidated epoch's line does not repeat an older validation's numbers
    assert "train_loss=" in lines[0] and "val_loss=" not in lines[0]
    assert "train_loss=" in lines[1] and "val_loss=" in lines[1]
    assert "\r" not in res.out + res.err


def test_lightning_checkpoint_loads_and_resumes(fresh_host, tmp_path, cli):
    logs = tmp_path / "logs"
    res = cli("train", "sdae", "--data", "digits", "--layers", "8,4", "--epochs", "1", "--out", tmp_path / "a.pt",
              "--log-dir", logs, "-q")
    assert res.code == 0, res.err
    ckpt = logs / "sdae" / "a-stage1" / "checkpoints" / "last.ckpt"
    model = vizkit.load(ckpt)
    assert model.kind == "sdae" and "layer 1" in model.metrics
    res = cli("train", "sdae", "--data", "digits", "--layers", "8,4", "--epochs", "2", "--out", tmp_path / "b.pt",
              "--log-dir", logs, "-q", "--resume", ckpt)
    assert res.code == 0, res.err
    resumed = vizkit.load(tmp_path / "b.pt")
    assert resumed.metrics["layer 2"]["epochs"] == 2 and "layer 1" in resumed.metrics


def _tensors(state, prefix=""):
    for key, value in state.items():
        if isinstance(value, dict):
            yield from _tensors(value, f"{prefix}{key}.")
        elif torch.is_tensor(value):
            yield f"{prefix}{key}", value


@pytest.mark.parametrize(("args", "whole", "cut"), [
    # fresh patches each epoch, corruption noise from torch's global generator; 10 batches per
    # epoch, cut at an epoch's end and inside an epoch (Lightning alone would repeat or skip data)
    (["ladder", "--decoder", "mod", "--layers", "12,4", "--data", "patches", "-D", "size=6", "-D", "n_train=200",
      "-D", "n_test=40", "--batch-size", "20"], ["--max-steps", "25"], ["--max-steps", "20"]),
    (["ladder", "--decoder", "add", "--layers", "12,4", "--data", "patches", "-D", "size=6", "-D", "n_train=200",
      "-D", "n_test=40", "--batch-size", "20"], ["--max-steps", "25"], ["--max-steps", "13"]),
    # shuffled rows and persistent Gibbs chains, cut between epochs
    (["rbm", "--hidden", "12", "--trainer", "pcd", "--binarize", "true", "--data", "digits", "--batch-size", "50"],
     ["--epochs", "3"], ["--epochs", "1"]),
    # fast weights too, cut inside the second epoch (FPCD's default rate decays to 0 at the run's
    # last step, so a piece that stops earlier is another run: the schedule is held constant here)
    (["rbm", "--hidden", "12", "--trainer", "fpcd", "--lr-schedule", "constant", "--binarize", "true",
      "--data", "digits", "--batch-size", "50"],
     ["--max-steps", "50"], ["--max-steps", "37"]),
], ids=["ladder-epoch-end", "ladder-mid-epoch", "rbm-pcd-epochs", "rbm-fpcd-mid-epoch"])
def test_a_run_cut_into_pieces_is_the_run_in_one_piece(fresh_host, tmp_path, cli, args, whole, cut):
    """``--resume`` restores the data stream's position and the random generators, so a run stopped
    and continued (on this machine or another) ends with the very weights of an uninterrupted run."""
    res = cli("train", *args, *whole, "--out", tmp_path / "whole.pt", "--log-dir", tmp_path / "a", "-q")
    assert res.code == 0, res.err
    res = cli("train", *args, *cut, "--out", tmp_path / "first.pt", "--log-dir", tmp_path / "b", "-q")
    assert res.code == 0, res.err
    ckpt = next((tmp_path / "b").rglob("last.ckpt"))
    moved = tmp_path / "elsewhere.ckpt"  # the piece goes on from a copy, as on another machine
    moved.write_bytes(ckpt.read_bytes())
    res = cli("train", *args, *whole, "--out", tmp_path / "pieces.pt", "--log-dir", tmp_path / "c", "-q",
              "--resume", moved)
    assert res.code == 0, res.err
    one = dict(_tensors(torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]))
    two = dict(_tensors(torch.load(tmp_path / "pieces.pt", weights_only=True)["state_dict"]))
    first = dict(_tensors(torch.load(tmp_path / "first.pt", weights_only=True)["state_dict"]))
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key
    assert any(not torch.equal(one[k], first[k]) for k in one)  # the second piece did train


def test_resume_from_a_checkpoint_that_does_not_fit_is_one_line(fresh_host, tmp_path, cli):
    """Lightning restores the weights and the optimiser state before training starts; a checkpoint
    written with other options (other shapes) or by a vizkit whose optimiser had other parameter
    groups fails there, and that is the checkpoint's fault, said in one line (exit 1)."""
    logs = tmp_path / "logs"
    res = cli("train", "sdae", "--data", "digits", "--layers", "8", "--epochs", "1", "--out", tmp_path / "a.pt",
              "--log-dir", logs, "-q")
    assert res.code == 0, res.err
    ckpt = logs / "sdae" / "a-train" / "checkpoints" / "last.ckpt"
    res = cli("train", "sdae", "--data", "digits", "--layers", "9", "--epochs", "2", "--out", tmp_path / "b.pt",
              "--log-dir", logs, "-q", "--resume", ckpt)
    assert res.code == 1 and "Traceback" not in res.err, res.err
    assert res.err.strip().startswith(f"error: --resume {ckpt} does not fit this sdae model")
    assert "size mismatch" in res.err and len(res.err.strip().splitlines()) == 1
    raw = torch.load(ckpt, weights_only=True)
    raw["optimizer_states"][0]["param_groups"].append(dict(raw["optimizer_states"][0]["param_groups"][0]))
    torch.save(raw, tmp_path / "other-optimiser.ckpt")
    res = cli("train", "sdae", "--data", "digits", "--layers", "8", "--epochs", "2", "--out", tmp_path / "c.pt",
              "--log-dir", logs, "-q", "--resume", tmp_path / "other-optimiser.ckpt")
    assert res.code == 1 and "does not fit this sdae model" in res.err and "Traceback" not in res.err, res.err
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "c.pt").exists()


def test_a_crash_mid_training_leaves_the_last_finished_epoch_to_resume(fresh_host, tmp_path, cli, monkeypatch):
    def crash_in_third_epoch(self):
        if self.trainer.current_epoch == 2:
            raise OSError(28, "No space left on device")  # e.g. the disk fills up mid-run

    monkeypatch.setattr(SDAE, "on_train_epoch_start", crash_in_third_epoch)
    monkeypatch.setattr("vizkit.training.CHECK_EVERY", 1)  # a checkpoint every epoch (15 updates)
    logs = tmp_path / "logs"
    res = cli("train", "sdae", "--data", "digits", "--layers", "8", "--epochs", "5", "--out", tmp_path / "a.pt",
              "--log-dir", logs, "-q")
    assert res.code == 1 and res.err.strip() == (
        "error: a write failed: the disk is full (no space left); nothing was changed there")
    assert not (tmp_path / "a.pt").exists()
    ckpt = logs / "sdae" / "a-train" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1  # epochs 0 and 1 finished
    monkeypatch.undo()
    res = cli("train", "sdae", "--data", "digits", "--layers", "8", "--epochs", "3", "--out", tmp_path / "b.pt",
              "--log-dir", logs, "-q", "--resume", ckpt)
    assert res.code == 0, res.err
    assert vizkit.load(tmp_path / "b.pt").metrics["layer 1"]["epochs"] == 3


def test_greedy_stage_trains_only_its_layer():
    model = SDAE(input_shape=[1, 4, 4], layers="5,3")
    model.set_stage(1)
    params = [p for group in model.configure_optimizers().param_groups for p in group["params"]]
    assert {id(p) for p in params} == {id(model.weight[1]), id(model.hidden_bias[1]), id(model.visible_bias[1])}


def test_sdae_known_answers():
    """Tied weights: the decoder of layer 1 is the transpose of its encoder, exactly."""
    torch.manual_seed(0)
    model = SDAE(input_shape=[1, 2, 2], layers="3", binary_input=True)
    x = torch.rand(5, 1, 2, 2)
    w, b, c = model.weight[0], model.hidden_bias[0], model.visible_bias[0]
    h = torch.sigmoid(x.reshape(5, 4) @ w.T + b)
    assert torch.allclose(model.activations(x, "h1"), h)
    assert torch.allclose(model.reconstruct(x).reshape(5, 4), torch.sigmoid(h @ w + c))
    model.hparams["noise"] = 0.5
    masked = model.corrupt(torch.ones(10000))
    assert set(masked.unique().tolist()) <= {0.0, 1.0} and abs(masked.mean().item() - 0.5) < 0.03


@pytest.mark.slow
def test_train_sdae_on_mnist_ten_epochs(fresh_host, tmp_path, cli, measured):
    out = tmp_path / "sdae.pt"
    res = cli("train", "sdae", "--data", "mnist", "--epochs", "10", "--out", out, "--log-dir", tmp_path / "logs", "-q")
    assert res.code == 0, res.err
    model = vizkit.load(out)
    # nats per image: an untrained layer gives 784·ln 2 ≈ 543, one that learned only its output biases
    # (the pixels' base rates) about 206, one epoch (40 updates) 201; ten epochs measured 105 (2026-12-05)
    assert measured("layer 1 val_loss (nats per image)", model.metrics["layer 1"]["val_loss"], "< 150") < 150


@pytest.mark.slow
def test_train_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "vizkit", "train", "sdae", "--data", "digits", "--layers", "16", "--epochs", "1",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(out), "--log-dir",
           str(tmp_path / "logs"), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = vizkit.load(out)
    assert model.metrics["layer 1"]["epochs"] == 1


def test_sdae_real_valued_defaults_are_the_sparse_autoencoder_recipe():
    """Whitened patches get KL sparsity, weight decay and Adam 2e-2; MNIST keeps the plain SDAE."""
    real = {"stats": {"binary_like": False}}
    hp = SDAE.hparams_from_options({}, input_shape=(1, 12, 12), data=real, lr=None)
    assert (hp["sparsity"], hp["weight_decay"], hp["lr"]) == (0.01, 1e-4, 2e-2)
    hp = SDAE.hparams_from_options({"sparsity": 0.05}, input_shape=(1, 12, 12), data=real, lr=0.001)
    assert (hp["sparsity"], hp["lr"]) == (0.05, 0.001)
    mnist = SDAE.hparams_from_options({}, input_shape=(1, 28, 28), data={"stats": {"binary_like": True}}, lr=None)
    assert (mnist["sparsity"], mnist["weight_decay"], mnist["lr"]) == (0.0, 0.0, 1e-3)
    assert SDAE.data_defaults["patches"]["whiten"] == "zca"


def test_sdae_sparsity_penalty_is_the_kl_divergence():
    model = SDAE(input_shape=[1, 2, 2], layers="3", binary_input=False, sparsity=0.1, sparsity_weight=2.0)
    code = torch.full((4, 3), 0.1)
    assert float(model.penalties(code, 0)) == pytest.approx(0.0, abs=1e-6)
    code = torch.full((4, 3), 0.5)
    kl = 0.1 * math.log(0.1 / 0.5) + 0.9 * math.log(0.9 / 0.5)
    assert float(model.penalties(code, 0)) == pytest.approx(2.0 * 3 * kl, rel=1e-5)


def test_an_rbm_run_cut_at_an_epochs_end_is_the_run_in_one_piece(fresh_host, tmp_path, cli):
    """Cut exactly at an epoch's end (10 batches per epoch, --max-steps 20), as every checkpoint a
    crashed run leaves behind is: the resumed run must read on where the whole run read. Lightning's
    resumed loop takes one batch of the next epoch's stream as the "rest" of the old epoch and then
    begins a new one; before vizkit.resume_state continued the stream inside that epoch, the
    sampler started the epoch after it and steps 21-24 saw other patches."""
    args = ["rbm", "--hidden", "6", "--trainer", "cd", "--data", "patches", "-D", "size=4", "-D", "n_train=200",
            "-D", "n_test=40", "--batch-size", "20", "-q"]
    res = cli("train", *args, "--max-steps", "25", "--out", tmp_path / "whole.pt", "--log-dir", tmp_path / "a")
    assert res.code == 0, res.err
    res = cli("train", *args, "--max-steps", "20", "--out", tmp_path / "first.pt", "--log-dir", tmp_path / "b")
    assert res.code == 0, res.err
    ckpt = next((tmp_path / "b").rglob("last.ckpt"))
    res = cli("train", *args, "--max-steps", "25", "--out", tmp_path / "pieces.pt", "--log-dir", tmp_path / "c",
              "--resume", ckpt)
    assert res.code == 0, res.err
    one = dict(_tensors(torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]))
    two = dict(_tensors(torch.load(tmp_path / "pieces.pt", weights_only=True)["state_dict"]))
    assert all(torch.equal(one[key], two[key]) for key in one)


def test_a_dbn_stopped_by_ctrl_c_inside_an_upper_stage_resumes_to_the_run_in_one_piece(fresh_host, tmp_path, cli,
                                                                                        monkeypatch):
    """A crashed run leaves the last epoch's checkpoint behind. A DBN above gaussian units, whose
    second RBM learns from binary samples of the first's probabilities (torch's global generator),
    stopped by Ctrl-C inside its second stage and continued from that stage's last checkpoint
    (written at an epoch's end), ends with the weights of an uninterrupted run."""
    from vizkit.models.rbm import DBN

    args = ["dbn", "--layers", "6,4", "--trainer", "cd", "--data", "patches", "-D", "size=4", "-D", "n_train=200",
            "-D", "n_test=40", "--batch-size", "20", "--max-steps", "25", "-q"]
    res = cli("train", *args, "--out", tmp_path / "whole.pt", "--log-dir", tmp_path / "a")
    assert res.code == 0, res.err
    step = DBN.training_step

    def stop_in_stage_two(self, batch, batch_idx):  # noqa: ANN001, ANN202
        if self.stage == 1 and self.trainer.global_step == 15:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DBN, "training_step", stop_in_stage_two)
    monkeypatch.setattr("vizkit.training.CHECK_EVERY", 10)  # a checkpoint every epoch (10 updates)
    res = cli("train", *args, "--out", tmp_path / "cut.pt", "--log-dir", tmp_path / "b")
    assert res.code == 130 and not (tmp_path / "cut.pt").exists()
    monkeypatch.setattr(DBN, "training_step", step)
    ckpt = next((tmp_path / "b").rglob("*stage1/checkpoints/last.ckpt"))
    assert torch.load(ckpt, weights_only=False)["global_step"] == 10  # the epoch's end before the cut
    res = cli("train", *args, "--out", tmp_path / "pieces.pt", "--log-dir", tmp_path / "c", "--resume", ckpt)
    assert res.code == 0, res.err
    one = dict(_tensors(torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]))
    two = dict(_tensors(torch.load(tmp_path / "pieces.pt", weights_only=True)["state_dict"]))
    assert one.keys() == two.keys() and all(torch.equal(one[key], two[key]) for key in one)
    assert vizkit.load(tmp_path / "pieces.pt").hparams["upper_data"] == "samples"


def test_validation_and_checkpoints_every_check_every_updates_and_at_the_end(fresh_host, tmp_path, cli, monkeypatch):
    """Checks (validation and last.ckpt) come every ceil(CHECK_EVERY / updates per epoch) epochs,
    and after the run's last update, whether that ends an epoch or --max-steps stops inside one."""
    from vizkit.training import check_every_epochs

    assert [check_every_epochs(n) for n in (1, 15, 40, 399, 400, 401, 20_000, math.inf)] == [400, 27, 10, 2, 1, 1, 1, 1]
    monkeypatch.setattr("vizkit.training.CHECK_EVERY", 30)  # 15 updates an epoch: every 2nd epoch
    checks: list[tuple[int, int]] = []
    saves: list[int] = []
    real_validation = SDAE.validation_step
    real_save = torch.save

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN202
        if batch_idx == 0:
            checks.append((self.current_epoch, self.global_step))
        return real_validation(self, batch, batch_idx)

    def save(obj, f, *args, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(obj, dict) and "loops" in obj:  # Lightning's checkpoint, not vizkit's
            saves.append(obj["global_step"])
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(SDAE, "validation_step", validation_step)
    monkeypatch.setattr(torch, "save", save)
    args = ["train", "sdae", "--data", "digits", "--layers", "8", "-q", "--log-dir", tmp_path / "logs"]
    res = cli(*args, "--epochs", "5", "--out", tmp_path / "a.pt")
    assert res.code == 0, res.err
    assert checks == [(1, 30), (3, 60), (4, 75)] and saves == [30, 60, 75]
    val = vizkit.load(tmp_path / "a.pt").metrics["layer 1"]["val_loss"]
    checks.clear(), saves.clear()
    res = cli(*args, "--max-steps", "50", "--out", tmp_path / "b.pt")  # stops inside the 4th epoch
    assert res.code == 0, res.err
    assert checks == [(1, 30), (3, 50)] and saves == [30, 50]
    assert vizkit.load(tmp_path / "b.pt").metrics["layer 1"]["val_loss"] != val


def test_sdae_validation_leaves_the_training_stream_alone():
    """Validation draws its corruption from a fixed seed of its own: the loss is the same at every
    validation, and how often a run validates cannot change what it learns."""
    model = SDAE(input_shape=[1, 4, 4], layers="3", noise=0.3, corruption="masking")
    batch = torch.rand(5, 1, 4, 4)
    model.log = lambda *a, **k: seen.append(float(a[1].detach()))  # noqa: ARG005
    seen: list[float] = []
    torch.manual_seed(1)
    state = torch.get_rng_state()
    model.validation_step(batch, 0)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    model.validation_step(batch, 0)
    assert seen[0] == seen[1]
