"""Tieleman (2014) Fig. 3.1 as curves: exact test log-likelihood of a 25-hidden RBM on MNIST against
training time, for CD-1, CD-10, MF CD, PCD and FPCD, several runs each, the learning rate tuned per method.

The set-up is the thesis's (§3.3.1-3.3.2): mini-batches of 100, the learning rate decayed linearly to
zero over each run's duration, every image binarised afresh each time it is used, the initial rate
chosen on validation data for each method, then ``--runs`` runs with new seeds scored on the test set
by the exact log-likelihood (a sum over all 2^25 hidden states). Two simplifications, both stated in
the output: the rate is tuned once per method (at the middle duration, from ``--lrs``) rather than per
duration, and the data is the offline 4,000 / 1,000 MNIST subset (the thesis: 50,000 / 10,000).

Time is the training process's CPU seconds at one thread (``time.process_time``), so other load on the
machine changes neither a budget nor a result; evaluation is not counted. The loop is plain PyTorch
around vizkit's ``GradientEstimator``, the code ``vizkit train rbm --trainer X`` runs: Lightning's
per-step bookkeeping (about a millisecond, more than a CD-1 update at this size) would otherwise
flatten the differences in cost between the algorithms that the time axis is there to compare.

    python benchmarks/rbm_trainer_curves.py --figure curves.png            # 2 worker processes

An interrupted run continues where it stopped: finished points go to ``--points`` (by default
FIGURE.points.jsonl) as they finish, and a rerun with the same RBM code reuses them.
    python benchmarks/rbm_trainer_curves.py --durations 2,8 --runs 2 --lrs 0.03,0.1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

import torch

# name: (vizkit trainer, k); the thesis's five (Fig. 3.1 also has pseudo-likelihood, not an RBM trainer here)
TRAINERS = {"CD-1": ("cd", 1), "CD-10": ("cd", 10), "MF CD": ("mfcd", 1), "PCD": ("pcd", 1), "FPCD": ("fpcd", 1)}
HIDDEN, BATCH, VALIDATION = 25, 100, 500
_DATA: dict[str, torch.Tensor] = {}


def _data() -> dict[str, torch.Tensor]:
    """The subset as flat [0, 1] rows (train, validation split off its end) and fixed binarised
    evaluation sets; loaded once per worker."""
    if not _DATA:
        from vizkit.datasets import mnist

        dm = mnist.build(seed=0)
        train = dm.train_tensor().reshape(len(dm.train_tensor()), -1).float()
        test = dm.test_tensor().reshape(len(dm.test_tensor()), -1).float()
        gen = torch.Generator().manual_seed(12345)
        _DATA.update(train=train, fit=train[:-VALIDATION],
                     validation=(torch.rand(train[-VALIDATION:].shape, generator=gen) < train[-VALIDATION:]).float(),
                     test=(torch.rand(test.shape, generator=gen) < test).float())
    return _DATA


def train(method: str, k: int, lr: float, seconds: float, seed: int, data: torch.Tensor) -> tuple[Any, int]:
    """An RBM trained for ``seconds`` of CPU time; returns (parameters, updates)."""
    from vizkit.models.rbm import RBMParams
    from vizkit.models.rbm.evaluate import base_rate_bias
    from vizkit.models.rbm.trainers import GradientEstimator

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the estimator's sampling noise
    n, d = data.shape
    weight = torch.nn.Parameter(torch.randn(HIDDEN, d, generator=gen) * 0.01)
    hbias = torch.nn.Parameter(torch.zeros(HIDDEN))
    vbias = torch.nn.Parameter(base_rate_bias(data).float())  # Hinton's guide, as RBM.setup does
    for p in (weight, hbias, vbias):
        p.grad = torch.zeros_like(p)
    params = RBMParams(weight.data, hbias.data, vbias.data)
    grads = RBMParams(weight.grad, hbias.grad, vbias.grad)
    opt = torch.optim.SGD([weight, hbias, vbias], lr=lr)
    est = GradientEstimator(method, n_visible=d, n_hidden=HIDDEN, batch_size=BATCH, k=k)
    noise = torch.empty(BATCH, d)
    updates, start = 0, time.process_time()
    while True:
        order = torch.randperm(n, generator=gen)
        for first in range(0, n - BATCH + 1, BATCH):
            frac = (time.process_time() - start) / seconds
            if frac >= 1.0:
                return params, updates
            opt.param_groups[0]["lr"] = lr * (1.0 - frac)
            batch = data[order[first:first + BATCH]]
            torch.rand(noise.shape, out=noise)
            est.gradients(params, torch.lt(noise, batch).float(), grads)
            opt.step()
            if method == "fpcd":
                est.after_update(grads, lr)  # the model's default: fast rate = the initial rate, constant
            updates += 1


def run(task: tuple[str, float, float, int, str]) -> dict[str, Any]:
    """One (trainer, rate, duration, seed, split) point, scored by exact log-likelihood."""
    from vizkit.models.rbm import log_partition_exact
    from vizkit.models.rbm.evaluate import log_likelihood_exact

    torch.set_num_threads(1)
    name, lr, seconds, seed, split = task
    data = _data()
    method, k = TRAINERS[name]
    params, updates = train(method, k, lr, seconds, seed, data["fit" if split == "validation" else "train"])
    start = time.process_time()
    log_z = log_partition_exact(params)
    ll = float(log_likelihood_exact(params, data[split], log_z=log_z).mean()) if math.isfinite(log_z) else -math.inf
    return {"name": name, "lr": lr, "seconds": seconds, "seed": seed, "split": split, "ll": ll,
            "updates": updates, "eval_s": time.process_time() - start}


def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


#: Bump when a point's meaning changes outside the code hashed below (e.g. the evaluation sets).
PROTOCOL = 1


def _point_key(task: tuple) -> str:
    name, lr, seconds, seed, split = task
    return json.dumps([name, lr, seconds, seed, split])


def _code_version() -> str:
    """What a saved point depends on: the RBM code (estimators, log Z), the MNIST module and the
    training harness, and this script's own training and scoring functions."""
    import hashlib
    import inspect

    from vizkit import freshness
    from vizkit.models.rbm import RBM

    own = hashlib.sha256("".join(inspect.getsource(f) for f in (_data, train, run)).encode()).hexdigest()
    return json.dumps({"protocol": PROTOCOL, "rbm": freshness.code_sha256([RBM]), "script": own,
                       "data": freshness.training_inputs("rbm", "mnist", {})}, sort_keys=True, default=str)


def _parallel(tasks: list[tuple], workers: int, label: str, saved: Path | None) -> list[dict[str, Any]]:
    """Every task's point, computed in ``workers`` processes; with ``saved`` (a JSON-lines file),
    points already there from the same code are reused and new ones appended as they finish, so
    an interrupted run continues where it stopped."""
    version, done = _code_version(), {}
    if saved is not None and saved.exists():
        for line in saved.read_text().splitlines():
            record = json.loads(line)
            if record.get("version") == version:
                done[record["key"]] = record["point"]
    results = [done[_point_key(t)] for t in tasks if _point_key(t) in done]
    todo = sorted((t for t in tasks if _point_key(t) not in done), key=lambda t: -t[2])  # longest first
    if results:
        print(f"  [{label}] {len(results)} of {len(tasks)} points reused from {saved} (same code)", flush=True)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for i, result in enumerate(pool.imap_unordered(run, todo), 1):
            results.append(result)
            if saved is not None:
                key = _point_key((result["name"], result["lr"], result["seconds"], result["seed"], result["split"]))
                with saved.open("a") as fh:
                    fh.write(json.dumps({"version": version, "key": key, "point": result}) + "\n")
            print(f"  [{label} {i}/{len(todo)}] {result['name']} lr {result['lr']:g} {result['seconds']:g} s "
                  f"seed {result['seed']}: {result['split']} LL {result['ll']:.2f} ({result['updates']} updates)",
                  flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--durations", default="3,12,48", help="CPU seconds of training per run, comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="test runs per trainer and duration (new seeds)")
    ap.add_argument("--lrs", default="0.003,0.01,0.03,0.1,0.3", help="initial learning rates tried on validation data")
    ap.add_argument("--trainers", default=",".join(TRAINERS), help="a subset of " + ", ".join(TRAINERS))
    ap.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    ap.add_argument("--figure", default=None, help="write the curves as a PNG")
    ap.add_argument("--points", default=None, help="JSON-lines file of finished points: reused when the code is "
                    "the same, appended to as points finish (default: beside --figure, FIGURE.points.jsonl)")
    args = ap.parse_args()
    points = Path(args.points) if args.points else Path(args.figure + ".points.jsonl") if args.figure else None
    durations = sorted(float(s) for s in args.durations.split(","))
    lrs = [float(s) for s in args.lrs.split(",")]
    names = [n.strip() for n in args.trainers.split(",")]
    unknown = sorted(set(names) - set(TRAINERS))
    if unknown:
        raise SystemExit(f"unknown trainers {unknown}; choose from {list(TRAINERS)}")
    tune_at = durations[len(durations) // 2]
    started = time.time()
    print(f"data: offline MNIST subset, {4000 - VALIDATION} train / {VALIDATION} validation for tuning, then "
          f"4000 train / 1000 test; binarised afresh each use; {HIDDEN} hidden, batch {BATCH}, rate decayed "
          f"linearly to 0 over each run; time = training CPU seconds at 1 thread\n"
          f"tuning: rates {lrs} per trainer, one {tune_at:g} s run each, exact validation log-likelihood")
    tuned = _parallel([(n, lr, tune_at, 1000, "validation") for n in names for lr in lrs], args.workers, "tune", points)
    best = {}
    for name in names:
        mine = sorted((r for r in tuned if r["name"] == name), key=lambda r: r["lr"])
        best[name] = max(mine, key=lambda r: r["ll"])["lr"]
        edge = " (at the grid's edge)" if best[name] in (lrs[0], lrs[-1]) else ""
        print(f"  {name}: " + ", ".join(f"{r['lr']:g} → {r['ll']:.2f}" for r in mine) + f"; chosen {best[name]:g}{edge}")
    tasks = [(n, best[n], s, seed, "test") for n in names for s in durations for seed in range(args.runs)]
    results = _parallel(tasks, args.workers, "test", points)
    table = {}
    for name in names:
        for s in durations:
            mine = [r for r in results if r["name"] == name and r["seconds"] == s]
            table[name, s] = (*_mean_std([r["ll"] for r in mine]), _mean_std([r["updates"] for r in mine])[0])
    print(f"\nexact test log-likelihood, nats per image, mean ± std over {args.runs} runs "
          f"(updates in the budget, mean); {time.time() - started:.0f} s wall in all\n")
    print("| trainer | rate | " + " | ".join(f"{s:g} s" for s in durations) + " |")
    print("|---|---:|" + "---:|" * len(durations))
    for name in names:
        cells = [f"{table[name, s][0]:.2f} ± {table[name, s][1]:.2f} ({table[name, s][2]:.0f})" for s in durations]
        print(f"| {name} | {best[name]:g} | " + " | ".join(cells) + " |")
    print()
    for s in durations:
        ranked = sorted(names, key=lambda n: -table[n, s][0])
        print(f"{s:g} s: " + " > ".join(ranked))
    if {"PCD", "FPCD"} <= set(names):
        print("\nFPCD − PCD (± standard error of the difference), thesis: FPCD ahead, most with little time:")
        for s in durations:
            (mf, sf, _), (mp, sp, _) = table["FPCD", s], table["PCD", s]
            se = math.sqrt((sf ** 2 + sp ** 2) / args.runs)
            verdict = "FPCD ahead" if mf - mp > 2 * se else "PCD ahead" if mp - mf > 2 * se else "no clear difference"
            print(f"  {s:g} s: {mf - mp:+.2f} ± {se:.2f} → {verdict}")
    if args.figure:
        write_figure(table, names, durations, best, args.runs, args.figure)
        print(f"\nwrote {args.figure}")


def write_figure(table: dict, names: list[str], durations: list[float], best: dict[str, float], runs: int,
                 path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from vizkit.output import figure_png

    fig, ax = plt.subplots(figsize=(8.4, 4.6), dpi=110)
    for name in names:
        means = [table[name, s][0] for s in durations]
        stds = [table[name, s][1] for s in durations]
        ax.errorbar(durations, means, yerr=stds, marker="o", capsize=3, label=f"{name} (rate {best[name]:g})")
    ax.set_xscale("log")
    ax.set_xticks(durations, [f"{s:g}" for s in durations])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training time, CPU seconds at one thread (log scale)")
    ax.set_ylabel("exact test log-likelihood (nats per image)")
    ax.set_title("25-hidden RBM on MNIST (4,000-image subset), exact log-likelihood\n"
                 f"mean ± std of {runs} runs per point; cf. Tieleman (2014) Fig. 3.1", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: no point hidden
    fig.tight_layout()
    with open(path, "wb") as fh:
        fh.write(figure_png(fig))


if __name__ == "__main__":
    main()
