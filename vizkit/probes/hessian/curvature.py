"""Curvature of unit activations on the sphere ‖x‖ = ρ, matrix-free (Berkes & Wiskott; Le et al.).

At a point x on the sphere with gradient g = ∇h(x) and Hessian H = ∇²h(x), the second derivative of
h along the geodesic through x in the unit tangent direction v is vᵀ(H − λI)v with λ = gᵀx/ρ²
(the −λ term is the sphere bending away from the tangent plane). The operator

    M = P (H − λ I) P,    P = I − x xᵀ/ρ²,

restricted to the tangent space therefore holds the curvature in every direction; the radial
direction x is in M's null space but is *not* a direction along the sphere, so every routine here
works in the tangent space only and it can never show up as an "invariance".

Everything is batched over units: ``x`` is [U, *input_shape], one point per unit, and products are
taken for all units in one pass. Hessian-vector products come from ``torch.func``: the gradient is
computed once with ``vjp(grad(f), x)``, whose pull-back then gives H·v for any v by one backward
pass through the stored double-backward graph (H is symmetric, so vᵀH = (Hv)ᵀ). For the many
products at one point that an eigensolver needs this is several times faster than forward-over-
reverse ``jvp(grad(f))``, which re-runs the forward and backward pass for every product; probe
vectors are batched with ``vmap``.

Eigen-decompositions: ``full`` builds H column by column from D products and diagonalises the
(D−1)×(D−1) tangent matrix in float64 (exact, O(D³): the choice up to a couple of thousand inputs);
``lanczos`` runs a block Lanczos iteration on products only (a block Krylov basis kept orthogonal
to x and to itself, with Rayleigh–Ritz on the basis), which never forms H and so works for
3×224×224 inputs where H would have 2·10¹⁰ entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import grad, vjp, vmap

from vizkit import paired_unit_activations
from vizkit.optim import Progress
from vizkit.sphere import project_to_sphere, tangent_project

#: Inputs up to this many dimensions get the exact full-matrix eigendecomposition under ``auto``;
#: ``eigh`` is O(D³), so above this Lanczos on products is the cheaper choice (docs/plugins/hessian.md).
FULL_MAX_DIMS = 2048
#: Probe vectors × input dimensions per batched product pass (bounds the memory of vmap chunks).
PRODUCT_BUDGET = 1 << 23
#: Bytes of float64 Hessians held at once by the full method (more units are done in groups).
FULL_MATRIX_BUDGET = 512 << 20


Objective = Callable[[torch.Tensor], torch.Tensor]
"""A batched activation: X [U, *input_shape] → [U], row u feeding only its own unit (no batch mixing)."""


def unit_objective(
    model: Any, layer: str, units: torch.Tensor, position: tuple[int, int] | None = None
) -> Objective:
    """The activation of ``units[u]`` at input row u (conv maps: channel mean, or one ``position``)."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return paired_unit_activations(model, x, layer, units, position)

    return f


@dataclass
class SphereCurvature:
    """Gradient, Hessian products and tangent curvature of U units at U points on their spheres.

    Build with :meth:`at`. ``x`` and ``gradient`` are flattened to [U, D]; ``lam`` [U] is gᵀx/ρ²
    (at a constrained maximum g = λx, and λ is the Lagrange multiplier of Berkes & Wiskott).
    """

    x: torch.Tensor
    gradient: torch.Tensor
    lam: torch.Tensor
    input_shape: tuple[int, ...]
    _pullback: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] = field(repr=False)
    products: int = 0

    @classmethod
    def at(cls, objective: Objective, x: torch.Tensor) -> SphereCurvature:
        """Evaluate the gradient at ``x`` [U, *input_shape] and keep the graph for H·v products.

        Σ_u h_u(x_u) has gradient row u = ∇h_u(x_u) because rows do not mix, so one pass serves
        every unit.
        """
        with torch.no_grad():
            g, pullback = vjp(grad(lambda z: objective(z).sum()), x.detach())
        flat_x = x.detach().reshape(x.shape[0], -1)
        flat_g = g.reshape(x.shape[0], -1)
        lam = (flat_g * flat_x).sum(1) / (flat_x * flat_x).sum(1)
        return cls(flat_x, flat_g, lam, tuple(x.shape[1:]), pullback)

    @property
    def n_units(self) -> int:
        return self.x.shape[0]

    @property
    def dims(self) -> int:
        return self.x.shape[1]

    def tangent_gradient(self) -> torch.Tensor:
        """P g [U, D]: zero at a critical point of h on the sphere."""
        return tangent_project(self.gradient, self.x)

    def hessian_times(self, v: torch.Tensor) -> torch.Tensor:
        """H_u v_{k,u} for probe vectors ``v`` [K, U, D] → [K, U, D], K vectors per unit batched."""
        k = v.shape[0]
        chunk = max(1, PRODUCT_BUDGET // max(1, self.n_units * self.dims))
        shaped = v.reshape(k, self.n_units, *self.input_shape).to(self.x.dtype)
        with torch.no_grad():
            if k == 1:
                out = self._pullback(shaped[0])[0].unsqueeze(0)
            else:
                out = vmap(lambda w: self._pullback(w)[0], chunk_size=min(chunk, k))(shaped)
        self.products += k * self.n_units
        return out.reshape(k, self.n_units, self.dims)

    def tangent_times(self, v: torch.Tensor) -> torch.Tensor:
        """M v = P(H − λI)P v for tangent probe vectors ``v`` [K, U, D] (→ [K, U, D])."""
        pv = self._project(v)
        out = self.hessian_times(pv) - self.lam.to(v.dtype)[None, :, None] * pv
        return self._project(out)

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        k = v.shape[0]
        x = self.x.to(v.dtype).unsqueeze(0).expand(k, -1, -1).reshape(-1, self.dims)
        return tangent_project(v.reshape(-1, self.dims), x).reshape(v.shape)

    def hessian_matrix(self, progress: Progress | None = None, desc: str = "Hessian columns") -> torch.Tensor:
        """H [U, D, D] in float64 from D batched products (symmetrised), in chunks of columns that
        ``progress`` is shown (D products per unit: minutes for a few thousand inputs)."""
        d = self.dims
        eye = torch.eye(d, dtype=self.x.dtype, device=self.x.device)
        chunk = max(1, PRODUCT_BUDGET // max(1, self.n_units * d))
        starts = range(0, d, chunk)
        cols = torch.cat([self.hessian_times(eye[s:s + chunk].unsqueeze(1).expand(-1, self.n_units, d))
                          for s in _steps(starts, progress, desc)])  # [D(col), U, D(row)]
        h = cols.permute(1, 2, 0).double()
        return 0.5 * (h + h.transpose(1, 2))


@dataclass
class Spectrum:
    """The tangent curvature spectrum of U units and the directions the probe shows.

    ``values`` [U, n]: every eigenvalue found, ascending (all D−1 of them for the full method, the
    Ritz values of the Krylov basis for Lanczos: exact at the ends, approximate inside).
    ``chosen`` [U, top+1]: the ``top`` eigenvalues nearest zero (invariances, nearest first) and then
    the most negative one (least invariant); ``directions`` [U, top+1, D] their unit eigenvectors,
    orthogonal to x, each with its largest-magnitude entry positive; ``residuals`` [U, top+1] are
    ‖Mv − μv‖ (rounding level for the full method).
    """

    values: torch.Tensor
    chosen: torch.Tensor
    directions: torch.Tensor
    residuals: torch.Tensor
    complete: bool
    method: str
    basis_size: int


def tangent_spectrum(
    curv: SphereCurvature, *, top: int, method: str = "auto", max_basis: int = 200, block: int = 2,
    tol: float = 1e-5, generator: torch.Generator | None = None, progress: Progress | None = None,
) -> Spectrum:
    """The tangent eigen-decomposition by ``method`` ``full``, ``lanczos`` or ``auto`` (by input size);
    ``progress`` (:data:`vizkit.optim.Progress`) is shown the products it takes."""
    if resolve_method(method, curv.dims) == "full":
        return full_spectrum(curv, top=top, progress=progress)
    return lanczos_spectrum(curv, top=top, max_basis=max_basis, block=block, tol=tol, generator=generator,
                            progress=progress)


def resolve_method(method: str, dims: int) -> str:
    """``auto`` → ``full`` up to :data:`FULL_MAX_DIMS` input dimensions, else ``lanczos``."""
    if method == "auto":
        return "full" if dims <= FULL_MAX_DIMS else "lanczos"
    if method not in ("full", "lanczos"):
        raise ValueError(f"unknown eigen method {method!r}")
    return method


def tangent_basis(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal bases [U, D, D−1] of the tangent spaces at ``x`` [U, D] (Householder reflections).

    The reflection R = I − 2wwᵀ/‖w‖² with w = x̂ + sign(x̂₁)e₁ maps x̂ to ∓e₁, so its other D−1
    columns span exactly the vectors orthogonal to x.
    """
    xh = x.double() / x.double().norm(dim=1, keepdim=True)
    w = xh.clone()
    w[:, 0] += torch.where(xh[:, 0] >= 0, 1.0, -1.0).to(xh.dtype)
    eye = torch.eye(x.shape[1], dtype=xh.dtype, device=x.device)
    refl = eye - 2.0 * w.unsqueeze(2) * w.unsqueeze(1) / (w * w).sum(1)[:, None, None]
    return refl[:, :, 1:]


def full_spectrum(curv: SphereCurvature, *, top: int, progress: Progress | None = None) -> Spectrum:
    """All tangent eigenpairs from the explicit Hessian: exact, for inputs of modest size.

    H is built from D products, expressed in a basis of the tangent space (so x itself, the
    null direction of M, is not even representable) and diagonalised in float64.
    """
    d, n = curv.dims, curv.n_units
    per_group = max(1, FULL_MATRIX_BUDGET // (3 * 8 * d * d))
    groups = range(0, n, per_group)
    parts = []
    for group, start in enumerate(groups):
        rows = slice(start, start + per_group)
        part = SphereCurvature(curv.x[rows], curv.gradient[rows], curv.lam[rows], curv.input_shape,
                               _slice_pullback(curv, start, per_group))
        h = part.hessian_matrix(progress, "Hessian columns" + (f", units {group + 1}/{len(groups)}"
                                                               if len(groups) > 1 else ""))
        curv.products += part.products
        basis = tangent_basis(part.x)
        t = basis.transpose(1, 2) @ h @ basis
        mu, w = torch.linalg.eigh(0.5 * (t + t.transpose(1, 2)))
        mu = mu - part.lam.double()[:, None]
        idx = _wanted(mu, top)
        vecs = basis @ w.gather(2, idx.unsqueeze(1).expand(-1, w.shape[1], -1))  # [U, D, top+1]
        parts.append((mu, mu.gather(1, idx), vecs.transpose(1, 2)))
    values, chosen, vectors = (torch.cat(items) for items in zip(*parts))
    return Spectrum(values, chosen, _canonical_sign(vectors).to(curv.x.dtype), torch.zeros_like(chosen),
                    True, "full", d - 1)


def _slice_pullback(curv: SphereCurvature, start: int, size: int) -> Callable[..., tuple[torch.Tensor, ...]]:
    """H·v for units ``start:start+size`` through the batched pull-back (other rows get zeros)."""
    if start == 0 and size >= curv.n_units:
        return curv._pullback

    def pullback(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        full = v.new_zeros((curv.n_units, *v.shape[1:]))
        full[start:start + v.shape[0]] = v
        return (curv._pullback(full)[0][start:start + v.shape[0]],)

    return pullback


def lanczos_spectrum(
    curv: SphereCurvature,
    *,
    top: int,
    max_basis: int = 200,
    block: int = 2,
    tol: float = 1e-5,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> Spectrum:
    """The wanted tangent eigenpairs by block Lanczos on H·v products (H is never formed).

    Converges the ``top`` Ritz pairs with the smallest |μ| (at a maximum every μ ≤ 0, so these are
    the upper end of the spectrum) and the most negative one, until each residual ‖Mv − μv‖ ≤
    ``tol``·max|μ| or the basis reaches ``max_basis`` vectors. Each step applies M to a block of
    ``block`` vectors in one batched product, orthogonalises the result against x and the whole
    basis twice (CGS2: no spurious copies of converged values), and does Rayleigh–Ritz on the basis.
    A block of b vectors resolves eigenvalues of multiplicity up to b (e.g. the horizontal and
    vertical translation of a round receptive field); larger blocks batch more products per pass
    but reach a lower Krylov degree for the same number of products, which matters because the
    invariances sit in a crowded end of the spectrum (hence the default b = 2: pairs resolved, the
    degree kept high; docs/plugins/hessian.md).

    ``progress`` is shown the block steps out of the most ``max_basis`` allows; the bar stops
    short when every wanted pair converges first.
    """
    u, d = curv.n_units, curv.dims
    b = max(1, min(block, top + 1, d - 1))
    max_basis = max(b, min(max_basis, d - 1) // b * b)
    check_every = max(1, 8 // b)  # Rayleigh–Ritz every ~8 new vectors: small eighs are not free
    dtype, device = curv.x.dtype, curv.x.device
    basis = torch.zeros(u, max_basis, d, dtype=dtype, device=device)  # rows: orthonormal tangent vectors
    images = torch.zeros_like(basis)  # M applied to them
    t = torch.zeros(u, max_basis, max_basis, dtype=torch.float64, device=device)  # T = Vᵀ M V
    start = curv._project(torch.randn(b, u, d, generator=generator, dtype=dtype, device=device))
    q = _orthonormalise(start, basis[:, :0], curv._project, generator)
    m = 0
    for steps in _steps(range(1, max_basis // b + 1), progress, "Lanczos steps"):
        mq = curv.tangent_times(q)  # [b, U, D]
        basis[:, m:m + b], images[:, m:m + b] = q.transpose(0, 1), mq.transpose(0, 1)
        m += b
        cross = torch.bmm(basis[:, :m], mq.permute(1, 2, 0)).double()  # [U, m, b]
        t[:, :m, m - b:m] = cross
        t[:, m - b:m, :m] = cross.transpose(1, 2)
        last = m + b > max_basis
        if steps % check_every == 0 or last:
            theta, s = torch.linalg.eigh(0.5 * (t[:, :m, :m] + t[:, :m, :m].transpose(1, 2)))
            idx = _wanted(theta, top)
            coef = s.gather(2, idx.unsqueeze(1).expand(-1, m, -1)).to(dtype)  # [U, m, top+1]
            vectors = torch.bmm(coef.transpose(1, 2), basis[:, :m])  # [U, top+1, D]
            residuals = (torch.bmm(coef.transpose(1, 2), images[:, :m]).double()
                         - theta.gather(1, idx).unsqueeze(2) * vectors.double()).norm(dim=2)
            if last or bool((residuals <= tol * theta.abs().amax(dim=1, keepdim=True)).all()):
                break
        q = _orthonormalise(curv._project(mq), basis[:, :m], curv._project, generator)
    vectors = vectors / vectors.norm(dim=2, keepdim=True)
    return Spectrum(theta, theta.gather(1, idx), _canonical_sign(vectors), residuals, False, "lanczos", m)


def _orthonormalise(
    w: torch.Tensor, basis: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Orthonormalise the block ``w`` [b, U, D] against ``basis`` [U, m, D] and itself (CGS2).

    A column that vanishes (the Krylov space of that unit is exhausted, as for a piecewise-linear
    network whose Hessian is zero) is replaced by a fresh random tangent vector, so the search goes
    on into the part of the spectrum the start block did not reach.
    """
    w = w.permute(1, 2, 0)  # [U, D, b]
    for _attempt in range(3):
        scale = w.norm(dim=1)  # [U, b]
        for _ in range(2):
            if basis.shape[1]:
                w = w - basis.transpose(1, 2) @ (basis @ w)
            # what is left may be tiny, and then its rounding error along x is not: re-project
            w = project(w.permute(2, 0, 1)).permute(1, 2, 0)
        q, r = torch.linalg.qr(w)
        lost = torch.diagonal(r, dim1=1, dim2=2).abs() <= 1e-4 * scale.clamp_min(torch.finfo(w.dtype).tiny)
        if not bool(lost.any()):
            break
        fresh = project(torch.randn(w.permute(2, 0, 1).shape, generator=generator, dtype=w.dtype,
                                    device=w.device)).permute(1, 2, 0)
        w = torch.where(lost.unsqueeze(1), fresh, q)
    return q.permute(2, 0, 1).contiguous()


def _wanted(values: torch.Tensor, top: int) -> torch.Tensor:
    """Indices [U, top+1] of the ``top`` values nearest zero (nearest first), then of the most negative.

    The most negative one is never also listed as an invariance (possible away from a maximum,
    where positive curvatures can lie farther from zero).
    """
    least = values.argmin(dim=1, keepdim=True)
    distance = values.abs().scatter(1, least, float("inf"))
    near = distance.argsort(dim=1)[:, :top]
    return torch.cat([near, least], dim=1)


def _canonical_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each eigenvector [..., D] so its largest-magnitude entry is positive (reproducible signs)."""
    pivot = vectors.abs().argmax(dim=-1, keepdim=True)
    return torch.where(vectors.gather(-1, pivot) < 0, -vectors, vectors)


def refine_maximum(
    objective: Objective, x: torch.Tensor, *, steps: int = 3,
    cg_iters: int = 30, trust: float = 0.1, progress: Progress | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Polish optima ``x`` [U, *shape] on their spheres by Riemannian Newton–CG steps (batched).

    Activation maximisation stops when the activation stalls, which leaves x* accurate to roughly the
    square root of its tolerance; the curvature depends on x* to first order (through λ = gᵀx*/ρ²),
    so a few Newton steps, which converge quadratically near a non-degenerate maximum, make the
    eigenvalues exact to the float precision of the model. Each step solves −M η = P g by truncated
    conjugate gradients (stopping at negative curvature, i.e. away from a maximum), caps ‖η‖ at
    ``trust``·ρ and retracts to the sphere. A step is kept only if the activation rises, or, once
    the activation is flat to float precision, if it stays within rounding of the old value and
    shrinks the tangent gradient; otherwise it is halved (up to 6 times). Converged units stop.
    ``progress`` is shown the Newton steps (each up to ``cg_iters`` products: slow for big inputs).
    """
    rho = x.reshape(x.shape[0], -1).norm(dim=1)
    info: dict[str, Any] = {"newton_steps": 0, "products": 0}
    value, slope, gnorm = _value_and_slope(objective, x)
    for _ in _steps(range(steps), progress, "Newton steps"):
        active = slope > 1e-6 * gnorm
        if not bool(active.any()):
            break
        curv = SphereCurvature.at(objective, x)
        eta = _truncated_cg(curv, curv.tangent_gradient(), cg_iters) * active[:, None]
        eta = eta * (trust * rho / eta.norm(dim=1).clamp_min(1e-30)).clamp(max=1.0)[:, None]
        noise = 10 * torch.finfo(x.dtype).eps * (value.abs() + rho * gnorm)
        accepted = ~active
        for _ in range(7):
            trial = project_to_sphere((curv.x + eta).reshape(x.shape), rho)
            t_value, t_slope, t_gnorm = _value_and_slope(objective, trial)
            ok = ~accepted & ((t_value > value + noise) | ((t_value >= value - noise) & (t_slope < slope)))
            x = torch.where(ok.reshape(-1, *([1] * (x.dim() - 1))), trial, x)
            value, slope, gnorm = (torch.where(ok, new, old) for new, old in
                                   ((t_value, value), (t_slope, slope), (t_gnorm, gnorm)))
            accepted |= ok
            if bool(accepted.all()):
                break
            eta = eta * 0.5
        info["products"] += curv.products
        info["newton_steps"] += 1
    info["tangent_gradient"] = (slope / gnorm.clamp_min(1e-30)).tolist()
    return x, info


def _steps(items: range, progress: Progress | None, desc: str) -> Iterable[int]:
    """``items`` through ``progress`` when one is given, with their count as the total."""
    return items if progress is None else progress(items, desc, len(items))


def _value_and_slope(objective: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations [U], tangent-gradient norms ‖Pg‖ [U] and gradient norms ‖g‖ [U] in one pass."""

    def f(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = objective(z)
        return values.sum(), values

    with torch.no_grad():
        g, values = grad(f, has_aux=True)(x.detach())
    flat_g = g.reshape(x.shape[0], -1)
    return values, tangent_project(flat_g, x.reshape(x.shape[0], -1)).norm(dim=1), flat_g.norm(dim=1)


def _truncated_cg(curv: SphereCurvature, r: torch.Tensor, iters: int) -> torch.Tensor:
    """Approximately solve (−M) η = r per unit; stop a unit at non-positive curvature or convergence."""
    u = r.shape[0]
    eta = torch.zeros_like(r)
    res = r.clone()
    p = r.clone()
    rr = (res * res).sum(1)
    stop = rr.sqrt() * 1e-4  # inexact Newton: the outer iteration still converges fast
    live = torch.ones(u, dtype=torch.bool, device=r.device)
    for _ in range(iters):
        ap = -curv.tangent_times(p.unsqueeze(0))[0]
        curvature = (p * ap).sum(1)
        bad = curvature <= 0
        first = (eta == 0).all(dim=1)
        # at negative curvature keep what we have (or the gradient direction on the first step)
        eta = torch.where((bad & live & first)[:, None], r * (1.0 / curv.lam.abs().clamp_min(1e-12))[:, None], eta)
        live &= ~bad
        alpha = torch.where(live, rr / curvature.clamp_min(1e-30), torch.zeros_like(rr))
        eta = eta + alpha[:, None] * p
        # re-project: rounding leaves a radial part in which M has no curvature to stop it
        res = tangent_project(res - alpha[:, None] * ap, curv.x)
        rr_new = (res * res).sum(1)
        live &= rr_new.sqrt() > stop
        if not bool(live.any()):
            break
        beta = torch.where(live, rr_new / rr.clamp_min(1e-30), torch.zeros_like(rr))
        p = tangent_project(res + beta[:, None] * p, curv.x)
        rr = torch.where(live, rr_new, rr)
    return tangent_project(eta, curv.x)


#: Curvatures closer than this share of the spectrum's spread (largest |mu + lambda|, or |lambda|
#: when larger) count as equal.
DEGENERACY_TOL = 1e-3


@dataclass
class Degeneracy:
    """How degenerate a tangent spectrum is, and which chosen directions it leaves undetermined.

    ``flat`` [U]: −λ, the curvature of a direction the unit ignores (Hv = 0); a saturated or
    piecewise-linear unit has (almost) every curvature there. ``flat_count`` [U]: how many of the
    computed curvatures lie within ``tol`` of it. ``multiplicity`` [U, K]: how many curvatures lie within
    ``tol`` of each chosen one (itself included). ``identifiable`` [U, K]: multiplicity 1, i.e. the
    direction is determined up to sign; otherwise any unit vector of that eigenspace is equally
    (in)variant and the one an eigensolver returns is arbitrary. ``tol`` [U] is the absolute tolerance.
    """

    flat: torch.Tensor
    flat_count: torch.Tensor
    multiplicity: torch.Tensor
    identifiable: torch.Tensor
    tol: torch.Tensor
    n_values: int


def degeneracy(values: torch.Tensor, chosen: torch.Tensor, lam: torch.Tensor, *,
               rel_tol: float = DEGENERACY_TOL) -> Degeneracy:
    """Degeneracy of spectra ``values`` [U, n] around ``chosen`` [U, K] and the flat value −``lam`` [U].

    The tolerance is ``rel_tol · max(max |mu + lambda|, |lambda|)``: relative to the spread of the
    spectrum about the flat value, or to the flat value itself when the whole spectrum is flat (a
    unit whose Hessian is zero on the tangent space, where the spread is rounding noise), so it
    means the same for a unit whose curvatures are 1e-8 as for one whose curvatures are 1e3. For
    Lanczos (Ritz values only) the counts are lower bounds.
    """
    v, c, lm = values.double(), chosen.double(), lam.double().reshape(-1)
    flat = -lm
    spread = (v - flat[:, None]).abs().amax(dim=1)
    tol = rel_tol * torch.maximum(spread, lm.abs()) + 1e-300
    flat_count = ((v - flat[:, None]).abs() <= tol[:, None]).sum(dim=1)
    multiplicity = ((v[:, None, :] - c[:, :, None]).abs() <= tol[:, None, None]).sum(dim=2)
    return Degeneracy(flat, flat_count, multiplicity, multiplicity <= 1, tol, v.shape[1])


def geodesic_batch(x: torch.Tensor, directions: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Points cos t·x_u + sin t·ρ_u·v_{u,k} for x [U, *s], directions [U, K, *s], angles [T] → [U, K, T, *s]."""
    from vizkit.sphere import geodesic

    per_direction = vmap(geodesic, in_dims=(None, 0, None))
    return vmap(per_direction, in_dims=(0, 0, None))(x, directions, angles)


def angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unsigned angles in degrees between the lines spanned by rows of ``a`` and ``b`` (sign-free)."""
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    cos = (a * b).sum(1).abs() / (a.norm(dim=1) * b.norm(dim=1))
    return torch.rad2deg(torch.arccos(cos.clamp(max=1.0)))


__all__ = [
    "DEGENERACY_TOL",
    "FULL_MAX_DIMS",
    "Degeneracy",
    "Objective",
    "SphereCurvature",
    "Spectrum",
    "angle_between",
    "degeneracy",
    "full_spectrum",
    "geodesic_batch",
    "lanczos_spectrum",
    "refine_maximum",
    "resolve_method",
    "tangent_basis",
    "tangent_spectrum",
    "unit_objective",
]
