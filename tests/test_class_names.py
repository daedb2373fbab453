"""``vizkit.class_names``: where a classifier's class names come from, and refusals in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

import vizkit
from vizkit.class_names import class_names, describe


def model(data_info: dict | None = None):
    return vizkit.wrap(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), input_shape=(1, 2, 2), data_info=data_info)


def test_labels_file_txt_and_json_list_and_index_object(tmp_path):
    (tmp_path / "n.txt").write_text("cat\ndog\n bird \n\n")
    (tmp_path / "n.json").write_text(json.dumps(["cat", "dog", "bird"]))
    (tmp_path / "idx.json").write_text(json.dumps({"1": ["n02", "dog"], "0": ["n01", "cat"], "2": "bird"}))
    for name in ("n.txt", "n.json", "idx.json"):
        assert class_names(model(), None, str(tmp_path / name), n_classes=3) == ["cat", "dog", "bird"]


def test_labels_file_wins_then_npz_then_data_info(tmp_path):
    (tmp_path / "n.txt").write_text("a\nb\nc\n")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4)), class_names=np.array(["x", "y", "z"]))
    np.savez(tmp_path / "bytes.npz", x=np.zeros((2, 4)), labels=np.array([b"p", b"q", b"r"]))
    np.savez(tmp_path / "ints.npz", x=np.zeros((2, 4)), labels=np.array([0, 2]), y=np.array([1, 1]))
    informed = model({"class_names": ["m0", "m1", "m2"]})
    assert class_names(informed, str(tmp_path / "d.npz"), str(tmp_path / "n.txt")) == ["a", "b", "c"]
    assert class_names(informed, str(tmp_path / "d.npz"), "") == ["x", "y", "z"]
    assert class_names(model(), str(tmp_path / "bytes.npz")) == ["p", "q", "r"]
    # integer labels are per-example labels, not names: fall through to the model's names
    assert class_names(informed, str(tmp_path / "ints.npz")) == ["m0", "m1", "m2"]
    assert class_names(model(), str(tmp_path / "ints.npz")) is None
    # no -o data: the model's own data file, recorded as its data name
    assert class_names(model({"name": str(tmp_path / "d.npz")}), "") == ["x", "y", "z"]
    assert class_names(model(), "digits") is None


def test_refusals_are_one_line(tmp_path):
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "blank.txt").write_text("\n\n")
    (tmp_path / "obj.json").write_text('{"a": 1}')
    np.savez(tmp_path / "short.npz", x=np.zeros((2, 4)), class_names=np.array(["x"]))
    np.savez(tmp_path / "numbers.npz", x=np.zeros((2, 4)), class_names=np.array([1.0, 2.0, 3.0]))
    cases = [(vizkit.OptionError, None, "two.txt", "names 2 classes, but the classifier has 3 outputs"),
             (vizkit.OptionError, None, "blank.txt", "holds no class names"),
             (vizkit.OptionError, None, "obj.json", "is not a JSON list of names"),
             (vizkit.OptionError, None, "nothing.txt", "cannot be read"),
             (vizkit.DataError, "short.npz", "", "names 1 classes, but the classifier has 3 outputs"),
             (vizkit.DataError, "numbers.npz", "", "'class_names' holds float64 values")]
    for error, data, labels, message in cases:
        with pytest.raises(error, match=message) as info:
            class_names(model(), data and str(tmp_path / data), labels and str(tmp_path / labels), n_classes=3)
        assert "\n" not in str(info.value)


def test_describe():
    assert describe(381, None) == "381"
    assert describe(1, ["a", "goldfish"]) == "1 (goldfish)"
    assert describe(7, {7: "great white shark, white shark"}, width=10) == "7 (great whi…)"
    assert describe(5, ["a"]) == "5"
