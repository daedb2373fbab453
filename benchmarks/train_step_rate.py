"""How close a reference model's training step comes to torch's matrix-product rate, at 1 thread.

For each model, three times per update, measured side by side in one run:

- ``matmul``: only the step's matrix products and convolutions (forward and backward), recorded
  from one real step by a dispatch mode and replayed on the same shapes (as recorded and in the
  default memory layout; the faster counts): the floor;
- ``bare``: the same step as a plain PyTorch loop (the module's ``training_step``, backward, its own
  optimiser as the CLI steps it (gradients set to None; the ladder's compiled ADADELTA), its
  after-step hook), no Lightning;
- ``cli``: ``vizkit train`` itself (Lightning, logging, checkpoints and validation as the harness
  schedules them, ``vizkit.training.CHECK_EVERY``, and the ladder's compiled ADADELTA as long runs
  use it), timed by a callback over the updates after the first few hundred, so start-up and
  compilation are left out.

The ratio matmul / cli is the share of torch's matmul rate that training reaches (the issue's goal:
at least 0.5 where the model's size allows).

    OMP_NUM_THREADS=1 python benchmarks/train_step_rate.py [--models ladder,sdae] [--steps 300]

Each time is the least of a few repeats (``--repeats``, ``--cli-repeats``): on a shared machine
the least is the one other work disturbed least.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vizkit.compiled_step import CompiledStep
from vizkit.machine import cpu_name
from vizkit.registry import get_host
from vizkit.training import build_data, train

#: kind, dataset, options, data options, batch size: the configurations the galleries train
MODELS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any], int]] = {
    "ladder": ("ladder", "patches", {"decoder": "mod", "layers": "1622,50", "compile": "on"}, {}, 50),
    "ladder-add": ("ladder", "patches", {"decoder": "add", "layers": "839,336", "compile": "on"}, {},
                   50),
    "sdae": ("sdae", "mnist", {"layers": "1000,1000,1000", "finetune_epochs": 0}, {}, 100),
    "convnet": ("convnet", "mnist", {}, {}, 100),
    "capsule": ("capsule", "mnist", {}, {}, 100),
    "tcnn": ("tcnn", "patches", {}, {}, 100),
}
HEAVY = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
         torch.ops.aten.baddbmm.default, torch.ops.aten.convolution.default,
         torch.ops.aten.convolution_backward.default}


class RecordHeavy(TorchDispatchMode):
    """Keeps (op, args) of every matrix product and convolution that runs under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in HEAVY:
            clone = lambda a: a.detach().clone() if torch.is_tensor(a) else a  # noqa: E731
            self.calls.append((func, tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def per_step(fn: Callable[[], None], steps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def floor_per_step(calls: list[tuple[Any, tuple, dict]], steps: int) -> float:
    """The recorded products replayed as recorded and with every tensor in the default layout;
    the faster is the floor, so a model that trains channels_last is not judged against a floor
    its own layout made slower."""
    plain = lambda a: a.contiguous() if torch.is_tensor(a) else a  # noqa: E731
    variants = [calls, [(f, tuple(plain(a) for a in args), {k: plain(v) for k, v in kw.items()})
                        for f, args, kw in calls]]
    return min(per_step(lambda c=c: [f(*a, **k) for f, a, k in c], steps) for c in variants)


def build(name: str) -> tuple[Any, Any, int]:
    kind, data, options, data_options, batch = MODELS[name]
    cls = get_host().model_class(kind)
    dm = build_data(data, {**cls.data_defaults.get(data, {}), **data_options}, batch, 0)
    hparams = cls.hparams_from_options(options, input_shape=dm.input_shape, data=dm.describe(), lr=None)
    model = cls(**hparams)
    model.data_info = dm.describe()
    # the stage ``cli_per_step`` times: each stage is a Trainer of its own and the clock keeps the last
    model.set_stage(len(model.stages()) - 1)
    return model, dm, batch


def bare_step(model: Any, batch: Any) -> tuple[Callable[[], None], Any]:
    """One update as a plain loop, with the module's own set-up, optimiser and after-step hook."""
    model.setup("fit")  # as Lightning calls it before configure_optimizers (the convnet's layout)
    opt = model.configure_optimizers()
    opt = opt[0][0] if isinstance(opt, tuple) else opt
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    model.train()
    model.log = lambda *a, **k: None  # no Lightning loop to log into
    model.optimizers = lambda: opt  # nor a trainer to hold the optimiser (the capsule's after-step hook asks)
    if model.hparams.get("compile") == "on":  # the ladder's fused ADADELTA, as its on_train_start installs it
        CompiledStep(opt)

    def step() -> None:
        opt.zero_grad()  # as Lightning's loop: the gradients set to None
        loss = model.training_step(batch, 0)
        loss.backward()
        opt.step()
        model.on_train_batch_end(None, batch, 0)

    return step, opt


def cli_per_step(name: str, warmup: int, timed: int) -> float:
    """Seconds per update of ``vizkit train``, over ``timed`` updates after ``warmup`` (validations
    and checkpoints included as they fall, the final one too)."""
    import pytorch_lightning as pl

    kind, data, options, data_options, batch = MODELS[name]
    marks: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == warmup:
                marks["start"] = time.perf_counter()

        def on_train_end(self, trainer: Any, *args: Any) -> None:
            marks["end"] = time.perf_counter()

    real = pl.Trainer

    class ClockedTrainer(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, callbacks: list | None = None, **kwargs: Any) -> None:
            super().__init__(*args, callbacks=[*(callbacks or []), Clock()], **kwargs)

    pl.Trainer = ClockedTrainer
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            train(kind, data, out=Path(tmp) / "m.pt", max_steps=warmup + timed, batch_size=batch,
                  model_options=options, data_options=data_options, log_dir=Path(tmp) / "logs", progress=False)
    finally:
        pl.Trainer = real
    return (marks["end"] - marks["start"]) / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ladder,sdae")
    parser.add_argument("--steps", type=int, default=300, help="timed updates of the bare loop and the replay")
    parser.add_argument("--cli-steps", default="300,2000", help="warm-up updates, then timed updates")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the replay and the bare loop (least counts)")
    parser.add_argument("--cli-repeats", type=int, default=2, help="runs of vizkit train (least counts)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warmup, timed = (int(v) for v in args.cli_steps.split(","))
    # the ratios depend on the CPU (its BLAS against its elementwise speed): say which one ran
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU {cpu_name()}")
    print("| model | matmul ms | bare loop ms | vizkit train ms | matmul / bare | matmul / vizkit train |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model, dm, _ = build(name)
        dm.setup("fit")
        dm.with_labels = MODELS[name][0] == "convnet"  # the one supervised model: (inputs, labels) batches
        batch = next(iter(dm.train_dataloader()))
        step, _ = bare_step(model, batch)
        step()
        rec = RecordHeavy()
        with rec:
            step()
        # the least of a few repeats: what the machine's other work did not slow down
        t_mm = min(floor_per_step(rec.calls, args.steps) for _ in range(args.repeats))
        t_bare = min(per_step(step, args.steps) for _ in range(args.repeats))
        t_cli = min(cli_per_step(name, warmup, timed) for _ in range(args.cli_repeats))
        print(f"| {name} | {t_mm * 1e3:.2f} | {t_bare * 1e3:.2f} | {t_cli * 1e3:.2f} | {t_mm / t_bare:.2f} "
              f"| {t_mm / t_cli:.2f} |", flush=True)


if __name__ == "__main__":
    main()
