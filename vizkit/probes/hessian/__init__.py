"""``hessian``: what a unit is invariant to, at its optimal stimulus (Le et al. 2010; Berkes & Wiskott 2006).

At the optimum x* of unit h on the sphere ‖x‖ = ρ (from the actmax probe), the activation along the
geodesic x(t) = cos t·x* + sin t·ρ·v falls off as h(x*) + ½μt² + …, where μ is the curvature of h in
the tangent direction v: an eigenvalue of P(H − λI)P on the tangent space (see
:mod:`vizkit.probes.hessian.curvature`). Directions with μ nearest zero are the **invariances** (the activation
hardly drops); the most negative μ is the **least invariant** direction, the one the unit is most
selective for. The probe writes the directions, the activation along each path, an image strip per
direction and a GIF/MP4 video per unit and direction.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, OptionError, Probe, ProbeContext, Result, UnitView, Video
from vizkit import capabilities as caps
from vizkit.figure import as_images, image_grid
from vizkit.sphere import project_to_sphere

from .alignment import TRANSFORMS, transform_alignment
from .curvature import (
    DEGENERACY_TOL,
    FULL_MAX_DIMS,
    SphereCurvature,
    degeneracy,
    geodesic_batch,
    refine_maximum,
    resolve_method,
    tangent_spectrum,
    unit_objective,
)
from .figures import direction_strips, display_scale, spectrum_figure
from .start import read_optima, run_actmax
from .video import ping_pong, render_path_video

#: Frames shown in each PNG strip (evenly spaced along the path, always including t = 0).
STRIP_FRAMES = 9
#: Input rows per forward pass when evaluating the paths.
PATH_CHUNK_ELEMENTS = 1 << 24


class Hessian(Probe):
    name = "hessian"
    summary = "invariant and most selective directions at the optimal stimulus, with videos (Le et al. 2010)"
    requires = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD})
    options = (
        Option("top", int, 5, "invariant directions per unit (curvatures nearest zero); the least invariant "
               "one is always added", min=1, max=64),
        Option("angle", float, 45.0, "half-range of the video in DEGREES: t runs over [-angle, angle] along "
               "the geodesic (90: the image becomes the direction itself)", min=0.1, max=180.0),
        Option("frames", int, 21, "frames from -angle to +angle (odd counts include the optimum itself)",
               min=3, max=241),
        Option("fps", float, 10.0, "video frame rate (the video plays -angle -> +angle -> -angle)",
               min=0.5, max=60.0),
        Option("method", str, "auto", f"eigensolver: full matrix, Lanczos on Hessian-vector products, or auto "
               f"(full up to {FULL_MAX_DIMS} input dimensions)", choices=("auto", "full", "lanczos")),
        Option("krylov", int, 200, "lanczos: largest Krylov basis per unit (more: slower, more accurate)",
               min=8, max=5000),
        Option("lanczos_tol", float, 1e-5, "lanczos: stop when every wanted eigenpair has residual "
               "|Mv - mu v| below this times the largest |mu|", min=1e-12, max=0.1),
        Option("refine", int, 3, "Newton steps polishing the optimum on the sphere before the analysis "
               "(0: use it exactly as given)", min=0, max=50),
        Option("from_dir", str, None, "start from the optima in this actmax output directory instead of "
               "running actmax"),
        Option("videos", bool, True, "write a GIF and an MP4 per unit and direction"),
        Option("position", str, None, "conv maps: 'row,col' of the unit (default: the channel's mean); "
               "passed to actmax"),
        Option("steps", int, None, "actmax: maximum gradient steps (default: actmax's)", min=1),
        Option("restarts", int, None, "actmax: random starts per unit (default: actmax's)", min=1),
        Option("lr", float, None, "actmax: step length (default: actmax's)", min=0.0),
        Option("tol", float, None, "actmax: relative-growth stopping tolerance (default: actmax's)", min=0.0),
        Option("rho", float, None, "sphere radius (default: actmax's, i.e. the data's mean norm; with "
               "from_dir: the norm of the saved optima)", min=1e-12),
        Option("degeneracy_tol", float, DEGENERACY_TOL, "curvatures closer than this share of the spectrum's "
               "spread count as equal (degenerate): a direction in a degenerate eigenspace is not identifiable",
               min=0.0, max=0.5),
        Option("transforms", bool, True, "image inputs: measure how well the top invariances span a one-pixel "
               "shift, a small rotation and a small zoom of the optimum (arrays['alignment'])"),
    )

    def run(self, ctx: ProbeContext) -> Result:
        opts, model = ctx.options, ctx.model
        shape = tuple(int(s) for s in model.input_shape)
        dims = math.prod(shape)
        top = opts["top"]
        if top + 1 > dims - 1:
            raise OptionError(f"option 'top' {top} asks for {top + 1} directions, but the sphere's tangent space "
                              f"has only {dims - 1} dimensions")
        position = vizkit.parse_position(opts["position"], ctx.layer_info)
        method = resolve_method(opts["method"], dims)
        if method == "lanczos" and opts["krylov"] < 2 * (top + 1):
            raise OptionError(f"option 'krylov' {opts['krylov']} is too small for top {top}: the Lanczos basis needs "
                              f"at least 2*(top+1) = {2 * (top + 1)} vectors")
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        if opts["from_dir"]:
            start, start_info = read_optima(ctx, opts["from_dir"])
        else:
            start, start_info = run_actmax(ctx)
        start = start.to(ctx.device, vizkit.model_dtype(model))
        if opts["rho"] is not None and opts["from_dir"]:
            start = project_to_sphere(start, opts["rho"])
        timings["optimum_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        objective = unit_objective(model, ctx.layer, ctx.units, position)
        progress = ctx.progress if ctx.show_progress else None
        optimum, refined = refine_maximum(objective, start, steps=opts["refine"], progress=progress)
        timings["refine_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        curv = SphereCurvature.at(objective, optimum)
        spectrum = tangent_spectrum(curv, top=top, method=method, max_basis=opts["krylov"],
                                    tol=opts["lanczos_tol"], generator=ctx.generator(1), progress=progress)
        timings["curvature_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        n_units, k = len(ctx.units), top + 1
        angles = torch.linspace(-math.radians(opts["angle"]), math.radians(opts["angle"]), opts["frames"],
                                dtype=optimum.dtype, device=optimum.device)
        directions = spectrum.directions.reshape(n_units, k, *shape).to(optimum.dtype)
        paths = geodesic_batch(optimum, directions, angles)  # [U, K, T, *shape]
        path_act = _path_activations(model, ctx.layer, ctx.units, position, paths)
        with torch.no_grad():
            peak = objective(optimum)
        timings["paths_s"] = time.perf_counter() - clock

        units = ctx.units.cpu().numpy()
        arrays = {
            "units": units.astype(np.int64),
            "optimum": optimum.detach().cpu().float().numpy(),
            "start": start.detach().cpu().float().numpy(),
            "activation": peak.detach().cpu().double().numpy(),
            "rho": optimum.reshape(n_units, -1).norm(dim=1).detach().cpu().double().numpy(),
            "lagrange": curv.lam.detach().cpu().double().numpy(),
            "eigenvalues": spectrum.chosen.detach().cpu().double().numpy(),
            "residuals": spectrum.residuals.detach().cpu().double().numpy(),
            "directions": directions.detach().cpu().float().numpy(),
            "angles": angles.detach().cpu().double().numpy(),
            "path_activations": path_act.detach().cpu().double().numpy(),
            "spectrum": spectrum.values.detach().cpu().double().numpy(),
            "tangent_gradient": np.asarray(refined["tangent_gradient"], dtype=np.float64),
        }
        deg = degeneracy(spectrum.values, spectrum.chosen, curv.lam, rel_tol=opts["degeneracy_tol"])
        arrays["multiplicity"] = deg.multiplicity.cpu().numpy().astype(np.int64)
        arrays["identifiable"] = deg.identifiable.cpu().numpy()
        arrays["flat_count"] = deg.flat_count.cpu().numpy().astype(np.int64)
        arrays["degeneracy_tol"] = deg.tol.cpu().numpy()
        transforms_meta: dict[str, Any] = {}
        if opts["transforms"] and len(shape) == 3 and min(shape[1:]) >= 4:
            align, per_direction = transform_alignment(optimum.detach(), directions[:, :top].detach())
            arrays["alignment"] = align
            arrays["alignment_per_direction"] = per_direction
            transforms_meta = {"transforms": list(TRANSFORMS),
                               "chance_alignment": math.sqrt(top / (dims - 1))}
        warnings = _warnings(arrays, spectrum.complete, opts["lanczos_tol"])
        meta = {
            "method": spectrum.method, "method_option": opts["method"], "basis_size": spectrum.basis_size,
            "spectrum_complete": spectrum.complete, "hessian_vector_products": curv.products,
            "newton_steps": refined["newton_steps"], "newton_products": refined["products"],
            "start": start_info, "position": list(position) if position else "channel mean",
            "angle_unit": "degrees in options; radians in arrays['angles']",
            "directions_order": [f"invariance {i + 1}" for i in range(top)] + ["least invariant"],
            "warnings": warnings,
            "degeneracy": {
                "tolerance": f"{opts['degeneracy_tol']:g} x max(max |mu + lambda|, |lambda|) (the spectrum's "
                             "spread about the flat value -lambda, or lambda when the spectrum is flat)",
                "values_computed": int(deg.n_values),
                "flat_count": arrays["flat_count"].tolist(),
                "identifiable": arrays["identifiable"].tolist(),
                "invariances_identifiable": bool(arrays["identifiable"][:, :top].all()),
            },
            **transforms_meta,
        }
        _report_degeneracy(arrays, top, ctx.layer)
        clock = time.perf_counter()
        figures, captions, videos = _outputs(ctx, arrays, paths, spectrum.complete, meta)
        timings["render_s"] = time.perf_counter() - clock
        meta["phase_timings"] = {key: round(value, 4) for key, value in timings.items()}
        return Result(arrays=arrays, meta=meta, figures=figures, captions=captions, videos=videos)

    def unit_view(self, result: Result, index: int) -> UnitView:
        """The unit's direction strips and its invariance videos, as the run wrote them."""
        unit = int(result.arrays["units"][index])
        have = result.file_names()
        files = [f"unit{unit}_directions.png"] + sorted(
            name for name in have if name.startswith((f"unit{unit}_inv", f"unit{unit}_least")) and name.endswith(".gif"))
        top = int(result.arrays["eigenvalues"].shape[1]) - 1
        ident = bool(result.arrays["identifiable"][index, :top].all())
        return UnitView(files=tuple(f for f in files if f in have),
                        text=f"h(x*) = {float(result.arrays['activation'][index]):.4g}; invariances "
                             + ("identifiable" if ident else "NOT identifiable (degenerate curvatures)"))




def _path_activations(
    model: Any, layer: str, units: torch.Tensor, position: tuple[int, int] | None, paths: torch.Tensor
) -> torch.Tensor:
    """Activation of unit u at every frame of its paths: [U, K, T] from [U, K, T, *shape], batched."""
    n_units, k, t = paths.shape[:3]
    flat = paths.reshape(n_units * k * t, *paths.shape[3:])
    owner = units.repeat_interleave(k * t)
    rows = max(1, PATH_CHUNK_ELEMENTS // max(1, flat[0].numel()))
    with torch.no_grad():
        out = torch.cat([
            vizkit.paired_unit_activations(model, flat[i:i + rows], layer, owner[i:i + rows], position)
            for i in range(0, len(flat), rows)
        ])
    return out.reshape(n_units, k, t)


def _degenerate_units(arrays: dict[str, np.ndarray], top: int) -> np.ndarray:
    """Units whose invariances are not all identifiable (they lie in a degenerate eigenspace)."""
    return arrays["units"][~arrays["identifiable"][:, :top].all(axis=1)]


def _at_flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """[U, top+1]: chosen curvatures equal to the flat value -lambda (within the tolerance)."""
    gap = np.abs(arrays["eigenvalues"] + arrays["lagrange"][:, None])
    return gap <= arrays["degeneracy_tol"][:, None]


def _verdict(arrays: dict[str, np.ndarray], ui: int, top: int) -> str:
    """Why unit row ``ui``'s invariances are not identifiable, in one phrase ('' when they are)."""
    bad = ~arrays["identifiable"][ui, :top]
    if not bad.any():
        return ""
    n = arrays["spectrum"].shape[1]
    if (bad & _at_flat(arrays)[ui, :top]).any():
        return (f"invariances NOT identifiable: they lie in the flat eigenspace ({arrays['flat_count'][ui]} of {n} "
                "curvatures equal -lambda), so the directions shown are arbitrary members of it")
    which = [int(k) + 1 for k in np.flatnonzero(bad)]
    mult = int(arrays["multiplicity"][ui, :top][bad].max())
    return (f"invariance{'s' if len(which) > 1 else ''} {', '.join(map(str, which))} NOT identifiable: one of "
            f"{mult} equal curvatures (any mixture of those directions is equally invariant)")


def _report_degeneracy(arrays: dict[str, np.ndarray], top: int, layer: str) -> None:
    """One warning line on stderr when shown invariances are arbitrary members of an eigenspace."""
    bad = _degenerate_units(arrays, top)
    if not len(bad):
        return
    rows = np.flatnonzero(np.isin(arrays["units"], bad))
    flat_rows = [r for r in rows if (~arrays["identifiable"][r, :top] & _at_flat(arrays)[r, :top]).any()]
    n = arrays["spectrum"].shape[1]
    if flat_rows:
        flat = arrays["flat_count"][flat_rows]
        print(f"warning: hessian {layer}: the invariances of units {arrays['units'][flat_rows][:8].tolist()} are not "
              f"identifiable ({_count_range(flat)} of {n} curvatures equal the flat value -lambda; the directions "
              "shown are arbitrary members of a degenerate eigenspace)", file=sys.stderr)
    else:
        print(f"warning: hessian {layer}: units {bad[:8].tolist()}: some invariances share their curvature with "
              "another direction (arrays['multiplicity'] > 1), so only their span is determined", file=sys.stderr)


def _warnings(arrays: dict[str, np.ndarray], complete: bool, tol: float) -> list[str]:
    """Plain-language flags for results that should not be read as invariances."""
    out = []
    units = arrays["units"]
    spectrum = arrays["spectrum"]
    scale = np.abs(spectrum).max(axis=1)
    positive = units[spectrum.max(axis=1) > 1e-6 * scale]
    if len(positive):
        out.append(f"units {positive[:8].tolist()}: positive curvature on the sphere, so the start is not a local "
                   "maximum there (actmax not converged? raise -o steps or -o refine)")
    flat = units[np.ptp(spectrum, axis=1) <= 1e-6 * np.maximum(scale, 1e-30)]
    if len(flat):
        out.append(f"units {flat[:8].tolist()}: the curvature is the same in every direction (a piecewise-linear "
                   "unit such as ReLU/max-pool has a zero Hessian), so no direction is more invariant than another")
    ignored = np.abs(arrays["eigenvalues"][:, :-1] + arrays["lagrange"][:, None]) <= 1e-4 * scale[:, None]
    if ignored.any() and not len(flat):
        out.append(f"units {units[ignored.any(axis=1)][:8].tolist()}: some 'invariances' have curvature -lambda, "
                   "i.e. they are directions the unit ignores (Hv = 0, e.g. pixels outside its receptive field); "
                   "they form one degenerate eigenspace, so any mixture of them is equally invariant")
    n = spectrum.shape[1]
    many_flat = units[arrays["flat_count"] >= n // 2]
    if len(many_flat) and not len(flat):
        out.append(f"units {many_flat[:8].tolist()}: at least half of the {n} curvatures equal the flat value -lambda "
                   f"({arrays['flat_count'][np.isin(units, many_flat)].min()} or more): the unit depends on few input "
                   "directions (saturated or low-rank), and the rest form one degenerate eigenspace")
    degenerate = arrays["multiplicity"] > 1
    if degenerate.any() and not len(flat):
        which = sorted({("least invariant" if k == degenerate.shape[1] - 1 else f"invariance {k + 1}")
                        for k in np.nonzero(degenerate)[1]})
        out.append(f"units {units[degenerate.any(axis=1)][:8].tolist()}: {', '.join(which)} belong(s) to a degenerate "
                   "eigenspace (arrays['multiplicity'] > 1): every direction in it has the same curvature, so the "
                   "one shown is an arbitrary member")
    if not complete:
        loose = units[(arrays["residuals"] > tol * scale[:, None]).any(axis=1)]
        if len(loose):
            out.append(f"units {loose[:8].tolist()}: the Lanczos basis reached -o krylov before every direction "
                       "converged (see arrays['residuals']); raise -o krylov")
    return out


def _outputs(
    ctx: ProbeContext, arrays: dict[str, np.ndarray], paths: torch.Tensor, complete: bool, meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], dict[str, Video]]:
    opts = ctx.options
    shape = tuple(ctx.model.input_shape)
    units = arrays["units"].tolist()
    top = opts["top"]
    names = [f"invariance {i + 1}" for i in range(top)] + ["least invariant"]
    angles_deg = np.degrees(arrays["angles"])
    t = len(angles_deg)
    shown = np.unique(np.round(np.linspace(0, t - 1, min(STRIP_FRAMES, t))).astype(int))
    paths_np = paths.detach().cpu().double().numpy()
    figures: dict[str, Any] = {}
    captions: dict[str, str] = {}
    videos: dict[str, Video] = {}

    figures["optimum"] = image_grid(as_images(arrays["optimum"], shape), labels=units,
                                    title=f"hessian: optimal stimuli of {ctx.layer} (after {meta['newton_steps']} Newton "
                                          f"step{'' if meta['newton_steps'] == 1 else 's'})")
    captions["optimum"] = (f"The input that excites each unit most among inputs of the same length, the starting "
                           f"point of the analysis. It is the optimum x* on the sphere |x| = rho "
                           f"({meta['start']['source']}), polished by Newton steps on the sphere; its activation: "
                           f"{_range(arrays['activation'])}.")
    figures["spectrum"] = spectrum_figure(
        arrays["spectrum"], arrays["eigenvalues"], arrays["lagrange"], units, complete=complete,
        flat_count=arrays["flat_count"], identifiable=arrays["identifiable"][:, :top].all(axis=1),
        title=f"hessian {ctx.layer}: curvature along the sphere at the optimum ({meta['method']})")
    captions["spectrum"] = (
        "How fast each unit's activation falls as its best input is turned in every possible direction, "
        "from the steepest direction to the flattest. These curvatures are the eigenvalues mu of "
        "P(H - lambda I)P on the tangent space at each optimum, sorted "
        + ("(all of them, full matrix)" if complete else f"(the {meta['basis_size']} Ritz values of the Lanczos basis: "
           "the ends of the spectrum are exact, the middle is approximate)")
        + f". Green: the {top} nearest zero (invariances); red: the most negative (least invariant); dashed: "
        "-lambda, the curvature of a direction the unit ignores (activation falls only because x* shrinks)."
        + f" Degeneracy: {_flat_text(arrays)} curvatures lie within the tolerance of the flat value -lambda."
        + ("".join(f" WARNING: {w}." for w in meta["warnings"])))
    for ui, unit in enumerate(units):
        path_images = as_images(paths_np[ui].reshape(-1, *shape), shape)
        path_images = path_images.reshape(top + 1, t, *path_images.shape[1:])
        direction_images = as_images(arrays["directions"][ui], shape)
        peak = float(arrays["activation"][ui])
        key = f"unit{unit}_directions"
        ident = arrays["identifiable"][ui]
        mult = arrays["multiplicity"][ui]
        row_names = [name if ident[di] else f"{name}\nNOT identifiable\n(1 of {mult[di]} equal)"
                     for di, name in enumerate(names)]
        n_values = arrays["spectrum"].shape[1]
        verdict = _verdict(arrays, ui, top)
        verdict = "\n" + verdict.replace(", so", ",\nso").replace(": one of", ":\none of") if verdict else ""
        align = _alignment_text(arrays, meta, ui)
        figures[key] = direction_strips(
            direction_images, path_images[:, shown], angles_deg[shown], arrays["path_activations"][ui][:, shown],
            arrays["eigenvalues"][ui], row_names,
            title=f"hessian: unit {unit} of {ctx.layer}, h(x*) = {peak:.4g}, rho = {arrays['rho'][ui]:.4g}{verdict}",
            footer=("each row: x(t) = cos t x* + sin t rho v along one direction v (left tile, own scale); "
                    "angle above, activation below each frame;\n"
                    "one colour scale per row, grey = 0 (RGB: min-max); mu = curvature (nearest 0: most invariant)"
                    + (f"\n{align}" if align else "")))
        captions[key] = (f"Unit {unit}: how its best input can change while the unit keeps responding (the first "
                         f"{top} rows) and the change it responds to most (the last row), with the activation "
                         f"under every frame. The first {top} are the invariant directions (curvature "
                         f"nearest zero), the last the least invariant one, each as the path "
                         f"x(t) = cos t x* + sin t rho v for t in [-{opts['angle']:g}°, {opts['angle']:g}°]. "
                         f"{arrays['flat_count'][ui]} of {n_values} curvatures equal the flat value -lambda"
                         + ("; the invariances are identifiable (each curvature is distinct)." if ident[:top].all()
                            else f"; {_verdict(arrays, ui, top)}.")
                         + (f" {align}." if align else ""))
        if not opts["videos"]:
            continue
        for di, name in enumerate(names):
            frames = render_path_video(
                display_scale(path_images[di]), angles_deg, arrays["path_activations"][ui, di], peak=peak,
                title=f"unit {unit} of {ctx.layer} · {name} (μ = {arrays['eigenvalues'][ui, di]:.3g})")
            tag = f"unit{unit}_inv{di + 1}" if di < top else f"unit{unit}_least"
            videos[tag] = Video(ping_pong(frames), fps=opts["fps"])
            captions[tag] = (f"Unit {unit}, {name}: the input changing along this direction (left) and the unit's "
                             f"activation as it changes (right; red dot: now, number under the image). The input "
                             f"moves along the geodesic of the sphere through the optimum.")
    return figures, captions, videos


def _count_range(counts: np.ndarray) -> str:
    return f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"


def _flat_text(arrays: dict[str, np.ndarray]) -> str:
    return f"{_count_range(arrays['flat_count'])} of {arrays['spectrum'].shape[1]}"


def _alignment_text(arrays: dict[str, np.ndarray], meta: dict[str, Any], ui: int) -> str:
    """'alignment of the top invariances with: shift 1 px right 0.93, ...' for unit row ``ui``."""
    if "alignment" not in arrays:
        return ""
    parts = ", ".join(f"{name} {value:.2f}" for name, value in zip(meta["transforms"], arrays["alignment"][ui]))
    return (f"share of each transformation of x* spanned by the top invariances: {parts} "
            f"(chance {meta['chance_alignment']:.2f})")


def _range(values: np.ndarray) -> str:
    return f"{values.min():.4g}" if values.min() == values.max() else f"{values.min():.4g} to {values.max():.4g}"


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Hessian)
