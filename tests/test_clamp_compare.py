"""``clamp`` and ``compare`` probes on a tiny DBN whose clamped conditional mean is enumerable."""

import itertools

import numpy as np
import pytest
import torch

import vizkit
from vizkit.models.rbm import DBN


def tiny_dbn() -> DBN:
    """A 9-5-4 DBN with strong random weights, so clamping a top unit changes the pixels."""
    model = DBN(input_shape=[1, 3, 3], layers="5,4")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for params in list(model.weight) + list(model.hidden_bias) + list(model.visible_bias):
            params.copy_(torch.randn(params.shape, generator=gen) * 1.5)
    model.data_info = {"name": "test", "stats": {"mean_norm": 1.5}}
    return model


def exact_clamped_mean(model: DBN, unit: int) -> np.ndarray:
    """E[x | h2_unit = 1]: enumerate h1, sum h2 out analytically, then the directed p(x | h1)."""
    h1 = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=torch.float64)
    w2, b2, c2 = (t.detach().double() for t in (model.weight[1], model.hidden_bias[1], model.visible_bias[1]))
    w1, c1 = model.weight[0].detach().double(), model.visible_bias[0].detach().double()
    logits = h1 @ w2.T + b2
    softplus = torch.nn.functional.softplus
    log_w = h1 @ c2 + logits[:, unit] + softplus(logits).sum(1) - softplus(logits[:, unit])
    return (torch.softmax(log_w, 0) @ torch.sigmoid(h1 @ w1 + c1)).numpy()


def test_clamp_mean_converges_to_the_exact_conditional_mean(fresh_host):
    model = tiny_dbn()
    result = vizkit.run_probe("clamp", model, "h2", units="0,3", chains=300, samples=20, every=3, burn_in=30)
    assert result.arrays["samples"].shape == (2, 6000, 1, 3, 3)
    for row, unit in enumerate((0, 3)):
        exact = exact_clamped_mean(model, unit)
        # 6,000 correlated samples of [0,1] probabilities: the mean's error is well under 0.03
        np.testing.assert_allclose(result.arrays["mean"][row].reshape(-1), exact, atol=0.03)
    spread = np.abs(exact_clamped_mean(model, 0) - exact_clamped_mean(model, 3)).max()
    assert spread > 0.1  # the test could tell the units apart


def test_clamp_is_reproducible_and_writes_its_figure(fresh_host, tmp_path):
    model = tiny_dbn()
    a = vizkit.run_probe("clamp", model, "h2", units="1", chains=4, samples=3, every=2, burn_in=2, seed=5)
    b = vizkit.run_probe("clamp", model, "h2", units="1", chains=4, samples=3, every=2, burn_in=2, seed=5,
                         out=tmp_path, gif=True)
    np.testing.assert_array_equal(a.arrays["samples"], b.arrays["samples"])
    assert {"clamp.png", "chain.gif", "chain.mp4", "index.html"} <= {p.name for p in b.files}


def test_compare_runs_all_three_methods_on_the_same_units(fresh_host, tmp_path):
    model = tiny_dbn()
    result = vizkit.run_probe("compare", model, "h2", units="0:4", out=tmp_path, k=2, chains=5, samples=2,
                              every=2, burn_in=2, steps=20, restarts=2)
    for key in ("clamp", "lincomb", "actmax"):
        assert result.arrays[key].shape == (4, 1, 3, 3)
    single = vizkit.run_probe("lincomb", model, "h2", units="0:4", k=2)
    np.testing.assert_allclose(result.arrays["lincomb"], single.arrays["filters"])
    assert (tmp_path / "compare.png").exists()
    assert all(0.0 <= float(result.arrays[f"{key}_unit_share"]) <= 1.0 for key in ("clamp", "lincomb", "actmax"))
    assert "differs between units" in result.captions["compare"]


def test_compares_options_are_the_methods_own(fresh_host, monkeypatch):
    """compare passes these options on, so it takes each method's declaration (type, bounds,
    special values): a value the method would refuse is refused before any of the three runs."""
    from vizkit.probes.actmax import ActMax
    from vizkit.probes.clamp import Clamp
    from vizkit.probes.compare import OWN_DEFAULTS, PASSED_ON, Compare
    from vizkit.probes.lincomb import LinComb

    ours = {o.name: o for o in Compare.options}
    sources = {"clamp": Clamp, "lincomb": LinComb, "actmax": ActMax}
    assert set(ours) == {name for names in PASSED_ON.values() for name in names}
    for method, names in PASSED_ON.items():
        for name in names:
            theirs = next(o for o in sources[method].options if o.name == name)
            mine = ours[name]
            assert (mine.type, mine.min, mine.max, mine.choices, mine.special) == \
                (theirs.type, theirs.min, theirs.max, theirs.choices, theirs.special), name
            assert mine.help == f"{method}: {theirs.help}"
            assert mine.default == OWN_DEFAULTS.get(name, theirs.default)
    assert ours["steps"].default == 500  # compare's documented default; actmax's own is 1000

    def never(self, ctx):
        raise AssertionError("compute ran with an invalid option")

    monkeypatch.setattr(Compare, "compute", never)
    model = tiny_dbn()
    for bad in ({"steps": 2_000_000}, {"restarts": 1001}, {"chains": 10_001}, {"burn_in": -1}, {"k": 0}):
        with pytest.raises(vizkit.OptionError) as info:
            vizkit.run_probe("compare", model, "h2", units="0:2", **bad)
        assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)


def test_compare_says_when_a_panel_shows_the_same_image_for_every_unit():
    from vizkit.probes.compare import SAME_FOR_ALL, unit_share

    rng = np.random.default_rng(0)
    common = rng.normal(size=(1, 1, 3, 3))
    assert unit_share(np.repeat(common, 5, axis=0)) == 0.0
    assert unit_share(np.repeat(common, 5, axis=0) + 0.01 * rng.normal(size=(5, 1, 3, 3))) < SAME_FOR_ALL
    # zero-mean unrelated images: (n - 1) / n of the energy differs between units
    unrelated = rng.normal(size=(2000, 1, 3, 3))
    assert abs(unit_share(unrelated) - 1.0) < 0.01
    assert unit_share(common) == 1.0


def test_binary_samples_are_zeros_and_ones(fresh_host):
    model = tiny_dbn()
    result = vizkit.run_probe("clamp", model, "h2", units="0:4", chains=6, samples=4, every=2, burn_in=2,
                              probabilities=False)
    samples = result.arrays["samples"]
    assert set(np.unique(samples)) == {0.0, 1.0}
    assert not np.signbit(samples).any()  # no -0.0 from the sampler's ceil, so saved bytes are canonical


def test_a_units_samples_do_not_depend_on_the_other_units_in_the_batch():
    # common random numbers: chain c of every unit draws the same numbers, so unit 1 alone and unit 1
    # among others give the same chains (float64 so that no rounding difference can flip a draw)
    model = tiny_dbn().double()
    kwargs = dict(chains=4, samples=3, every=5, burn_in=5, probabilities=False)
    alone = model.clamped_sample("h2", torch.tensor([1]), generator=torch.Generator().manual_seed(7), **kwargs)
    batch = model.clamped_sample("h2", torch.tensor([3, 1, 0]), generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(alone[0], batch[1])
    assert not torch.equal(batch[0], batch[1])  # the clamp still makes units differ


def test_half_agreement_tells_a_units_own_pattern_from_sampling_noise():
    from vizkit.probes.clamp import half_agreement

    rng = np.random.default_rng(0)
    units, chains, per_chain = 30, 10, 5
    noise = rng.normal(size=(units, chains * per_chain, 1, 4, 4))
    own = rng.normal(size=(units, 1, 1, 4, 4))
    # every unit its own pattern under noise: both halves agree (noise std per half-mean 1/5 of the pattern)
    assert np.median(half_agreement(own + noise, chains)) > 0.9
    # one pattern for every unit plus independent noise: what sets a unit apart is noise
    same = np.repeat(own[:1], units, axis=0) + noise
    assert abs(float(np.median(half_agreement(same, chains)))) < 0.2
    # nothing sets the units apart at all, or no second half: undefined
    assert np.isnan(half_agreement(np.repeat(own[:1], units, axis=0) + 0 * noise, chains)).all()
    assert np.isnan(half_agreement(own + noise, 1)).all()


def test_clamp_reports_the_agreement_of_chain_halves(fresh_host):
    model = tiny_dbn()
    result = vizkit.run_probe("clamp", model, "h2", units="0:4", chains=200, samples=5, every=3, burn_in=30)
    # the clamp changes this tiny DBN's pixels strongly (the exact-mean test), so 1,000 samples per
    # unit reproduce each unit's pattern
    assert result.arrays["half_agreement"].shape == (4,)
    assert result.meta["half_agreement_median"] > 0.9
    assert "Agreement" in result.captions["clamp"]


def test_real_valued_samples_share_a_scale_per_unit_and_each_mean_has_its_own():
    """A faint sample beside a strong one of the same unit stays faint (shown tile by tile, the
    visible bias alone of a chain with no unit on looked as bold as a real pattern); units of very
    different contrast each fill their range; zero stays zero."""
    from vizkit.probes.clamp import row_scaled

    pattern = np.array([[1.0, -2.0], [0.5, 0.0]])
    table = np.stack([
        np.stack([0.1 * pattern, 4.0 * pattern, 0.04 * pattern]),  # unit 0: mean, strong, faint
        np.stack([1e-3 * pattern, 2e-3 * pattern, -1e-3 * pattern]),  # unit 1: 2,000 times fainter
    ])
    shown = row_scaled(table)
    assert np.allclose(shown[0, 1], pattern / 2) and np.allclose(shown[0, 2], pattern / 200)
    assert np.allclose(shown[0, 0], pattern / 2) and np.allclose(shown[1, 0], pattern / 2)
    assert np.abs(shown[1, 1:]).max() == pytest.approx(1.0)
    assert np.array_equal(row_scaled(np.zeros((1, 3, 2, 2))), np.zeros((1, 3, 2, 2)))
