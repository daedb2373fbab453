"""occlusion: vizkit's probe vs captum's ``Occlusion`` used well (all units in one call) and per unit.

Two workloads, both with random weights (timing does not depend on training):

* **convnet**: vizkit's MNIST-sized convnet (``channels = 32,64``), the 64 units of ``pool2``,
  4 images, a 7×7 grey square with stride 2 (12×12 = 144 windows per image); 10 classes.
* **resnet**: a small ResNet written here (3×32×32 input, stem + three stages of two basic
  blocks with batch norm, in-place ReLU and a strided shortcut, 16/32/64 channels, global
  average pool, 1000 classes), wrapped with ``vizkit.wrap``; the 32 units of ``layer2``, 4 images
  from a ``.npy`` file, an 8×8 square with stride 2 (169 windows per image).

Timed, in one run on the same machine, best of ``--repeats`` (interleaved, because the box is shared):

* **vizkit compute**: the probe's ``compute`` (loading the examples, every occluded forward pass,
  the units' maps, the true-class probability and top-label maps, the attribution): everything in
  ``arrays.npz``, no figure.
* **vizkit run, figure drawn**: ``vizkit.run_probe`` without ``out``: compute plus drawing the
  figure; **written**: with ``out`` (a fresh directory), so also the PNG, ``arrays.npz`` and the
  page. Captum draws and writes nothing; matplotlib's constrained layout and rendering of the
  28-panel figure is most of the difference.
* **captum, all units, units only**: ``Occlusion(f).attribute(..., target=None)`` with ``f``
  returning ``[B, units]`` (each unit's summed map) and stopping at the unit layer — the cheapest
  captum call, but it computes less than vizkit: no class probabilities, and for a middle layer
  no pass through the layers above it.
* **captum, all units + p(true class)**: the same call with ``f`` returning the units and the
  true class's softmax probability from one full pass — the same forward work as vizkit, and
  one more output per image (captum attributes it, where vizkit keeps its per-window map and the
  top label's). Returning the whole softmax instead makes captum attribute every class: on the
  1000-class ResNet that took 11.6 s, 19× vizkit, so it is not the fair comparison.
* **captum, one call per unit** (``target = unit``): every unit on the convnet; on the ResNet a
  few units, scaled to all (the calls are identical but for the target), marked "extrapolated".

Every captum call uses ``perturbations_per_eval`` = all windows of an image, and the largest
absolute difference between captum's attribution and vizkit's is printed.

Run: ``python benchmarks/occlusion_vs_captum.py`` (``--threads``, ``--repeats``, ``--only convnet|resnet``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "resnet-gallery"))
from mynets import BasicBlock  # noqa: E402  (the example's torchvision-style block)


class TinyResNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(c_in, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)))
            c_in = width
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def features(self, x: torch.Tensor, upto: str) -> torch.Tensor:
        for name in ("stem", "layer1", "layer2", "layer3"):
            x = getattr(self, name)(x)
            if name == upto:
                return x
        raise ValueError(upto)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x, "layer3")).flatten(1))


def tiny_resnet(seed: int = 0) -> TinyResNet:
    """Random weights, and batch-norm statistics that keep activations of order one (a fresh
    network's running statistics are the identity, which lets them grow block by block)."""
    torch.manual_seed(seed)
    net = TinyResNet()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(64, 3, 32, 32))
    return net.eval()


def best_of(repeats: int, fns: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """The best wall time of each function over ``repeats`` interleaved rounds, and its last result."""
    times = {name: float("inf") for name in fns}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return times, results


def workload(name: str, tmp: Path) -> dict[str, Any]:
    """The model, probe options and captum forward functions of one workload."""
    import vizkit

    if name == "convnet":
        from convnet_common import untrained_mnist_convnet

        model = untrained_mnist_convnet("32,64")
        layer, window, stride = "pool2", 7, 2
        opts = dict(images="0:4", window=window, stride=stride, fill=0.5, output="logits")

        def units_only(x: torch.Tensor) -> torch.Tensor:
            return model.activations(x, layer).sum(dim=(2, 3))

        def with_probs(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
            h = model.features(x)
            p = torch.softmax(model.classifier(h.flatten(1)), 1).gather(1, truth[:, None])
            return torch.cat([h.sum(dim=(2, 3)), p], 1)

        per_unit_count = None  # every unit
    else:
        net = tiny_resnet()
        images = torch.rand(4, 3, 32, 32).numpy()
        np.save(tmp / "images.npy", images)
        model = vizkit.wrap(net, input_shape=(3, 32, 32), layers=["layer2", "fc"])
        layer, window, stride = "layer2", 8, 2
        opts = dict(images="0:4", window=window, stride=stride, fill=0.5, output="fc", data=str(tmp / "images.npy"),
                    split="all")

        def units_only(x: torch.Tensor) -> torch.Tensor:
            return net.features(x, layer).sum(dim=(2, 3))

        def with_probs(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
            h = net.features(x, layer)
            units = h.sum(dim=(2, 3))  # before layer3: its in-place ReLU does not touch h
            p = torch.softmax(net.fc(net.pool(net.layer3(h)).flatten(1)), 1).gather(1, truth[:, None])
            return torch.cat([units, p], 1)

        per_unit_count = 4
    return dict(model=model, layer=layer, window=window, stride=stride, opts=opts, units_only=units_only,
                with_probs=with_probs, per_unit_count=per_unit_count)


def bench(name: str, repeats: int, tmp: Path) -> None:
    from captum.attr import Occlusion

    import vizkit
    from vizkit.api import prepare_run
    from vizkit.runner import compute_part

    w = workload(name, tmp)
    model, layer, opts = w["model"], w["layer"], w["opts"]
    n_units = model.layer_infos()[layer].shape[0]

    def vizkit_compute() -> Any:
        run = prepare_run("occlusion", model, layer, **opts)
        return compute_part(run, run.units)

    first = vizkit_compute()  # warm-up, and the images captum gets
    images = torch.from_numpy(first.arrays["images"])
    n_img = images.shape[0]
    n_windows = first.arrays["activation_maps"].shape[2] * first.arrays["activation_maps"].shape[3]
    channels = images.shape[1]  # the square covers every channel, as vizkit's does
    kw = dict(sliding_window_shapes=(channels, w["window"], w["window"]), strides=(channels, w["stride"], w["stride"]),
              baselines=opts["fill"], perturbations_per_eval=n_windows)
    occ_units, occ_probs = Occlusion(w["units_only"]), Occlusion(w["with_probs"])
    per_unit = list(range(n_units if w["per_unit_count"] is None else w["per_unit_count"]))

    truth = torch.from_numpy(first.arrays["true_labels"])

    def captum_all(occ: Any, *args: Any) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.no_grad():  # captum repeats additional_forward_args with the batch
                return occ.attribute(images, target=None, additional_forward_args=args or None, **kw)
        return call

    def captum_per_unit() -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([occ_units.attribute(images, target=u, **kw)[:, 0] for u in per_unit])

    def vizkit_written() -> Any:
        with tempfile.TemporaryDirectory(dir=tmp) as out:  # a fresh directory: never a reused result
            return vizkit.run_probe("occlusion", model, layer, out=out, show_progress=False, **opts)

    fns = {
        "vizkit compute": vizkit_compute,
        "vizkit run, figure drawn": lambda: vizkit.run_probe("occlusion", model, layer, show_progress=False, **opts),
        "vizkit run, written (--out)": vizkit_written,
        "captum all units, units only": captum_all(occ_units),
        "captum all units + p(true class)": captum_all(occ_probs, truth),
    }
    captum_all(occ_units)()  # warm-up
    times, results = best_of(repeats, fns)
    per_unit_times, per_unit_results = best_of(1, {"per unit": captum_per_unit})
    per_unit_result = per_unit_results["per unit"]
    t_per_unit = per_unit_times["per unit"] * n_units / len(per_unit)

    ours = results["vizkit compute"].arrays["attribution"]  # [units, images, H, W]
    # target=None: one attribution per (image, output), [B·outputs, C, H, W]; every channel alike
    from_all = results["captum all units, units only"][:, 0].reshape(n_img, -1, *ours.shape[2:])[:, :n_units]
    from_probs = results["captum all units + p(true class)"][:, 0].reshape(n_img, -1, *ours.shape[2:])[:, :n_units]
    diffs = [float(np.abs(ours - ref.transpose(0, 1).numpy()).max()) for ref in (from_all, from_probs)]
    diffs.append(float(np.abs(ours[per_unit] - per_unit_result.numpy()).max()))
    scale = float(np.abs(ours).max())

    print(f"\n{name}: {n_units} units of {layer}, {n_img} images, {w['window']}x{w['window']} window, "
          f"stride {w['stride']} ({n_windows} windows/image), "
          f"{first.meta['n_classes']} classes, {torch.get_num_threads()} thread(s), best of {repeats}")
    base = times["vizkit compute"]
    for label, t in times.items():
        print(f"  {label:<36} {t:8.3f} s   {t / base:6.2f}x the time of vizkit compute")
    extrapolated = "" if len(per_unit) == n_units else f" (extrapolated from {len(per_unit)} units)"
    print(f"  {'captum one call per unit':<36} {t_per_unit:8.3f} s   {t_per_unit / base:6.2f}x the time of vizkit compute"
          f"{extrapolated}")
    print(f"  max |difference| of the attributions vs captum (all units / + p(true) / per unit): "
          f"{diffs[0]:.2g} / {diffs[1]:.2g} / {diffs[2]:.2g} (largest |attribution| {scale:.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("convnet", "resnet"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("convnet", "resnet"):
            if args.only in (None, name):
                bench(name, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
