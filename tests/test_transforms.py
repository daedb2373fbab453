"""vizkit.image_transforms: the transformation sets that γ and the invariance curves share."""

import numpy as np
import pytest
import torch

import vizkit
from vizkit import image_transforms as T


def test_set_values_are_the_papers():
    assert T.set_values("rotation").tolist() == [-32.0 + 4 * k for k in range(16)]
    np.testing.assert_allclose(T.set_values("scale").numpy(), 0.6 + 0.05 * np.arange(16))
    shifts = T.set_values("translation")
    assert shifts.shape == (16, 2) and sorted(set(shifts[:, 0].tolist())) == [-2, -1, 0, 1]
    assert T.set_values("translation", step=2)[:, 1].tolist()[:4] == [3, 1, -1, -3]


@pytest.mark.parametrize("step", [1, 2])
def test_translation_sets_are_exact_crops_of_the_frame(step):
    rng = np.random.default_rng(0)
    out = 5
    src = rng.normal(size=(3, 2, out + 3 * step, out + 3 * step))
    sets = T.transformation_sets(torch.from_numpy(src), "translation", out, step=step).numpy()
    assert sets.shape == (3, 16, 2, out, out)
    for i in range(4):
        for j in range(4):
            top, left = i * step, j * step
            np.testing.assert_array_equal(sets[:, 4 * i + j], src[:, :, top:top + out, left:left + out])


def test_translation_of_a_larger_source_crops_about_its_centre():
    src = torch.randn(2, 1, 20, 21)
    centre = src[..., (20 - 5) // 2:(20 - 5) // 2 + 5, (21 - 5) // 2:(21 - 5) // 2 + 5]
    sets = T.transformation_sets(src, "translation", 5)
    # copy 5 = crop (1, 1) = no shift: the source's own centre window
    assert torch.equal(sets[:, 5], centre)
    top, left = (20 - 5) // 2 - 1, (21 - 5) // 2 - 1
    assert torch.equal(sets[:, 0], src[..., top:top + 5, left:left + 5])


def test_same_size_images_are_shifted_with_zero_fill():
    img = torch.arange(1.0, 37.0).reshape(1, 1, 6, 6)
    sets = T.transformation_sets(img, "translation", 6)
    assert torch.equal(sets[0, 5], img[0])  # shift (0, 0)
    shifted = T.transform_images(img, "translation", [[1, -2]], 6)[0, 0, 0]
    expected = torch.zeros(6, 6)
    expected[1:, :4] = img[0, 0, :5, 2:]
    assert torch.equal(shifted, expected)


def test_identity_rotation_and_zoom_give_the_centre_window():
    src = torch.randn(2, 3, 11, 12, dtype=torch.float64)
    centre = src[..., 2:9, 2:9]
    for kind, value in (("rotation", 0.0), ("scale", 1.0)):
        got = T.transform_images(src, kind, [value], 7)[:, 0]
        torch.testing.assert_close(got, centre, atol=1e-12, rtol=0)


def test_quarter_turns_match_numpy():
    img = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    turned = T.transform_images(img, "rotation", [90.0, 180.0, -90.0], 9)[0, :, 0].numpy()
    np.testing.assert_allclose(turned[0], np.rot90(img[0, 0].numpy(), 1), atol=1e-9)  # counter-clockwise
    np.testing.assert_allclose(turned[1], np.rot90(img[0, 0].numpy(), 2), atol=1e-9)
    np.testing.assert_allclose(turned[2], np.rot90(img[0, 0].numpy(), -1), atol=1e-9)


def test_bilinear_resampling_of_a_ramp_is_exact():
    """Bilinear interpolation reproduces a linear image exactly, so rotated and zoomed ramps have
    a closed form: output offset u from the window centre reads the source at R(θ)ᵀu / z."""
    size, out = 31, 15
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    a, b = 0.3, -0.7
    ramp = torch.from_numpy(a * rows + b * cols)[None, None]
    c_src = (size - out) // 2 + (out - 1) / 2
    u = np.arange(out) - (out - 1) / 2
    ur, uc = np.meshgrid(u, u, indexing="ij")
    for theta in (-32.0, 12.0, 28.0):
        t = np.deg2rad(theta)
        got = T.transform_images(ramp, "rotation", [theta], out)[0, 0, 0].numpy()
        r = c_src + np.cos(t) * ur + np.sin(t) * uc
        c = c_src - np.sin(t) * ur + np.cos(t) * uc
        np.testing.assert_allclose(got, a * r + b * c, atol=1e-9)
    for zoom in (0.6, 1.35):
        got = T.transform_images(ramp, "scale", [zoom], out)[0, 0, 0].numpy()
        np.testing.assert_allclose(got, a * (c_src + ur / zoom) + b * (c_src + uc / zoom), atol=1e-9)


def test_rotation_agrees_with_scikit_image():
    from skimage.transform import rotate

    rng = np.random.default_rng(1)
    img = rng.random((25, 25))
    for theta in (-20.0, 28.0):
        ours = T.transform_images(torch.from_numpy(img)[None, None], "rotation", [theta], 25)[0, 0, 0].numpy()
        theirs = rotate(img, theta, order=1, mode="constant", cval=0.0)  # counter-clockwise, about the centre
        np.testing.assert_allclose(ours[3:-3, 3:-3], theirs[3:-3, 3:-3], atol=1e-9)


@pytest.mark.parametrize("kind", T.KINDS)
def test_source_size_needs_no_zero_fill(kind):
    size = T.source_size(kind, 16)
    ones = torch.ones(1, 1, *size, dtype=torch.float64)
    sets = T.transformation_sets(ones, kind, 16)
    torch.testing.assert_close(sets, torch.ones_like(sets), atol=1e-12, rtol=0)
    # and one pixel less on each side for rotation/zoom does reach outside the smaller source
    if kind != "translation":
        smaller = torch.ones(1, 1, size[0] - 4, size[1] - 4, dtype=torch.float64)
        assert T.transformation_sets(smaller, kind, 16).min() < 1 - 1e-6


def test_batched_over_sources_and_channels():
    src = torch.randn(4, 3, 30, 30)
    all_at_once = T.transformation_sets(src, "rotation", 16)
    one_by_one = torch.cat([T.transformation_sets(src[i:i + 1], "rotation", 16) for i in range(4)])
    torch.testing.assert_close(all_at_once, one_by_one)
    grey = T.transformation_sets(src[:, 0], "scale", 16)  # [N, H, W] is one channel
    torch.testing.assert_close(grey[:, :, 0], T.transformation_sets(src, "scale", 16)[:, :, 0])


def test_bad_input_is_refused():
    with pytest.raises(vizkit.OptionError, match="unknown transformation 'shear'.*translation, rotation, scale"):
        T.transformation_sets(torch.zeros(1, 1, 8, 8), "shear", 8)
    with pytest.raises(vizkit.DataError, match="too small"):
        T.transformation_sets(torch.zeros(1, 1, 8, 8), "rotation", 10)
    with pytest.raises(vizkit.OptionError, match="whole pixels"):
        T.transform_images(torch.zeros(1, 1, 8, 8), "translation", [[0.5, 0.0]], 8)
    with pytest.raises(vizkit.OptionError, match="step"):
        T.transformation_sets(torch.zeros(1, 1, 8, 8), "translation", 8, step=0)
    with pytest.raises(vizkit.DataError, match="sources must be images"):
        T.transformation_sets(torch.zeros(8, 8), "translation", 8)


def test_public_api():
    assert vizkit.image_transforms is T
    assert vizkit.transformation_sets is T.transformation_sets
    assert vizkit.transform_images is T.transform_images


def test_a_submodule_import_does_not_hide_the_function_of_the_same_name():
    import subprocess
    import sys

    code = "import vizkit; vizkit.WrappedModel; print(callable(vizkit.wrap))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
