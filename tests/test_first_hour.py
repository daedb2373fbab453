"""The first hour of a plugin author: render helpers, data, units from Python, file-reading options."""

from __future__ import annotations

import numpy as np
import pytest

import vizkit
from vizkit.errors import OptionError, UnknownNameError
from vizkit.figure import image_grid
from vizkit.runner import option_file_hashes


def test_image_grid_takes_channel_first_batches():
    rng = np.random.default_rng(0)
    grey = rng.normal(size=(6, 1, 8, 8))
    rgb = rng.uniform(size=(6, 3, 8, 8))
    assert image_grid(grey).axes[0].images[0].get_array().shape == image_grid(grey[:, 0]).axes[0].images[0].get_array().shape
    shown = image_grid(rgb, mode="minmax").axes[0].images[0].get_array()
    assert shown.ndim == 3 and shown.shape[-1] == 3  # drawn as colour, not averaged
    with pytest.raises(ValueError, match="mode must be one of symmetric, minmax"):
        image_grid(grey, mode="banana")
    with pytest.raises(ValueError, match="takes \\[N, H, W\\]"):
        image_grid(np.zeros((2, 3)))


def test_load_dataset_is_public_and_checked():
    test = vizkit.load_dataset("digits")
    train = vizkit.load_dataset("digits", split="train", limit=10)
    assert test.images.shape[1:] == (1, 8, 8) and train.images.shape == (10, 1, 8, 8)
    assert train.labels is not None and len(train.labels) == 10
    with pytest.raises(OptionError, match="split must be one of"):
        vizkit.load_dataset("digits", split="validation")
    with pytest.raises(UnknownNameError, match="unknown dataset 'no-such-dataset'"):
        vizkit.load_dataset("no-such-dataset")


def test_options_that_name_files_enter_the_fingerprint(tmp_path):
    data = tmp_path / "images.npy"
    np.save(data, np.zeros((2, 1, 8, 8), np.float32))
    before = option_file_hashes({"data": str(data), "k": 3, "mode": "mean"})
    assert set(before) == {"data"}
    np.save(data, np.ones((2, 1, 8, 8), np.float32))  # changed in place: a new fingerprint
    assert option_file_hashes({"data": str(data)}) != before
