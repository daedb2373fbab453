"""Known answers of the capsule renderer, the pose map and the output model (Tieleman 2014, ch. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vizkit.models.capsule import poses
from vizkit.models.capsule.renderer import render, render_one_by_one, sample_grid

H = 11  # template side


def _template(seed: int = 0, side: int = H) -> torch.Tensor:
    return torch.rand(1, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _draw(template: torch.Tensor, nice: list[float], out: tuple[int, int], intensity: float = 1.0) -> torch.Tensor:
    matrix = poses.nice_to_matrix(torch.tensor(nice, dtype=torch.float64)).reshape(1, 1, 3, 3)
    return render(template, matrix, torch.full((1, 1), intensity, dtype=torch.float64), out)[0, 0]


def _linear_interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Row i: weights of 1-D linear interpolation of n_in points (at k/(n_in-1)) at (i+0.5)/n_out."""
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        pos = (i + 0.5) / n_out * (n_in - 1)
        lo = min(int(math.floor(pos)), n_in - 2)
        frac = pos - lo
        out[i, lo], out[i, lo + 1] = 1 - frac, frac
    return out


def test_identity_pose_is_a_bilinear_upsampling_over_the_whole_output():
    template = _template()
    drawn = _draw(template, list(poses.IDENTITY_NICE), (28, 28)).numpy()
    rows, cols = _linear_interp_matrix(28, H), _linear_interp_matrix(28, H)
    np.testing.assert_allclose(drawn, rows @ template[0].numpy() @ cols.T, atol=1e-12)
    # non-square output: the template still covers exactly the whole image
    drawn = _draw(template, list(poses.IDENTITY_NICE), (20, 28)).numpy()
    np.testing.assert_allclose(drawn, _linear_interp_matrix(20, H) @ template[0].numpy() @ cols.T, atol=1e-12)


def test_scale_h_over_h_minus_1_reproduces_the_template_pixel_for_pixel():
    template = _template()
    s = H / (H - 1)  # template points land exactly on the output pixel centres
    np.testing.assert_allclose(_draw(template, [0, 0, s, s, 0, 0], (H, H)), template[0], atol=1e-12)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 2), (-3, 1), (2, -2)])
def test_integer_translations_shift_by_exact_pixels(dx, dy):
    template = _template(1)
    # scale 2: the template covers the middle half, so shifted copies stay inside the image
    base = _draw(template, [0, 0, 2, 2, 0, 0], (28, 28))
    # world→template: out(r, c) = T(M (p + t)), so t = k/W pulls in the pixel k to the right
    moved = _draw(template, [dx / 28, dy / 28, 2, 2, 0, 0], (28, 28))
    expected = torch.zeros_like(base)
    src = base[max(dy, 0): 28 + min(dy, 0), max(dx, 0): 28 + min(dx, 0)]
    expected[max(-dy, 0): 28 + min(-dy, 0), max(-dx, 0): 28 + min(-dx, 0)] = src
    assert float(base[0].abs().max()) == 0 == float(base[:, 0].abs().max())  # zero outside the template
    np.testing.assert_allclose(moved, expected, atol=1e-12)


def test_ninety_degree_rotation_is_rot90():
    template = _template(2)
    s = H / (H - 1)
    turned = _draw(template, [0, 0, s, s, 0, math.pi / 2], (H, H))
    np.testing.assert_allclose(turned, torch.rot90(template[0], 1), atol=1e-12)
    # also at a different output size, against rot90 of the identity rendering
    base = _draw(template, list(poses.IDENTITY_NICE), (28, 28))
    np.testing.assert_allclose(_draw(template, [0, 0, 1, 1, 0, -math.pi / 2], (28, 28)),
                               torch.rot90(base, -1), atol=1e-12)


def test_nice_matrix_is_the_documented_product_and_det_is_s0_s1():
    gen = torch.Generator().manual_seed(3)
    nice = torch.randn(50, 6, dtype=torch.float64, generator=gen)
    matrices = poses.nice_to_matrix(nice)
    for n, m in zip(nice, matrices):
        np.testing.assert_allclose(m, poses.nice_matrix_reference(n), atol=1e-12)
    np.testing.assert_allclose(poses.determinant(matrices), nice[:, 2] * nice[:, 3], atol=1e-12)
    assert torch.equal(poses.nice_to_matrix(torch.tensor(poses.IDENTITY_NICE)), torch.eye(3))


def test_intensity_scales_and_composition_multiplies_matrices():
    template = _template(4)
    np.testing.assert_allclose(_draw(template, [0.1, 0, 2, 1.5, 0.2, 0.3], (28, 28), 0.4),
                               0.4 * _draw(template, [0.1, 0, 2, 1.5, 0.2, 0.3], (28, 28)), atol=1e-12)
    # a part at scale 2 inside a whole at scale 1.5 is drawn at scale 3 (world→part = part · whole)
    part, whole = poses.nice_to_matrix(torch.tensor([[0, 0, 2.0, 2.0, 0, 0], [0, 0, 1.5, 1.5, 0, 0]]))
    np.testing.assert_allclose(poses.compose(part, whole), poses.nice_to_matrix(torch.tensor([0, 0, 3.0, 3.0, 0, 0])),
                               atol=1e-6)


def test_batched_render_equals_capsule_by_capsule():
    gen = torch.Generator().manual_seed(5)
    templates = torch.rand(4, 7, 7, generator=gen)
    nice = torch.randn(3, 4, 6, generator=gen) * 0.3 + torch.tensor(poses.IDENTITY_NICE) * 2
    matrices, intensity = poses.nice_to_matrix(nice), torch.rand(3, 4, generator=gen)
    batched = render(templates, matrices, intensity, (16, 16))
    assert batched.shape == (3, 4, 16, 16)
    torch.testing.assert_close(batched, render_one_by_one(templates, matrices, intensity, (16, 16)))


@pytest.mark.parametrize("lead, height, width", [((3, 4), 16, 16), ((5,), 9, 13), ((2, 1, 3), 28, 28)])
def test_sample_grid_is_affine_grid_forward_and_backward(lead, height, width):
    """The renderer's grid is ``F.affine_grid``'s (align_corners=False) for any leading shape, and so is
    its gradient: the same sums in the same order, so it agrees to the last bits in float32 (bit for
    bit on the machine the change was measured on, so trained capsule models did not change)."""
    gen = torch.Generator().manual_seed(len(lead) + height)
    theta = (torch.randn(*lead, 2, 3, generator=gen) * 0.7).requires_grad_()
    n = theta[..., 0, 0].numel()
    ref = torch.nn.functional.affine_grid(theta.reshape(n, 2, 3), [n, 1, height, width], align_corners=False)
    ref = ref.reshape(*lead, height, width, 2)
    grad = torch.randn(ref.shape, generator=gen)
    (ref_grad,) = torch.autograd.grad(ref, theta, grad)
    out = sample_grid(theta, height, width)
    (out_grad,) = torch.autograd.grad(out, theta, grad)
    assert out.shape == ref.shape
    assert out.reshape(-1, width, 2).data_ptr() == out.data_ptr()  # leading dims and H merge without a copy
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(out_grad, ref_grad, rtol=1e-6, atol=1e-5)
    theta64 = theta.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sample_grid(t, height, width), (theta64,), eps=1e-6, atol=1e-7)


def test_gradients_pass_gradcheck_through_pose_intensity_and_template():
    gen = torch.Generator().manual_seed(6)
    template = torch.rand(2, 5, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    nice = (torch.tensor(poses.IDENTITY_NICE, dtype=torch.float64) * 1.7
            + 0.1 * torch.randn(1, 2, 6, dtype=torch.float64, generator=gen)).requires_grad_()
    intensity = torch.rand(1, 2, dtype=torch.float64, generator=gen, requires_grad=True)

    def f(t, n, i):
        return render(t, poses.nice_to_matrix(n), i, (9, 9))

    assert torch.autograd.gradcheck(f, (template, nice, intensity), eps=1e-6, atol=1e-5)


def test_output_model_zero_and_single_contribution():
    zeros = torch.zeros(2, 9, 5, 5)
    assert torch.equal(poses.max_semi_soft(zeros), torch.zeros(2, 5, 5))
    assert torch.equal(poses.max_semi_soft(torch.zeros(1, 1, 3, dtype=torch.float64)), torch.zeros(1, 3, dtype=torch.float64))
    a = torch.rand(4, 1, 6, 6)
    torch.testing.assert_close(poses.max_semi_soft(a), a[:, 0])  # K = 1: exactly itself
    # one capsule draws, eight are blank: returned nearly unchanged (within the offset log 9 / 100)
    strokes = torch.zeros(4, 9, 6, 6)
    strokes[:, 3] = 0.2 + 0.8 * torch.rand(4, 6, 6)
    out = poses.max_semi_soft(strokes)
    assert (out - strokes[:, 3]).abs().max() <= math.log(9) / 100 + 1e-6
    assert (out <= strokes[:, 3]).all()
    # the offset of the thesis's 10-capsule example is ≈ 0.023
    assert abs(float(poses.max_semi_soft(torch.zeros(1, 10, 1)) + 0) - 0) < 1e-12
    assert abs(math.log(10) / 100 - 0.023) < 5e-4


def test_ink_is_nonnegative_and_inverts():
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    assert (poses.ink(x) >= 0).all()
    y = torch.tensor([0.01, 0.3, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(poses.ink(poses.ink_inverse(y)), y)


def test_template_centre_is_where_the_renderer_draws_the_template_middle():
    """A one-pixel template point at the middle, rendered at random poses, lands at template_centre."""
    from vizkit.models.capsule import poses

    torch.manual_seed(0)
    nice = torch.stack([torch.empty(6).uniform_(-0.3, 0.3), torch.empty(6).uniform_(-0.3, 0.3),
                        torch.empty(6).uniform_(1.5, 3.0), torch.empty(6).uniform_(1.5, 3.0),
                        torch.empty(6).uniform_(-0.3, 0.3), torch.empty(6).uniform_(-3, 3)], 1).double()
    matrix = poses.nice_to_matrix(nice)
    centre = poses.template_centre(matrix)
    back = matrix @ torch.cat([centre, torch.ones(6, 1, dtype=torch.float64)], 1)[..., None]
    torch.testing.assert_close(back[:, :2, 0], torch.full((6, 2), 0.5, dtype=torch.float64))
    # rendered: a template lit only at its middle point peaks at the pixel holding that centre
    template = torch.zeros(1, 21, 21, dtype=torch.float64)
    template[0, 10, 10] = 1.0
    size = 64
    drawn = render(template, matrix[:, None], torch.ones(6, 1, dtype=torch.float64), (size, size))[:, 0]
    peak = drawn.flatten(1).argmax(1)
    rows, cols = peak // size, peak % size
    torch.testing.assert_close(((cols + 0.5) / size).double(), centre[:, 0], atol=1.0 / size, rtol=0)
    torch.testing.assert_close(((rows + 0.5) / size).double(), centre[:, 1], atol=1.0 / size, rtol=0)
    # the identity pose draws the template over the whole image: its middle is the image's middle
    torch.testing.assert_close(poses.template_centre(poses.nice_to_matrix(torch.tensor([0.0, 0, 1, 1, 0, 0]))),
                               torch.tensor([0.5, 0.5]))
