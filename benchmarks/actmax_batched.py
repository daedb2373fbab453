"""actmax: one batch of (unit × restart) versus one unit and one restart at a time.

The workload of the issue: 144 units × 9 restarts of layer 3 of a 784-1000-1000-1000 network
(an SDAE with random weights; timing does not depend on training), the same fixed number of
gradient steps for every restart (tol = 0, so no restart stops early).

* **batched**: what the probe runs, ``vizkit.optvis.render`` with the erhan preset (pixels,
  ``ascent`` on the sphere, one ``channel`` objective per unit, stacked) on all 1,296 samples as
  one chunk, and again chunked to a small memory budget; and the earlier sphere engine
  (``vizkit.optim.maximise_on_sphere``, the same iteration sample for sample) beside it.
* **naive**: the straightforward loop a user would write — one (unit, restart) at a time, the
  same normalised-gradient update and projection, the same step count. It is timed on a subset
  of ``--naive-runs`` (unit, restart) pairs and extrapolated linearly to 1,296 (each run is
  independent and identical in cost, so the extrapolation is exact up to timer noise).

Achieved GFLOP/s counts the matrix multiplies only: per sample and gradient step, the forward
pass (2·Σ n_in·n_out) and the input-gradient backward pass (the same again; the engine asks
autograd for ∂h/∂x only, so no weight gradients are computed), plus the two gradient-free
evaluations (start and end). The reference is torch's own rate on the very same sequence of
matrix products ([B, 784]·[784, 1000], [B, 1000]·[1000, 1000] ×2, and their transposes for the
backward) timed in the same run.

Peak memory: CPU torch allocations are invisible to tracemalloc, so each configuration runs in a
fresh subprocess. After building the model and a warm-up step, the child resets the kernel's
peak-RSS counter (``echo 5 > /proc/self/clear_refs``, Linux) and reports ``VmHWM − VmRSS``
from ``/proc/self/status`` after the ascent: the extra resident memory the ascent itself needed
at its peak. (Where ``clear_refs`` is unavailable it falls back to ``ru_maxrss`` minus the RSS
before the ascent, which is exact only when imports peaked lower.)

Run: ``python benchmarks/actmax_batched.py`` (``--steps``, ``--naive-runs``, ``--threads``,
``--quick``). On a shared machine ``--threads 1`` gives steadier numbers: OpenMP threads that
spin-wait for a busy core slow every kernel down.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

SIZES = (784, 1000, 1000, 1000)
UNITS, RESTARTS = 144, 9
RHO, LR = 9.25, 0.1


def build_model():
    from vizkit.models.sdae import SDAE

    torch.manual_seed(0)
    model = SDAE(input_shape=[1, 28, 28], layers=",".join(str(s) for s in SIZES[1:]))
    with torch.no_grad():
        for w in model.weight:
            w.normal_(0.0, 1.0 / math.sqrt(w.shape[1]))
    model.data_info = {"stats": {"mean_norm": RHO}}
    return model.eval()


def batched(model, steps: int, chunk: int | None) -> float:
    """Seconds for the probe's renderer on all UNITS × RESTARTS samples (``chunk`` in samples)."""
    from vizkit import optvis
    from vizkit.optvis import objectives as O

    units = torch.arange(UNITS)
    start = time.perf_counter()
    result = optvis.render(model, [O.channel("h3", int(u)) for u in units], ids=units, restarts=RESTARTS,
                           param="pixel", optimizer="ascent", lr=LR, constraint=optvis.Sphere(RHO),
                           thresholds=(steps,), tol=0.0, chunk=(chunk or 0) // RESTARTS)
    elapsed = time.perf_counter() - start
    assert bool((result.steps == steps).all())
    return elapsed


def sphere_engine(model, steps: int, chunk: int | None) -> float:
    """Seconds for the earlier engine on all UNITS × RESTARTS samples."""
    import vizkit
    from vizkit.optim import AscentConfig, maximise_on_sphere, sample_keys

    units = torch.arange(UNITS)
    unit_of_row = units.repeat_interleave(RESTARTS)
    keys = sample_keys(0, unit_of_row, torch.arange(RESTARTS).repeat(UNITS))

    def objective(x, rows):
        return vizkit.paired_unit_activations(model, x, "h3", unit_of_row[rows])

    config = AscentConfig(steps=steps, lr=LR, tol=0.0)
    start = time.perf_counter()
    result = maximise_on_sphere(objective, keys, (1, 28, 28), RHO, config, chunk=chunk)
    elapsed = time.perf_counter() - start
    assert bool((result.steps == steps).all())
    return elapsed


def naive(model, steps: int, runs: int) -> float:
    """Seconds for ``runs`` (unit, restart) pairs done one at a time, the straightforward way."""
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for run in range(runs):
        unit = run // RESTARTS
        x = torch.rand(1, 1, 28, 28, generator=gen)
        x = x * (RHO / x.norm())
        for _ in range(steps):
            x.requires_grad_(True)
            h = model.activations(x, "h3")[0, unit]
            (g,) = torch.autograd.grad(h, x)
            x = x.detach() + LR * RHO * g / g.norm()
            x = x * (RHO / x.norm())
    return time.perf_counter() - start


def matmul_rate(batch: int, repeats: int) -> float:
    """torch's GFLOP/s on the forward + input-backward matrix products of one step."""
    shapes = [(SIZES[i], SIZES[i + 1]) for i in range(3)]
    a = {n: torch.rand(batch, n) for n in set(SIZES)}
    w = {s: torch.rand(*s) for s in shapes}
    wt = {s: torch.rand(s[1], s[0]) for s in shapes}

    def once() -> None:
        for s in shapes:  # forward: [B, n_in] @ [n_in, n_out]
            torch.mm(a[s[0]], w[s])
        for s in reversed(shapes):  # input gradient: [B, n_out] @ [n_out, n_in]
            torch.mm(a[s[1]], wt[s])

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    elapsed = time.perf_counter() - start
    flops = 2 * 2 * batch * sum(i * o for i, o in shapes) * repeats
    return flops / elapsed / 1e9


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(mode: str, steps: int, chunk: int) -> None:
    model = build_model()
    batched(model, 1, 16)  # warm-up (small chunks in both modes): allocator, MKL buffers, autograd
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM (peak RSS) to the current RSS
        reset = True
    except OSError:
        reset = False
    batched(model, steps, None if mode == "unchunked" else chunk)
    peak = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mb": (peak - before) / 1024, "method": "VmHWM" if reset else "ru_maxrss"}))


def peak_mb(mode: str, steps: int, chunk: int, threads: int) -> tuple[float, str]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(steps), "--chunk", str(chunk),
                          "--threads", str(threads)], check=True, capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return report["extra_mb"], report["method"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--naive-runs", type=int, default=18, help="(unit, restart) pairs timed one at a time")
    parser.add_argument("--chunk", type=int, default=144, help="chunk size of the chunked run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--quick", action="store_true", help="fewer steps and naive runs (smoke test)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.naive_runs = 5, 3
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.steps, args.chunk)
        return

    n = UNITS * RESTARTS
    model = build_model()
    print(f"actmax on h3 of a {'-'.join(map(str, SIZES))} SDAE: {UNITS} units x {RESTARTS} restarts = {n} "
          f"samples, {args.steps} steps each; torch {torch.__version__}, {torch.get_num_threads()} threads")
    batched(model, 2, None)  # warm-up
    naive(model, 2, 1)
    # torch's matmul rate right before and right after the batched run (load on a shared machine drifts)
    repeats = max(3, args.steps // 3)
    rate_before = matmul_rate(n, repeats)
    t_batch = batched(model, args.steps, None)
    rate_mm = (rate_before + matmul_rate(n, repeats)) / 2
    t_chunked = batched(model, args.steps, args.chunk)
    t_engine = sphere_engine(model, args.steps, None)
    t_naive_subset = naive(model, args.steps, args.naive_runs)
    t_naive = t_naive_subset * n / args.naive_runs

    forward = 2 * sum(SIZES[i] * SIZES[i + 1] for i in range(3))  # FLOPs per sample
    flops = n * (args.steps * 2 * forward + 2 * forward)
    rate = flops / t_batch / 1e9
    rows = [
        ("batched (optvis.render), one chunk", t_batch, f"{rate:.1f} GFLOP/s"),
        (f"batched (optvis.render), chunks of {args.chunk}", t_chunked, f"{flops / t_chunked / 1e9:.1f} GFLOP/s"),
        ("earlier sphere engine, one chunk", t_engine, f"{flops / t_engine / 1e9:.1f} GFLOP/s"),
        (f"naive, 1 unit x 1 restart ({args.naive_runs} timed, x{n / args.naive_runs:.0f})", t_naive,
         f"{n * args.steps * 2 * forward / t_naive / 1e9:.2f} GFLOP/s"),  # no start/end evaluations
    ]
    print(f"\n{'method':<52}{'seconds':>10}  achieved")
    for name, seconds, extra in rows:
        print(f"{name:<52}{seconds:>10.2f}  {extra}")
    print(f"\nspeed-up batched vs naive:                 {t_naive / t_batch:.1f}x   (goal >= 20x)")
    print(f"torch matmul on the same shapes (B = {n}):  {rate_mm:.1f} GFLOP/s (mean of before and after)")
    print(f"batched engine as a fraction of it:        {100 * rate / rate_mm:.0f}%   (goal >= 40%)")

    whole, method = peak_mb("unchunked", args.steps, args.chunk, args.threads)
    parts, _ = peak_mb("chunked", args.steps, args.chunk, args.threads)
    print(f"\npeak extra resident memory of the ascent (fresh process, {method} after a reset):")
    print(f"  one chunk of {n}:  {whole:8.1f} MB")
    print(f"  chunks of {args.chunk}:    {parts:8.1f} MB")

if __name__ == "__main__":
    main()
