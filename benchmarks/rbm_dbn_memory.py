"""Peak memory of training a 784-500-500-2000 DBN for one epoch (per greedy stage), as ``vizkit train``.

Each configuration runs in its own subprocess; the peak resident set size (``ru_maxrss``) of that
process is reported next to a baseline process that only imports vizkit and builds the data, so the
training's own share is visible. The model itself is 784·500 + 500·500 + 500·2000 weights (6.6 MB
in float32).

    python benchmarks/rbm_dbn_memory.py
    python benchmarks/rbm_dbn_memory.py --data-dir ~/mnist        # full 60,000-image MNIST
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
start = time.perf_counter()
import torch
from vizkit.training import train, build_data
if args["mode"] == "baseline":
    dm = build_data("mnist", args["data"], args["batch_size"], 0)
    dm.train_tensor(), dm.test_tensor()
else:
    train(args["kind"], "mnist", out=args["out"], epochs=1, batch_size=args["batch_size"],
          model_options=args["options"], data_options=args["data"], log_dir=args["logs"], progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"peak_mib": peak / 1024, "seconds": time.perf_counter() - start}))
"""


def run(config: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="500,500,2000")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    data = {"data_dir": args.data_dir} if args.data_dir else {}
    with tempfile.TemporaryDirectory() as tmp:
        common = {"batch_size": args.batch_size, "data": data, "logs": f"{tmp}/logs"}
        configs = {
            "baseline (import + data)": {**common, "mode": "baseline"},
            f"dbn {args.layers}, pcd, 1 epoch/stage": {
                **common, "mode": "train", "kind": "dbn", "out": f"{tmp}/dbn.pt",
                "options": {"layers": args.layers, "binarize": "true", "trainer": "pcd", "loglik": "none"}},
            f"dbn {args.layers}, cd-1, 1 epoch/stage": {
                **common, "mode": "train", "kind": "dbn", "out": f"{tmp}/dbn-cd.pt",
                "options": {"layers": args.layers, "binarize": "true", "trainer": "cd", "loglik": "none"}},
            f"sdae {args.layers}, 1 epoch/stage (reference)": {
                **common, "mode": "train", "kind": "sdae", "out": f"{tmp}/sdae.pt",
                "options": {"layers": args.layers}},
        }
        results = {}
        for name, config in configs.items():
            t = time.perf_counter()
            results[name] = run(config)
            print(f"  {name}: {results[name]['peak_mib']:.0f} MiB peak, {time.perf_counter() - t:.0f} s", flush=True)
    base = results["baseline (import + data)"]["peak_mib"]
    print()
    print("| run | peak RSS (MiB) | above baseline (MiB) | wall s |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['peak_mib']:.0f} | {r['peak_mib'] - base:.0f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
