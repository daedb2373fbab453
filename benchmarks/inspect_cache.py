"""``vizkit inspect`` on a reference checkpoint: the first call builds the model (Lightning) to ask
every probe whether it runs; later calls reuse that answer while the file and the code are unchanged.

Side by side in one run, each a fresh interpreter as a user's shell would start: a cold call (empty
cache), warm calls (the cached answer), and ``vizkit plugins`` (no model at all) as the floor.

    python benchmarks/inspect_cache.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vizkit.checkpoint import save_checkpoint
from vizkit.models.sdae import SDAE


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vizkit", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = SDAE(input_shape=[1, 28, 28], layers="500,500")
        model.data_info = {"name": "mnist", "options": {}, "input_shape": [1, 28, 28]}
        ckpt = save_checkpoint(model.to_checkpoint(), Path(tmp) / "sdae.pt", model=model)
        cold, warm, floor = [], [], []
        for i in range(repeats):
            env = {**os.environ, "VIZKIT_CACHE_DIR": str(Path(tmp) / f"cache{i}")}
            cold.append(timed(["inspect", str(ckpt)], env))
            warm.append(timed(["inspect", str(ckpt)], env))
            floor.append(timed(["plugins"], env))
    best = {name: min(values) for name, values in (("cold", cold), ("warm", warm), ("plugins", floor))}
    print(f"{'call':<28}{'best of ' + str(repeats):>12}")
    print(f"{'inspect, first (builds)':<28}{best['cold']:>10.2f} s")
    print(f"{'inspect, cached answer':<28}{best['warm']:>10.2f} s   ({best['cold'] / best['warm']:.2f}x faster)")
    print(f"{'plugins (no model)':<28}{best['plugins']:>10.2f} s")


if __name__ == "__main__":
    main()
