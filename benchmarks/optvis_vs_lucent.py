"""optvis: vizkit's colour preset vs lucent's ``render_vis`` vs plain pixel ascent, on the photos convnet.

Two ``convnet`` classifiers are trained on the built-in ``photos`` data (64×64 RGB crops of ten
photographs, labelled by photograph) with default settings, 3 epochs and different seeds: model A
(``--model-seeds``, first) and model B (second). They are cached in ``--work`` and reused by later
runs. On model A, one optimum per class logit (10 images, one batch per method) is made by

* **vizkit colour**: ``vizkit.optvis.render`` with the actmax ``colour`` preset — Fourier
  parameterisation with decorrelated colour, the standard transforms (pad 12, jitter 8, scale
  0.9–1.1, rotate ±10°, jitter 4, centre crop to 64×64), Adam lr 0.05, sigmoid range [0, 1],
  512 steps, restarts 1;
* **lucent**: ``lucent.optvis.render.render_vis`` with ``param.image(64, fft=True,
  decorrelate=True, batch=10)``, ``transform.standard_transforms`` followed by a centre crop to
  64×64 (lucent's transforms leave an 88–97 px image; the model takes 64×64, and the crop is what
  vizkit's ``standard`` does too), ``preprocess=False`` (no ImageNet normalisation: the model takes
  [0, 1] RGB), ``fixed_image_size=64`` (lucent otherwise upsamples to 224; at 64 its resize of the
  cropped 64×64 image is the identity), its default Adam lr 0.05, ``thresholds=(512,)``. The
  objective is ``sum_c channel("logits_layer", c, batch=c)``: image c maximises class c's logit
  (lucent's ``channel`` on a ``[B, C]`` output reads ``t[c:c+1][:, c]``). The model is wrapped in
  a module whose forward centre-crops any larger input to 64×64 (never needed after the crop
  transform) and passes the logits through an ``nn.Identity`` named ``logits_layer`` for lucent's
  hook. Model A's weights are frozen (``requires_grad_(False)``) so lucent's ``loss.backward()``
  computes input gradients only, as vizkit's render does: the timing is not inflated by weight
  gradients lucent never uses;
* **pixel ascent**: vizkit's ``erhan`` method — pixels, uniform [0, 1] start, Erhan et al.'s
  normalised gradient step (lr 0.1·ρ) and projection onto the sphere ‖x‖ = ρ, no transforms,
  512 steps, restarts 1 (``optvis.render(..., param="pixel", optimizer="ascent", lr=0.1,
  constraint=optvis.Sphere(rho))``); ρ is model A's recorded mean training-image norm, as in the
  actmax probe.

Measured per method, over ``--seeds`` optimisation seeds (different random starts and transform
draws; mean ± std over seeds):

* **(a) activation at equal norm**: model A's logit of the intended class at ``x · ρ / ‖x‖``
  (plain L2 norm of all 3·64·64 values, nothing subtracted; the same ρ as the pixel-ascent
  sphere, so its optima are unchanged), averaged over the 10 classes. Also model A's logit at the
  image as produced, and model A's own top-1 share (a sanity check: should be 10/10);
* **(b) transfer**: the share of the 10 optima (as produced, no rescaling) that model B classifies
  as the intended class (argmax of B's logits), and model B's mean softmax probability of the
  intended class. Chance is 0.10; the models' test accuracies are printed for scale;
* **(c) seconds per image**: the wall time of the render call alone / 10, every method in the same
  process with the same ``torch.set_num_threads`` (``--threads``, default 1), methods interleaved
  within each seed so load on a shared machine falls on all of them.

``--figure PATH`` writes a PNG grid: one row per method (seed 0's optima; colour and lucent as
produced in [0, 1], pixel ascent min–max scaled per image as it is not in [0, 1]), a last row with
one test crop per class for reference, class names as column titles.

lucent is not a vizkit dependency. Install it into the venv only for this benchmark, without letting
pip touch torch (``--no-deps`` each time)::

    python -m pip install --no-deps torch-lucent==0.1.8 decorator kornia==0.4.1

lucent 0.1.8 pins ``kornia<=0.4.1`` (it calls ``kornia.get_rotation_matrix2d``/``warp_affine``,
gone in later kornia). It also imports ``torchvision.transforms.Normalize`` (only for ImageNet
normalisation, unused here with ``preprocess=False``) and ``IPython.display`` (notebook display,
unused). When those are not importable — PyPI's Linux torchvision wheel needs CUDA torch and fails
to import beside a CPU torch — this script puts empty stand-ins in ``sys.modules`` while lucent
imports and removes them again afterwards (so Lightning never sees a fake torchvision).

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/optvis_vs_lucent.py --figure
optima.png`` (``--work DIR``, ``--seeds N``, ``--steps N``, ``--threads N``, ``--model-seeds A,B``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

INSTALL = "python -m pip install --no-deps torch-lucent==0.1.8 decorator kornia==0.4.1"
N_CLASSES = 10
SIZE = 64
METHODS = ("vizkit colour", "lucent render_vis", "pixel ascent")


# -- lucent ----------------------------------------------------------------------------------------
def _importable(name: str) -> bool:
    """True when ``import name`` works (a broken install, e.g. a CUDA torchvision wheel beside a
    CPU torch, raises other errors than ImportError)."""
    if importlib.util.find_spec(name.split(".")[0]) is None:
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001  (any failure to import means: stand in for it)
        for key in [k for k in sys.modules if k == name.split(".")[0] or k.startswith(name.split(".")[0] + ".")]:
            del sys.modules[key]
        return False


def fail(message: str) -> None:
    """One line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def import_lucent() -> tuple[Any, Any, Any, Any, list[str]]:
    """lucent's render, param, transform and objectives modules, and the stand-ins used; exit 2
    with one line when lucent (or a dependency it needs here) is missing."""
    for name in ("lucent", "decorator", "kornia"):
        if importlib.util.find_spec(name) is None:
            what = "lucent" if name == "lucent" else f"{name} (needed by lucent)"
            fail(f"{what} is not installed; this benchmark needs it: {INSTALL}")
    stubs: dict[str, types.ModuleType] = {}
    if not _importable("torchvision.transforms"):
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")

        class Normalize:  # lucent builds one only for ImageNet preprocessing, which is off here
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("torchvision is not installed: ImageNet normalisation is unavailable")

        tvt.Normalize = Normalize  # type: ignore[attr-defined]
        tv.transforms = tvt  # type: ignore[attr-defined]
        stubs.update({"torchvision": tv, "torchvision.transforms": tvt})
    if not _importable("IPython.display"):
        ip, ipd = types.ModuleType("IPython"), types.ModuleType("IPython.display")
        ip.display = ipd  # type: ignore[attr-defined]
        stubs.update({"IPython": ip, "IPython.display": ipd})
    sys.modules.update(stubs)
    try:
        import kornia
        from lucent.optvis import objectives, param, render, transform
    except ImportError as exc:
        fail(f"lucent does not import ({exc}); install it with: {INSTALL}")
    finally:
        for key in stubs:
            sys.modules.pop(key, None)
    if not (hasattr(kornia, "get_rotation_matrix2d") and hasattr(kornia, "warp_affine")):
        fail(f"lucent 0.1.8 needs kornia<=0.4.1 (kornia {kornia.__version__} is installed): {INSTALL}")
    return render, param, transform, objectives, sorted(k for k in stubs if "." not in k)


def centre_crop(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """The central size×size pixels; a smaller image is resized up (bilinear)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


class LucentWrapper(nn.Module):
    """Model A for lucent: any image size in (centre-cropped to 64×64), logits out through a named
    layer lucent can hook."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.logits_layer = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_layer(self.model(centre_crop(x)))


# -- models and data -------------------------------------------------------------------------------
def trained_model(work: Path, seed: int, epochs: int) -> tuple[Any, float]:
    """A photos convnet (default options, ``epochs`` epochs, ``seed``), trained once and cached;
    also the seconds training took (0 when reused)."""
    import vizkit
    from vizkit.training import train

    path = work / f"convnet-photos-seed{seed}-e{epochs}.pt"
    took = 0.0
    if not path.exists():
        start = time.perf_counter()
        train("convnet", "photos", out=path, epochs=epochs, progress=False, log_dir=work / "logs", seed=seed)
        took = time.perf_counter() - start
    model = vizkit.load(path).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, took


def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    import vizkit

    examples = vizkit.load_dataset("photos", split="test", seed=0)
    return examples.images.float(), torch.as_tensor(examples.labels).long()


def logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.activations(part, "logits") for part in x.split(500)])


# -- the three methods -----------------------------------------------------------------------------
def run_vizkit_colour(model: Any, seed: int, steps: int) -> torch.Tensor:
    from vizkit import optvis
    from vizkit.optvis import objectives as O

    rendering = optvis.render(model, [O.channel("logits", c) for c in range(N_CLASSES)], restarts=1,
                              param="fourier", transforms="standard", constraint=optvis.SigmoidRange(0.0, 1.0),
                              optimizer="adam", lr=0.05, thresholds=(steps,), seed=seed)
    return rendering.images


def run_pixel_ascent(model: Any, seed: int, steps: int, rho: float) -> torch.Tensor:
    from vizkit import optvis
    from vizkit.optvis import objectives as O

    rendering = optvis.render(model, [O.channel("logits", c) for c in range(N_CLASSES)], restarts=1,
                              param="pixel", transforms=None, constraint=optvis.Sphere(rho), optimizer="ascent",
                              lr=0.1, thresholds=(steps,), seed=seed)
    return rendering.images


def run_lucent(lucent: tuple[Any, ...], wrapped: nn.Module, seed: int, steps: int) -> torch.Tensor:
    render, param, transform, objectives, _ = lucent
    torch.manual_seed(seed)  # lucent's start (torch.randn) and transforms (np.random) use the global generators
    np.random.seed(seed)
    objective = objectives.Objective.sum(
        [objectives.channel("logits_layer", c, batch=c) for c in range(N_CLASSES)])
    images = render.render_vis(
        wrapped, objective, lambda: param.image(SIZE, fft=True, decorrelate=True, batch=N_CLASSES),
        transforms=[*transform.standard_transforms, centre_crop], thresholds=(steps,), preprocess=False,
        fixed_image_size=SIZE, show_image=False, progress=False)
    return torch.from_numpy(np.ascontiguousarray(images[-1])).permute(0, 3, 1, 2).float()


# -- measures --------------------------------------------------------------------------------------
def measure(images: torch.Tensor, model_a: Any, model_b: Any, rho: float) -> dict[str, float]:
    classes = torch.arange(N_CLASSES)
    norms = images.flatten(1).norm(dim=1).clamp_min(1e-12)
    at_rho = images * (rho / norms).reshape(-1, 1, 1, 1)
    a_raw, a_rho, b = logits(model_a, images), logits(model_a, at_rho), logits(model_b, images)
    return {
        "a_rho": float(a_rho[classes, classes].mean()),
        "a_raw": float(a_raw[classes, classes].mean()),
        "a_top1": float((a_raw.argmax(1) == classes).float().mean()),
        "transfer": float((b.argmax(1) == classes).float().mean()),
        "p_b": float(torch.softmax(b, 1)[classes, classes].mean()),
        "norm": float(norms.mean()),
    }


def mean_sd(values: list[float], fmt: str) -> str:
    m = statistics.fmean(values)
    if len(values) < 2:
        return format(m, fmt)
    return f"{format(m, fmt)} ± {format(statistics.stdev(values), fmt)}"


# -- the figure ------------------------------------------------------------------------------------
def save_figure(path: Path, optima: dict[str, torch.Tensor], reference: torch.Tensor, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vizkit.datasets.photos import PHOTOGRAPHS

    rows = [*((name, imgs, name == "pixel ascent") for name, imgs in optima.items()),
            ("a test crop (reference)", reference, False)]
    fig, axes = plt.subplots(len(rows), N_CLASSES, figsize=(1.6 * N_CLASSES, 1.75 * len(rows) + 0.4), squeeze=False)
    for r, (name, imgs, scale) in enumerate(rows):
        for c in range(N_CLASSES):
            img = imgs[c].detach().float()
            if scale:
                img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
            ax = axes[r, c]
            ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(PHOTOGRAPHS[c].replace("_", " ").replace("immunohistochemistry", "immunohisto."),
                             fontsize=9)
            if c == 0:
                ax.set_ylabel(name + ("\n(min-max scaled)" if scale else ""), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vizkit-optvis-vs-lucent",
                        help="where the two trained models are cached (default: %(default)s)")
    parser.add_argument("--figure", type=Path, default=None, help="write the optima as a PNG grid here")
    parser.add_argument("--seeds", type=int, default=3, help="optimisation seeds (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=512, help="optimisation steps (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of each model (default: %(default)s)")
    parser.add_argument("--model-seeds", default="0,1", help="training seeds of model A and model B (default: %(default)s)")
    args = parser.parse_args()
    try:
        seed_a, seed_b = (int(s) for s in args.model_seeds.split(","))
    except ValueError:
        parser.error(f"--model-seeds takes two integers like 0,1, got {args.model_seeds!r}")
    if seed_a == seed_b:
        parser.error("--model-seeds: model B needs another seed than model A")
    if args.seeds < 1 or args.steps < 1 or args.threads < 1 or args.epochs < 1:
        parser.error("--seeds, --steps, --threads and --epochs must be at least 1")

    lucent = import_lucent()  # before training: a missing lucent is one line, not a minute later
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)

    from vizkit.sphere import data_radius

    model_a, took_a = trained_model(args.work, seed_a, args.epochs)
    model_b, took_b = trained_model(args.work, seed_b, args.epochs)
    test_x, test_y = test_set()
    acc_a = float((logits(model_a, test_x).argmax(1) == test_y).float().mean())
    acc_b = float((logits(model_b, test_x).argmax(1) == test_y).float().mean())
    rho = data_radius(model_a)
    rho_source = "model A's recorded mean training-image norm"
    if not rho:
        from vizkit.datasets.photos import build

        rho = float(build(seed=seed_a).train_tensor().flatten(1).norm(dim=1).mean())
        rho_source = "mean norm of model A's training crops"
    wrapped = LucentWrapper(model_a).eval()

    results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    first: dict[str, torch.Tensor] = {}
    for seed in range(args.seeds):
        runs = {
            "vizkit colour": lambda s=seed: run_vizkit_colour(model_a, s, args.steps),
            "lucent render_vis": lambda s=seed: run_lucent(lucent, wrapped, s, args.steps),
            "pixel ascent": lambda s=seed: run_pixel_ascent(model_a, s, args.steps, rho),
        }
        for name, fn in runs.items():
            start = time.perf_counter()
            images = fn()
            seconds = time.perf_counter() - start
            row = measure(images, model_a, model_b, rho) | {"s_per_image": seconds / N_CLASSES}
            results[name].append(row)
            first.setdefault(name, images)
            print(f"  seed {seed} {name:<18} {seconds:6.1f} s  A@rho {row['a_rho']:7.2f}  "
                  f"B top-1 {row['transfer']:.1f}  p_B {row['p_b']:.3f}", flush=True)

    versions = (f"torch {torch.__version__}, torch-lucent {importlib.metadata.version('torch-lucent')}, "
                f"kornia {importlib.metadata.version('kornia')}, vizkit {importlib.metadata.version('vizkit')}")
    stand_ins = f" (stand-ins for {', '.join(lucent[4])}: not importable, unused)" if lucent[4] else ""
    print()
    print(f"optvis vs lucent on the photos convnet, {datetime.datetime.now().isoformat(timespec='seconds')}, "
          f"{platform.node() or 'this machine'}")
    print(f"{versions}{stand_ins}")
    print(f"threads: torch {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"models: convnet, photos, {args.epochs} epochs, seeds A={seed_a} B={seed_b}"
          f"{'' if not (took_a or took_b) else f' (trained here: {took_a:.0f} s, {took_b:.0f} s)'}; "
          f"test accuracy A {acc_a:.3f}, B {acc_b:.3f} ({len(test_y)} test crops)")
    print(f"{N_CLASSES} class optima on model A per method, {args.steps} steps, restarts 1; "
          f"{args.seeds} optimisation seed(s), mean ± std over seeds")
    print(f"(a) A's logit of the class at x·rho/|x| (plain L2 norm, nothing subtracted), rho = {rho:.2f} "
          f"({rho_source}); mean over classes")
    print("(b) transfer: share of optima (as produced) that model B labels as the class; B's mean p(class)")
    print("(c) render wall time / 10 images")
    print()
    header = ("method", "(a) A logit @ rho", "A logit raw", "A top-1", "(b) B top-1", "B p(class)", "(c) s/image",
              "mean |x|")
    keys = ("a_rho", "a_raw", "a_top1", "transfer", "p_b", "s_per_image", "norm")
    formats = (".2f", ".2f", ".2f", ".2f", ".3f", ".2f", ".1f")
    table = [header] + [(name, *(mean_sd([r[k] for r in results[name]], f) for k, f in zip(keys, formats, strict=True)))
                        for name in METHODS]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("-|-".join("-" * w for w in widths))
    base = statistics.fmean(r["s_per_image"] for r in results["lucent render_vis"])
    print()
    print("time vs lucent: " + ", ".join(
        f"{name} {statistics.fmean(r['s_per_image'] for r in results[name]) / base:.2f}×" for name in METHODS))

    if args.figure is not None:
        reference = torch.stack([test_x[(test_y == c).nonzero()[0, 0]] for c in range(N_CLASSES)])
        save_figure(args.figure, first, reference,
                    f"class optima on model A (seed 0, {args.steps} steps); rows 1-3 per method, last row a test crop")
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
