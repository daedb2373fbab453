"""Peak memory of ``topk`` and ``deconv`` crops on a ResNet-18 block: the old field code vs the new.

The workload of issue 21: a ResNet-18-shaped module (torchvision's layout and channel widths
64/128/256/512, random weights; torchvision is not needed) wrapped at 64x64, 15 images, k = 9,
at the block ``layer3.1``.

* **old**: the field composed from the executed modules in series (the skip path's stride-2 1x1
  convs counted on the main path: jump 64, size 603 instead of 16 and 211) and crops cut by advanced
  indexing from a copy of every image padded by the field size — the code before issue 21, copied
  here and patched in.
* **new**: ``vizkit.receptive_fields``: the field from the positive linearisation (every position
  of layer3.1 sees the whole 64x64 image, so whole images are shown and the result says why), crops
  one image at a time into a zero tile.

Each case runs in its own subprocess; its peak resident set size (``ru_maxrss``) is reported next
to a baseline process that builds the model and the data and runs nothing, so the probe's own share
is visible. ``--layer layer2.1`` shows a layer whose field (99 px) does give crops.

    python benchmarks/crop_memory.py                    # --units 0:4 --layer layer3.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, resource, sys, time
args = json.loads(sys.argv[1])
import numpy as np
import torch
from torch import nn
import vizkit
from vizkit import receptive_fields as rf
torch.set_num_threads(args["threads"])


sys.path.insert(0, args["examples"])
from mynets import ResNet  # the example's torchvision-style ResNet, at torchvision's widths


def old_field(model, layer):
    """The field before issue 21: the executed leaf modules composed in series."""
    from vizkit.deconvnet import executed_modules
    pair = lambda v: (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
    jump, size, start = [1, 1], [1, 1], [0, 0]
    for m in executed_modules(model, layer):
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            k, s, p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
            d = pair(getattr(m, "dilation", 1))
            for i in range(2):
                start[i] -= p[i] * jump[i]
                size[i] += (k[i] - 1) * d[i] * jump[i]
                jump[i] *= s[i]
    return rf.LayerField(layer, rf.Field(tuple(jump), tuple(size), tuple(start)))


def old_crops(images, positions, field):
    """The crops before issue 21: advanced indexing into a copy of every image padded by the field."""
    pad = max(field.size) + max(abs(field.start[0]), abs(field.start[1]))
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    m, c = images.shape[:2]
    r0 = field.start[0] + positions[:, 0].long() * field.jump[0] + pad
    c0 = field.start[1] + positions[:, 1].long() * field.jump[1] + pad
    rows = r0[:, None] + torch.arange(field.size[0])
    cols = c0[:, None] + torch.arange(field.size[1])
    return padded[torch.arange(m)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


torch.manual_seed(0)
net = ResNet(widths=(64, 128, 256, 512), num_classes=1000).eval()
model = vizkit.wrap(net, (3, 64, 64), layers=[args["layer"]])
if args["code"] == "old":
    rf.layer_field, rf.field_crops = old_field, old_crops
start = time.perf_counter()
meta = None
if args["probe"] != "baseline":
    result = vizkit.run_probe(args["probe"], model, args["layer"], units=args["units"], k=args["k"],
                              data=args["data"], split="all")
    meta = result.meta["receptive_field"]
    tile = list(result.arrays["crops"].shape[-2:])
else:
    tile = None
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"peak_mib": peak / 1024, "seconds": time.perf_counter() - start, "field": meta, "tile": tile}))
'''


def run(config: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{config}: failed\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", default="layer3.1")
    parser.add_argument("--units", default="0:4")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "x.npy"
        np.save(data, np.random.default_rng(0).random((15, 3, 64, 64)).astype(np.float32))
        common = {"layer": args.layer, "units": args.units, "k": args.k, "threads": args.threads, "data": str(data),
                  "examples": str(Path(__file__).resolve().parents[1] / "examples" / "resnet-gallery")}
        base = run({**common, "probe": "baseline", "code": "new"})
        print(f"ResNet-18 (64/128/256/512) at 64x64, 15 images, k={args.k}, units {args.units}, layer {args.layer}; "
              f"baseline (model and data, no probe) {base['peak_mib']:.0f} MiB")
        print(f"{'probe':8} {'code':4} {'tile':>9} {'peak MiB':>9} {'above base':>10} {'s':>6}  field")
        for probe in ("topk", "deconv"):
            for code in ("old", "new"):
                r = run({**common, "probe": probe, "code": code})
                tile = "x".join(map(str, r["tile"]))
                print(f"{probe:8} {code:4} {tile:>9} {r['peak_mib']:9.0f} {r['peak_mib'] - base['peak_mib']:10.0f} "
                      f"{r['seconds']:6.1f}  {r['field']}")


if __name__ == "__main__":
    main()
