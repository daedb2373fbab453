"""Ctrl-C, special files, tampered checkpoints and a full disk: one line each, nothing lost.

Ctrl-C is simulated by raising KeyboardInterrupt where the signal would land (inside a probe's
compute, a gallery's probe run, Lightning's training step, a plugin's import). Special files are
real FIFOs made with ``os.mkfifo``; every test that opens paths runs under an alarm, so a hang
fails the test instead of stalling the suite.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import vizkit
from tests.conftest import make_sdae
from tests.test_safety import one_line, tree
from vizkit.checkpoint import checkpoint_bytes, save_checkpoint
from vizkit.errors import OptionError
from vizkit.registry import PluginHost, reset_host

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM"),
                                reason="needs POSIX FIFOs and alarms")




class Hung(BaseException):
    """Raised by the alarm: a BaseException, so no handler in vizkit can turn it into a message."""


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (rather than block forever) when something opens a FIFO."""
    def ring(signum: int, frame: object) -> None:
        raise Hung("blocked for 30 s: something opened a special file")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


# -- Ctrl-C --------------------------------------------------------------------------------------------
def test_ctrl_c_in_a_probe_is_one_line_exit_130_and_the_previous_result_stays(fresh_host, sdae_ckpt, tmp_path,
                                                                              cli, monkeypatch):
    from vizkit.probes.filters import Filters

    out = tmp_path / "o"
    assert cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out).code == 0
    before = tree(out)
    monkeypatch.setattr(Filters, "compute", interrupt)
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--seed", "1", "--out", out)
    assert one_line(res, 130, "interrupted") == "vizkit: interrupted"
    assert tree(out) == before and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_ctrl_c_in_a_gallery_build_keeps_the_previous_gallery(fresh_host, sdae_ckpt, tmp_path, cli, monkeypatch):
    from vizkit.probes.filters import Filters

    recipe = tmp_path / "r.toml"
    entry = '[[model]]\nname = "m"\npath = "{ckpt}"\n[[probe]]\nmodel = "m"\nprobe = "filters"\nseed = {seed}\n'
    recipe.write_text(entry.format(ckpt=sdae_ckpt, seed=0))
    site = tmp_path / "site"
    assert cli("gallery", "build", recipe, "--out", site, "-q").code == 0
    before = tree(site)
    recipe.write_text(entry.format(ckpt=sdae_ckpt, seed=1))
    monkeypatch.setattr(Filters, "compute", interrupt)
    one_line(cli("gallery", "build", recipe, "--out", site, "-q"), 130, "vizkit: interrupted")
    assert tree(site) == before


def test_ctrl_c_during_training_writes_no_checkpoint_and_keeps_the_old_one(fresh_host, tmp_path, cli, monkeypatch):
    from vizkit.models.sdae import SDAE

    out = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "model.pt")
    before = out.read_bytes()
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(SDAE, "training_step", interrupt)  # Lightning catches this one itself
    res = cli("train", "sdae", "--data", "digits", "--layers", "4", "--max-steps", "2", "--out", out,
              "--log-dir", tmp_path / "logs", "-q", "--accelerator", "cpu")
    one_line(res, 130, "vizkit: interrupted")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "model.pt"]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) == handler  # Lightning set it to "ignore"; it is back


def test_ctrl_c_while_a_plugin_imports_is_an_interrupt_not_a_broken_plugin(cli):
    class EntryPoint:
        name = "slow-plugin"
        dist = None

        def load(self) -> object:
            raise KeyboardInterrupt

    reset_host(PluginHost(entry_points=[EntryPoint()], include_core=False))
    try:
        one_line(cli("plugins"), 130, "vizkit: interrupted")
        from vizkit import registry

        assert registry._host is None  # no half-loaded host is kept for the next call
    finally:
        reset_host(None)


# -- special files -------------------------------------------------------------------------------------
def test_a_fifo_as_probe_data_is_refused_without_opening_it(fresh_host, sdae_ckpt, tmp_path, cli, no_hang):
    data = fifo(tmp_path / "f.npy")
    res = cli("probe", "--probe", "topk", sdae_ckpt, "--layer", "h1", "-o", "data", data, "--out", tmp_path / "o")
    one_line(res, 2, "named pipe (FIFO)", "f.npy")


def test_a_fifo_named_like_an_image_in_a_folder_is_refused(fresh_host, sdae_ckpt, tmp_path, cli, no_hang):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"a{i}.png")
    fifo(folder / "x.png")
    res = cli("probe", "--probe", "topk", sdae_ckpt, "--layer", "h1", "-o", "data", folder, "--out", tmp_path / "o")
    one_line(res, 2, "x.png is a named pipe (FIFO)")


def test_a_fifo_as_training_data_or_output_is_refused(fresh_host, tmp_path, cli, no_hang):
    one_line(cli("train", "sdae", "--data", fifo(tmp_path / "d.npy"), "--out", tmp_path / "m.pt", "-q"),
             2, "named pipe (FIFO)")
    one_line(cli("train", "sdae", "--data", "digits", "--out", fifo(tmp_path / "m2.pt"), "-q"), 2, "named pipe")


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_special_file_as_a_checkpoint_is_refused(fresh_host, tmp_path, cli, no_hang, special):
    path = fifo(tmp_path / "m.pt") if special == "fifo" else Path(special)
    if not path.exists():
        pytest.skip(f"no {special} here")
    one_line(cli("inspect", path), 2, "not a regular file")
    one_line(cli("probe", "--probe", "filters", path, "--layer", "h1", "--out", tmp_path / "o"), 2,
             "not a regular file")


def test_a_fifo_as_weights_recipe_or_labels_file_is_refused(fresh_host, tmp_path, cli, no_hang):
    res = cli("inspect", "--module", "torch.nn:Identity", "--weights", fifo(tmp_path / "w.pt"), "--input-shape", "4")
    one_line(res, 2, "--weights", "named pipe (FIFO)")
    one_line(cli("gallery", "build", fifo(tmp_path / "r.toml"), "--out", tmp_path / "site"), 2, "recipe",
             "named pipe")
    from vizkit.class_names import read_labels_file

    with pytest.raises(OptionError, match="labels file .* named pipe"):
        read_labels_file(fifo(tmp_path / "labels.txt"))


# -- tampered checkpoints ------------------------------------------------------------------------------
def write_raw(path: Path, ckpt: dict) -> Path:
    """Bytes as a tampering hand would leave them: no load-back check, no listing."""
    path.write_bytes(checkpoint_bytes(ckpt))
    return path


def convnet_ckpt(**changes: object) -> dict:
    from vizkit.models.convnet import ConvNet

    ckpt = ConvNet(input_shape=[1, 8, 8], classes=3, channels="2", kernel=3, pool=2).to_checkpoint()
    ckpt["hparams"].update(changes)
    return ckpt


@pytest.mark.parametrize(("changes", "message"), [
    ({"pool": 0}, "stored hyperparameter 'pool' must be >= 1, got 0"),
    ({"pool": "2"}, "stored hyperparameter 'pool' must be an integer, got '2'"),
    ({"kernel": True}, "'kernel' must be an integer"),
    ({"classes": 0}, "'classes' must be >= 1"),
    ({"lr": float("nan")}, "'lr' must be a number"),
    ({"input_shape": [1, 0, 8]}, "'input_shape' must be one to four sizes"),
])
def test_a_tampered_convnet_hyperparameter_is_one_line(fresh_host, tmp_path, cli, changes, message):
    path = write_raw(tmp_path / "m.pt", convnet_ckpt(**changes))
    one_line(cli("inspect", path), 1, str(path), message)


def test_values_that_pass_alone_but_break_the_constructor_are_one_line(fresh_host, tmp_path, cli, monkeypatch):
    from vizkit.models.convnet import ConvNet

    path = write_raw(tmp_path / "m.pt", convnet_ckpt())

    def divide(self, **hparams):
        return 1 // 0

    monkeypatch.setattr(ConvNet, "__init__", divide)
    one_line(cli("inspect", path), 1, str(path), "do not build the model (ZeroDivisionError")


def test_a_capsule_activation_outside_its_choices_is_refused(fresh_host, tmp_path, cli):
    from vizkit.models.capsule.model import CapsuleAE

    ckpt = CapsuleAE(input_shape=[1, 8, 8], ccs=2, acs=2, distortion=2, template_size=4, hidden=4,
                     dist_hidden=4).to_checkpoint()
    ckpt["hparams"]["activation"] = "evil"
    path = write_raw(tmp_path / "m.pt", ckpt)
    one_line(cli("inspect", path), 1, "'activation' must be one of ['logistic', 'relu'], got 'evil'")


def test_complex_weights_are_refused_not_made_real(fresh_host, tmp_path, cli):
    ckpt = make_sdae().to_checkpoint()
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name] = ckpt["state_dict"][name].to(torch.complex64)
    one_line(cli("inspect", write_raw(tmp_path / "m.pt", ckpt)), 1, "complex numbers (complex64)", repr(name))
    weights = tmp_path / "w.pt"
    torch.save({"weight": torch.ones(2, 2, dtype=torch.complex64), "bias": torch.zeros(2)}, weights)
    res = cli("inspect", "--module", "torch.nn:Identity", "--weights", weights, "--input-shape", "2")
    one_line(res, 1, "complex numbers", "'weight'")


def test_checkpoints_vizkit_writes_pass_their_own_checks(tmp_path):
    path = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "m.pt")
    assert vizkit.load(path).hparams["layers"] == "6,4"


# -- a full disk and library noise ---------------------------------------------------------------------
class Noisy:
    """A writer whose destructor retries its write, as imageio's GIF writer does on a full disk."""

    def __del__(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def plugin_with(run) -> types.ModuleType:
    class Video(vizkit.Probe):
        name = "videoish"
        summary = "writes a video"

    def method(self, ctx):
        return run(ctx)

    Video.run = method
    module = types.ModuleType("plugin_videoish")

    @vizkit.hookimpl
    def register_probes(register):
        register(Video)

    module.register_probes = register_probes
    return module


def video_result(ctx) -> vizkit.Result:
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    return vizkit.Result(arrays={"x": np.zeros(len(ctx.units))}, videos={"clip": vizkit.Video(frames, fps=2)})


def test_a_full_disk_while_writing_a_video_is_one_line(fresh_host, sdae_ckpt, tmp_path, cli, monkeypatch):
    fresh_host.add_plugin(plugin_with(video_result), "videoish")
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if self.name.startswith(".clip.gif"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    res = cli("probe", "--probe", "videoish", sdae_ckpt, "--layer", "h1", "--out", tmp_path / "o")
    one_line(res, 1, "disk is full")


def test_destructor_noise_and_library_warnings_do_not_add_lines_to_a_refusal(fresh_host, sdae_ckpt, tmp_path, cli,
                                                                             monkeypatch):
    def run(ctx):
        warnings.warn("a library's advice", UserWarning, stacklevel=1)
        writer = Noisy()  # noqa: F841  # dropped with the frame, its __del__ complains
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "clip.gif"))

    fresh_host.add_plugin(plugin_with(run), "videoish")
    ignored: list[object] = []  # what Python would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    with warnings.catch_warnings(record=True) as shown:  # what would reach stderr outside pytest
        warnings.simplefilter("always")
        res = cli("probe", "--probe", "videoish", sdae_ckpt, "--layer", "h1", "--out", tmp_path / "o")
        gc.collect()
    one_line(res, 1, "disk is full")
    assert not ignored and not shown


def test_warnings_still_show_after_a_success(fresh_host, sdae_ckpt, tmp_path, cli):
    def run(ctx):
        warnings.warn("a library's advice", UserWarning, stacklevel=1)
        return video_result(ctx)

    fresh_host.add_plugin(plugin_with(run), "videoish")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        res = cli("probe", "--probe", "videoish", sdae_ckpt, "--layer", "h1", "--out", tmp_path / "o")
    assert res.code == 0 and [str(w.message) for w in shown] == ["a library's advice"]
