"""occlusion: vizkit's batched maps for every unit of a layer vs captum's ``Occlusion`` per unit.

The workload of the issue: occlusion maps for the 64 units of a convnet layer (vizkit's convnet,
``channels = 32,64``, layer ``pool2``; random weights — timing does not depend on training) on a
few MNIST-sized images, a 7×7 grey square moved with stride 2 (12×12 = 144 window positions per
image).

* **vizkit**: ``vizkit.run_probe("occlusion", ...)`` — all (image × window) copies in batches,
  all 64 units read off the same forward passes (it also computes the probability and label
  maps, which captum does not).
* **captum**: ``captum.attr.Occlusion`` called once per unit (``target = unit``) with the forward
  function returning every unit's summed activation, and ``perturbations_per_eval`` = all 144
  windows, so each call is itself batched over windows; 64 calls per image batch.

Both compute the same per-pixel attribution (the mean over the windows covering a pixel of
unoccluded − occluded activation); the script prints the largest absolute difference.

Run: ``python benchmarks/occlusion_vs_captum.py`` (``--images``, ``--threads``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--stride", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from captum.attr import Occlusion
    from convnet_common import untrained_mnist_convnet

    import vizkit

    model = untrained_mnist_convnet("32,64")
    n_units = model.layer_infos()["pool2"].shape[0]
    fill = 0.5
    opts = dict(images=f"0:{args.images}", window=args.window, stride=args.stride, fill=fill, output="logits")
    vizkit.run_probe("occlusion", model, "pool2", units="0:2", **{**opts, "images": "0:1"})  # warm-up
    start = time.perf_counter()
    result = vizkit.run_probe("occlusion", model, "pool2", **opts)
    t_vizkit = time.perf_counter() - start
    images = torch.from_numpy(result.arrays["images"])
    n_windows = result.arrays["activation_maps"].shape[2] * result.arrays["activation_maps"].shape[3]

    def summed(x: torch.Tensor) -> torch.Tensor:
        return model.activations(x, "pool2").sum(dim=(2, 3))

    occ = Occlusion(summed)
    kw = dict(sliding_window_shapes=(1, args.window, args.window), strides=(1, args.stride, args.stride),
              baselines=fill, perturbations_per_eval=n_windows)
    with torch.no_grad():
        occ.attribute(images[:1], target=0, **kw)  # warm-up
        start = time.perf_counter()
        captum = torch.stack([occ.attribute(images, target=u, **kw)[:, 0] for u in range(n_units)])
        t_captum = time.perf_counter() - start
    diff = float(np.abs(captum.numpy() - result.arrays["attribution"]).max())
    scale = float(np.abs(captum.numpy()).max())
    print(f"occlusion maps: {n_units} units of pool2, {args.images} images, {args.window}x{args.window} window, "
          f"stride {args.stride} ({n_windows} windows/image), {args.threads} thread(s)")
    print(f"  vizkit (all units per forward pass): {t_vizkit:8.3f} s")
    print(f"  captum Occlusion, one call per unit: {t_captum:8.3f} s")
    print(f"  ratio captum / vizkit: {t_captum / t_vizkit:.1f}x")
    print(f"  max |difference| of the attributions: {diff:.3g} (largest |attribution| {scale:.3g})")


if __name__ == "__main__":
    main()
