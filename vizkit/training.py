"""The Lightning training harness behind ``vizkit train``.

Each reference model trains with an ordinary ``pytorch_lightning.Trainer`` (progress bar, CSV
metrics, checkpoints, any accelerator/strategy Lightning supports). Models that are trained
greedily layer by layer name their stages; the harness runs one ``fit`` per stage on the same
module, and ``--resume`` continues from a Lightning checkpoint at the stage it was written in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .checkpoint import read_checkpoint, save_checkpoint
from .errors import CheckpointError, OutputError, UsageError, VizkitError
from .paths import special_kind
from .registry import get_host
from .resume_state import ResumeState
from .validation import check_seed


def build_data(name: str, options: Mapping[str, Any], batch_size: int, seed: int) -> Any:
    """Build a registered dataset (or a user file/folder) with its options."""
    from .datasets import build_dataset

    registry = {n: r.obj for n, r in get_host().datasets.items()}
    return build_dataset(name, registry, batch_size=batch_size, seed=seed, **dict(options))


def _check_out(out: str | Path, force: bool = False) -> Path:
    """Prove ``out`` can be written before training starts, by creating it (``os.access`` says yes
    to root everywhere, even under /proc); a file that was not there is removed again. A file that
    is there is replaced only when it is a vizkit checkpoint, or with ``force``."""
    path = Path(out)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"--out {path} is a directory; give a file name such as model.pt")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {parent} does not exist")
    kind = special_kind(path)
    if kind is not None:  # opening a FIFO to append would wait for a reader forever
        raise OutputError(f"cannot write {path}: it is {kind}, not a regular file")
    existed = path.exists()
    if existed and not force:
        _refuse_unless_checkpoint(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:  # even after Ctrl-C: a file that was not there is not left behind
        if not existed:
            with contextlib.suppress(OSError):
                path.unlink()
    return path


def _refuse_unless_checkpoint(path: Path) -> None:
    """Anything but a checkpoint vizkit can read (notes, another tool's weights) is the user's."""
    try:
        read_checkpoint(path)
    except VizkitError:
        raise OutputError(f"--out {path} exists and is not a vizkit checkpoint; choose another file name, "
                          f"or --force to replace it") from None


def _check_hardware(pl: Any, accelerator: str, devices: Any, num_nodes: int, strategy: str) -> None:
    """Let Lightning judge --accelerator/--devices/--strategy before any data is read: ``gpu``
    without a GPU, or a device count the machine lacks, is one line (exit 2), not a traceback."""
    quiet_lightning()
    try:
        pl.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    except Exception as exc:  # Lightning raises several types; its first line names the problem
        raise UsageError(f"cannot train with --accelerator {accelerator} --devices {devices} --strategy {strategy}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _log_versions(log_dir: str | Path, kind: str, stem: str, tags: list[str]) -> dict[str, str]:
    """Lightning log directories for this run's stages that no earlier run has written to.

    ``STEM-TAG`` when free, else ``STEM-vN-TAG`` with the first N that is free for every stage:
    CSVLogger deletes the metrics.csv of a directory it reuses, and a resumed run must not write
    over the checkpoint it resumes from.
    """
    base = Path(log_dir) / kind
    n = 1
    while True:
        names = {tag: f"{stem}-{tag}" if n == 1 else f"{stem}-v{n}-{tag}" for tag in tags}
        if not any((base / name).exists() for name in names.values()):
            return names
        n += 1


def _resume_point(resume: str | Path | None, kind: str) -> tuple[int, dict[str, Any]]:
    """The stage a Lightning checkpoint was written in, and the metrics of the stages before it."""
    if resume is None:
        return 0, {}
    ckpt = read_checkpoint(resume)
    if ckpt["kind"] != kind:
        raise UsageError(f"--resume {resume} is a {ckpt['kind']!r} checkpoint, not {kind!r}")
    if "lightning" not in ckpt:
        raise CheckpointError(f"--resume needs a Lightning .ckpt written during training, not {resume}")
    raw = torch.load(resume, map_location="cpu", weights_only=True)
    meta = raw.get("vizkit", {})
    return int(meta.get("stage", 0)), dict(meta.get("metrics") or {})


def train(
    kind: str,
    data: str,
    *,
    out: str | Path,
    epochs: int = 1,
    max_steps: int | None = None,
    batch_size: int = 100,
    lr: float | None = None,
    seed: int = 0,
    model_options: Mapping[str, Any] | None = None,
    data_options: Mapping[str, Any] | None = None,
    accelerator: str = "auto",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    resume: str | Path | None = None,
    log_dir: str | Path = "lightning_logs",
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Train a reference model and write its vizkit checkpoint to ``out``.

    All validation (kind, options, data, output path) happens before the first step.
    ``max_steps`` (Lightning's) stops each stage after that many optimiser updates, however many
    epochs that takes; it replaces ``epochs`` (models trained on freshly drawn patches count
    updates, not passes over a fixed set). An existing ``out`` that is not a vizkit checkpoint is
    refused unless ``force``.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from .models.base import ReferenceModel

    host = get_host()
    model_cls = host.model_class(kind)
    if not (isinstance(model_cls, type) and issubclass(model_cls, ReferenceModel)):
        raise UsageError(f"model kind {kind!r} is not trained by vizkit train (its class is not a "
                         f"vizkit.ReferenceModel); build its checkpoint the way its plugin documents")
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if max_steps is not None and max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1, got {max_steps}")
    check_seed(seed)
    if lr is not None and not (isinstance(lr, int | float) and 0 < lr < float("inf")):
        raise UsageError(f"--lr must be a finite number above 0, got {lr!r}")
    out_path = _check_out(out, force)
    _check_hardware(pl, accelerator, devices, num_nodes, strategy)
    # a model kind may set its own defaults for a dataset (e.g. whitening for patches); -D wins
    kind_defaults = dict(model_cls.data_defaults.get(data, {}))
    dm = build_data(data, {**kind_defaults, **dict(data_options or {})}, batch_size, seed)
    described = dm.describe()
    if hasattr(dm, "resume_data_at"):  # it resumes mid-epoch where it stopped (vizkit.resume_state)
        warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch ended.*")
    if lr is not None and "lr" not in {o.name for o in model_cls.train_options}:
        raise UsageError(f"model {kind!r} takes no --lr")
    hparams = model_cls.hparams_from_options(
        dict(model_options or {}), input_shape=dm.input_shape, data=described, lr=lr
    )
    first_stage, earlier_metrics = _resume_point(resume, kind)

    pl.seed_everything(seed, workers=True, verbose=False)
    model = model_cls(**hparams)
    model.data_info = described
    model.metrics.update(earlier_metrics)
    stages = model.stages()
    if first_stage >= len(stages):
        raise UsageError(f"--resume {resume} is past the last stage ({len(stages)} stages)")
    quiet_lightning()
    trainer = None
    versions = _log_versions(log_dir, kind, out_path.stem,
                             [f"stage{i}" if len(stages) > 1 else "train" for i in range(len(stages))])
    for stage, stage_name in enumerate(stages):
        if stage < first_stage:
            continue
        model.set_stage(stage)
        n_epochs = model.stage_epochs(stage, epochs)
        if n_epochs < 1:
            continue
        tag = f"stage{stage}" if len(stages) > 1 else "train"
        if progress and len(stages) > 1:
            length = f"{n_epochs} epoch(s)" if max_steps is None else f"{max_steps} step(s)"
            print(f"[{kind}] stage {stage + 1}/{len(stages)}: {stage_name}, {length}", flush=True)
        # A progress bar redrawn into a log file is megabytes of carriage returns: off a terminal,
        # print one line per epoch instead.
        live_bar = progress and sys.stderr.isatty()
        callbacks = [_checks(ModelCheckpoint, Path(log_dir) / kind / versions[tag] / "checkpoints"),
                     ResumeState(pl, dm)]
        if progress and not live_bar:
            callbacks.append(_epoch_lines(pl, f"[{kind}]" + (f" {stage_name}" if len(stages) > 1 else "")))
        trainer = pl.Trainer(
            max_epochs=n_epochs if max_steps is None else -1,
            max_steps=-1 if max_steps is None else max_steps,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            logger=CSVLogger(str(log_dir), name=kind, version=versions[tag]),
            callbacks=callbacks,
            enable_progress_bar=live_bar,
            enable_model_summary=False,
            log_every_n_steps=10,
            num_sanity_val_steps=0,
        )
        ckpt_path = resume if (resume is not None and stage == first_stage) else None
        restored = _training_started(pl)
        trainer.callbacks.append(restored)
        try:
            _fit(trainer, model, dm, ckpt_path)
        except (RuntimeError, ValueError, KeyError) as exc:
            if ckpt_path is None or restored.started:
                raise
            first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"--resume {resume} does not fit this {kind} model (written with other "
                                  f"options, data or an older vizkit): {first}") from None
        model.metrics[stage_name] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
        }
        model.metrics[stage_name]["epochs"] = trainer.current_epoch
        model.metrics[stage_name]["steps"] = trainer.global_step
        model.after_stage(stage, trainer, dm)
    if trainer is not None and not trainer.is_global_zero:
        return out_path
    model.to("cpu")
    model.eval()
    return save_checkpoint(model.to_checkpoint(), out_path, model=model)  # with its listing: fast inspect


def _fit(trainer: Any, model: Any, dm: Any, ckpt_path: str | Path | None) -> None:
    """``trainer.fit``, with Ctrl-C raised again as the KeyboardInterrupt it was.

    Lightning catches Ctrl-C itself: it tears down, ignores further Ctrl-C for good and calls
    ``sys.exit(1)`` (some versions return normally instead), so an interrupted run would exit 1
    silently or, worse, go on to write a checkpoint of an unfinished stage. Here either way ends in
    KeyboardInterrupt, the SIGINT handler is put back, and :func:`train` writes nothing: the
    previous ``--out`` stays as it was, and the ``last.ckpt`` of the finished epochs (in the log
    directory) is there to ``--resume`` from.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
    if trainer.interrupted:
        raise KeyboardInterrupt


#: Updates between validations and ``last.ckpt`` rewrites (at least; and always when a stage ends).
#: Checking every epoch cost the capsule 13 % of its training on the MNIST subset, whose epochs are
#: 40 updates (1,000 held-out images and a 37 MB checkpoint each time); a few hundred updates keep
#: both near 1 % for every model, and a crash loses at most this many updates
#: (benchmarks/train_step_rate.py).
CHECK_EVERY = 400


def check_every_epochs(updates_per_epoch: float) -> int:
    """Epochs between checks: the fewest that make :data:`CHECK_EVERY` updates (1 for an epoch of
    unknown length)."""
    if not math.isfinite(updates_per_epoch) or updates_per_epoch < 1:
        return 1
    return max(1, math.ceil(CHECK_EVERY / updates_per_epoch))


def _checks(checkpoint_cls: type, dirpath: Path) -> Any:
    """``last.ckpt`` and validation every :func:`check_every_epochs` epochs and after the last update.

    One callback decides both, so every checkpoint carries the validation of its own weights.
    ``save_top_k=1`` without a monitor keeps the newest file (with ``save_top_k=0`` Lightning
    writes "last" only once training ends, so a crash or a NaN would leave nothing to --resume
    from). The last update of a run (its last epoch, or ``--max-steps`` inside an epoch) is always
    validated and saved: the metrics a checkpoint records are those of its final weights.
    """

    class Checks(checkpoint_cls):  # type: ignore[misc,valid-type]
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_start(trainer, pl_module)
            every = check_every_epochs(trainer.num_training_batches)
            self._every_n_epochs = trainer.check_val_every_n_epoch = every

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_epoch_start(trainer, pl_module)
            if trainer.max_steps < 0 and trainer.current_epoch + 1 >= trainer.max_epochs:
                self._check_now(trainer)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if 0 < trainer.max_steps <= trainer.global_step:
                self._check_now(trainer)
                trainer.should_stop = True  # Lightning validates inside an epoch only when asked to stop

        def _check_now(self, trainer: Any) -> None:
            """Validate and save at the end of this epoch (or at this update, when stopping)."""
            self._every_n_epochs = trainer.check_val_every_n_epoch = 1

    return Checks(dirpath=dirpath, filename="last", save_top_k=1, save_last=False, save_on_train_epoch_end=True)


def _training_started(pl: Any) -> Any:
    """A callback that notes when training starts: Lightning restores a ``--resume`` checkpoint
    (weights, optimiser state) before that, so an error before it is a checkpoint that does not fit
    the model, which deserves one line rather than Lightning's traceback."""

    class Started(pl.Callback):
        started = False

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.started = True

    return Started()


def _epoch_lines(pl: Any, label: str) -> Any:
    """A callback printing ``label epoch i/n: metric=value ...`` at the end of each epoch."""

    class EpochLines(pl.Callback):
        validated_at = -1  # the update after which validation last ran

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            self.validated_at = trainer.global_step

        # Printed when the next epoch starts (and at the end): callbacks' on_train_epoch_end runs
        # before the module's, which is where some models log their epoch metrics.
        def _line(self, trainer: Any, epoch: int) -> None:
            if not trainer.is_global_zero:
                return
            # Lightning keeps the last validation's numbers; they belong on the line of the epoch
            # that made them, not on the unvalidated epochs after it (see _checks)
            fresh = self.validated_at == trainer.global_step
            values = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                               if torch.is_tensor(v) and v.numel() == 1 and (fresh or not k.startswith("val_")))
            where = (f"epoch {epoch}/{trainer.max_epochs}" if trainer.max_steps < 0
                     else f"epoch {epoch}, step {trainer.global_step}/{trainer.max_steps}")
            print(f"{label} {where}" + (f": {values}" if values else ""), flush=True)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch > 0:
                self._line(trainer, trainer.current_epoch)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._line(trainer, trainer.current_epoch)

    return EpochLines()


def quiet_lightning() -> None:
    """Keep the terminal to the progress bar: Lightning's tips are noise for a CLI user."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*GPU available but not used.*",
                    ".*LeafSpec.*", ".*dirpath has changed.*", ".*Experiment logs directory.*",
                    ".*number of training batches.*"):
        warnings.filterwarnings("ignore", message=pattern)
