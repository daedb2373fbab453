"""RBM mathematics against answers computed independently: enumeration, quadrature, expectations."""

import itertools
import math

import pytest
import torch

from vizkit.errors import UsageError
from vizkit.models.rbm import (
    GradientEstimator,
    RBMParams,
    ais_log_partition,
    base_rate_bias,
    gibbs_generate,
    log_likelihood_exact,
    log_partition_exact,
)


def _binary_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _random_rbm(d: int, h: int, scale: float = 1.0, seed: int = 0, visible: str = "binary") -> RBMParams:
    gen = torch.Generator().manual_seed(seed)
    return RBMParams(torch.randn(h, d, generator=gen, dtype=torch.float64) * scale,
                     torch.randn(h, generator=gen, dtype=torch.float64) * scale,
                     torch.randn(d, generator=gen, dtype=torch.float64) * scale, visible)


def _brute_log_z(rbm: RBMParams) -> tuple[float, torch.Tensor]:
    """log Z and log p(v) for every v, by summing exp(-E(v, h)) over all (v, h) pairs."""
    v, h = _binary_states(rbm.n_visible), _binary_states(rbm.n_hidden)
    vv = v.repeat_interleave(len(h), 0)
    hh = h.repeat(len(v), 1)
    neg_energy = -rbm.energy(vv, hh).reshape(len(v), len(h))
    log_z = float(torch.logsumexp(neg_energy.reshape(-1), 0))
    return log_z, torch.logsumexp(neg_energy, 1) - log_z


@pytest.mark.parametrize("d,h", [(10, 8), (7, 3), (4, 1)])
def test_exact_log_likelihood_equals_brute_force_enumeration(d, h):
    rbm = _random_rbm(d, h, seed=d + h)
    log_z, log_p = _brute_log_z(rbm)
    assert log_partition_exact(rbm) == pytest.approx(log_z, abs=1e-6)
    v = _binary_states(d)
    assert torch.allclose(log_likelihood_exact(rbm, v), log_p, atol=1e-6, rtol=0)
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-9)


def test_float32_path_agrees_with_float64():
    rbm = _random_rbm(30, 12, scale=0.5, seed=3)
    assert log_partition_exact(rbm, dtype=torch.float32) == pytest.approx(log_partition_exact(rbm), abs=1e-3)


@pytest.mark.parametrize("scale", [0.05, 3.0, 12.0])
def test_float32_factor_sum_holds_where_exponentials_would_overflow(scale):
    """The float32 path multiplies e^{a_lo} e^{a_hi}; at scale 12 some pixels' activations pass 80
    (e^a overflows float32) and must still come out right, by the softplus route."""
    rbm = _random_rbm(50, 14, scale=scale, seed=7)
    w = rbm.weight.double()
    largest = float((w.clamp(min=0).sum(0) + rbm.visible_bias.double()).max())
    assert (largest > 80) == (scale == 12.0)  # the case is the one named
    exact = log_partition_exact(rbm, dtype=torch.float64)
    assert log_partition_exact(rbm, dtype=torch.float32) == pytest.approx(exact, rel=1e-6, abs=1e-3)


def test_gaussian_visible_log_z_matches_quadrature():
    """∫ Σ_h exp(-E(v, h)) dv on a fine grid for two Gaussian visible units."""
    rbm = _random_rbm(2, 3, scale=0.7, seed=5, visible="gaussian")
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    v = torch.cartesian_prod(grid, grid)
    log_integrand = -rbm.free_energy(v)
    quad = float(torch.logsumexp(log_integrand, 0)) + 2 * math.log(step)
    assert log_partition_exact(rbm) == pytest.approx(quad, abs=1e-6)


def test_free_energy_marginalises_hidden_units():
    for visible in ("binary", "gaussian"):
        rbm = _random_rbm(5, 4, seed=9, visible=visible)
        v = torch.randn(6, 5, dtype=torch.float64) if visible == "gaussian" else _binary_states(5)[:6]
        h = _binary_states(4)
        energies = torch.stack([rbm.energy(v, hh.expand(len(v), -1)) for hh in h], 1)
        assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-energies, 1), atol=1e-10)


def test_exact_log_likelihood_refuses_more_than_25_hidden_units():
    rbm = RBMParams(torch.zeros(26, 4), torch.zeros(26), torch.zeros(4))
    with pytest.raises(UsageError, match="at most 25 hidden units.*AIS|at most 25 hidden units.*annealed"):
        log_partition_exact(rbm)


@pytest.mark.parametrize("visible", ["binary", "gaussian"])
def test_ais_is_within_half_a_nat_of_the_exact_log_z(visible):
    gen = torch.Generator().manual_seed(1)
    d, h = (64, 20) if visible == "binary" else (16, 20)
    rbm = RBMParams(torch.randn(h, d, generator=gen, dtype=torch.float64) * (0.3 if visible == "binary" else 0.1),
                    torch.randn(h, generator=gen, dtype=torch.float64) * 0.5,
                    torch.randn(d, generator=gen, dtype=torch.float64) * 0.5, visible)
    exact = log_partition_exact(rbm)
    data = (torch.rand(500, d, generator=gen) < torch.sigmoid(rbm.visible_bias)).double()
    est = ais_log_partition(rbm, chains=100, betas=1000, base_visible_bias=base_rate_bias(data),
                            generator=torch.Generator().manual_seed(0))
    assert abs(est.log_z - exact) < 0.5
    assert est.std_err < 0.5 and est.chains == 100


def _enumerated_cd1_statistics(rbm: RBMParams, v0: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """E[p(h|v1) v1ᵀ], E[p(h|v1)], E[v1] with h0 ~ p(h|v0), v1 ~ p(v|h0), by enumeration."""
    hs, vs = _binary_states(rbm.n_hidden), _binary_states(rbm.n_visible)
    ph0 = rbm.hidden_probs(v0)
    p_h0 = torch.prod(torch.where(hs == 1, ph0, 1 - ph0), 1)  # [Nh]
    pv = rbm.visible_mean(hs)  # [Nh, D]
    p_v1_given_h0 = torch.prod(torch.where(vs.unsqueeze(0) == 1, pv.unsqueeze(1), 1 - pv.unsqueeze(1)), 2)
    p_v1 = p_h0 @ p_v1_given_h0  # [Nv]
    ph1 = rbm.hidden_probs(vs)
    return (ph1 * p_v1.unsqueeze(1)).t() @ vs, p_v1 @ ph1, p_v1 @ vs


def test_cd1_gradient_has_the_enumerated_expectation():
    rbm = _random_rbm(4, 3, seed=2).to(dtype=torch.float32)
    v0 = torch.tensor([1.0, 0.0, 1.0, 1.0])
    n = 40000
    est = GradientEstimator("cd", n_visible=4, n_hidden=3, batch_size=n, k=1)
    grads = RBMParams(torch.empty(3, 4), torch.empty(3), torch.empty(4))
    torch.manual_seed(0)
    est.gradients(rbm, v0.expand(n, -1), grads)
    r64 = rbm.to(dtype=torch.float64)
    neg_w, neg_b, neg_c = _enumerated_cd1_statistics(r64, v0.double())
    pos_h = r64.hidden_probs(v0.double())
    assert torch.allclose(grads.weight.double(), -(torch.outer(pos_h, v0.double()) - neg_w), atol=0.015)
    assert torch.allclose(grads.hidden_bias.double(), -(pos_h - neg_b), atol=0.015)
    assert torch.allclose(grads.visible_bias.double(), -(v0.double() - neg_c), atol=0.015)


def _analytic(rbm: RBMParams, negative_rbm: RBMParams, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """-(positive - negative statistics): what the descent direction must be."""
    ph, nh = rbm.hidden_probs(pos), negative_rbm.hidden_probs(neg)
    return (-(ph.t() @ pos / len(pos) - nh.t() @ neg / len(neg)),
            -(ph.mean(0) - nh.mean(0)), -(pos.mean(0) - neg.mean(0)))


@pytest.mark.parametrize("method", ["cd", "pcd", "fpcd"])
@pytest.mark.parametrize("n", [8, 5])
def test_update_equals_positive_minus_negative_statistics(method, n):
    """On a fixed batch, the gradient is the analytic statistics of that batch and of the negative
    particles the estimator used (CD: v_k after k steps; PCD/FPCD: the chains before they advance)."""
    torch.manual_seed(3)
    rbm = _random_rbm(6, 5, scale=0.5, seed=4).to(dtype=torch.float32)
    batch = (torch.rand(n, 6) < 0.5).float()
    est = GradientEstimator(method, n_visible=6, n_hidden=5, batch_size=8, k=3)
    grads = RBMParams(torch.empty(5, 6), torch.empty(5), torch.empty(6))
    chains = (torch.rand(8, 6) < 0.5).float()
    est.start_chains(chains)
    negative_rbm = rbm
    if method == "fpcd":
        est.fast.weight.normal_()
        est.fast.hidden_bias.normal_()
        negative_rbm = RBMParams(rbm.weight + est.fast.weight, rbm.hidden_bias + est.fast.hidden_bias,
                                 rbm.visible_bias + est.fast.visible_bias)
    est.gradients(rbm, batch, grads)
    if method == "cd":
        neg = est.v[8 : 8 + n].clone()  # v_k of the chains started at the data
        assert set(neg.unique().tolist()) <= {0.0, 1.0}
    else:
        neg = chains
        assert not torch.equal(est.chains, chains)  # the particles took their Gibbs step
    want_w, want_b, want_c = _analytic(rbm, negative_rbm, batch, neg)
    assert torch.allclose(grads.weight, want_w, atol=1e-6)
    assert torch.allclose(grads.hidden_bias, want_b, atol=1e-6)
    assert torch.allclose(grads.visible_bias, want_c, atol=1e-6)


def _tensors(p: RBMParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return p.weight, p.hidden_bias, p.visible_bias


@pytest.mark.parametrize("visible", ["binary", "gaussian"])
def test_mean_field_cd_is_the_deterministic_mean_field_chain(visible):
    """MF CD-2: v1 = E[v | p0], p1 = p(h | v1), v2 = E[v | p1], p2 = p(h | v2); the update is the
    statistics of the data minus those of (v2, p2), identical on every call (no sampling)."""
    rbm = _random_rbm(6, 5, scale=0.5, seed=9, visible=visible).to(dtype=torch.float32)
    batch = (torch.rand(7, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    est = GradientEstimator("mfcd", n_visible=6, n_hidden=5, batch_size=8, k=2, visible=visible)
    first, again = (RBMParams(torch.empty(5, 6), torch.empty(5), torch.empty(6)) for _ in range(2))
    est.gradients(rbm, batch, first)
    est.gradients(rbm, batch, again)
    v = batch
    for _ in range(2):
        v = rbm.visible_mean(rbm.hidden_probs(v))
    want_w, want_b, want_c = _analytic(rbm, rbm, batch, v)
    for got, same, want in zip(_tensors(first), _tensors(again), (want_w, want_b, want_c), strict=True):
        assert torch.equal(got, same)
        assert torch.allclose(got, want, atol=1e-6)


def test_mean_field_cd_raises_the_exact_likelihood_of_its_data():
    """A known answer for the trainer as a whole: on 8-pixel data drawn from a random RBM, 300
    MF CD updates from small weights raise the data's exact log-likelihood well above the start."""
    teacher = _random_rbm(8, 3, scale=2.0, seed=12).to(dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    data = gibbs_generate([teacher], 1, chains=400, samples=1, every=1, burn_in=200, probabilities=False,
                          generator=gen)
    data = data.reshape(-1, 8)
    student = RBMParams(torch.randn(3, 8, generator=gen) * 0.01, torch.zeros(3), torch.zeros(8))
    before = float(log_likelihood_exact(student, data).mean())
    est = GradientEstimator("mfcd", n_visible=8, n_hidden=3, batch_size=100, k=1)
    grads = RBMParams(torch.empty(3, 8), torch.empty(3), torch.empty(8))
    for step in range(300):
        est.gradients(student, data[(step % 4) * 100:(step % 4 + 1) * 100], grads)
        for param, grad in zip(_tensors(student), _tensors(grads), strict=True):
            param.sub_(0.1 * grad)
    after = float(log_likelihood_exact(student, data).mean())
    assert after > before + 0.5, (before, after)


def test_fpcd_fast_weights_decay_and_learn():
    est = GradientEstimator("fpcd", n_visible=3, n_hidden=2, batch_size=4, fast_decay=0.95)
    est.fast.weight.fill_(1.0)
    grads = RBMParams(torch.full((2, 3), 2.0), torch.zeros(2), torch.zeros(3))
    est.after_update(grads, fast_lr=0.1)
    assert torch.allclose(est.fast.weight, torch.full((2, 3), 0.95 - 0.2))


def _exact_clamped_visible_mean(rbm: RBMParams, unit: int) -> torch.Tensor:
    """E[v | h_unit = 1] for an RBM, by enumerating v."""
    vs = _binary_states(rbm.n_visible)
    x = rbm.hidden_logits(vs)
    log_w = vs @ rbm.visible_bias + x[:, unit] + torch.nn.functional.softplus(x).sum(1) \
        - torch.nn.functional.softplus(x[:, unit])
    return torch.softmax(log_w, 0) @ vs


def test_clamped_gibbs_mean_converges_to_the_exact_conditional_mean_in_an_rbm():
    rbm = _random_rbm(6, 4, seed=11).to(dtype=torch.float32)
    units = torch.tensor([0, 2, 3])
    out = gibbs_generate([rbm], 1, chains=400, samples=20, every=3, burn_in=30, probabilities=True,
                         generator=torch.Generator().manual_seed(0), clamp=units)
    assert out.shape == (3 * 400, 20, 6)
    mean = out.reshape(3, -1, 6).double().mean(1)
    for row, unit in enumerate(units.tolist()):
        assert torch.allclose(mean[row], _exact_clamped_visible_mean(rbm.to(dtype=torch.float64), unit), atol=0.02)


def test_clamped_gibbs_in_a_dbn_converges_to_the_exact_conditional_mean():
    """Top RBM (h1, h2) with h2_i = 1, then the directed p(x | h1): E[x | h2_i = 1] by enumeration."""
    bottom = _random_rbm(5, 4, seed=12)
    top = _random_rbm(4, 3, seed=13)
    units = torch.tensor([1, 2])
    out = gibbs_generate([bottom.to(dtype=torch.float32), top.to(dtype=torch.float32)], 2, chains=400,
                         samples=20, every=3, burn_in=30, probabilities=True,
                         generator=torch.Generator().manual_seed(1), clamp=units)
    mean = out.reshape(2, -1, 5).double().mean(1)
    h1 = _binary_states(4)
    for row, unit in enumerate(units.tolist()):
        x = top.hidden_logits(h1)
        log_w = h1 @ top.visible_bias + x[:, unit] + torch.nn.functional.softplus(x).sum(1) \
            - torch.nn.functional.softplus(x[:, unit])
        exact = torch.softmax(log_w, 0) @ bottom.visible_mean(h1)
        assert torch.allclose(mean[row], exact, atol=0.02)


def test_free_running_chains_sample_the_model_distribution():
    """Histogram of many chains' states against p(v) from exact enumeration."""
    rbm = _random_rbm(4, 3, seed=21).to(dtype=torch.float32)
    out = gibbs_generate([rbm], 1, chains=4000, samples=5, every=4, burn_in=40, probabilities=False,
                         generator=torch.Generator().manual_seed(2))
    codes = (out.reshape(-1, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=16).double() / len(codes)
    _, log_p = _brute_log_z(rbm.to(dtype=torch.float64))
    assert torch.allclose(freq, log_p.exp(), atol=0.015)
