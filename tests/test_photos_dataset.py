"""The ``photos`` dataset: RGB crops labelled by photograph, test crops from a held-out strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vizkit.datasets import VizDataModule, build_dataset, builtin_registry, photos
from vizkit.errors import DataError

REGISTRY = builtin_registry()
N_PHOTOS = len(photos.PHOTOGRAPHS)


@pytest.fixture(scope="module")
def small() -> VizDataModule:
    return photos.build(size=32, n_train=30, n_test=12, seed=4)


def test_registered_with_its_options() -> None:
    spec = REGISTRY["photos"]
    assert set(spec.options) == {"size", "n_train", "n_test", "test_fraction", "short_side"}
    assert N_PHOTOS == 10 and len(set(photos.PHOTOGRAPHS)) == N_PHOTOS


def test_defaults_shape_range_and_labels() -> None:
    dm = build_dataset("photos", REGISTRY)
    assert dm.input_shape == (3, 64, 64)
    train, test = dm.train_tensor(), dm.test_tensor()
    assert train.dtype == torch.float32 and test.dtype == torch.float32
    assert train.shape[0] == N_PHOTOS * photos.DEFAULT_N_TRAIN and test.shape[0] == N_PHOTOS * photos.DEFAULT_N_TEST
    assert dm.options == {"size": 64, "n_train": 500, "n_test": 100, "test_fraction": 0.25, "short_side": 288}
    assert dm.stats["n_classes"] == N_PHOTOS and dm.stats["binary_like"] is True
    assert float(train.min()) >= 0.0 and float(train.max()) <= 1.0
    assert float(test.min()) >= 0.0 and float(test.max()) <= 1.0
    assert torch.equal(torch.bincount(dm.train_labels()), torch.full((N_PHOTOS,), 500))
    assert torch.equal(torch.bincount(dm.test_labels()), torch.full((N_PHOTOS,), 100))


def test_labels_are_the_photograph_and_classes_are_named(small: VizDataModule, tmp_path: Path) -> None:
    assert small.input_shape == (3, 32, 32)
    for labels, n in ((small.train_labels(), 30), (small.test_labels(), 12)):
        assert labels.dtype == torch.int64
        assert torch.equal(labels, torch.arange(N_PHOTOS).repeat_interleave(n))
    assert small.describe()["class_names"] == list(photos.PHOTOGRAPHS)
    # the names survive a weights-only checkpoint, and the stored description rebuilds the data
    torch.save({"data": small.describe()}, tmp_path / "d.pt")
    back = torch.load(tmp_path / "d.pt", weights_only=True)["data"]
    assert back["class_names"] == list(photos.PHOTOGRAPHS)
    again = build_dataset(back["name"], REGISTRY, seed=back["seed"], **back["options"])
    assert torch.equal(again.train_tensor(), small.train_tensor())
    assert torch.equal(again.test_tensor(), small.test_tensor())


def test_deterministic_given_the_seed(small: VizDataModule) -> None:
    same = photos.build(size=32, n_train=30, n_test=12, seed=4)
    assert torch.equal(same.train_tensor(), small.train_tensor())
    assert torch.equal(same.test_tensor(), small.test_tensor())
    other = photos.build(size=32, n_train=30, n_test=12, seed=5)
    assert not torch.equal(other.train_tensor(), small.train_tensor())
    assert not torch.equal(other.test_tensor(), small.test_tensor())


@pytest.mark.parametrize("fraction", [0.25, 0.4])
def test_test_crops_come_from_the_held_out_strip(fraction: float) -> None:
    size, seed = 32, 2
    images = photos.photographs(photos.DEFAULT_SHORT_SIDE)
    dm = photos.build(size=size, n_train=40, n_test=20, test_fraction=fraction, seed=seed)
    for split, data, labels in (("train", dm.train_tensor(), dm.train_labels()),
                                ("test", dm.test_tensor(), dm.test_labels())):
        crops, at = photos.sample_crops(40 if split == "train" else 20, size, split, seed, fraction, images)
        assert torch.equal(torch.from_numpy(crops), data)
        assert np.array_equal(at[:, 0], labels.numpy())
        for crop, (k, row, col) in zip(crops, at, strict=True):
            image = images[k]
            cut = int(round((1 - fraction) * image.shape[1]))
            if split == "test":
                assert col >= cut and col + size <= image.shape[1]
            else:
                assert col + size - 1 < cut  # the right edge stays left of the strip
            # the crop is that window of the resized photograph, channels first
            assert np.array_equal(crop, image[row:row + size, col:col + size].transpose(2, 0, 1))


def test_photographs_are_resized_to_the_short_side() -> None:
    for side in (64, photos.DEFAULT_SHORT_SIDE):
        images = photos.photographs(side)
        assert len(images) == N_PHOTOS
        for image in images:
            assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
            assert min(image.shape[:2]) == side
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_batches_pair_crops_with_labels(small: VizDataModule) -> None:
    small.with_labels = True
    try:
        x, y = next(iter(small.train_dataloader()))
    finally:
        small.with_labels = False
    assert x.shape == (100, 3, 32, 32) and y.shape == (100,) and y.dtype == torch.long


@pytest.mark.parametrize(("options", "message"), [
    ({"size": "big"}, "option size must be an integer"),
    ({"size": 2}, r"option size must be in \[4, 1024\], got 2"),
    ({"n_train": 0}, "option n_train must be in"),
    ({"n_test": -1}, "option n_test must be in"),
    ({"test_fraction": "half"}, "option test_fraction must be a number"),
    ({"test_fraction": 1.5}, r"option test_fraction must be in \[0.01, 0.99\]"),
    ({"short_side": 4}, "option short_side must be in"),
    ({"size": 100, "short_side": 64}, "option size 100 exceeds short_side 64"),
    ({"size": 96}, "do not fit the held-out strip"),
    ({"size": 64, "test_fraction": 0.9}, "do not fit the training region"),
    ({"seed": -1}, "option seed must be in"),
    ({"colour": 1}, "unknown option colour for dataset 'photos'"),
])
def test_bad_options_are_one_line_data_errors(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        build_dataset("photos", REGISTRY, **options)
    assert "\n" not in str(info.value)
