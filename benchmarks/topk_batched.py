"""topk: one pass over the data for every unit of a layer vs one pass per unit.

The workload of the issue: the top-9 test images of every unit of a convnet layer on the offline
MNIST subset (vizkit's convnet, ``channels = 16,32``, layer ``conv2``: 32 units; random weights —
timing does not depend on training).

* **one pass**: ``vizkit.run_probe("topk", ...)`` — each batch of images goes through the model
  once and updates a running top-k for all units (``vizkit.probe_inputs.top_examples``).
* **per unit**: the same running top-k, but one full pass over the data for each unit (what a
  loop over ``units`` around a single-unit search does).
* **search only**: the one-pass running top-k without the probe's crops, figure and data loading.
* **full sort**: one pass that keeps every score and sorts at the end, to show the running top-k
  costs nothing extra (and needs only [k + batch, units] memory instead of [N, units]).

The three must give the same indices; the script checks that.

Run: ``python benchmarks/topk_batched.py`` (``--threads``, ``--layer``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--k", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from convnet_common import untrained_mnist_convnet

    import vizkit
    from vizkit import probe_inputs

    model = untrained_mnist_convnet("16,32")
    info = model.layer_infos()[args.layer]
    examples = probe_inputs.load_examples(model)
    units = torch.arange(info.n_units)

    start = time.perf_counter()
    batched = vizkit.run_probe("topk", model, args.layer, k=args.k, batch=256)
    t_one = time.perf_counter() - start

    def score_all(x: torch.Tensor) -> torch.Tensor:
        return probe_inputs.unit_scores(model.activations(x, args.layer), units, info)

    start = time.perf_counter()
    engine = probe_inputs.top_examples(score_all, examples, args.k, 256)[1]
    t_engine = time.perf_counter() - start

    start = time.perf_counter()
    per_unit = []
    for u in units:
        def score(x: torch.Tensor, u: torch.Tensor = u) -> torch.Tensor:
            return probe_inputs.unit_scores(model.activations(x, args.layer), u.reshape(1), info)

        per_unit.append(probe_inputs.top_examples(score, examples, args.k, 256)[1])
    t_per_unit = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        scores = torch.cat([probe_inputs.unit_scores(model.activations(x, args.layer), units, info)
                            for _, x in examples.batches(256)]).double()
    order = np.stack([np.lexsort((np.arange(len(s)), -s))[:args.k] for s in scores.T.numpy()])
    t_sort = time.perf_counter() - start

    same = (np.array_equal(batched.arrays["indices"], torch.cat(per_unit).numpy())
            and np.array_equal(batched.arrays["indices"], order) and np.array_equal(engine.numpy(), order))
    n = examples.images.shape[0]
    print(f"topk: top-{args.k} of {len(units)} units of {args.layer} over {n} images "
          f"({examples.source}), {args.threads} thread(s)")
    print(f"  one pass, running top-k (vizkit topk, incl. crops and figure): {t_one:8.3f} s")
    print(f"  one pass, running top-k only (probe_inputs.top_examples):     {t_engine:8.3f} s")
    print(f"  one pass per unit (same running top-k, one unit each):      {t_per_unit:8.3f} s")
    print(f"  one pass, keep all scores and sort:                         {t_sort:8.3f} s")
    print(f"  ratio per-unit / one pass: {t_per_unit / t_engine:.1f}x (search only), "
          f"{t_per_unit / t_one:.1f}x (whole probe); identical indices: {same}")


if __name__ == "__main__":
    main()
