"""Tests of the dataset layer: shapes, ranges, statistics, determinism, file formats, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from vizkit.datasets import (
    BUILTIN_DATASETS,
    DatasetSpec,
    VizDataModule,
    build_dataset,
    builtin_registry,
    digits,
    from_path,
    mnist,
    patches,
    read_idx,
    write_idx,
)
from vizkit.datasets.base import split_indices
from vizkit.errors import DataError, UnknownNameError

REGISTRY = builtin_registry()


def _mean_norm(x: torch.Tensor) -> float:
    return float(x.reshape(x.shape[0], -1).double().norm(dim=1).mean())


def _check_common(dm: VizDataModule) -> None:
    """Invariants every dataset must satisfy."""
    train, test = dm.train_tensor(), dm.test_tensor()
    assert train.dtype == torch.float32 and test.dtype == torch.float32
    assert tuple(train.shape[1:]) == dm.input_shape == tuple(test.shape[1:])
    assert dm.stats["n_train"] == train.shape[0] and dm.stats["n_test"] == test.shape[0]
    assert dm.stats["mean_norm"] == pytest.approx(_mean_norm(train), rel=1e-9)
    assert dm.stats["pixel_min"] == pytest.approx(float(train.min()))
    assert dm.stats["pixel_max"] == pytest.approx(float(train.max()))
    assert dm.stats["pixel_mean"] == pytest.approx(float(train.double().mean()), abs=1e-9)
    assert dm.stats["pixel_std"] == pytest.approx(float(train.double().std(unbiased=False)))
    assert dm.stats["binary_like"] == bool(train.min() >= 0 and train.max() <= 1)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, torch.Tensor)
    assert tuple(batch.shape) == (min(dm.batch_size, train.shape[0]), *dm.input_shape)


@pytest.fixture(scope="module")
def digits_dm() -> VizDataModule:
    return digits.build(batch_size=64)


@pytest.fixture(scope="module")
def mnist_dm() -> VizDataModule:
    return mnist.build(limit=500)


@pytest.fixture(scope="module")
def zca_dm() -> VizDataModule:
    return patches.build(size=8, whiten="zca", n_train=4000, n_test=300, seed=3)


# ---------------------------------------------------------------------------------------------
# built-in datasets


def test_builtin_specs_are_complete() -> None:
    assert [s.name for s in BUILTIN_DATASETS] == ["mnist", "digits", "faces", "patches", "photos"]
    for spec in BUILTIN_DATASETS:
        assert isinstance(spec, DatasetSpec) and callable(spec.build) and spec.help
    assert set(REGISTRY["patches"].options) == {"size", "whiten", "n_train", "n_test", "images", "whiten_eps", "contrast",
                                                "contrast_floor"}
    assert set(REGISTRY["mnist"].options) == {"data_dir", "limit"}


def test_digits_shape_range_and_split(digits_dm: VizDataModule) -> None:
    _check_common(digits_dm)
    assert digits_dm.input_shape == (1, 8, 8)
    assert (digits_dm.stats["n_train"], digits_dm.stats["n_test"]) == (1438, 359)
    assert digits_dm.stats["binary_like"] is True
    assert digits_dm.stats["pixel_min"] == 0.0 and digits_dm.stats["pixel_max"] == 1.0
    assert digits_dm.train_labels().shape == (1438,) and digits_dm.test_labels().shape == (359,)


def test_mnist_subset_shape_range_and_limit(mnist_dm: VizDataModule) -> None:
    _check_common(mnist_dm)
    assert mnist_dm.input_shape == (1, 28, 28)
    assert mnist_dm.stats["n_train"] == 500 and mnist_dm.stats["n_test"] == mnist.N_SUBSET_TEST
    assert mnist_dm.stats["binary_like"] is True and mnist_dm.stats["pixel_max"] == 1.0
    # the subset is sorted by label in the file: the seeded split must mix the classes
    assert len(torch.unique(mnist_dm.test_labels())) == 10
    assert mnist_dm.options == {"data_dir": None, "limit": 500}


def test_split_is_deterministic_disjoint_and_seeded() -> None:
    tr, te = split_indices(100, 10, seed=5)
    tr2, te2 = split_indices(100, 10, seed=5)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert len(te) == 10 and not set(tr) & set(te) and set(tr) | set(te) == set(range(100))
    assert not np.array_equal(te, split_indices(100, 10, seed=6)[1])
    a, b = digits.build(seed=1), digits.build(seed=1)
    assert torch.equal(a.train_tensor(), b.train_tensor())
    assert not torch.equal(a.test_tensor(), digits.build(seed=2).test_tensor())


def test_train_loader_order_depends_only_on_seed_and_epoch(digits_dm: VizDataModule) -> None:
    def epochs(dm: VizDataModule, n: int) -> list[torch.Tensor]:
        loader = dm.train_dataloader()
        return [torch.cat(list(loader)) for _ in range(n)]

    first, again = epochs(digits_dm, 2), epochs(digits.build(batch_size=64), 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # reshuffled each epoch
    # every epoch is a permutation of the training set
    assert torch.allclose(first[0].double().sum(0), digits_dm.train_tensor().double().sum(0))
    # Lightning calls set_epoch(e): epoch 1 alone equals the second epoch of a plain loop
    loader = digits_dm.train_dataloader()
    loader.sampler.set_epoch(1)
    assert torch.equal(torch.cat(list(loader)), first[1])
    assert torch.equal(torch.cat(list(digits_dm.val_dataloader())), digits_dm.test_tensor())


# ---------------------------------------------------------------------------------------------
# patches


def test_patches_shapes_and_unit_std() -> None:
    dm = patches.build(size="16", n_train="1500", n_test="200")
    _check_common(dm)
    assert dm.input_shape == (1, 16, 16)
    assert dm.options == {"size": 16, "whiten": "none", "n_train": 1500, "n_test": 200, "images": "natural",
                          "whiten_eps": patches.EPS_RELATIVE}
    assert dm.stats["binary_like"] is False
    x = dm.train_tensor().reshape(1500, -1).double()
    assert x.mean(dim=1).abs().max() < 1e-5  # DC removed per patch
    assert x.std(unbiased=False) == pytest.approx(1.0, abs=1e-6)  # unit std over training set
    assert patches.build(n_train=100, n_test=10).input_shape == (1, 12, 12)  # default size


def test_patch_regions_are_disjoint() -> None:
    size = 12
    images = patches.grey_images()
    _, train_xy = patches.sample_patches(6000, size, "train", np.random.default_rng(0))
    _, test_xy = patches.sample_patches(6000, size, "test", np.random.default_rng(0))
    for k, image in enumerate(images):
        width = image.shape[1]
        cut = int(round(patches.TRAIN_FRACTION * width))
        tr, te = train_xy[train_xy[:, 0] == k], test_xy[test_xy[:, 0] == k]
        assert tr[:, 2].min() >= 0 and (tr[:, 2] + size).max() <= cut
        assert te[:, 2].min() >= cut and (te[:, 2] + size).max() <= width
        assert (tr[:, 1] + size).max() <= image.shape[0] and (te[:, 1] + size).max() <= image.shape[0]
    assert set(train_xy[:, 0]) == set(test_xy[:, 0]) == set(range(len(images)))  # every photograph used
    # the module's test split really is drawn from the held-out region
    dm = patches.build(size=size, n_train=200, n_test=50, seed=4)
    raw, _ = patches.sample_patches(50, size, "test", patches.patch_rng(4, "test"))
    assert torch.allclose(patches.preprocess(raw, dm.describe()["buffers"]), dm.test_tensor())


def test_patches_fresh_each_epoch_but_deterministic() -> None:
    a = patches.build(size=6, n_train=300, n_test=20, seed=7, batch_size=300)
    b = patches.build(size=6, n_train=300, n_test=20, seed=7, batch_size=300)
    la, lb = a.train_dataloader(), b.train_dataloader()
    ep_a = [next(iter(la)) for _ in range(3)]
    ep_b = [next(iter(lb)) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(ep_a, ep_b, strict=True))
    assert not torch.equal(ep_a[0], ep_a[1]) and not torch.equal(ep_a[1], ep_a[2])
    assert torch.equal(a.train_tensor(), b.train_tensor())  # the fixed draw does not move
    assert not torch.equal(a.train_tensor(), patches.build(size=6, n_train=300, n_test=20,
                                                           seed=8).train_tensor())
    lb.sampler.set_epoch(2)  # what Lightning does when resuming at epoch 2
    assert torch.equal(next(iter(lb)), ep_a[2])


def test_zca_gives_identity_covariance_off_dc(zca_dm: VizDataModule) -> None:
    _check_common(zca_dm)
    x = zca_dm.train_tensor().reshape(4000, -1).double()
    d = x.shape[1]
    cov = torch.cov(x.T)
    no_dc = torch.eye(d, dtype=torch.float64) - torch.full((d, d), 1.0 / d, dtype=torch.float64)
    assert (cov - no_dc).abs().max() < 2e-3
    buffers = zca_dm.describe()["buffers"]
    assert set(buffers) == {"scale", "mean", "whiten"}
    assert torch.allclose(buffers["whiten"], buffers["whiten"].T)  # ZCA is symmetric
    assert zca_dm.stats["whiten_dims"] == d - 1  # only the DC direction is dropped


def test_pca_whitening_keeps_99_percent_and_back_projects() -> None:
    dm = patches.build(size=10, whiten="pca", n_train=3000, n_test=100)
    assert dm.input_shape == (1, 10, 10)
    k = dm.stats["whiten_dims"]
    assert 1 <= k < 99 and k <= patches.MAX_PCA_DIMS
    x = dm.train_tensor().reshape(3000, -1).double()
    eig = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    assert torch.allclose(eig[:k], torch.ones(k, dtype=torch.float64), atol=2e-3)
    assert eig[k:].abs().max() < 1e-6  # a projector of rank k: whitened top-k, nothing else
    # k is the smallest number of components reaching 99% of the (unwhitened) variance
    raw = patches._remove_dc(patches.sample_patches(3000, 10, "train", patches.patch_rng(0, "train"))[0])
    lam = np.linalg.eigvalsh(np.cov(raw, rowvar=False))[::-1]
    share = np.cumsum(lam) / lam.sum()
    assert share[k - 1] >= 0.99 > share[k - 2]


def test_photographs_are_natural_grey_and_selectable() -> None:
    natural = patches.grey_images()
    assert len(natural) == len(patches.PHOTOGRAPHS) == 12
    for image in natural:
        assert image.ndim == 2 and min(image.shape) >= 300 and 0.0 <= image.min() < image.max() <= 1.0
        assert image.std() > 0.05 and not image.flags.writeable
    assert len(patches.grey_images("sklearn")) == 2
    assert patches.resolve_images(" Camera, grass,camera ") == ("camera", "grass")
    dm = patches.build(size=8, n_train=300, n_test=30, images="camera,grass", seed=1)
    assert dm.options["images"] == "camera,grass"
    assert patches.build(size=8, n_train=300, n_test=30, images="china,flower").options["images"] == "sklearn"
    # one photograph alone is a valid choice, and its patches come from that photograph only
    raw, xy = patches.sample_patches(50, 8, "train", np.random.default_rng(0), patches.grey_images("camera"))
    cam = patches.grey_images("camera")[0]
    r, c = xy[0, 1], xy[0, 2]
    np.testing.assert_allclose(raw[0], cam[r:r + 8, c:c + 8], rtol=1e-6)


def test_whiten_eps_low_passes_the_zca_filter() -> None:
    sharp = patches.build(size=8, whiten="zca", n_train=3000, n_test=10)
    soft = patches.build(size=8, whiten="zca", n_train=3000, n_test=10, whiten_eps="1.0")
    assert soft.options["whiten_eps"] == 1.0
    lam_sharp = np.linalg.eigvalsh(np.cov(sharp.train_tensor().reshape(3000, -1).numpy(), rowvar=False))
    lam_soft = np.linalg.eigvalsh(np.cov(soft.train_tensor().reshape(3000, -1).numpy(), rowvar=False))
    # white: all non-null eigenvalues equal; regularised: the spectrum keeps a slope (low-pass)
    assert lam_sharp[1:].max() / lam_sharp[1:].min() < 1.05
    assert lam_soft[1:].max() / lam_soft[1:].min() > 5


def test_divisive_contrast_gives_every_textured_patch_the_same_energy() -> None:
    raw = patches.build(size=8, whiten="pca", n_train=3000, n_test=200)
    even = patches.build(size=8, whiten="pca", n_train=3000, n_test=200, contrast="divisive", contrast_floor="0.001")
    assert even.options["contrast"] == "divisive" and even.options["contrast_floor"] == 0.001
    assert "contrast" not in raw.options  # the default leaves the data (and its checkpoints) as they were
    e_raw = raw.train_tensor().reshape(3000, -1).pow(2).mean(1)
    e_even = even.train_tensor().reshape(3000, -1).pow(2).mean(1)
    textured = e_raw > e_raw.median()
    # windows of these photographs span orders of magnitude in energy; divided by their own RMS the
    # textured half lies within a few percent, at unit pixel std over the draw
    assert float(e_raw[textured].max() / e_raw[textured].min()) > 5
    assert float(e_even[textured].max() / e_even[textured].min()) < 1.05
    assert abs(float(even.train_tensor().std()) - 1.0) < 1e-3
    # the same preprocessing reaches the test split, every epoch's fresh draw and a checkpoint's
    # description (which is how the gamma probe's transformed copies are prepared)
    buffers = even.describe()["buffers"]
    assert {"contrast_floor", "contrast_scale"} <= set(buffers)
    again = patches.preprocess(np.random.default_rng(0).random((5, 8, 8)), buffers).reshape(5, -1)
    assert torch.allclose(again.pow(2).mean(1), again.pow(2).mean(1).mean().expand(5), rtol=0.05)
    # a floor of 0 is plain RMS normalisation
    x = torch.randn(4, 64) * torch.tensor([[0.01], [1.0], [10.0], [100.0]])
    assert torch.allclose(patches.divide_by_contrast(x, 0.0).pow(2).mean(1), torch.ones(4), rtol=1e-5)


def test_bad_patch_options() -> None:
    with pytest.raises(DataError, match="size"):
        patches.build(size=3)
    with pytest.raises(DataError, match="size"):
        patches.build(size="twelve")
    with pytest.raises(DataError, match="whiten must be one of none, zca, pca"):
        patches.build(whiten="pcaa")
    with pytest.raises(DataError, match="option images must be natural or sklearn or a comma-separated list"):
        patches.build(images="camera,lena")
    with pytest.raises(DataError, match="whiten_eps"):
        patches.build(whiten_eps="-1")
    with pytest.raises(DataError, match="contrast must be one of none, divisive"):
        patches.build(contrast="local")
    with pytest.raises(DataError, match="contrast_floor"):
        patches.build(contrast="divisive", contrast_floor="0")


# ---------------------------------------------------------------------------------------------
# IDX / full MNIST


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    data = (np.arange(2 * 3 * 5) % 100).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, data)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, data)
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    assert raw[:4] == bytes([0, 0, {np.uint8: 8, np.int16: 11, np.float32: 13,
                                    np.float64: 14}[dtype], 3])


def test_idx_rejects_corrupt_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    good = tmp_path / "good"
    write_idx(good, np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "short").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated|data bytes"):
        read_idx(tmp_path / "short")


def _write_fake_mnist(folder: Path, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", train)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", np.arange(30, dtype=np.uint8) % 10)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", test)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", np.arange(10, dtype=np.uint8))
    return train, test


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_dir(tmp_path: Path, gz: bool) -> None:
    train, test = _write_fake_mnist(tmp_path, gz)
    dm = build_dataset("mnist", REGISTRY, data_dir=str(tmp_path), limit="20")
    _check_common(dm)
    assert dm.input_shape == (1, 28, 28) and dm.stats["n_train"] == 20
    assert torch.allclose(dm.train_tensor()[:, 0], torch.from_numpy(train[:20] / 255.0).float())
    assert torch.allclose(dm.test_tensor()[:, 0], torch.from_numpy(test / 255.0).float())
    assert dm.options["data_dir"] == str(tmp_path.resolve())
    assert torch.equal(dm.test_labels(), torch.arange(10))


def test_mnist_missing_idx_files_names_dir_and_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError) as info:
        mnist.build(data_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in msg
    with pytest.raises(DataError, match="is not a directory"):
        mnist.build(data_dir=tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# user data


@pytest.mark.parametrize(
    ("shape", "input_shape"),
    [
        ((20, 5, 7), (1, 5, 7)),
        ((20, 2, 5, 7), (2, 5, 7)),
        ((20, 5, 7, 3), (3, 5, 7)),  # channel-last
        ((20, 49), (1, 7, 7)),  # flat square images
        ((20, 10), (10,)),  # plain vectors
    ],
)
def test_user_npy_layouts(tmp_path: Path, shape: tuple[int, ...], input_shape: tuple[int, ...]) -> None:
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    dm = from_path(tmp_path / "x.npy", seed=2)
    _check_common(dm)
    assert dm.input_shape == input_shape
    assert (dm.stats["n_train"], dm.stats["n_test"]) == (18, 2)  # 90/10
    assert dm.name == str((tmp_path / "x.npy").resolve())
    expected = data.transpose(0, 3, 1, 2) if shape[-1] == 3 else data.reshape(20, *input_shape)
    train_idx, test_idx = split_indices(20, 2, seed=2)
    assert np.array_equal(dm.train_tensor().numpy(), expected[train_idx])
    assert np.array_equal(dm.test_tensor().numpy(), expected[test_idx])


def test_user_npz_and_uint8_scaling(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", labels=np.arange(10), x=img)
    dm = build_dataset(str(tmp_path / "a.npz"), REGISTRY, limit=5)
    assert dm.input_shape == (1, 4, 4) and dm.stats["n_train"] == 5
    assert dm.stats["binary_like"] is True and dm.stats["pixel_max"] <= 1.0
    np.savez(tmp_path / "b.npz", first=np.ones((4, 9)), second=np.zeros((4, 2)))
    assert from_path(tmp_path / "b.npz").input_shape == (1, 3, 3)  # no x/X/data: first array


def test_user_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (6, 9), dtype=np.uint8)).save(grey / f"{i}.png")
    (grey / "README.txt").write_text("not an image")
    dm = from_path(grey)
    assert dm.input_shape == (1, 6, 9) and dm.stats["n_train"] + dm.stats["n_test"] == 5
    assert dm.stats["binary_like"] is True
    colour = tmp_path / "colour"
    colour.mkdir()
    Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).save(colour / "a.png")
    Image.fromarray(rng.integers(0, 256, (6, 9), dtype=np.uint8)).save(colour / "b.jpg")
    assert from_path(colour).input_shape == (3, 6, 9)


def test_user_data_errors(tmp_path: Path) -> None:
    from PIL import Image

    def fails(path: Path | str, pattern: str) -> None:
        with pytest.raises(DataError, match=pattern) as info:
            from_path(path)
        assert "\n" not in str(info.value)

    fails(tmp_path / "missing.npy", "no such file")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "contains no images")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((5, 4), dtype=np.uint8)).save(mixed / "b.png")
    fails(mixed, "differ in size: a.png is 4x4, b.png is 5x4")
    np.save(tmp_path / "vec.npy", np.zeros(10))
    fails(tmp_path / "vec.npy", r"shape \(10,\); expected")
    nan = np.zeros((5, 4))
    nan[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    fails(tmp_path / "nan.npy", "1 non-finite")
    np.save(tmp_path / "one.npy", np.zeros((1, 4)))
    fails(tmp_path / "one.npy", "at least 2")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    fails(tmp_path / "obj.npy", "cannot read")
    (tmp_path / "data.csv").write_text("1,2\n")
    fails(tmp_path / "data.csv", "unsupported data file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    fails(tmp_path / "broken", "cannot read image")


# ---------------------------------------------------------------------------------------------
# name resolution, options, checkpoints


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_dataset("cifar", REGISTRY)
    assert str(info.value) == ("unknown dataset 'cifar'; choose from: digits, faces, mnist, patches, photos, "
                               "or a path to .npy/.npz/image folder")
    with pytest.raises(DataError, match="no such file"):
        build_dataset("nothere/x.npy", REGISTRY)


def test_unknown_and_bad_options() -> None:
    with pytest.raises(DataError, match="unknown option colour for dataset 'patches'; "
                                        "valid options: contrast, contrast_floor, images, n_test, n_train, size, whiten, whiten_eps"):
        build_dataset("patches", REGISTRY, colour="red")
    with pytest.raises(DataError, match="valid options: none"):
        build_dataset("digits", REGISTRY, size=3)
    with pytest.raises(DataError, match="limit must be an integer"):
        build_dataset("mnist", REGISTRY, limit="many")
    with pytest.raises(DataError, match="batch_size"):
        build_dataset("digits", REGISTRY, batch_size="0")
    assert build_dataset("digits", REGISTRY, batch_size="32", seed="1").batch_size == 32


def test_describe_survives_weights_only_checkpoint(tmp_path: Path, zca_dm: VizDataModule,
                                                   digits_dm: VizDataModule) -> None:
    for dm in (zca_dm, digits_dm):
        path = tmp_path / f"{dm.name}.pt"
        torch.save({"data": dm.describe()}, path)
        back = torch.load(path, weights_only=True)["data"]
        desc = dm.describe()
        assert back["name"] == desc["name"] and back["options"] == desc["options"]
        assert back["input_shape"] == list(dm.input_shape) and back["stats"] == dm.stats
        assert back["seed"] == dm.seed
        assert set(back["buffers"]) == set(desc["buffers"])
        for key, value in desc["buffers"].items():
            assert torch.equal(back["buffers"][key], value)
        for value in back["stats"].values():
            assert isinstance(value, int | float | bool)
        # the stored description rebuilds the same data
        again = build_dataset(back["name"], REGISTRY, seed=back["seed"], **back["options"])
        assert torch.equal(again.test_tensor(), dm.test_tensor())
    # preprocessing is reproducible from the checkpoint's buffers alone
    raw, _ = patches.sample_patches(10, 8, "test", np.random.default_rng(9))
    stored = torch.load(tmp_path / "patches.pt", weights_only=True)["data"]["buffers"]
    out = patches.preprocess(raw, stored)
    assert out.shape == (10, 1, 8, 8)
    assert torch.equal(out, patches.preprocess(raw, zca_dm.describe()["buffers"]))


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # Lightning-internal deprecation
def test_lightning_fit_sees_the_seeded_fresh_draw_of_each_epoch() -> None:
    """Lightning calls ``set_epoch`` on our sampler: epoch e of a fit is draw (seed, e)."""
    import pytorch_lightning as pl

    seen: list[torch.Tensor] = []

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, x: torch.Tensor, index: int) -> torch.Tensor:
            if index == 0:
                seen.append(x.clone())
            return (self.w * x.mean()) ** 2

        def validation_step(self, x: torch.Tensor, index: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = patches.build(size=6, n_train=200, n_test=20, seed=7, batch_size=50)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         limit_val_batches=0)
    trainer.fit(Probe(), datamodule=dm)
    loader = dm.train_dataloader()
    expected = [next(iter(loader)) for _ in range(3)]
    assert len(seen) == 3 and all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
