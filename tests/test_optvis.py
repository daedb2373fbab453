"""vizkit.optvis against known answers: optima of linear units, exact inverses, Jacobians, arithmetic."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import torch

import vizkit
from vizkit import optvis
from vizkit.errors import OptionError
from vizkit.optim import AscentConfig, maximise_on_sphere, sample_keys
from vizkit.optvis import objectives as O
from vizkit.optvis import param as P
from vizkit.optvis import transforms as T


def _linear(shape=(3, 8, 8), units=3, seed=0, weight=None):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(shape).prod()), units, bias=False))
    if weight is not None:
        with torch.no_grad():
            net[1].weight.copy_(weight.reshape(units, -1))
    return vizkit.wrap(net.double(), input_shape=shape), net[1].weight.detach()


def _small_convnet(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 4))
    return vizkit.wrap(net.double(), input_shape=(3, 16, 16))


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


# -- a linear unit's optimum on the sphere is its normalised weight ------------------------------------
@pytest.mark.parametrize("param, optimizer, lr, steps, cosine", [
    ("pixel", "ascent", 0.1, 300, 0.999),
    ("pixel", "adam", 0.05, 400, 0.99),  # Adam's fixed step leaves a small orbit around the optimum
    ("fourier", "adam", 0.05, 400, 0.99),
])
def test_linear_unit_optimum_is_its_normalised_weight(param, optimizer, lr, steps, cosine):
    model, w = _linear()
    out = optvis.render(model, [O.channel("1", k) for k in range(3)], param=param, optimizer=optimizer, lr=lr,
                        constraint=optvis.Sphere(4.0), thresholds=(steps,), dtype=torch.float64)
    assert torch.allclose(out.images.flatten(1).norm(dim=1), torch.full((3,), 4.0, dtype=torch.float64))
    assert _cos(out.images, w.reshape(3, 3, 8, 8)).min() > cosine


def test_lowres_and_cppn_reach_a_weight_they_can_draw():
    """lowres: a weight upsampled from a 2×2 image lies in its range, so its optimum is that weight.
    cppn: a smooth positive blob, which its sigmoid network can draw closely."""
    small = torch.randn(1, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    model, _ = _linear(units=1, weight=w)
    low = optvis.render(model, O.channel("1", 0), param=P.LowRes((3, 8, 8), factor=4), optimizer="adam", lr=0.05,
                        constraint=optvis.Sphere(3.0), thresholds=(400,), dtype=torch.float64)
    assert _cos(low.images, w)[0] > 0.999
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    blob = torch.exp(-((yy - 0.2) ** 2 + (xx + 0.3) ** 2) / 0.5).double().expand(3, 8, 8) * torch.tensor(
        [1.0, 0.6, 0.3], dtype=torch.float64).reshape(3, 1, 1)
    model, _ = _linear(units=1, weight=blob.reshape(1, -1))
    cppn = optvis.render(model, O.channel("1", 0), param="cppn", optimizer="adam", lr=0.01,
                         constraint=optvis.Sphere(3.0), thresholds=(300,), dtype=torch.float64)
    assert _cos(cppn.images, blob[None])[0] > 0.98


# -- parameterisations and transforms ----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 9, 7), (3, 6, 11)])
def test_fourier_parameterisation_round_trips_exactly(shape):
    fourier = P.Fourier(shape)
    x = torch.randn(4, *shape, dtype=torch.float64)
    assert torch.allclose(fourier.image([fourier.parameters_of(x)]), x, atol=1e-12)


def test_fourier_scale_decays_as_one_over_frequency():
    fourier = P.Fourier((1, 16, 16), decay=1.0)
    assert fourier.scale[0, 1] == pytest.approx(16.0 / 4) and fourier.scale[0, 8] == pytest.approx(2.0 / 4)


@pytest.mark.parametrize("transform", [
    T.pad(3), T.pad(2, "reflect"), T.jitter(3), T.random_scale([0.9, 1.1]), T.random_rotate([-10, 7]),
    T.CentreCrop(5, 6), T.standard(8, 8), T.Normalise([0.5, 0.4, 0.3], [0.2, 0.3, 0.4]),
], ids=lambda t: repr(t)[:24])
def test_each_transform_has_the_right_jacobian(transform):
    keys = sample_keys(0, torch.arange(2))
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: transform(v, keys, 5), (x,))


def test_transforms_are_per_sample_and_seeded_by_the_sample_key():
    keys = sample_keys(3, torch.arange(6))
    x = torch.rand(6, 3, 20, 20)
    chain = T.standard(20, 20)
    together = chain(x, keys, 7)
    alone = torch.cat([chain(x[i : i + 1], keys[i : i + 1], 7) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert not torch.allclose(chain(x, keys, 7), chain(x, keys, 8))  # a new draw every step


# -- objectives -----------------------------------------------------------------------------------------
def test_objective_arithmetic_equals_the_arithmetic_of_the_activations():
    act = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    acts = {"c": act, "d": torch.randn(5, 7, dtype=torch.float64)}
    v = torch.randn(4, dtype=torch.float64)
    expr = (2 * O.channel("c", 1) - O.channel("c", 2) / 4 + O.neuron("c", 3, 0, 2) * O.neuron("d", 5)
            - O.channel_weight("c", v) + (-O.channel("d", 0)))
    expected = (2 * act[:, 1].mean((1, 2)) - act[:, 2].mean((1, 2)) / 4 + act[:, 3, 0, 2] * acts["d"][:, 5]
                - (act * v.reshape(1, 4, 1, 1)).mean((1, 2, 3)) - acts["d"][:, 0])
    assert torch.allclose(expr(acts), expected)
    assert torch.allclose(sum([O.channel("c", 0), O.channel("c", 1)])(acts), act[:, :2].mean((2, 3)).sum(1))


def test_direction_is_the_cosine_with_the_vector_and_neuron_defaults_to_the_centre():
    act = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    v = torch.randn(4, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(act, v.reshape(1, 4, 1, 1), dim=1)
    assert torch.allclose(O.direction("c", v)({"c": act}), cos.mean((1, 2)))
    assert torch.allclose(O.direction_neuron("c", v)({"c": act}), cos[:, 2, 2])
    assert torch.allclose(O.neuron("c", 1)({"c": act}), act[:, 1, 2, 2])
    assert torch.allclose(O.localgroup_weight("c", v, 1, 2, 2, 3)({"c": act}),
                          (act[:, :, 1:3, 2:5] * v.reshape(1, 4, 1, 1)).mean((1, 2, 3)))


def test_stacked_objectives_score_each_row_as_that_objective_alone():
    acts = {"c": torch.randn(6, 4, 3, 3, dtype=torch.float64)}
    objectives = [O.channel("c", 2) - 0.5 * O.channel("c", 0), O.channel("c", 1) - 2.0 * O.channel("c", 3),
                  O.neuron("c", 1, 0, 0)]
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    together = O.evaluate_all(objectives, acts, rows)
    alone = torch.stack([objectives[int(r)]({"c": acts["c"][i : i + 1]})[0] for i, r in enumerate(rows)])
    assert torch.allclose(together, alone)
    assert len(O.stack_groups(objectives)) == 2  # the first two share one stacked evaluation


def test_diversity_of_identical_images_is_maximal():
    same = torch.randn(1, 4, 3, 3).expand(4, -1, -1, -1)
    rows = torch.zeros(4, dtype=torch.long)
    div = O.diversity("c")
    assert torch.allclose(div.evaluate({"c": same}, [div], rows), torch.full((4,), -1.0))  # the least diverse
    different = torch.randn(4, 4, 3, 3)
    assert (div.evaluate({"c": different}, [div], rows) > -1.0 + 1e-3).all()
    # restarts of two objectives are not compared with each other
    mixed = torch.cat([same[:2], different[:2]])
    values = div.evaluate({"c": mixed}, [div, div], torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(values[:2], torch.full((2,), -1.0))


def test_channel_interpolate_blends_across_restarts():
    acts = {"a": torch.randn(3, 4), "b": torch.randn(3, 5)}
    value = O.channel_interpolate("a", 1, "b", 2)(acts)
    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(value, (1 - t) * acts["a"][:, 1] + t * acts["b"][:, 2])


def test_expressions_parse_to_the_objectives_they_name():
    acts = {"layer1.0.relu#2": torch.randn(3, 4, 2, 2), "0": torch.randn(3, 6)}
    parsed = optvis.parse("channel(layer1.0.relu#2, 3) - 0.5*channel(layer1.0.relu#2,1) + neuron(0, 5)/2")
    expected = (acts["layer1.0.relu#2"][:, 3].mean((1, 2)) - 0.5 * acts["layer1.0.relu#2"][:, 1].mean((1, 2))
                + acts["0"][:, 5] / 2)
    assert torch.allclose(parsed(acts), expected)
    v = optvis.parse("direction(0, [1, 0, 0, 0, 0, -1])")({"0": acts["0"]})
    assert torch.allclose(v, torch.nn.functional.cosine_similarity(acts["0"], torch.tensor([[1.0, 0, 0, 0, 0, -1]])))


@pytest.mark.parametrize("text, message", [
    ("channel(conv9, 1)", "no layer 'conv9'"),
    ("channel(c, 1", "expected ')'"),
    ("chanel(c, 1)", "unknown function 'chanel'"),
    ("2 * 3", "a number is not an objective"),
    ("channel(c, 1) +", "expected a number"),
    ("", "empty"),
    ("channel(c, 1) / 0", "division by zero"),
    ("channel(c, 1.5)", "a channel must be a whole number, got 1.5"),
    ("neuron(c, 1, 0.5, 2)", "a position must be a whole number"),
])
def test_malformed_expressions_are_one_line_errors(text, message):
    with pytest.raises(OptionError, match=re.escape(message)) as info:
        optvis.parse(text, layers={"c"})
    assert "\n" not in str(info.value)


def test_render_refuses_unknown_channels_and_transforms_on_vectors():
    model = _small_convnet()
    with pytest.raises(OptionError, match="has 5 channels; channel 9"):
        optvis.render(model, "channel(2, 9)", thresholds=(2,))
    model, _ = _linear(shape=(10,))
    with pytest.raises(OptionError, match="image-shaped input"):
        optvis.render(model, "channel(1, 0)", transforms="standard", thresholds=(2,))
    with pytest.raises(OptionError, match="image-shaped input"):
        optvis.render(model, "channel(1, 0)", param="fourier", thresholds=(2,))


# -- the loop -------------------------------------------------------------------------------------------
def test_erhans_ascent_matches_the_sphere_engine_actmax_used():
    """``ascent`` with pixels on the sphere is the same iteration as vizkit.optim's engine, sample for sample."""
    model = _small_convnet()
    units, restarts, rho = torch.tensor([0, 2, 3]), 2, 6.0
    keys = sample_keys(5, units.repeat_interleave(restarts), torch.arange(restarts).repeat(len(units)))
    unit_of_row = units.repeat_interleave(restarts)

    def objective(x, rows):
        return vizkit.paired_unit_activations(model, x, "2", unit_of_row[rows])

    old = maximise_on_sphere(objective, keys, (3, 16, 16), rho, AscentConfig(steps=60, lr=0.1, tol=1e-6),
                             dtype=torch.float64)
    new = optvis.render(model, [O.channel("2", int(u)) for u in units], ids=units, restarts=restarts, seed=5,
                        param="pixel", optimizer="ascent", lr=0.1, constraint=optvis.Sphere(rho), thresholds=(60,),
                        tol=1e-6, dtype=torch.float64)
    assert torch.allclose(new.images, old.x, atol=1e-10) and torch.allclose(new.values, old.value)
    assert torch.equal(new.steps, old.steps) and torch.equal(new.converged, old.converged)


def test_thresholds_give_snapshots_and_the_trace_grows():
    model = _small_convnet()
    out = optvis.render(model, ["channel(2,1)", "channel(6,3)"], restarts=2, param="fourier", transforms="light",
                        constraint=optvis.SigmoidRange(), thresholds=(4, 16, 64), dtype=torch.float64)
    assert sorted(out.snapshots) == [4, 16, 64] and out.snapshots[64].shape == (4, 3, 16, 16)
    assert out.trace.shape == (4, 65) and torch.isfinite(out.trace).all()
    assert (out.images >= 0).all() and (out.images <= 1).all()
    assert (out.trace[:, -8:].mean(1) > out.trace[:, :8].mean(1)).all()
    assert out.per_objective("images").shape == (2, 2, 3, 16, 16)


def test_the_same_unit_alone_or_in_a_batch_gets_the_same_image():
    model = _small_convnet()
    kwargs = dict(restarts=2, param="fourier", transforms="light", constraint=optvis.SigmoidRange(),
                  thresholds=(12,), dtype=torch.float64, seed=9)
    together = optvis.render(model, [O.channel("2", c) for c in range(5)], ids=range(5), **kwargs)
    alone = optvis.render(model, [O.channel("2", 3)], ids=[3], **kwargs)
    assert torch.allclose(together.images[6:8], alone.images, atol=1e-10)


def test_a_unit_split_over_two_processes_gets_the_same_optima(tmp_path):
    """Units 0-4 in this process; units 3-4 in another Python process: the same images."""
    model = _small_convnet()
    kwargs = dict(restarts=2, param="fourier", transforms="standard", constraint=optvis.SigmoidRange(),
                  thresholds=(10,), dtype=torch.float64, seed=4)
    here = optvis.render(model, [O.channel("2", c) for c in range(5)], ids=range(5), **kwargs)
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_optvis import _small_convnet
        from vizkit import optvis
        from vizkit.optvis import objectives as O
        out = optvis.render(_small_convnet(), [O.channel("2", c) for c in (3, 4)], ids=(3, 4), restarts=2,
                            param="fourier", transforms="standard", constraint=optvis.SigmoidRange(),
                            thresholds=(10,), dtype=torch.float64, seed=4)
        torch.save(out.images, {str(tmp_path / "there.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    there = torch.load(tmp_path / "there.pt", weights_only=True)
    assert torch.allclose(here.images[6:], there, atol=1e-10)


def test_diversity_objective_makes_restarts_differ():
    model = _small_convnet()
    kwargs = dict(restarts=4, param="fourier", constraint=optvis.SigmoidRange(), thresholds=(60,),
                  dtype=torch.float64, seed=1, lr=0.1)
    plain = optvis.render(model, O.channel("2", 1), **kwargs)
    diverse = optvis.render(model, O.channel("2", 1) + 2.0 * O.diversity("2"), **kwargs)

    def mean_cos(images):
        flat = images.flatten(1)
        flat = flat - flat.mean(1, keepdim=True)
        c = torch.nn.functional.cosine_similarity(flat[:, None], flat[None], dim=2)
        return c[~torch.eye(len(c), dtype=torch.bool)].mean()

    assert mean_cos(diverse.images) < mean_cos(plain.images) - 0.05


def test_class_mean_vector_is_the_class_mean_minus_the_mean():
    model, _ = _linear(shape=(6,), units=2)
    x = torch.randn(40, 6, dtype=torch.float64)
    labels = torch.arange(40) % 3
    v = O.class_mean_vector(model, x, labels, "0", 2, batch=7)  # layer "0" is the flatten: the input itself
    assert torch.allclose(v, x[labels == 2].mean(0) - x.mean(0))
    with pytest.raises(OptionError, match="no example of class 5"):
        O.class_mean_vector(model, x, labels, "0", 5)


def test_render_on_a_resnet_block_with_skips_and_an_expression():
    """A torchvision-style ResNet (branches, in-place ReLUs): block outputs are objectives like any
    layer, the forward pass stops there, and a unit alone equals the unit in a batch."""
    from .resnets import mynets

    torch.manual_seed(0)
    net = mynets().ResNet(widths=(4, 6, 8, 8), num_classes=5).double().eval()
    model = vizkit.wrap(net, input_shape=(3, 32, 32))
    kwargs = dict(restarts=2, param="fourier", transforms="light", constraint=optvis.SigmoidRange(),
                  thresholds=(8,), dtype=torch.float64, seed=2)
    batch = optvis.render(model, [O.channel("layer2.1", c) for c in range(4)], ids=range(4), **kwargs)
    alone = optvis.render(model, [O.channel("layer2.1", 2)], ids=[2], **kwargs)
    assert torch.allclose(batch.images[4:6], alone.images, atol=1e-10)
    mixed = optvis.render(model, "channel(layer2.1, 1) - 0.5*channel(layer1.0.relu#2, 0)", **kwargs)
    with torch.no_grad():
        acts = vizkit.layer_activations(model, mixed.images, ["layer2.1", "layer1.0.relu#2"])
    expected = acts["layer2.1"][:, 1].mean((1, 2)) - 0.5 * acts["layer1.0.relu#2"][:, 0].mean((1, 2))
    assert torch.allclose(mixed.values, expected)
