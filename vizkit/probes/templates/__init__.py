"""``templates``: template and reconstruction galleries (Tieleman 2014, ch. 2).

For any model that can ``reconstruct``: rows of original | reconstruction | mismatch with the
per-pixel MSE and the % of data variance it leaves (the thesis's measure: the mean over pixels of
each pixel's variance across the images). Models with ``weights`` from the input (SDAE, RBM, DBN,
ladder) show their decoder filters as their "templates". Models with ``templates`` (the capsule
autoencoder) give the galleries of the thesis: (a) the learned templates, bilinearly upsampled
(Fig. 2.15); (b) reconstruction rows with each atomic capsule's own rendered contribution, capsule
order fixed (Fig. 2.14); (c) the centre of gravity of each capsule's contribution over many images
(Fig. 2.16); (d) distortion sweeps −2σ…+2σ (Fig. 2.18); (e) every mixture component's
reconstruction of the same image, the manager's choice highlighted (Fig. 2.19); (f) manager
confidence and per-component usage (§2.3.5).

A templates-capable model offers, beyond ``templates()``: ``parts(x, component=None)`` (a dict
with ``contributions`` [n, capsules, *input_shape], ``reconstructions``, ``components``,
``cc_pose``, ``distortion``), ``combine(contributions)`` (its output model) and
``sweep(component, cc_pose, distortion)``; see docs/plugins/templates.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import vizkit
from vizkit import Option, Probe, ProbeContext, Result, probe_inputs
from vizkit import capabilities as caps

from . import figures

#: The capability of part-based models (registered by the capsule kind) whose galleries this draws.
TEMPLATES = "templates"


class Templates(probe_inputs.NeedsExamples, Probe):
    name = "templates"
    summary = "reconstruction rows (original | reconstruction | mismatch) and, for capsule models, template galleries"
    requires = frozenset({caps.ACTIVATIONS, caps.RECONSTRUCT})
    layer_optional = True  # ``vizkit probe --probe templates capsule.pt``: the code layer is the only one
    options = (
        *probe_inputs.DATA_OPTIONS,
        Option("rows", int, 20, "images shown as reconstruction rows (Fig. 2.14: 20)", min=1, max=200),
        Option("images", str, "", "which images make the rows: 'a:b' or 'i,j,k' (empty: spread over the data)"),
        Option("cog_images", int, 100, "images for the centres of gravity (Fig. 2.16: 100)", min=1, max=100000),
        Option("forced_rows", int, 10, "images reconstructed by every mixture component (Fig. 2.19: 20)",
               min=0, max=100),
        Option("sweep_components", int, 2, "most used components whose distortions are swept (Fig. 2.18: 2)",
               min=0, max=100),
        Option("sweep_variables", int, 8, "distortion variables swept per component, largest σ first", min=1,
               max=200),
        Option("sweep_steps", int, 9, "values from −2σ to +2σ (odd: the middle one is 0)", min=3, max=41),
        Option("upsample", int, 8, "template upsampling factor for display (bilinear)", min=1, max=32),
        Option("batch", int, 500, "images per forward pass", min=1, max=100000),
    )

    @classmethod
    def valid_layers(cls, model: vizkit.ProbeModel) -> list[str]:
        """Capsule models: their code layer; models with input filters: those layers (the filters
        are the templates, units pick which); otherwise any layer (only the rows are drawn)."""
        layers = list(model.layer_infos())
        if TEMPLATES in model.capabilities:
            return ["code"] if "code" in layers else layers[-1:]
        return vizkit.input_weight_layers(model) or layers

    def run(self, ctx: ProbeContext) -> Result:
        opts = ctx.options
        model = ctx.model
        examples = probe_inputs.load_examples(model, opts["data"], opts["split"], opts["limit"])
        images = examples.images
        n = images.shape[0]
        dtype = vizkit.model_dtype(model)
        shape = tuple(int(s) for s in model.input_shape)
        capsule = TEMPLATES in model.capabilities
        batch = opts["batch"]

        def run_batches(fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor) -> dict[str, np.ndarray]:
            parts: dict[str, list[np.ndarray]] = {}
            with torch.no_grad():
                for start in range(0, x.shape[0], batch):
                    out = fn(x[start:start + batch].to(ctx.device, dtype))
                    for key, value in out.items():
                        parts.setdefault(key, []).append(value.detach().double().cpu().numpy())
            return {k: np.concatenate(v) for k, v in parts.items()}

        def whole(x: torch.Tensor) -> dict[str, torch.Tensor]:
            if capsule:
                p = model.parts(x)
                return {"reconstructions": p["reconstructions"], "components": p["components"],
                        "cc_pose": p["cc_pose"], "distortion": p["distortion"]}
            return {"reconstructions": model.reconstruct(x).reshape(x.shape)}

        everything = run_batches(whole, images)
        flat = images.double().numpy().reshape(n, -1)
        recon_all = everything["reconstructions"].reshape(n, -1)
        variance = float(flat.var(axis=0).mean())
        mse = float(np.mean((recon_all - flat) ** 2))
        rows = examples.pick(opts["images"], opts["rows"], "rows")
        x_rows = images[rows]
        originals = x_rows.double().numpy()
        arrays: dict[str, np.ndarray] = {
            "originals": originals.astype(np.float32),
            "row_indices": examples.rows_of(rows),  # rows of the source (the user's file)
            "mse": np.asarray(mse),
            "data_variance": np.asarray(variance),
            "example_mse": ((recon_all - flat) ** 2).mean(1).astype(np.float32),
        }
        meta: dict[str, Any] = {**examples.meta(), "n_images": n, "mse": mse,
                                "pct_variance": 100.0 * mse / variance if variance > 0 else None}
        result = Result(arrays=arrays, meta=meta)
        if capsule:
            self._capsule(ctx, result, images, rows, everything, run_batches, shape)
            arrays["cog_indices"] = examples.rows_of(arrays["cog_indices"])  # rows of the source
        else:
            arrays["reconstructions"] = everything["reconstructions"][rows].astype(np.float32)
            arrays["mismatch"] = (originals - everything["reconstructions"][rows]).astype(np.float32)
            if caps.WEIGHTS in model.capabilities:
                try:
                    weights = model.weights(ctx.layer)
                except vizkit.UsageError:
                    weights = None
                if weights is not None and weights.source == "input":
                    picked = weights.matrix.index_select(0, ctx.units.to(weights.matrix.device))
                    arrays["templates"] = picked.detach().double().cpu().numpy().reshape(
                        len(ctx.units), *shape).astype(np.float32)
                    arrays["template_units"] = ctx.units.cpu().numpy().astype(np.int64)
        figures.draw(ctx, result)
        return result

    # -- the capsule galleries ------------------------------------------------------------------
    def _capsule(self, ctx: ProbeContext, result: Result, images: torch.Tensor, rows: list[int],
                 everything: dict[str, np.ndarray], run_batches: Callable[..., dict[str, np.ndarray]],
                 shape: tuple[int, ...]) -> None:
        opts = ctx.options
        model = ctx.model
        arrays, meta = result.arrays, result.meta
        dtype = vizkit.model_dtype(model)
        n = images.shape[0]

        # (a) templates, as drawn, and bilinearly upsampled through their points
        with torch.no_grad():
            templates = model.templates()["templates"].detach().double().cpu()
        arrays["templates"] = templates.numpy().astype(np.float32)
        h, w = templates.shape[-2:]
        factor = opts["upsample"]
        arrays["templates_upsampled"] = F.interpolate(templates[:, None], size=(h * factor, w * factor),
                                                      mode="bilinear", align_corners=True)[:, 0].numpy().astype(np.float32)

        # (b) rows with every capsule's contribution (and the output model applied to them)
        def row_parts(x: torch.Tensor) -> dict[str, torch.Tensor]:
            p = model.parts(x)
            return {"contributions": p["contributions"], "reconstructions": p["reconstructions"]}

        picked = run_batches(row_parts, images[rows])
        arrays["contributions"] = picked["contributions"].astype(np.float32)
        arrays["reconstructions"] = picked["reconstructions"].astype(np.float32)
        arrays["mismatch"] = (arrays["originals"].astype(np.float64) - picked["reconstructions"]).astype(np.float32)

        # (c) centres of gravity of each capsule's contribution over cog_images images spread over
        # the data (the built-in test splits are sorted by label: the first 100 would be all zeros)
        cog_idx = probe_inputs.pick("", n, opts["cog_images"])
        arrays["cog_indices"] = np.asarray(cog_idx, dtype=np.int64)
        hh, ww = shape[-2:]
        rr, cc = np.meshgrid(np.arange(hh, dtype=np.float64), np.arange(ww, dtype=np.float64), indexing="ij")

        def cog(x: torch.Tensor) -> dict[str, torch.Tensor]:
            c = model.parts(x)["contributions"].reshape(x.shape[0], -1, hh, ww).double()
            total = c.sum((2, 3))
            r = (c * torch.from_numpy(rr).to(c)).sum((2, 3)) / total.clamp_min(1e-12)
            q = (c * torch.from_numpy(cc).to(c)).sum((2, 3)) / total.clamp_min(1e-12)
            return {"cog": torch.stack([r, q], -1), "mass": total}

        centres = run_batches(cog, images[cog_idx])
        # a capsule drawing (almost) nothing has no centre: flagged in cog_valid, not drawn at (0, 0)
        faint = centres["mass"] < 1e-3 * max(float(centres["mass"].max()), 1e-12)
        arrays["cog"] = centres["cog"].astype(np.float32)
        arrays["cog_valid"] = ~faint
        arrays["cog_mass"] = centres["mass"].astype(np.float32)

        # (f) manager confidence and usage over all images
        y = everything["components"]
        k = y.shape[1]
        chosen_all = y.argmax(1)
        arrays["components"] = y.astype(np.float32)
        arrays["usage"] = np.bincount(chosen_all, minlength=k).astype(np.int64)
        entropy = -(y * np.log(np.clip(y, 1e-30, None))).sum(1)
        meta["manager"] = {
            "components": k,
            "max_y_ge_0.99": float(np.mean(y.max(1) >= 0.99)),
            "max_y_ge_0.9": float(np.mean(y.max(1) >= 0.9)),
            "entropy_pct_of_logK": float(100 * entropy.mean() / np.log(k)) if k > 1 else 0.0,
            "components_used": int((arrays["usage"] > 0).sum()),
        }

        # (e) every component reconstructs every image (batches of images × components): the
        # first forced_rows rows are drawn (Fig. 2.19), and the errors of all of them say how far
        # the components specialise (vizkit.mixtures)
        n_forced = min(opts["forced_rows"], len(rows)) if k > 1 else 0
        if k > 1:
            order = np.concatenate([rows[:n_forced], np.setdiff1d(np.arange(n), rows[:n_forced])]).astype(np.int64)
            per_batch = max(1, opts["batch"] // k)
            errors, forced = [], []
            with torch.no_grad():
                for start in range(0, n, per_batch):
                    idx = order[start:start + per_batch]
                    xs = images[idx].to(ctx.device, dtype)
                    part = model.parts(xs.repeat_interleave(k, 0),
                                       component=torch.arange(k, device=ctx.device).repeat(len(idx)))
                    rec = part["reconstructions"].double().reshape(len(idx), k, -1)
                    errors.append((rec - xs.double().reshape(len(idx), 1, -1)).square().mean(2).cpu().numpy())
                    keep = max(0, min(len(idx), n_forced - start))
                    if keep:
                        forced.append(rec[:keep].cpu().numpy())
            forced_errors = np.empty((n, k))
            forced_errors[order] = np.concatenate(errors)
            arrays["forced_errors"] = forced_errors.astype(np.float32)
            spec = vizkit.mixtures.specialisation(forced_errors, chosen_all)
            meta["specialisation"] = {"median_ratio": spec["median_ratio"], "chosen_is_best": spec["chosen_is_best"],
                                      "ratio": [None if np.isnan(r) else float(r) for r in spec["ratio"]]}
            if n_forced:
                arrays["forced"] = np.concatenate(forced).reshape(n_forced, k, *shape).astype(np.float32)
                arrays["forced_chosen"] = chosen_all[rows[:n_forced]].astype(np.int64)

        # (d) distortion sweeps of the most used components, largest-σ variables first
        dist = everything["distortion"]
        n_dist = dist.shape[1]
        n_comp = min(opts["sweep_components"], k)
        if n_dist and n_comp:
            sigma = dist.std(axis=0)
            variables = np.argsort(-sigma, kind="stable")[: min(opts["sweep_variables"], n_dist)]
            steps = opts["sweep_steps"] | 1  # odd, so the middle column is the undistorted capsule
            levels = np.linspace(-2.0, 2.0, steps)
            components = np.argsort(-arrays["usage"], kind="stable")[:n_comp]
            poses, dists, comps = [], [], []
            for c in components:  # a handful of components; the renders below are one batch
                members = chosen_all == c
                pose = np.median(everything["cc_pose"][members] if members.any() else everything["cc_pose"], axis=0)
                for v in variables:
                    d = np.zeros((steps, n_dist))
                    d[:, v] = levels * sigma[v]
                    dists.append(d)
                    poses.append(np.repeat(pose[None], steps, 0))
                    comps.append(np.full(steps, c))
            with torch.no_grad():
                swept = model.sweep(torch.from_numpy(np.concatenate(comps)).to(ctx.device),
                                    torch.from_numpy(np.concatenate(poses)).to(ctx.device, dtype),
                                    torch.from_numpy(np.concatenate(dists)).to(ctx.device, dtype))
            arrays["sweeps"] = swept.double().cpu().numpy().reshape(n_comp, len(variables), steps, *shape).astype(np.float32)
            arrays["sweep_components"] = components.astype(np.int64)
            arrays["sweep_variables"] = variables.astype(np.int64)
            arrays["sweep_sigma"] = sigma.astype(np.float32)
            arrays["sweep_levels"] = levels.astype(np.float32)
            # the thesis's check that dropout keeps distortions centred: means in units of σ
            meta["distortion_mean_in_sd"] = [float(v) for v in dist.mean(0) / np.where(sigma > 0, sigma, 1.0)]


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    register(Templates)
