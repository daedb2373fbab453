"""A result is reused only while everything it depends on is unchanged: weights, the code of the
probe and of the model kind, every file or folder an option points at, and (for a gallery) the code
a model was trained with. Each dependency is changed here and the run must be recomputed."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from tests.test_gallery import RECIPE as GALLERY_RECIPE
from vizkit import freshness
from vizkit.checkpoint import save_checkpoint

from .conftest import make_sdae
from .test_convnet import make_convnet


def _reused(result: vizkit.Result) -> bool:
    return bool(result.meta.get("reused"))


def _edit_unit(monkeypatch: pytest.MonkeyPatch, unit: str) -> None:
    """Pretend the source of one code unit was edited (its content hash changes)."""
    real = freshness.unit_sha256
    monkeypatch.setattr(freshness, "unit_sha256", lambda name: "edited" if name == unit else real(name))


# -- weights -------------------------------------------------------------------------------------------
def test_a_wrapped_model_whose_weights_changed_is_recomputed(fresh_host, tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3))
    model = vizkit.wrap(net, (1, 8, 8))
    out = tmp_path / "f"
    first = vizkit.run_probe("filters", model, "0", out=out)
    assert _reused(vizkit.run_probe("filters", model, "0", out=out))  # unchanged: reused
    with torch.no_grad():
        net[0].weight.mul_(-5)
    again = vizkit.run_probe("filters", model, "0", out=out)
    assert not _reused(again)
    np.testing.assert_allclose(again.arrays["filters"], -5 * first.arrays["filters"], rtol=1e-6)


def test_an_in_memory_model_edited_through_data_is_recomputed(fresh_host, tmp_path):
    model = make_sdae()
    out = tmp_path / "f"
    vizkit.run_probe("filters", model, "h1", out=out)
    model.weight[0].data.mul_(-5)  # .data: not even autograd's version counter sees this
    assert not _reused(vizkit.run_probe("filters", model, "h1", out=out))


def test_a_loaded_checkpoint_edited_in_memory_is_recomputed(fresh_host, sdae_ckpt, tmp_path):
    out = tmp_path / "f"
    vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=out)
    assert _reused(vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=out))
    model = vizkit.load(sdae_ckpt)
    with torch.no_grad():
        model.weight[0].add_(1.0)
    assert not _reused(vizkit.run_probe("filters", model, "h1", out=out))


def test_the_state_dict_hash_sees_names_dtypes_and_shapes():
    a = nn.Linear(2, 2)
    base = freshness.state_dict_sha256(a)
    assert freshness.state_dict_sha256(a) == base
    assert freshness.state_dict_sha256(nn.Sequential(a)) != base  # "0.weight", not "weight"
    assert freshness.state_dict_sha256(a.double()) != base
    flat = nn.Linear(4, 1, bias=False)
    tall = nn.Linear(1, 4, bias=False)
    with torch.no_grad():
        tall.weight.copy_(flat.weight.reshape(4, 1))
    assert freshness.state_dict_sha256(flat) != freshness.state_dict_sha256(tall)


# -- code --------------------------------------------------------------------------------------------
def test_code_units_are_one_probe_or_model_kind_not_the_core():
    assert freshness.code_unit("vizkit.probes.actmax.figures") == "vizkit.probes.actmax"
    assert freshness.code_unit("vizkit.models.rbm.model") == "vizkit.models.rbm"
    assert freshness.code_unit("vizkit.models.sdae") == "vizkit.models.sdae"
    assert freshness.code_unit("vizkit.datasets.digits") == "vizkit.datasets.digits"
    assert freshness.code_unit("vizkit.runner") is None and freshness.code_unit("vizkit.wrapping") is None
    assert freshness.code_unit("torch.nn.modules.conv") is None and freshness.code_unit("json") is None
    assert freshness.code_unit("mylab.probes.wiggle") == "mylab"


def test_editing_a_builtin_probe_recomputes(fresh_host, sdae_ckpt, tmp_path, monkeypatch):
    model = vizkit.load(sdae_ckpt)
    out = tmp_path / "f"
    first = vizkit.run_probe("filters", model, "h1", out=out)
    assert "vizkit.probes.filters" in first.meta["inputs"]["code"]["probe"]
    _edit_unit(monkeypatch, "vizkit.probes.actmax")  # another probe's code: no matter
    assert _reused(vizkit.run_probe("filters", model, "h1", out=out))
    _edit_unit(monkeypatch, "vizkit.probes.filters")
    assert not _reused(vizkit.run_probe("filters", model, "h1", out=out))


def test_editing_the_model_kind_recomputes_with_the_same_weights(fresh_host, sdae_ckpt, tmp_path, monkeypatch):
    model = vizkit.load(sdae_ckpt)
    out = tmp_path / "f"
    first = vizkit.run_probe("filters", model, "h1", out=out)
    assert {"vizkit.models.sdae", "vizkit.models.base"} <= set(first.meta["inputs"]["code"]["model"])
    _edit_unit(monkeypatch, "vizkit.models.sdae")
    assert not _reused(vizkit.run_probe("filters", model, "h1", out=out))


PLUGIN = '''
import numpy as np
import vizkit

SCALE = {scale}


class Scaled(vizkit.Probe):
    name = "scaled"
    summary = "a constant, to see the probe's own code enter the fingerprint"
    requires = frozenset({{"activations"}})

    def run(self, ctx):
        return vizkit.Result(arrays={{"scale": np.array([SCALE], np.float32)}})


@vizkit.hookimpl
def register_probes(register):
    register(Scaled)
'''


def test_editing_a_third_party_probe_module_recomputes(fresh_host, tmp_path, monkeypatch):
    source = tmp_path / "plugins" / "freshness_scaled_probe.py"
    source.parent.mkdir()
    source.write_text(PLUGIN.format(scale=1))
    monkeypatch.syspath_prepend(str(source.parent))
    monkeypatch.delitem(sys.modules, source.stem, raising=False)
    fresh_host.add_plugin(importlib.import_module(source.stem), "scaled-plugin")
    model, out = make_sdae(), tmp_path / "s"
    assert "freshness_scaled_probe" in vizkit.run_probe("scaled", model, "h1", out=out).meta["inputs"]["code"]["probe"]
    assert _reused(vizkit.run_probe("scaled", model, "h1", out=out))
    source.write_text(PLUGIN.format(scale=2))  # the loaded class is unchanged; its source is not
    assert not _reused(vizkit.run_probe("scaled", model, "h1", out=out))


NET = '''
from torch import nn


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 2, 3), nn.{act}())
'''


def test_a_module_whose_code_changed_is_recomputed_with_the_same_weights(fresh_host, tmp_path, monkeypatch):
    source = tmp_path / "nets" / "freshness_net.py"
    source.parent.mkdir()
    source.write_text(NET.format(act="ReLU"))
    monkeypatch.syspath_prepend(str(source.parent))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delitem(sys.modules, source.stem, raising=False)
    weights = tmp_path / "w.pt"
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3)).state_dict(), weights)
    out = tmp_path / "f"

    def run() -> vizkit.Result:
        importlib.invalidate_caches()
        sys.modules.pop(source.stem, None)
        model = vizkit.load_module(f"{source.stem}:Net", weights, "1,8,8")
        return vizkit.run_probe("filters", model, "0", out=out)

    first = run()
    assert first.meta["model"]["checkpoint"]["module_sha256"]
    assert _reused(run())
    source.write_text(NET.format(act="Tanh"))
    again = run()
    assert not _reused(again)
    assert again.meta["model"]["checkpoint"]["module_sha256"] != first.meta["model"]["checkpoint"]["module_sha256"]


# -- inputs that options point at -----------------------------------------------------------------------
def _write_images(folder: Path, seed: int) -> None:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")


def test_topk_on_a_folder_whose_images_were_replaced_is_recomputed(fresh_host, tmp_path):
    model, photos, out = make_sdae(), tmp_path / "photos", tmp_path / "top"
    _write_images(photos, seed=0)
    first = vizkit.run_probe("topk", model, "h1", units="0:2", k=2, data=str(photos), out=out)
    (photos / "notes").mkdir()  # a subfolder is not read by the image loader: no matter
    (photos / "notes" / "x.txt").write_text("x")
    assert _reused(vizkit.run_probe("topk", model, "h1", units="0:2", k=2, data=str(photos), out=out))
    _write_images(photos, seed=1)
    again = vizkit.run_probe("topk", model, "h1", units="0:2", k=2, data=str(photos), out=out)
    assert not _reused(again)
    assert not np.array_equal(again.arrays["images"], first.arrays["images"])


def test_evolution_after_one_listed_checkpoint_was_retrained_is_recomputed(fresh_host, tmp_path):
    paths = [save_checkpoint(make_convnet(seed=s).to_checkpoint(), tmp_path / f"e{s}.pt") for s in (3, 4)]
    listed = ",".join(map(str, paths))
    model, out = vizkit.load(paths[-1]), tmp_path / "evo"
    options = dict(units="0:2", split="test", limit=50, checkpoints=listed, out=out)
    vizkit.run_probe("evolution", model, "conv1", **options)
    assert _reused(vizkit.run_probe("evolution", model, "conv1", **options))
    save_checkpoint(make_convnet(seed=5).to_checkpoint(), paths[0])  # e3.pt retrained in place
    assert not _reused(vizkit.run_probe("evolution", model, "conv1", **options))


def test_hessian_from_a_result_that_was_rerun_is_recomputed(fresh_host, sdae_ckpt, tmp_path):
    model, am, out = vizkit.load(sdae_ckpt), tmp_path / "am", tmp_path / "hess"
    vizkit.run_probe("actmax", model, "h1", units="0:2", out=am, steps=30, restarts=1)
    options = dict(units="0:2", out=out, from_dir=str(am), videos=False, refine=0, top=2, transforms=False)
    first = vizkit.run_probe("hessian", model, "h1", **options)
    recorded = json.loads((am / "result.json").read_text())["fingerprint"]
    assert first.meta["inputs"]["options"]["from_dir"]["result"] == recorded  # the result's own fingerprint
    assert _reused(vizkit.run_probe("hessian", model, "h1", **options))
    vizkit.run_probe("actmax", model, "h1", units="0:2", out=am, steps=60, restarts=1)
    assert not _reused(vizkit.run_probe("hessian", model, "h1", **options))


def test_a_damaged_result_folder_is_not_taken_for_its_fingerprint(fresh_host, tmp_path):
    am = tmp_path / "am"
    vizkit.run_probe("filters", make_sdae(), "h1", units="0:2", out=am)
    verified = freshness.path_fingerprint(str(am))
    assert set(verified) == {"result", "arrays"}
    np.savez(am / "arrays.npz", stimuli=np.ones((2, 1, 8, 8), np.float32))
    damaged = freshness.path_fingerprint(str(am))
    assert set(damaged) == {"folder"}
    np.savez(am / "arrays.npz", stimuli=np.zeros((2, 1, 8, 8), np.float32))
    assert freshness.path_fingerprint(str(am)) != damaged


def test_a_rewrite_in_the_same_clock_tick_is_seen(tmp_path):
    data = tmp_path / "x.bin"
    data.write_bytes(b"a" * 64)
    before = freshness.file_sha256(data)
    data.write_bytes(b"b" * 64)  # same size, likely the same mtime
    assert freshness.file_sha256(data) != before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_never_opened(fresh_host, tmp_path):
    folder = tmp_path / "d"
    _write_images(folder, seed=0)
    plain = freshness.folder_sha256(folder)
    os.mkfifo(folder / "9.png")  # opening it for reading would block forever
    assert freshness.folder_sha256(folder) == plain
    assert freshness.path_fingerprint(str(folder / "9.png")) is None
    assert freshness.input_fingerprints({"data": str(folder / "9.png")}) == {}
    listed = freshness.input_fingerprints({"checkpoints": f"{folder / '0.png'},{folder / '9.png'}"})
    assert listed["checkpoints"][1] == [str(folder / "9.png"), None]
    result = tmp_path / "r"
    vizkit.run_probe("filters", make_sdae(), "h1", units="0:2", out=result)
    (result / "arrays.npz").unlink()
    os.mkfifo(result / "arrays.npz")  # a listed file swapped for a FIFO: damaged, not a hang
    assert set(freshness.path_fingerprint(str(result))) == {"folder"}


# -- gallery -------------------------------------------------------------------------------------------
# the tiny sdae recipe of test_gallery, one probe of it (training is faked below)
RECIPE = GALLERY_RECIPE.split("[[probe]]")[0] + '[[probe]]\nmodel = "tiny-sdae"\nprobe = "filters"\nlayers = ["h1"]\n'


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``vizkit.training.train`` replaced by writing an untrained checkpoint; returns the kinds trained."""
    import vizkit.training

    trained: list[str] = []

    def train(kind: str, data: str, out: Path, **_: object) -> Path:
        trained.append(kind)
        return save_checkpoint(make_sdae("8,4", seed=len(trained)).to_checkpoint(), out)

    monkeypatch.setattr(vizkit.training, "train", train)
    return trained


def test_a_gallery_model_is_retrained_when_its_kinds_code_changed(fresh_host, tmp_path, monkeypatch, capsys,
                                                                  fake_training):
    from vizkit.gallery import build

    recipe, out = tmp_path / "tiny.toml", tmp_path / "site"
    recipe.write_text(RECIPE)
    build(recipe, out, progress=False)
    stamp = json.loads((out / "models" / "tiny-sdae.recipe").read_text())
    assert {"model", "training", "data"} <= set(stamp["code"]) and "vizkit.models.sdae" in stamp["code"]["model"]
    build(recipe, out, progress=False)
    assert fake_training == ["sdae"]  # unchanged: the trained model is reused
    _edit_unit(monkeypatch, "vizkit.models.sdae")
    capsys.readouterr()
    build(recipe, out, progress=True)
    assert fake_training == ["sdae", "sdae"]
    said = [line for line in capsys.readouterr().out.splitlines() if "retraining" in line]
    assert said == ["[gallery] tiny-sdae: the model kind's code changed since it was trained; retraining"]


def test_a_gallery_stamp_without_a_code_hash_retrains(fresh_host, tmp_path, capsys, fake_training):
    from vizkit.gallery import build

    recipe, out = tmp_path / "tiny.toml", tmp_path / "site"
    recipe.write_text(RECIPE)
    build(recipe, out, progress=False)
    stamp = out / "models" / "tiny-sdae.recipe"
    old = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({"recipe": old["recipe"], "sha256": old["sha256"]}))  # an older vizkit's stamp
    capsys.readouterr()
    build(recipe, out, progress=True)
    assert fake_training == ["sdae", "sdae"]
    said = [line for line in capsys.readouterr().out.splitlines() if "retraining" in line]
    assert said == ["[gallery] tiny-sdae: its stamp has no code hash (written by an older vizkit); retraining"]
    assert "code" in json.loads(stamp.read_text())
    stamp.write_text(old["recipe"])  # the first stamps: the bare digest
    build(recipe, out, progress=False)
    assert fake_training == ["sdae", "sdae", "sdae"]


def test_one_checkpoint_named_by_a_relative_or_an_absolute_path_is_one_model(fresh_host, sdae_ckpt, tmp_path,
                                                                             monkeypatch):
    """Where a checkpoint lies is not what it is: a gallery built once with a relative --out and
    once from another directory (absolute paths, as ``make figures`` builds) reuses its results."""
    monkeypatch.chdir(sdae_ckpt.parent)
    out = tmp_path / "o"
    first = vizkit.run_probe("filters", vizkit.load(sdae_ckpt.name), "h1", units="0:2", out=out, show_progress=False)
    again = vizkit.run_probe("filters", vizkit.load(sdae_ckpt.resolve()), "h1", units="0:2", out=out,
                             show_progress=False)
    assert not first.meta.get("reused") and again.meta.get("reused")
