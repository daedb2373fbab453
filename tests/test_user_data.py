"""The user's data is the user's data: a .npy / image folder is used whole and in file order by
default, every index a probe reports is a row of the file (a folder: its sorted file list), a
shortfall is said in one line, and the built-in datasets keep their held-out test split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit import probe_inputs

from .conftest import make_sdae


def small_conv() -> vizkit.WrappedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4))
    return vizkit.wrap(net, (1, 8, 8), layers=["1", "3"])


def brute_force_top(scores: np.ndarray, k: int) -> np.ndarray:
    """[units, k] rows of a full sort of ``scores`` [rows, units] by (value desc, row asc)."""
    n = scores.shape[0]
    return np.stack([np.lexsort((np.arange(n), -scores[:, u]))[:k] for u in range(scores.shape[1])])


def photo_folder(path, n: int = 15):
    """``n`` grey 8x8 PNGs named so that name order differs from creation order."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(7)
    images = (rng.random((n, 8, 8)) * 255).astype(np.uint8)
    for i in reversed(range(n)):
        Image.fromarray(images[i]).save(path / f"shot_{i:03d}.png")
    return path, images.astype(np.float32)[:, None] / 255.0


def test_topk_on_a_npy_reports_rows_of_the_whole_file(fresh_host, tmp_path):
    data = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    model = small_conv()
    result = vizkit.run_probe("topk", model, "3", data=str(tmp_path / "x.npy"), k=6)
    with torch.no_grad():
        scores = model.module(torch.from_numpy(data)).double().numpy()
    np.testing.assert_array_equal(result.arrays["indices"], brute_force_top(scores, 6))
    # the images shown are those rows of the file
    np.testing.assert_array_equal(result.arrays["images"], data[result.arrays["indices"]])
    # an explicit split still reports rows of the file: every index is one of that split's rows
    test = vizkit.run_probe("topk", model, "3", data=str(tmp_path / "x.npy"), k=2, split="test")
    from vizkit.datasets import from_path

    split_rows = probe_inputs.split_examples(from_path(tmp_path / "x.npy"), "test").rows.numpy()
    assert set(test.arrays["indices"].ravel()) <= set(split_rows.tolist())
    np.testing.assert_array_equal(test.arrays["images"], data[test.arrays["indices"]])


def test_a_folder_of_15_images_works_with_k_9_and_names_its_files(fresh_host, tmp_path, cli, monkeypatch):
    folder, images = photo_folder(tmp_path / "photos")
    model = small_conv()
    out = tmp_path / "out"
    res = cli("probe", "--probe", "topk", "--layer", "3", "-o", "data", folder, "-o", "k", "9", "--out", out,
              *_module_args(tmp_path, monkeypatch))
    assert res.code == 0, res.err
    meta = json.loads((out / "result.json").read_text())
    assert meta["example_names"] == [f"shot_{i:03d}.png" for i in range(15)]
    with np.load(out / "arrays.npz") as arrays:
        indices = arrays["indices"]
    with torch.no_grad():
        scores = model.module(torch.from_numpy(images)).double().numpy()
    np.testing.assert_array_equal(indices, brute_force_top(scores, 9))
    assert "all 15 images, sorted by file name" in meta["data_source"]


def _module_args(tmp_path, monkeypatch) -> list[str]:
    """``--module/--weights/--input-shape`` for :func:`small_conv`'s network, as a user gives them."""
    import sys

    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def small():\n"
        "    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4))\n")
    torch.save(small_conv().module.state_dict(), tmp_path / "w.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    return ["--module", "mynets:small", "--weights", str(tmp_path / "w.pt"), "--input-shape", "1,8,8"]


def test_too_few_examples_name_the_file_the_split_and_the_way_out(fresh_host, tmp_path, cli, monkeypatch):
    folder, _ = photo_folder(tmp_path / "photos")
    res = cli("probe", "--probe", "topk", "--layer", "3", "-o", "data", folder, "-o", "k", "9", "-o", "split", "test",
              "--out", tmp_path / "o", *_module_args(tmp_path, monkeypatch))
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert "only 2 examples" in res.err and "of its 15 images" in res.err and "-o split test" in res.err
    assert "-o split all uses all 15" in res.err
    with pytest.raises(vizkit.OptionError, match=r"first 5 .*raise -o limit"):
        vizkit.run_probe("topk", small_conv(), "3", data=str(folder), k=9, limit=5)
    with pytest.raises(vizkit.OptionError, match=r"all 15 images.*choose -o k 15 or less"):
        vizkit.run_probe("topk", small_conv(), "3", data=str(folder), k=20)


def test_occlusion_and_invcurves_report_rows_and_a_shortfall(fresh_host, tmp_path, cli, monkeypatch):
    data = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "three.npy", data)
    model = small_conv()
    occ = vizkit.run_probe("occlusion", model, "1", data=str(tmp_path / "three.npy"), output="3")
    assert occ.arrays["indices"].tolist() == [0, 1, 2]
    assert occ.meta["notes"] == [f"used 3 of 4 examples (option 'images'): {occ.meta['data_source']}"]
    inv = vizkit.run_probe("invcurves", model, "1", data=str(tmp_path / "three.npy"), output="3", points=3,
                           kinds="rotation", images="2,0")
    assert inv.arrays["indices"].tolist() == [2, 0] and "notes" not in inv.meta
    # the CLI prints each note on stderr
    res = cli("probe", "--probe", "occlusion", "--layer", "1", "-o", "data", tmp_path / "three.npy", "-o", "output",
              "3", "--out", tmp_path / "o", *_module_args(tmp_path, monkeypatch))
    assert res.code == 0, res.err
    assert "note: occlusion: used 3 of 4 examples" in res.err


def test_invcurves_figure_wraps_many_layers(fresh_host, tmp_path):
    from PIL import Image

    from vizkit.output import figure_png

    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(10) for m in (nn.Conv2d(1, 1, 3, padding=1), nn.ReLU())])
    names = [str(i) for i in range(20)]
    model = vizkit.wrap(net, (1, 8, 8), layers=names)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32))
    result = vizkit.run_probe("invcurves", model, "1", data=str(tmp_path / "x.npy"), layers=",".join(names),
                              output="none", points=3, kinds="translation,rotation", images="0")
    import io

    width, _ = Image.open(io.BytesIO(figure_png(result.figures["invcurves"]))).size
    assert width <= 2000


def test_builtin_data_keeps_its_test_split(fresh_host):
    model = make_sdae()
    examples = probe_inputs.load_examples(model)
    from vizkit.datasets.digits import build

    np.testing.assert_array_equal(examples.images.numpy(), build().test_tensor().numpy())
    assert examples.rows.tolist() == list(range(len(examples))) and "digits test split" in examples.source
    assert vizkit.load_dataset("digits").images.shape == examples.images.shape


def test_a_models_own_user_data_is_used_whole(fresh_host, tmp_path):
    from vizkit.datasets import from_path

    data = np.random.default_rng(2).random((20, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "own.npy", data)
    model = small_conv()
    model.data_info = from_path(tmp_path / "own.npy", seed=3).describe()
    examples = probe_inputs.load_examples(model)
    np.testing.assert_array_equal(examples.images.numpy(), data)
    assert examples.rows.tolist() == list(range(20))
    train = probe_inputs.load_examples(model, split="train")
    np.testing.assert_array_equal(train.images.numpy(), data[train.rows.numpy()])
    assert len(train) == 18 and train.rows.tolist() == sorted(train.rows.tolist())


def test_an_npz_with_labels_gives_occlusion_the_true_class_and_bad_labels_are_one_line(fresh_host, tmp_path):
    from vizkit.errors import DataError

    data = np.random.default_rng(2).random((6, 1, 8, 8)).astype(np.float32)
    labels = np.array([3, 1, 0, 2, 1, 3])
    np.savez(tmp_path / "mine.npz", x=data, y=labels, class_names=np.array(["a", "b", "c", "d"]))
    occ = vizkit.run_probe("occlusion", small_conv(), "1", data=str(tmp_path / "mine.npz"), output="3",
                           images="1,4,5")
    assert occ.meta["labels"] == "data" and occ.arrays["true_labels"].tolist() == [1, 1, 3]
    assert occ.arrays["indices"].tolist() == [1, 4, 5]
    np.savez(tmp_path / "bad.npz", x=data, y=labels[:4])
    with pytest.raises(DataError, match=r"'y' must hold one class number >= 0 per example \(6\)"):
        vizkit.run_probe("occlusion", small_conv(), "1", data=str(tmp_path / "bad.npz"), output="3")
