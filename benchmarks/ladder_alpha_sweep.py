"""Rasmus et al. (2015) Fig. 2: the best denoising cost against α = |h⁽²⁾| / |h⁽¹⁾| under the paper's
budget of 1,000,000 parameters (tied weights counted twice, as the paper counts them), for No-lat,
Add and Mod.

``run`` trains one two-layer ladder per (decoder, α) with ``benchmarks/ladder_long.sh`` (resumable:
run it again after an interruption and finished models are kept, unfinished ones continue from
their last checkpoint); ``table`` reads the models' held-out costs and prints them beside the
paper's best ratios (αmin: No-lat 1.0 / 1.4, Mod 0.03 / 0.12 on CIFAR-10 / O&F); ``figure`` runs
what is missing of the whole sweep, prints the table and draws Fig. 2 (``make figures`` does this
into gallery/_build/ladder-alpha). A sweep folder is stamped with what its models were trained
from (the ladder's code, the harness, the patch data: :func:`vizkit.freshness.training_inputs`);
when that changes, the old folder is set aside (renamed ``*.stale-N``) and the sweep retrains (a
folder without a stamp, e.g. runs copied from elsewhere, is stamped as today's when first used).

    python benchmarks/ladder_alpha_sweep.py sizes mod 0.03               # 1622,50: the paper's Mod
    python benchmarks/ladder_alpha_sweep.py run /work/runs/alpha --decoders nolat,add --steps 50000
    python benchmarks/ladder_alpha_sweep.py table /work/runs/alpha
    python benchmarks/ladder_alpha_sweep.py figure gallery/_build/ladder-alpha --out fig2.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

BUDGET = 1_000_000
N_IN = 256
ALPHAS = (0.03, 0.1, 0.2, 0.5, 1.0, 2.0)
#: the figure's grid: No-lat over the whole range (its best α is near 1), Mod up to 1 (its best is
#: the smallest), Add at three points (the paper: little dependence on α)
GRID = {"nolat": ALPHAS, "add": (0.03, 0.2, 1.0), "mod": (0.03, 0.1, 0.2, 0.5, 1.0)}
#: the figure's horizontal lines (the paper's too): one-layer models and the linear denoiser, Table
#: 1's sizes; with no layer above, Add and Mod are one model
REFERENCES = {"nolat-L1": ("nolat", "1948", "one-layer No-lat 256-1948"),
              "mod-L1": ("mod", "1937", "one-layer Add/Mod 256-1937"),
              "linear": ("linear", "", "Linear 256")}
LABEL = {"nolat": "No-lat", "add": "Add", "mod": "Mod"}
#: the patches' options ladder_long.sh trains with (the ladder's defaults, spelled out there too)
DATA_OPTIONS = {"size": 16, "whiten": "pca", "contrast": "divisive"}
#: the paper's best α per decoder (CIFAR-10, O&F), its Fig. 2
PAPER_BEST = {"nolat": (1.0, 1.4), "mod": (0.03, 0.12)}
COLOUR = {"nolat": "tab:blue", "add": "tab:orange", "mod": "tab:green"}


def parameters(decoder: str, n1: int, n2: int) -> int:
    """The paper's count: encoder and (tied) decoder weights both counted, biases, and the lateral
    connections' three vectors per hidden unit (Add, Mod). It gives 999,125 / 999,171 / 999,608 for
    the paper's No-lat 590-589, Add 839-336 and Mod 1622-50."""
    weights = 2 * (N_IN * n1 + n1 * n2)
    biases = n1 + n2 + (N_IN if decoder == "mod" else N_IN + n1)
    lateral = 3 * (n1 + n2) if decoder in ("add", "mod") else 0
    return weights + biases + lateral


def sizes(decoder: str, alpha: float) -> tuple[int, int]:
    """The widest h⁽¹⁾ (and h⁽²⁾ = round(α h⁽¹⁾) ≥ 1) within the budget."""
    n1 = 1
    while parameters(decoder, n1 + 1, max(1, round(alpha * (n1 + 1)))) <= BUDGET:
        n1 += 1
    return n1, max(1, round(alpha * n1))


def fresh_root(root: Path) -> None:
    """Keep ``root``'s models only while what they were trained from is unchanged: a folder stamped
    with other inputs is renamed aside, so a stale model is never read as today's."""
    from vizkit.freshness import training_inputs

    today = json.loads(json.dumps(training_inputs("ladder", "patches", DATA_OPTIONS), sort_keys=True))
    stamp = root / "inputs.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != today:
        n = 1
        while root.with_name(f"{root.name}.stale-{n}").exists():
            n += 1
        aside = root.with_name(f"{root.name}.stale-{n}")
        root.rename(aside)
        print(f"[sweep] the ladder's code, harness or data changed since {root} was trained: moved to {aside}")
    root.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        stamp.write_text(json.dumps(today, sort_keys=True, indent=1))


def run(root: Path, decoders: list[str], alphas: list[float], steps: int, seed: int) -> None:
    fresh_root(root)
    for decoder in decoders:
        for alpha in alphas:
            n1, n2 = sizes(decoder, alpha)
            folder = root / f"{decoder}-a{alpha:g}-s{seed}"
            env = {**os.environ, "SIZES": f"{n1},{n2}", "MILESTONES": str(steps)}
            print(f"[sweep] {decoder} α {alpha:g}: 256-{n1}-{n2} ({parameters(decoder, n1, n2):,} parameters) "
                  f"-> {folder}", flush=True)
            subprocess.run(["bash", "benchmarks/ladder_long.sh", decoder, str(seed), str(folder)], env=env, check=True)


def run_references(root: Path, steps: int) -> None:
    fresh_root(root)
    for name, (decoder, size, label) in REFERENCES.items():
        env = {**os.environ, "MILESTONES": str(steps)}
        if size:
            env["SIZES"] = size
        print(f"[sweep] {label} -> {root / name}", flush=True)
        subprocess.run(["bash", "benchmarks/ladder_long.sh", decoder, "0", str(root / name)], env=env, check=True)


def reference_costs(root: Path) -> dict[str, float]:
    """``{label: best held-out cost}`` of the one-layer and linear models that are finished."""
    import vizkit

    out = {}
    for name, (_decoder, _size, label) in REFERENCES.items():
        for path in (root / name / "models").glob("*.pt"):
            out[label] = float(vizkit.load(path).metrics["denoising"]["val_cost_min"])
    return out


def costs(root: Path) -> list[dict]:
    """Each finished model's decoder, sizes, α, updates and best held-out cost, by decoder then α."""
    import vizkit

    rows = []
    for path in root.glob("*-a*-s*/models/*.pt"):
        model = vizkit.load(path)
        den = model.metrics["denoising"]
        n1, n2 = model.sizes[1:]
        rows.append({"decoder": model.hparams["decoder"], "n1": n1, "n2": n2, "alpha": n2 / n1,
                     "steps": int(den["steps"]), "cost": float(den["val_cost_min"])})
    return sorted(rows, key=lambda r: (list(LABEL).index(r["decoder"]), r["alpha"]))


def table(root: Path) -> list[dict]:
    from vizkit import papers

    rows = costs(root)
    print("| decoder | α | sizes | updates | held-out cost (ours) |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {LABEL[r['decoder']]} | {r['alpha']:.3g} | 256-{r['n1']}-{r['n2']} | {r['steps']:,} | {r['cost']:.4f} |")
    for decoder in LABEL:
        mine = [r for r in rows if r["decoder"] == decoder]
        if mine:
            best = min(mine, key=lambda r: r["cost"])
            print(f"best {LABEL[decoder]} (ours): α {best['alpha']:.3g}, cost {best['cost']:.4f}")
    print("\nThe paper (1M updates, 5 runs each): best No-lat at α 1.0 (CIFAR-10) / 1.4 (O&F), best Mod at 0.03 /"
          " 0.12; Add in between with little dependence on α. Its Table 1 costs at those ratios:")
    for data in ("CIFAR-10", "O&F"):
        paper = ", ".join(f"{r.model} {r.sizes} {r.cost:.4f}" for r in papers.rasmus2015_table1() if r.data == data)
        print(f"  {data}: {paper}")
    return rows


def figure(rows: list[dict], references: dict[str, float], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for (label, cost), colour in zip(references.items(), ("tab:blue", "tab:purple", "black")):
        ax.axhline(cost, color=colour, ls=(0, (1, 3)) if label.startswith("Linear") else (0, (6, 3)), lw=1,
                   label=f"{label} (ours) {cost:.4f}")
    for decoder in LABEL:
        mine = [r for r in rows if r["decoder"] == decoder]
        if not mine:
            continue
        ax.plot([r["alpha"] for r in mine], [r["cost"] for r in mine], "o-", color=COLOUR[decoder],
                label=f"{LABEL[decoder]} (ours)")
        for i, best in enumerate(PAPER_BEST.get(decoder, ())):
            ax.axvline(best, color=COLOUR[decoder], ls=":" if i == 0 else "--", lw=1,
                       label=f"{LABEL[decoder]}: paper's best α, {'CIFAR-10' if i == 0 else 'O&F'}")
    # the narrowest No-lat models are far worse than the rest: keep the scale where the curves
    # differ and mark the points above it at the top edge with their values
    top = 1.1 * max([*references.values(), *sorted(r["cost"] for r in rows)[: max(1, len(rows) - 2)]])
    bottom = 0.97 * min([*references.values(), *(r["cost"] for r in rows)])
    for r in rows:
        if r["cost"] > top:
            ax.annotate(f"{r['cost']:.3f} ↑", (r["alpha"], top), xytext=(0, -10), textcoords="offset points",
                        ha="center", fontsize=7, color=COLOUR[r["decoder"]])
    ax.set_ylim(bottom, top)
    alphas = [r["alpha"] for r in rows]
    ax.set_xlim(min(alphas) / 1.6, max(alphas) * 1.6)
    steps = sorted({r["steps"] for r in rows})
    ax.set_xscale("log")
    ax.set_xlabel("α = |h⁽²⁾| / |h⁽¹⁾| (1M-parameter budget)")
    ax.set_ylabel("best held-out denoising cost")
    ax.set_title(f"Rasmus et al. Fig. 2: cost against α — ours {', '.join(f'{s:,}' for s in steps)} updates, seed 0, "
                 f"16×16 patches;\npaper: 1M updates, 5 runs, CIFAR-10 and O&F patches", fontsize=8)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sizes")
    s.add_argument("decoder", choices=list(LABEL))
    s.add_argument("alpha", type=float)
    r = sub.add_parser("run")
    r.add_argument("root", type=Path)
    r.add_argument("--decoders", default="nolat,add,mod")
    r.add_argument("--alphas", default=",".join(f"{a:g}" for a in ALPHAS))
    r.add_argument("--steps", type=int, default=50_000)
    r.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("table")
    t.add_argument("root", type=Path)
    f = sub.add_parser("figure", help="run what is missing of the whole sweep, then print the table and draw Fig. 2")
    f.add_argument("root", type=Path)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--steps", type=int, default=50_000)
    args = ap.parse_args()
    if args.command == "sizes":
        n1, n2 = sizes(args.decoder, args.alpha)
        print(f"{n1},{n2}  ({parameters(args.decoder, n1, n2):,} parameters)")
    elif args.command == "run":
        run(args.root, args.decoders.split(","), [float(a) for a in args.alphas.split(",")], args.steps, args.seed)
    elif args.command == "figure":
        for decoder, alphas in GRID.items():
            run(args.root, [decoder], list(alphas), args.steps, 0)
        run_references(args.root, args.steps)
        rows = table(args.root)
        references = reference_costs(args.root)
        for label, cost in references.items():
            print(f"{label} (ours): {cost:.4f}")
        figure(rows, references, args.out)
        print(f"wrote {args.out}")
    else:
        table(args.root)


if __name__ == "__main__":
    main()
