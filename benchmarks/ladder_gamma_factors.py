"""Why Add looked as invariant as Mod: training length against the data's contrast, measured.

For every ladder checkpoint given (or every ``models/*.pt`` under the run folders given, as
``benchmarks/ladder_long.sh`` writes them), the layer-average translation γ of Rasmus et al. (Eq. 9)
on 2,000 held-out sets of 16 shifted copies, three ways:

- ``γ⁽²⁾ own sets``: the copies go through the model's own preprocessing (what the gamma probe and
  the gallery report);
- ``γ⁽²⁾ normalised sets``: the same copies, each divided by its own RMS after whitening
  (``patches.divide_by_contrast`` without its softening floor), so a window's contrast no longer
  separates it from the others (only for models trained without ``-D contrast=divisive``);
- ``γ(‖x‖)``: γ of the input's energy itself. Near 1 means a shift barely changes a window's energy
  while windows differ in it a lot: any unit that follows energy looks invariant.

Rows of the same decoder, data and length are averaged over seeds (± the sample std). The paper's
values (CIFAR-10 and O&F, 1M–4M updates) are printed beside them.

    python benchmarks/ladder_gamma_factors.py /work/runs/ladder-*-s*     # folders or .pt files
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch

import vizkit
from vizkit import image_transforms, papers
from vizkit.datasets import patches
from vizkit.probes.gamma.stats import SetStats

LABEL = {"linear": "Linear", "nolat": "No-lat", "add": "Add", "mod": "Mod"}


def layer_gamma(stats: SetStats) -> float:
    g, ok = stats.gamma()
    return float(g[ok].mean())


def measure(path: Path, n_sets: int, seed: int) -> dict[str, float | str | int]:
    model = vizkit.load(path)
    source = image_transforms.set_source(model, ["translation"], n_sets=n_sets, seed=seed)
    x = source.sets("translation").float()
    n = x.shape[0]
    flat = x.reshape(n * image_transforms.SET_SIZE, *x.shape[2:])
    rows = flat.reshape(flat.shape[0], -1)
    energy = SetStats()
    energy.add(rows.norm(dim=1).reshape(n, image_transforms.SET_SIZE, 1))
    options = model.data_info.get("options") or {}
    normalised = options.get("contrast", "none") != "none"
    layers = [name for name in model.layer_infos() if name in ("h1", "h2")]
    out: dict[str, float | str | int] = {
        "decoder": model.hparams["decoder"], "steps": int(model.metrics["denoising"]["steps"]),
        "data": "divisive contrast" if normalised else "whitened", "seed": int(model.data_info.get("seed", 0)),
        "energy": layer_gamma(energy), "cost": float(model.metrics["denoising"]["val_cost"]),
        "depth": len(model.layer_infos()),
    }
    variants = {"own": flat}
    if not normalised:
        # plain RMS normalisation (no softening floor), at the model's input scale
        tiny = 1e-12 * float(rows.pow(2).mean())
        variants["normalised"] = patches.divide_by_contrast(rows, tiny).reshape(flat.shape) * float(rows.std())
    for label, inputs in variants.items():
        with torch.no_grad():
            acts = vizkit.layer_activations(model, inputs, layers)
        for name in layers:
            st = SetStats()
            st.add(acts[name].reshape(n, image_transforms.SET_SIZE, -1))
            out[f"{label}_{name}"] = layer_gamma(st)
    return out


def paper(model: str, depth: int) -> str:
    """The paper's top-layer γ for this decoder at this depth (its one-layer rows are "No-lat" and
    "Add/Mod", identical decoders when there is no layer above)."""
    cells = []
    for data in ("CIFAR-10", "O&F"):
        try:
            gammas = papers.rasmus2015_row(data, LABEL[model], hidden_layers=depth).gamma_translation
        except KeyError:
            gammas = None
        cells.append(f"{gammas[-1]:.2f}" if gammas else "NA")
    return " / ".join(cells)


def cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--sets", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out windows (not of the models)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(p for path in args.paths for p in ([path] if path.suffix == ".pt" else path.glob("models/*.pt")))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for f in files:
        row = measure(f, args.sets, args.seed)
        groups[(row["decoder"], row["data"], row["steps"], row["depth"])].append(row)
        print(f"# {f}: {row}", flush=True)
    print()
    print("| model | data | updates | seeds | cost | γ⁽¹⁾ own sets | γ⁽²⁾ own sets | γ⁽²⁾ normalised sets | γ(‖x‖) "
          "| paper γ⁽²⁾ CIFAR-10 / O&F (1M–4M updates) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {"linear": 0, "nolat": 1, "add": 2, "mod": 3}
    for (decoder, data, steps, depth), rows in sorted(groups.items(),
                                                      key=lambda kv: (kv[0][1], kv[0][3], order[kv[0][0]], kv[0][2])):
        def col(key: str, rows: list[dict] = rows) -> str:
            return cell([r[key] for r in rows if key in r])
        print(f"| {LABEL[decoder]} {'256-' + '-'.join(['·'] * depth)} | {data} | {steps:,} | {len(rows)} | {col('cost')} | {col('own_h1')} "
              f"| {col('own_h2')} | {col('normalised_h2')} | {col('energy')} | {paper(decoder, depth)} |")


if __name__ == "__main__":
    main()
