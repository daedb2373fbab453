"""Receptive fields computed from the network: checked against brute-force finite differences on
the real network (float64) and against the analytic field, on a ResNet with stride-2 skip convs, a
dilated stack, an Inception-style concatenation and a net of functional calls; crops in ``topk``
and ``deconv``; whole images, and why, where every position sees the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vizkit
from vizkit import receptive_fields as rf

from .resnets import mynets

# --- networks ---------------------------------------------------------------------------------------


def resnet(seed: int = 0) -> nn.Module:
    """ResNet-18's layout (torchvision's), with fewer channels."""
    torch.manual_seed(seed)
    net = mynets().ResNet(widths=(4, 6, 8, 8), num_classes=10)
    with torch.no_grad():  # running statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


#: the main path of ResNet-18 as (kernel, stride, padding), in series; the skip paths lie inside it
STEM = [(7, 2, 3), (3, 2, 1)]
LAYER1 = [(3, 1, 1)] * 4
DOWN = [(3, 2, 1)] + [(3, 1, 1)] * 3


def dilated() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=4, dilation=4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
    ).eval()


#: (kernel, stride, padding, dilation) of the dilated stack
DILATED = [(3, 1, 1, 1), (3, 1, 2, 2), (3, 1, 4, 4), (3, 2, 1, 1), (3, 1, 2, 2)]


class Inception(nn.Module):
    """Branches of different kernels concatenated: a 1x1, a 1x1 then 3x3, a 1x1 then 5x5, a 3x3 max
    pool then 1x1, and a 1x9 (wider than tall)."""

    def __init__(self, cin: int = 4) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, 2, 1)
        self.b3 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, 2, 1))
        self.bw = nn.Conv2d(cin, 2, (1, 9), padding=(0, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(b(x)) for b in (self.b1, self.b3, self.b5, self.bp, self.bw)], 1)


def inception_net() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), Inception()).eval()


class Functional(nn.Module):
    """ReLUs and max pooling as functional calls inside ``forward``, which no module walk can see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 5, padding=2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.conv3 = nn.Conv2d(5, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, stride=2, padding=1)
        return self.conv3(x)


def functional() -> Functional:
    torch.manual_seed(3)
    return Functional().eval()


#: (kernel, stride, padding) of the functional net, conv3 included
FUNCTIONAL = [(5, 1, 2), (2, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0)]


# --- oracles --------------------------------------------------------------------------------------------


def series(steps: list[tuple[int, ...]]) -> tuple[int, int, int]:
    """(jump, size, start) of layers in series, each (kernel, stride, padding[, dilation])."""
    jump, size, start = 1, 1, 0
    for k, s, p, *d in steps:
        start -= p * jump
        size += (k - 1) * (d[0] if d else 1) * jump
        jump *= s
    return jump, size, start


def analytic(steps: list[tuple[int, ...]]) -> rf.Field:
    jump, size, start = series(steps)
    return rf.Field((jump, jump), (size, size), (start, start))


def finite_difference_support(fn, size: int, seeds=(0, 1), chunk: int = 288) -> torch.Tensor:
    """[h, w, H, W]: pixels whose change (all channels, by a random finite step) changes some
    channel at map position (h, w) of ``fn`` for one of several random inputs, in float64."""
    union = None
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 3, size, size, dtype=torch.float64, generator=gen)
        with torch.no_grad():
            base = fn(x)
            changed = []
            for lo in range(0, size * size, chunk):
                pix = torch.arange(lo, min(lo + chunk, size * size))
                xs = x.repeat(len(pix), 1, 1, 1)
                step = torch.randn(len(pix), 3, dtype=torch.float64, generator=gen) * 2
                xs[torch.arange(len(pix)), :, pix // size, pix % size] += step
                changed.append((fn(xs) - base).abs().amax(1) > 1e-9)  # [p, h, w]
        support = torch.cat(changed).permute(1, 2, 0).reshape(*base.shape[2:], size, size)
        union = support if union is None else union | support
    return union


def line_support(fn, size: int, seeds=(0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """[h, w, H] rows and [h, w, W] columns whose change (every pixel of the row or column, by
    random finite steps) changes map position (h, w): the row and column extents of the
    finite-difference support at a cost of 2·size passes instead of size²."""
    rows = cols = None
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 3, size, size, dtype=torch.float64, generator=gen)
        with torch.no_grad():
            base = fn(x)
            xr, xc = x.repeat(size, 1, 1, 1), x.repeat(size, 1, 1, 1)
            for i in range(size):
                xr[i, :, i, :] += torch.randn(3, size, dtype=torch.float64, generator=gen) * 2
                xc[i, :, :, i] += torch.randn(3, size, dtype=torch.float64, generator=gen) * 2
            r = ((fn(xr) - base).abs().amax(1) > 1e-9).permute(1, 2, 0)
            c = ((fn(xc) - base).abs().amax(1) > 1e-9).permute(1, 2, 0)
        rows, cols = (r, c) if rows is None else (rows | r, cols | c)
    return rows, cols


def boxes(view: rf.LayerField, h: int, w: int, size: int) -> list[list[tuple[int, int, int, int]]]:
    """The computed window of every map position, clipped to the image (whole images: the image)."""
    if view.field is None:
        return [[(0, size, 0, size)] * w for _ in range(h)]
    return [[view.field.box(i, j, size, size) for j in range(w)] for i in range(h)]


def extent(mask: torch.Tensor) -> tuple[int, int]:
    idx = mask.nonzero().flatten()
    return int(idx[0]), int(idx[-1]) + 1


def assert_support_inside(support: torch.Tensor, view: rf.LayerField, size: int, tight: bool = False) -> None:
    h, w = support.shape[:2]
    for i, row in enumerate(boxes(view, h, w, size)):
        for j, (r0, r1, c0, c1) in enumerate(row):
            assert support[i, j].any(), (i, j)
            found = (*extent(support[i, j].any(1)), *extent(support[i, j].any(0)))
            assert r0 <= found[0] and found[1] <= r1 and c0 <= found[2] and found[3] <= c1, ((i, j), found)
            if tight:
                assert found == (r0, r1, c0, c1), ((i, j), found)


def wrap(net: nn.Module, size: int, layers: list[str]) -> vizkit.WrappedModel:
    return vizkit.wrap(net, (3, size, size), layers=layers)


class _Stop(Exception):
    pass


def upto(net: nn.Module, name: str):
    """The real network in float64, stopped at ``name``'s output (what the wrapper computes)."""
    net = net.double()
    sub = dict(net.named_modules())[name]

    def run(x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: object, o: torch.Tensor) -> None:
            out.append(o.clone())
            raise _Stop

        handle = sub.register_forward_hook(hook)
        try:
            net(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return out[0]

    return run


# --- ResNet --------------------------------------------------------------------------------------------


def test_resnet_layer3_has_the_analytic_field_where_interior_positions_exist():
    # ResNet-18 layer3: jump 16, size 211 (the skip path's 1x1 stride-2 convs are not in series)
    model = wrap(resnet(), 256, ["layer3.1", "layer3.1.conv2"])
    for layer in ("layer3.1", "layer3.1.conv2"):
        view = rf.layer_field(model, layer)
        assert view.note is None and view.field == analytic(STEM + LAYER1 + DOWN + DOWN), layer
        assert view.meta() == {"size": [211, 211], "jump": [16, 16], "start": [-105, -105]}


def test_resnet_fields_contain_the_finite_difference_support():
    net = resnet()
    model = wrap(net, 32, ["maxpool", "layer1.1"])  # per pixel, on a 32x32 input
    for layer, steps in (("maxpool", STEM), ("layer1.1", STEM + LAYER1)):
        view = rf.layer_field(model, layer)
        assert view.note is None and view.field == analytic(steps), layer
        assert_support_inside(finite_difference_support(upto(resnet(), layer), 32), view, 32)
    model = wrap(resnet(), 64, ["layer2.1", "layer3.1"])  # per row and column, on 64x64
    for layer in ("layer2.1", "layer3.1"):
        view = rf.layer_field(model, layer)
        rows, cols = line_support(upto(resnet(), layer), 64)
        for i, row in enumerate(boxes(view, *rows.shape[:2], 64)):
            for j, (r0, r1, c0, c1) in enumerate(row):
                found = (*extent(rows[i, j]), *extent(cols[i, j]))
                assert r0 <= found[0] and found[1] <= r1 and c0 <= found[2] and found[3] <= c1, (layer, i, j)
    assert rf.layer_field(model, "layer2.1").field == analytic(STEM + LAYER1 + DOWN)  # 99 px, clipped at 64


def test_whole_images_when_every_position_sees_the_whole_image_and_after_global_pooling():
    model = wrap(resnet(), 64, ["layer3.1", "avgpool"])
    view = rf.layer_field(model, "layer3.1")
    assert not view.crops and view.note.startswith("every position of layer3.1 sees the whole 64x64 image")
    assert view.meta()["size"] == [211, 211]  # read off a larger input
    images = torch.rand(2, 3, 64, 64)
    assert view.crop(images, torch.zeros(2, 2)) is images
    view = rf.layer_field(model, "avgpool")
    assert view.field is None and "after a global pooling there is no local field" in view.note


# --- other branching and functional nets ----------------------------------------------------------------


def test_dilated_stack():
    view = rf.layer_field(wrap(dilated(), 24, ["8"]), "8")
    assert view.note is None and view.field == analytic(DILATED)
    assert_support_inside(finite_difference_support(upto(dilated(), "8"), 24), view, 24, tight=True)


def test_inception_concat_is_the_union_of_its_branches():
    view = rf.layer_field(wrap(inception_net(), 24, ["2"]), "2")
    stem = [(3, 2, 1)]
    branches = [[(1, 1, 0)], [(1, 1, 0), (3, 1, 1)], [(1, 1, 0), (5, 1, 2)], [(3, 1, 1), (1, 1, 0)]]
    rows = [series(stem + b) for b in branches] + [series(stem + [(1, 1, 0)])]  # the 1x9 is one row tall
    cols = [series(stem + b) for b in branches] + [series(stem + [(9, 1, 4)])]

    def union(fields: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        start, end = min(f[2] for f in fields), max(f[2] + f[1] for f in fields)
        return fields[0][0], end - start, start

    (jr, sr, r0), (jc, sc, c0) = union(rows), union(cols)
    assert view.note is None and view.field == rf.Field((jr, jc), (sr, sc), (r0, c0))
    assert (sr, sc) == (11, 19)  # the 5x5 branch's height, the 1x9 branch's width (after a stride-2 stem)
    assert_support_inside(finite_difference_support(upto(inception_net(), "2"), 24), view, 24)


def test_functional_relu_and_max_pool():
    view = rf.layer_field(wrap(functional(), 24, ["conv3"]), "conv3")
    assert view.note is None and view.field == analytic(FUNCTIONAL)
    assert_support_inside(finite_difference_support(upto(functional(), "conv3"), 24), view, 24, tight=True)


class SqueezeExcite(nn.Module):
    """A conv whose channels are scaled by a gate computed from the whole image (as in SENet and
    EfficientNet): the gate is not part of any position's window."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        gate = torch.sigmoid(self.fc(y.mean((2, 3))))[:, :, None, None]
        return self.conv2(y * gate)


def test_a_squeeze_excitation_gate_is_left_out_of_the_window_and_said():
    view = rf.layer_field(wrap(SqueezeExcite(), 24, ["conv2"]), "conv2")
    assert view.crops and view.field == analytic([(3, 1, 1), (3, 1, 1)])
    assert "scaled by a pooling of the whole image" in view.meta()["context"]


def test_crops_keep_their_alignment_at_the_border():
    images = torch.arange(16.0).reshape(1, 1, 4, 4)
    field = rf.Field((1, 1), (3, 3), (-1, -1))
    crop = rf.field_crops(images, torch.tensor([[0, 3]]), field)[0, 0]
    np.testing.assert_array_equal(crop, [[0, 0, 0], [2, 3, 0], [6, 7, 0]])


# --- probes -------------------------------------------------------------------------------------------


@pytest.fixture
def images_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((15, 3, 64, 64)).astype(np.float32))
    return str(path)


def test_topk_on_a_resnet_block_crops_its_field_and_shows_whole_images_after_global_pooling(
        fresh_host, images_file):
    net = resnet()
    model = wrap(net, 64, ["layer1.1", "avgpool"])
    result = vizkit.run_probe("topk", model, "layer1.1", units="0:2", k=3, data=images_file, split="all")
    assert result.meta["receptive_field"] == {"size": [43, 43], "jump": [4, 4], "start": [-21, -21]}
    assert result.arrays["crops"].shape == (2, 3, 3, 43, 43)
    padded = F.pad(torch.from_numpy(result.arrays["images"]), (21, 21, 21, 21))
    for u in range(2):
        for j in range(3):
            r, c = result.arrays["positions"][u, j]
            np.testing.assert_array_equal(result.arrays["crops"][u, j], padded[u, j, :, 4 * r:4 * r + 43, 4 * c:4 * c + 43])
    result = vizkit.run_probe("topk", model, "avgpool", units="0:2", k=3, data=images_file, split="all")
    np.testing.assert_array_equal(result.arrays["crops"], result.arrays["images"])
    note = result.meta["receptive_field"]["note"]
    assert "after a global pooling there is no local field" in note and note in result.captions["topk"]


def test_deconv_projection_lies_inside_the_crop(fresh_host, images_file):
    model = wrap(resnet(), 64, ["layer1.1"])
    result = vizkit.run_probe("deconv", model, "layer1.1", units="0:2", k=3, data=images_file, split="all",
                              rule="gradient")
    assert result.arrays["projection_crops"].shape == (2, 3, 3, 43, 43)
    field = rf.Field((4, 4), (43, 43), (-21, -21))
    for u in range(2):
        for j in range(3):
            r0, r1, c0, c1 = field.box(*result.arrays["positions"][u, j], 64, 64)
            proj = np.abs(result.arrays["projections"][u, j])
            assert proj.sum() > 0
            inside = proj[:, r0:r1, c0:c1].sum()
            assert proj.sum() == pytest.approx(inside)
