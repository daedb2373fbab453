"""hessian probe and vizkit.probes.hessian.curvature: known answers (Berkes & Wiskott), Lanczos vs full, outputs, bad input."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from scipy.linalg import null_space
from torch import nn

import vizkit
from vizkit.probes.hessian.curvature import (
    SphereCurvature,
    angle_between,
    full_spectrum,
    lanczos_spectrum,
    unit_objective,
)

RHO = 3.0


class QuadraticUnits(nn.Module):
    """Units h_u(x) = ½xᵀH_u x + f_uᵀx + c_u, read out through a named submodule ``units``."""

    def __init__(self, h: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("h", torch.tensor(h, dtype=torch.float32))
        self.register_buffer("f", torch.tensor(f, dtype=torch.float32))
        self.register_buffer("c", torch.tensor(c, dtype=torch.float32))
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(x.shape[0], -1)
        quad = 0.5 * torch.einsum("bi,uij,bj->bu", z, self.h, z)
        return self.units(quad + z @ self.f.T + self.c)


def quadratic_problem(side: int, n_units: int = 2, seed: int = 0):
    """Random quadratic units with well separated tangent curvatures (so directions are well defined)."""
    rng = np.random.default_rng(seed)
    d = side * side
    hs, fs = [], []
    for _ in range(n_units):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        spectrum = np.sort(rng.uniform(-4.0, 1.0, size=d))
        hs.append((q * spectrum) @ q.T)
        fs.append(rng.normal(size=d))
    h, f = np.stack(hs), np.stack(fs)
    module = QuadraticUnits(h, f, rng.normal(size=n_units))
    model = vizkit.wrap(module, input_shape=(1, side, side), layers=["units"],
                        data_info={"stats": {"mean_norm": RHO}})
    return model, h, f


def berkes_wiskott(h: np.ndarray, f: np.ndarray, rho: float):
    """Independent oracle: the optimum of ½xᵀHx + fᵀx on ‖x‖ = ρ and its tangent curvatures.

    Lagrange: (H − μI)x = −f with μ > λ_max(H) for the global maximum, and ‖x(μ)‖ = ρ (the secular
    equation Σ cᵢ²/(μ − λᵢ)² = ρ², decreasing in μ there, solved by bisection). The curvature along
    the sphere is the restriction of H − μI to the tangent space (basis from scipy's null_space).
    """
    lam, vec = np.linalg.eigh(h)
    coef = vec.T @ f
    lo, hi = lam[-1] + 1e-12, lam[-1] + np.linalg.norm(f) / rho + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum((coef / (mid - lam)) ** 2) > rho**2 else (lo, mid)
    mu = 0.5 * (lo + hi)
    x = vec @ (coef / (mu - lam))
    basis = null_space(x[None])
    values, w = np.linalg.eigh(basis.T @ h @ basis - mu * np.eye(basis.shape[1]))
    return x, values, basis @ w


def expected_choice(values: np.ndarray, vectors: np.ndarray, top: int):
    order = list(np.argsort(np.abs(values))[:top]) + [int(np.argmin(values))]
    return values[order], vectors[:, order].T


def check_against_oracle(res: vizkit.Result, h: np.ndarray, f: np.ndarray, top: int) -> None:
    for u in range(len(h)):
        x, values, vectors = berkes_wiskott(h[u], f[u], RHO)
        want_vals, want_dirs = expected_choice(values, vectors, top)
        got = res.arrays["optimum"][u].reshape(-1)
        assert angle_between(torch.tensor(got[None]), torch.tensor(x[None])).item() < 0.1
        assert np.dot(got, x) > 0  # the maximum, not the minimum on the other side
        np.testing.assert_allclose(res.arrays["eigenvalues"][u], want_vals, rtol=1e-4)
        angles = angle_between(torch.tensor(res.arrays["directions"][u].reshape(top + 1, -1)), torch.tensor(want_dirs))
        assert angles.max().item() < 3.0, angles


@pytest.mark.parametrize("side, method", [(7, "full"), (12, "lanczos")])
def test_quadratic_units_match_berkes_wiskott(fresh_host, side, method):
    """actmax + Newton polishing + curvature reproduce the exact optimum, invariances and eigenvalues."""
    model, h, f = quadratic_problem(side)
    res = vizkit.run_probe("hessian", model, "units", seed=0, method=method, videos=False, top=4,
                           restarts=2, steps=300, krylov=side * side)
    assert res.meta["method"] == method
    assert res.meta["start"]["source"] == "actmax probe"
    check_against_oracle(res, h, f, top=4)


def test_exact_optimum_from_dir_and_the_radial_direction(fresh_host, tmp_path):
    """Given the exact optimum (no refinement), the curvatures are exact and x* itself never appears."""
    model, h, f = quadratic_problem(20, n_units=1, seed=3)  # 400 inputs
    x, values, _ = berkes_wiskott(h[0], f[0], RHO)
    np.savez(tmp_path / "arrays.npz", stimuli=x.reshape(1, 1, 20, 20).astype(np.float32))
    res = vizkit.run_probe("hessian", model, "units", seed=0, from_dir=str(tmp_path), refine=0, videos=False)
    assert res.meta["start"]["source"] == str(tmp_path) and res.meta["newton_steps"] == 0
    check_against_oracle(res, h, f, top=5)
    dirs = res.arrays["directions"][0].reshape(6, -1)
    assert np.abs(dirs @ x / RHO).max() < 1e-5  # all tangent: the radial null direction is excluded
    assert (res.arrays["eigenvalues"] < -1e-3).all()  # and so no zero "invariance" comes from it
    assert res.arrays["spectrum"].shape == (1, 399)
    np.testing.assert_allclose(np.sort(res.arrays["spectrum"][0]), values, rtol=1e-4, atol=1e-5)


def tcnn_784(seed: int = 0):
    """A 784-input Tiled CNN (28×28, random orthonormal filters): smooth energy-model pooling units."""
    from vizkit.models.tcnn import TCNN

    torch.manual_seed(seed)
    model = TCNN(input_shape=[1, 28, 28], maps=4, tile=2)
    with torch.no_grad():
        model.weight.normal_()
        model.orthonormalise_()
    model.data_info = {"name": "patches", "stats": {"mean_norm": 9.0}}
    return model


def test_lanczos_and_full_agree_on_a_784_input_network(fresh_host, tmp_path):
    model = tcnn_784()
    units = f"{model.unit_index('pool', 0, 8, 8)},{model.unit_index('pool', 3, 4, 10)}"
    vizkit.run_probe("actmax", model, "pool", units=units, out=tmp_path / "am", seed=0, restarts=1, steps=200)
    common = dict(units=units, seed=0, from_dir=str(tmp_path / "am"), videos=False)
    full = vizkit.run_probe("hessian", model, "pool", method="full", **common)
    lanczos = vizkit.run_probe("hessian", model, "pool", method="lanczos", **common)
    assert full.meta["method"] == "full" and lanczos.meta["method"] == "lanczos"
    assert lanczos.meta["basis_size"] < 784
    np.testing.assert_allclose(lanczos.arrays["optimum"], full.arrays["optimum"])
    np.testing.assert_allclose(lanczos.arrays["eigenvalues"], full.arrays["eigenvalues"], rtol=1e-4)
    # the invariances are simple eigenvalues: the same directions
    assert (full.arrays["multiplicity"][:, :-1] == 1).all()
    for u in range(2):
        angles = angle_between(torch.tensor(lanczos.arrays["directions"][u, :-1].reshape(5, -1)),
                               torch.tensor(full.arrays["directions"][u, :-1].reshape(5, -1)))
        assert angles.max().item() < 3.0, angles
    # an L2-pooling unit has H ⪰ 0 on its filters' span, so its steepest curvature is -λ: the directions
    # it ignores, a degenerate eigenspace (flagged); any member is right, so check the eigen-equation
    assert (full.arrays["multiplicity"][:, -1] > 100).all() and "degenerate" in " ".join(full.meta["warnings"])
    curv = SphereCurvature.at(unit_objective(model, "pool", torch.tensor(full.arrays["units"])),
                              torch.tensor(full.arrays["optimum"]))
    for res in (full, lanczos):
        v = torch.tensor(res.arrays["directions"][:, -1].reshape(1, 2, -1))
        mu = torch.tensor(res.arrays["eigenvalues"][:, -1], dtype=torch.float32)
        residual = (curv.tangent_times(v)[0] - mu[:, None] * v[0]).norm(dim=1) / mu.abs()
        assert (residual < 1e-3).all(), residual
    assert (full.arrays["eigenvalues"] <= 1e-8).all()  # a maximum: no direction curves upwards


def test_curvature_operator_is_batched_over_units():
    """Unit u's products only see x_u, and equal an independent autograd double-backward product."""
    model = tcnn_784(1)
    units = torch.tensor([model.unit_index("pool", m, 5, 5) for m in range(3)])
    x = torch.randn(3, 1, 28, 28)
    curv = SphereCurvature.at(unit_objective(model, "pool", units), x)
    v = torch.randn(2, 3, 784)
    together = curv.hessian_times(v)
    for i, unit in enumerate(units.tolist()):
        z = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.activations(z, "pool")[0, unit], z, create_graph=True)
        for k in range(2):
            (alone,) = torch.autograd.grad((g.reshape(-1) * v[k, i]).sum(), z, retain_graph=True)
            torch.testing.assert_close(together[k, i], alone.reshape(-1), rtol=1e-4, atol=1e-6)
    spec_full = full_spectrum(curv, top=3)
    spec_lanczos = lanczos_spectrum(curv, top=3, max_basis=120, tol=1e-7)
    torch.testing.assert_close(spec_lanczos.chosen[:, -1], spec_full.chosen[:, -1], rtol=1e-4, atol=0)


def test_outputs_videos_and_files(fresh_host, tmp_path):
    model, _, _ = quadratic_problem(6, n_units=2)
    out = tmp_path / "hess"
    res = vizkit.run_probe("hessian", model, "units", out=out, seed=0, top=2, frames=5, angle=30,
                           restarts=1, steps=100)
    arr = np.load(out / "arrays.npz")
    assert arr["optimum"].shape == (2, 1, 6, 6) and arr["eigenvalues"].shape == (2, 3)
    assert arr["directions"].shape == (2, 3, 1, 6, 6) and arr["path_activations"].shape == (2, 3, 5)
    np.testing.assert_allclose(arr["angles"], np.radians(np.linspace(-30, 30, 5)))
    # the middle frame of every path is the optimum itself
    np.testing.assert_allclose(arr["path_activations"][:, :, 2], np.repeat(arr["activation"][:, None], 3, 1),
                               rtol=1e-5)
    names = {p.name for p in res.files}
    for unit in (0, 1):
        assert f"unit{unit}_directions.png" in names
        for tag in ("inv1", "inv2", "least"):
            assert {f"unit{unit}_{tag}.gif", f"unit{unit}_{tag}.mp4"} <= names
    assert {"spectrum.png", "optimum.png", "index.html", "result.json"} <= names
    frames = imageio.mimread(out / "unit0_least.gif")
    assert len(frames) == 2 * 5 - 2  # there and back
    assert not np.array_equal(frames[0], frames[2])  # the image, marker and printed number change
    meta = json.loads((out / "result.json").read_text())
    assert meta["directions_order"] == ["invariance 1", "invariance 2", "least invariant"]
    assert "unit0_least.gif" in (out / "index.html").read_text()


def test_convnet_input_too_large_for_the_full_matrix_uses_lanczos(fresh_host):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 5, stride=2), nn.Softplus(), nn.Conv2d(6, 8, 3), nn.Softplus())
    model = vizkit.wrap(net, input_shape=(3, 28, 28), layers=["3"])  # 2,352 inputs: past FULL_MAX_DIMS
    res = vizkit.run_probe("hessian", model, "3", units="1", seed=0, top=3, videos=False, restarts=1, steps=30,
                           krylov=24, refine=1)
    assert res.meta["method"] == "lanczos" and res.meta["basis_size"] <= 24
    x = res.arrays["optimum"].reshape(1, -1)
    dirs = res.arrays["directions"].reshape(4, -1)
    assert np.abs(dirs @ x[0]).max() < 1e-4 * np.linalg.norm(x)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, rtol=1e-5)


def test_piecewise_linear_unit_is_flagged(fresh_host):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    model = vizkit.wrap(net, input_shape=(1, 4, 4), layers=["3"])
    res = vizkit.run_probe("hessian", model, "3", units="0", seed=0, videos=False, restarts=1, steps=50)
    assert any("same in every direction" in w for w in res.meta["warnings"])


def test_bad_input_is_one_line_exit_2(fresh_host, sdae_ckpt, tmp_path, cli):
    am = tmp_path / "am"
    res = cli("probe", "--probe", "actmax", sdae_ckpt, "--layer", "h1", "--units", "0:2", "--out", am,
              "-o", "steps", "20", "-o", "restarts", "1")
    assert res.code == 0, res.err
    cases = [
        (["--layer", "h2", "-o", "from_dir", am], "holds optima of layer 'h1'"),
        (["--layer", "h1", "--units", "3", "-o", "from_dir", am], "not unit 3"),
        (["--layer", "h1", "-o", "from_dir", tmp_path / "nowhere"], "no such directory"),
        (["--layer", "h1", "-o", "method", "exact"], "must be one of"),
        (["--layer", "h1", "-o", "top", "70"], "must be <= 64"),
        (["--layer", "h1", "-o", "top", "63", "--units", "0", "-o", "from_dir", am], "tangent space has only 63"),
        (["--layer", "h1", "-o", "position", "1,1"], "applies to convolutional maps"),
        (["--layer", "h1", "-o", "method", "lanczos", "-o", "krylov", "8"], "'krylov' 8 is too small"),
    ]
    for args, message in cases:
        out = tmp_path / "never"
        res = cli("probe", "--probe", "hessian", sdae_ckpt, *args, "--out", out)
        assert res.code == 2, (args, res.err)
        assert message in res.err and len(res.err.strip().splitlines()) == 1, res.err
        assert not out.exists()


def test_from_dir_reuses_actmax_optima_for_a_subset_of_units(fresh_host, sdae_ckpt, tmp_path, cli):
    am = tmp_path / "am"
    assert cli("probe", "--probe", "actmax", sdae_ckpt, "--layer", "h1", "--units", "0:3", "--out", am,
               "-o", "steps", "50", "-o", "restarts", "1").code == 0
    out = tmp_path / "hess"
    res = cli("probe", "--probe", "hessian", sdae_ckpt, "--layer", "h1", "--units", "2,0", "--out", out,
              "-o", "from_dir", am, "-o", "videos", "false", "-o", "refine", "0", "-o", "top", "2")
    assert res.code == 0, res.err
    saved = np.load(am / "arrays.npz")["stimuli"]
    np.testing.assert_array_equal(np.load(out / "arrays.npz")["optimum"], saved[[2, 0]])


# -- degeneracy and the meaning of invariances ----------------


def test_quadratic_units_have_identifiable_invariances(fresh_host, capsys):
    """Distinct curvatures: nothing degenerate, no warning line."""
    model, _, _ = quadratic_problem(6)
    res = vizkit.run_probe("hessian", model, "units", seed=0, videos=False, top=3, restarts=2, steps=300)
    assert res.arrays["identifiable"].all() and (res.arrays["multiplicity"] == 1).all()
    assert (res.arrays["flat_count"] <= 1).all()
    assert res.meta["degeneracy"]["invariances_identifiable"] is True
    assert "not identifiable" not in capsys.readouterr().err
    assert "identifiable (each curvature is distinct)" in res.captions["unit0_directions"]


def test_a_sigmoid_of_a_linear_unit_is_degenerate_and_says_so(fresh_host, capsys):
    """h = sigmoid(w.x + b): the Hessian is rank one (σ''·w wᵀ) and at the optimum x* ∝ w it vanishes on the
    tangent space, so all D − 1 tangent curvatures equal −λ and any 'invariance' is an arbitrary vector of
    that eigenspace: reported in arrays, meta, caption and one stderr line."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 2), nn.Sigmoid())
    model = vizkit.wrap(net, input_shape=(1, 6, 6), layers=["2"], data_info={"stats": {"mean_norm": RHO}})
    res = vizkit.run_probe("hessian", model, "2", seed=0, videos=False, top=3, restarts=1, steps=200)
    d = 36
    assert res.arrays["flat_count"].tolist() == [d - 1, d - 1]
    assert not res.arrays["identifiable"].any()
    assert (res.arrays["multiplicity"] == d - 1).all()
    assert res.meta["degeneracy"]["invariances_identifiable"] is False
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not identifiable" in line]
    assert len(lines) == 1 and "(35 of 35 curvatures" in lines[0]
    assert "NOT identifiable" in res.captions["unit0_directions"]
    assert "35 of 35 curvatures lie within the tolerance" in res.captions["spectrum"]


def test_degeneracy_counts_a_known_spectrum():
    from vizkit.probes.hessian.curvature import degeneracy

    values = torch.tensor([[-3.0, -1.0, -1.0, -1.0, -0.5, -0.2]])
    lam = torch.tensor([1.0])  # flat value −λ = −1
    chosen = torch.tensor([[-0.2, -0.5, -1.0, -3.0]])
    deg = degeneracy(values, chosen, lam)
    assert deg.flat_count.tolist() == [3]
    assert deg.multiplicity.tolist() == [[1, 1, 3, 1]]
    assert deg.identifiable.tolist() == [[True, True, False, True]]


def test_shift_alignment_known_answers():
    """A direction that IS the tangent part of a one-pixel shift scores 1; random directions score
    about sqrt(k / (D − 1))."""
    from vizkit.probes.hessian.alignment import TRANSFORMS, transform_alignment, transformed

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:12, :12]
    x = torch.tensor(np.exp(-((xx - 5.5) ** 2 + (yy - 5.5) ** 2) / 8.0) * np.cos(0.9 * xx), dtype=torch.float64)
    x = x.reshape(1, 1, 12, 12)
    d = (transformed(x, *TRANSFORMS["shift 1 px right"]) - x).reshape(1, -1)
    u = x.reshape(1, -1) / x.norm()
    d = d - (d * u).sum() * u
    d = d / d.norm()
    align, per_direction = transform_alignment(x, d.reshape(1, 1, 1, 12, 12))
    assert align[0, 0] == pytest.approx(1.0, abs=1e-9) and per_direction.shape == (1, len(TRANSFORMS), 1)
    q, _ = np.linalg.qr(rng.normal(size=(144, 5)))
    q = torch.tensor(q.T.copy()).reshape(1, 5, 1, 12, 12)
    chance, _ = transform_alignment(x, q)
    assert (chance < 0.6).all()


def test_scale_alignment_known_answer():
    """Zooming a centred Gaussian blob g(r) = exp(-r²/2σ²) moves it along d/ds g(r/s) = (r²/σ²) g at
    s = 1: that direction scores ≈ 1 for "scale 1.1×" (a finite step, so not exactly) and little for
    a shift, which is odd where the zoom is even (0.17, not 0: a one-pixel step is odd about x = 8, not
    about the blob's centre 7.5)."""
    from vizkit.probes.hessian.alignment import TRANSFORMS, transform_alignment

    yy, xx = np.mgrid[:16, :16]
    r2 = (xx - 7.5) ** 2 + (yy - 7.5) ** 2
    blob = np.exp(-r2 / 8.0)
    x = torch.tensor(blob, dtype=torch.float64).reshape(1, 1, 16, 16)
    zoom = torch.tensor(r2 / 4.0 * blob, dtype=torch.float64).reshape(1, -1)
    u = x.reshape(1, -1) / x.norm()
    zoom = zoom - (zoom * u).sum() * u
    align, _ = transform_alignment(x, (zoom / zoom.norm()).reshape(1, 1, 1, 16, 16))
    names = list(TRANSFORMS)
    assert align[0, names.index("scale 1.1×")] > 0.98
    assert align[0, names.index("shift 1 px right")] < 0.25


def test_energy_unit_of_shifted_filters_is_invariant_to_shift(fresh_host):
    """A pooling unit sqrt(sum_k (w_k.x)^2) over copies of one grating shifted by 0..2 pixels (what a
    TCNN pooling unit computes): its top invariances span most of a one-pixel shift of its optimum."""
    yy, xx = np.mgrid[:12, :12]
    filters = []
    for s in range(3):
        g = np.exp(-((xx - 4.5 - s) ** 2 + (yy - 5.5) ** 2) / 6.0) * np.cos(1.2 * (xx - 4.5 - s))
        filters.append(g / np.linalg.norm(g))

    class Energy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor(np.stack(filters).reshape(3, -1), dtype=torch.float32))
            self.units = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.reshape(x.shape[0], -1) @ self.w.T
            return self.units(torch.sqrt(1e-3 + (s * s).sum(1, keepdim=True)))

    model = vizkit.wrap(Energy(), input_shape=(1, 12, 12), layers=["units"], data_info={"stats": {"mean_norm": RHO}})
    res = vizkit.run_probe("hessian", model, "units", seed=0, videos=False, top=2, restarts=2, steps=300)
    chance = res.meta["chance_alignment"]
    shift_right = res.arrays["alignment"][0, 0]
    assert shift_right > 0.6 > 3 * chance
    assert res.arrays["identifiable"][0, :2].all()
    assert "shift 1 px right" in res.captions["unit0_directions"]


def test_a_repeated_curvature_pair_is_reported_as_such(fresh_host, capsys):
    """½xᵀHx with eigenvalues 1, 0.9, 0.9, ...: at the optimum (the top eigenvector) the two directions
    nearest zero share one curvature (0.9 − 1), so only their span is determined."""
    rng = np.random.default_rng(3)
    d = 25
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    spectrum = np.concatenate([[1.0, 0.9, 0.9], np.linspace(-3.0, 0.5, d - 3)])
    h = ((q * spectrum) @ q.T)[None]
    module = QuadraticUnits(h, np.zeros((1, d)), np.zeros(1))
    model = vizkit.wrap(module, input_shape=(1, 5, 5), layers=["units"], data_info={"stats": {"mean_norm": RHO}})
    res = vizkit.run_probe("hessian", model, "units", seed=0, videos=False, top=3, restarts=2, steps=400)
    assert res.arrays["multiplicity"][0, :2].tolist() == [2, 2] and res.arrays["identifiable"][0, 2]
    assert res.arrays["flat_count"][0] == 1  # the eigenvalue 0 of H: curvature 0 − λ = −λ
    assert "invariances 1, 2 NOT identifiable: one of 2 equal curvatures" in res.captions["unit0_directions"]
    assert "only their span is determined" in capsys.readouterr().err
