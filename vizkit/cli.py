"""The ``vizkit`` command line: a thin click layer over :mod:`vizkit.api` and the harness.

Errors from the core arrive as typed :class:`~vizkit.errors.VizkitError`s and leave as one line on
stderr with exit code 2 (usage) or 1 (runtime); ``vizkit --traceback ...`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .errors import UsageError, VizkitError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
SEED = click.IntRange(0, 2**32 - 1)  # what every generator vizkit seeds accepts (Lightning's, NumPy's)


class PositiveNumber(click.ParamType):
    """A finite number above zero (``nan`` and ``inf`` are refused; click's FloatRange lets them by)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (number > 0 and number != float("inf")):
            self.fail(f"{value!r} must be a finite number above 0", param, ctx)
        return number


def parse_devices(value: str) -> int | str | list[int]:
    """Lightning's ``devices``: a count, ``auto``, or a comma list of indices; anything else is one line."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts and all(p.isascii() and p.isdigit() for p in parts):
        return [int(p) for p in parts]
    raise UsageError(f"--devices must be a count (e.g. 2), auto, or a list of device indices (e.g. 0,1), got {value!r}")


class _Interrupted(Exception):
    """Ctrl-C carried past click, which would print a blank line and "Aborted!" (or, with
    ``standalone_mode=False``, raise ``Abort``, which also means end of input at a prompt)."""


@contextlib.contextmanager
def _past_click() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt as exc:
        raise _Interrupted() from exc


class LazyGroup(click.Group):
    """Loads plugins (and their ``register_commands``) only when an unknown command is asked for.

    Parsing and running the command happen inside :func:`_past_click`, so that Ctrl-C anywhere
    (loading plugins, a probe, training, a gallery) reaches :func:`main` as an interrupt.
    """

    _plugins_added = False

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _past_click():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _past_click():
            return super().invoke(ctx)

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            from .registry import get_host

            get_host().register_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(package_name="vizkit")
@click.option("--traceback", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """See what the units of a neural network respond to and what they are invariant to."""
    ctx.ensure_object(dict)["traceback"] = traceback


# -- train ---------------------------------------------------------------------------------------
def _key_values(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"{flag} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def _model_flags(args: list[str]) -> dict[str, str]:
    """Turn ``--layers 500,500 --binarize`` into ``{"layers": "500,500", "binarize": "true"}``."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or len(token) < 3:
            raise UsageError(f"unexpected argument {token!r}")
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            flags[key] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[key] = args[i + 1]
            i += 1
        else:
            flags[key] = "true"
        i += 1
    return flags


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("kind")
@click.option("--data", "data", required=True, help="Dataset name (see `vizkit datasets`) or a .npy/.npz/image folder.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Directory with the dataset's files (e.g. MNIST IDX).")
@click.option("-D", "--data-option", "data_option", multiple=True, metavar="KEY=VALUE", help="Dataset option, e.g. -D size=16 -D whiten=zca.")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True, help="Epochs (per greedy stage).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many updates (per stage), however many epochs that is; replaces --epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=PositiveNumber(), default=None, help="Learning rate (default: the model's).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint file to write.")
@click.option("--accelerator", default="auto", show_default=True, help="Lightning accelerator: cpu, gpu, mps, auto.")
@click.option("--devices", default="1", show_default=True, help="Lightning devices (a count, a list, or auto).")
@click.option("--num-nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--strategy", default="auto", show_default=True, help="Lightning strategy, e.g. ddp.")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None, help="Lightning .ckpt to resume from.")
@click.option("--log-dir", type=click.Path(file_okay=False), default="lightning_logs", show_default=True, help="Where the CSV metrics and Lightning checkpoints go.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace a file at --out that is not a vizkit checkpoint (default: refuse).")
@click.pass_context
def train(ctx: click.Context, kind: str, data: str, data_dir: str | None, data_option: tuple[str, ...],
          epochs: int, max_steps: int | None, batch_size: int, lr: float | None, seed: int, out: str, accelerator: str,
          devices: str, num_nodes: int, strategy: str, resume: str | None, log_dir: str, quiet: bool,
          force: bool) -> None:
    """Train a reference model KIND and write a vizkit checkpoint.

    Model options follow as flags (see `vizkit models`), e.g. `--layers 1000,1000,1000`.
    """
    from .training import train as run_training

    data_options: dict[str, Any] = _key_values(data_option, "-D/--data-option")
    if data_dir is not None:
        data_options["data_dir"] = data_dir
    path = run_training(
        kind, data, out=out, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed,
        model_options=_model_flags(list(ctx.args)), data_options=data_options,
        accelerator=accelerator, devices=parse_devices(devices),
        num_nodes=num_nodes, strategy=strategy, resume=resume, log_dir=log_dir, progress=not quiet, force=force,
    )
    click.echo(f"wrote {path}")


# -- inspect ---------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--module", "module", default=None, metavar="PKG.MOD:FACTORY",
              help="Your own model instead of CHECKPOINT (as for `vizkit probe`).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False), help="With --module: its state dict.")
@click.option("--input-shape", default=None, metavar="C,H,W", help="With --module: one example's shape.")
def inspect(checkpoint: str | None, module: str | None, weights: str | None, input_shape: str | None) -> None:
    """Show a checkpoint's (or your --module's) kind, data, layers, capabilities and compatible probes.

    A module's layers are all its named_modules() names, blocks included, with #k for the k-th
    call of a module that runs more than once (e.g. layer1.0.relu#2).
    """
    import json

    from . import api

    if module is not None or checkpoint is None:
        info = api.describe_model(_load_model(checkpoint, module, weights, input_shape))
        source = f"--module {module}" + (f" --weights {weights}" if weights else "")
    else:
        if weights is not None or input_shape is not None:
            raise UsageError("--weights and --input-shape go with --module pkg.mod:Factory")
        info = api.describe_checkpoint(checkpoint)  # no Lightning import when the file lists its layers
        source = checkpoint
    data = info["data"]
    click.echo(f"checkpoint   {source}")
    if info["sha256"]:
        click.echo(f"sha256       {info['sha256']}")
    click.echo(f"kind         {info['kind']}")
    click.echo(f"input shape  {tuple(info['input_shape'])}")
    if data:
        stats = data.get("stats", {})
        opts = ", ".join(f"{k}={v}" for k, v in (data.get("options") or {}).items())
        click.echo(f"data         {data.get('name')}" + (f" ({opts})" if opts else ""))
        if stats:
            click.echo("data stats   " + ", ".join(f"{k}={_fmt(v)}" for k, v in stats.items()))
    if info["hparams"]:
        click.echo("hparams      " + ", ".join(f"{k}={v}" for k, v in info["hparams"].items() if k != "input_shape"))
    click.echo("layers")
    width = max([10, *map(len, info["layers"])])
    for name, layer in info["layers"].items():
        kind = "maps" if layer.is_map else "units"
        click.echo(f"  {name:<{width}} {layer.n_units:>6} {kind}  shape {tuple(layer.shape)}")
    click.echo("capabilities " + ", ".join(info["capabilities"]))
    click.echo("probes       " + (", ".join(info["probes"]) or "(none installed)"))
    if info["metrics"]:
        click.echo("metrics")
        for stage, values in info["metrics"].items():
            click.echo(f"  {stage}: " + (json.dumps(values) if not isinstance(values, dict)
                                         else ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())))


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) > 6:  # per-epoch histories: ends and length
        head = ", ".join(_fmt(v) for v in value[:3])
        return f"[{head}, ..., {_fmt(value[-1])}] ({len(value)} values)"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- probe -----------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.option("--probe", "-p", "--plugin", "probe_name", required=True, metavar="NAME",
              help="Probe name (see `vizkit plugins`); --plugin is an older spelling of the same option.")
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--module", "module", default=None, metavar="PKG.MOD:FACTORY",
              help="Your own model instead of CHECKPOINT: a class or function returning a torch.nn.Module.")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="With --module: its state dict (torch.save(model.state_dict(), FILE)); read weights-only.")
@click.option("--input-shape", default=None, metavar="C,H,W", help="With --module: one example's shape, e.g. 1,28,28.")
@click.option("--layer", default=None, help="Layer name (see `vizkit inspect`).")
@click.option("--units", default=None, help="Units: 0:36, 3,5,9 or all (default: all).")
@click.option("-o", "--option", "option", type=(str, str), multiple=True, metavar="KEY VALUE", help="Probe option (see `vizkit plugins`).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default cpu).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for the result.")
@click.option("--devices", default="1", show_default=True,
              help="Split the units over this many processes (Lightning devices: a count or auto).")
@click.option("--accelerator", default=None, help="With --devices: cpu, gpu, mps or auto (default: from --device).")
@click.option("--num-nodes", type=click.IntRange(min=1), default=1, show_default=True, help="With --devices: nodes.")
@click.option("--strategy", default="auto", show_default=True, help="With --devices: Lightning strategy, e.g. ddp.")
@click.option("--force", is_flag=True,
              help="Replace another probe's result, or files vizkit did not write, in --out (default: refuse).")
def probe(probe_name: str, checkpoint: str | None, module: str | None, weights: str | None, input_shape: str | None,
          layer: str | None, units: str | None, option: tuple[tuple[str, str], ...],
          seed: int, device: str | None, out: str, devices: str, accelerator: str | None, num_nodes: int,
          strategy: str, force: bool) -> None:
    """Run probe --probe NAME on CHECKPOINT and write arrays, figures and index.html to --out.

    Your own model instead of a vizkit checkpoint: --module pkg.mod:Factory --weights w.pt
    --input-shape 1,28,28. Layers are the module's dotted names, blocks included (layer3,
    layer3.1.conv2), with #k for the k-th call of a module that runs several times (relu#2);
    `vizkit inspect --module ...` lists them.

    With --devices N (and --num-nodes), Lightning starts one process per device and the units are
    split between them; the result is the same as one process's.
    """
    from . import api
    from .registry import get_host

    probe_cls = get_host().probe(probe_name)  # a misspelt probe fails before a model is loaded
    options = {key.replace("-", "_"): value for key, value in option}
    model = _load_model(checkpoint, module, weights, input_shape)
    if layer is None:
        api.check_capabilities(probe_cls, model)
        valid = probe_cls.valid_layers(model)
        if len(valid) != 1 or not probe_cls.layer_optional:
            raise UsageError(f"--layer is required; valid layers for {probe_name!r}: {', '.join(valid) or '(none)'}")
        layer = valid[0]
    if devices != "1" or num_nodes != 1:
        if device is not None and accelerator is not None:
            raise UsageError("give --device or --accelerator with --devices, not both")
        from .shard import run_probe_on_ranks

        # every check before Lightning starts any process, so a mistake is one line, said once
        api.prepare_run(probe_name, model, layer, units=units, out=out, seed=seed, force=force, **options)
        kind = device.split(":")[0] if device is not None else None
        result = run_probe_on_ranks(probe_name, model, layer, units=units, out=out, seed=seed,
                                    accelerator=accelerator or {"cuda": "gpu"}.get(kind, kind) or "auto",
                                    devices=parse_devices(devices), num_nodes=num_nodes,
                                    strategy=strategy, show_progress=True, options=options, force=force)
        if result is None:  # not rank 0: rank 0 reports
            return
    else:
        result = api.run_probe(probe_name, model, layer, units=units, out=out, seed=seed, device=device,
                               show_progress=True, force=force, **options)
    for note in result.meta.get("notes") or ():  # e.g. fewer examples used than asked for
        click.echo(f"note: {probe_name}: {note}", err=True)
    if result.meta.get("reused"):  # nothing was written: say so instead of listing files
        click.echo(f"{out}: an identical finished run is already there (files verified); nothing recomputed")
    else:
        if result.meta.get("units_reused"):
            click.echo(f"{out}: {result.meta['units_reused']} of {len(result.meta['units'])} units taken from the "
                       f"earlier run there; computed the rest")
        for path in result.files:
            click.echo(f"wrote {path}")
    click.echo(f"open {Path(out) / 'index.html'}")


def _load_model(checkpoint: str | None, module: str | None, weights: str | None, input_shape: str | None) -> Any:
    """A vizkit checkpoint, or the user's own model named with --module (exactly one of them)."""
    from . import api

    if module is not None:
        if checkpoint is not None:
            raise UsageError("give CHECKPOINT or --module (with --weights), not both")
        return api.load_module(module, weights, input_shape)
    if weights is not None or input_shape is not None:
        raise UsageError("--weights and --input-shape go with --module pkg.mod:Factory")
    if checkpoint is None:
        raise UsageError("give a CHECKPOINT, or your own model with --module pkg.mod:Factory --weights FILE "
                         "--input-shape C,H,W")
    return api.load(checkpoint)


# -- listings --------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
def plugins() -> None:
    """List installed probes with their requirements and options, the capabilities plugins
    registered, and any broken plugin."""
    from .registry import get_host

    host = get_host()
    for name, reg in sorted(host.probes.items()):
        cls = reg.obj
        dist = host.distributions.get(reg.plugin, "?")
        click.echo(f"{name}  [plugin {reg.plugin}, distribution {dist}]  {cls.summary}")
        click.echo(f"    requires: {', '.join(sorted(cls.requires))}")
        for opt in cls.options:
            click.echo(f"    -o {opt.name} {opt.describe()}  {opt.help}")
    click.echo("capabilities (what models declare and probes require):")
    for name, reg in sorted(host.capabilities.items()):
        click.echo(f"    {name}  [plugin {reg.plugin}]  {reg.obj.summary}")
    for name, reason in sorted(host.broken.items()):
        click.echo(f"BROKEN {name}: {reason}")


@cli.command(context_settings=CONTEXT)
def models() -> None:
    """List model kinds that `vizkit train` and `vizkit.load` know."""
    from .registry import get_host

    host = get_host()
    for name, reg in sorted(host.models.items()):
        info = host.model_summary(name)  # cached: no Lightning import once listed
        click.echo(f"{name}  [plugin {reg.plugin}]  {info['summary']}")
        click.echo(f"    capabilities: {', '.join(info['capabilities'])}")
        for flag, describe, text in info["options"]:
            click.echo(f"    {flag} {describe}  {text}")


@cli.command(context_settings=CONTEXT)
def datasets() -> None:
    """List datasets that `vizkit train --data` accepts."""
    from .registry import get_host

    host = get_host()
    for name, reg in sorted(host.datasets.items()):
        spec = reg.obj
        click.echo(f"{name}  [plugin {reg.plugin}]  {getattr(spec, 'help', '')}")
        for key, text in (getattr(spec, "options", None) or {}).items():
            click.echo(f"    -D {key}=...  {text}")
    click.echo("(any .npy / .npz file or folder of images also works as --data PATH)")


# -- gallery -------------------------------------------------------------------------------------
@cli.group(context_settings=CONTEXT)
def gallery() -> None:
    """Build static HTML galleries from TOML recipes (see gallery/)."""


@gallery.command("build", context_settings=CONTEXT)
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: gallery/_build/RECIPE-NAME).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--force", is_flag=True, help="Replace an index.html or probe results in --out that vizkit did not write.")
def gallery_build(recipe: str, out: str | None, quiet: bool, force: bool) -> None:
    """Train the recipe's models, run its probes and write an index.html."""
    from .gallery import build

    target = Path(out) if out else Path("gallery") / "_build" / Path(recipe).stem
    page = build(recipe, target, progress=not quiet, force=force)
    click.echo(f"open {page}")


# -- entry point -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one line per error, exit 2 for usage mistakes, 1 for failures and 130
    for Ctrl-C. Warnings and destructor noise of libraries are held back until the command ends:
    shown after a success, dropped after a refusal (``--traceback`` shows them too)."""
    args = sys.argv[1:] if argv is None else argv
    show_tb = "--traceback" in args
    with _held_back(show_tb) as outcome:
        code = _run(args, show_tb)
        outcome["failed"] = code != 0
    sys.exit(code)


def _run(args: list[str], show_tb: bool) -> int:
    """Run the command and turn what it raised into a message on stderr and an exit code."""
    try:
        code = cli.main(args=args, prog_name="vizkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = 1
    except click.UsageError as exc:
        where = f" (see 'vizkit {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in exc.ctx.command_path else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        code = 2
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except VizkitError as exc:
        if show_tb:
            raise
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    except (_Interrupted, KeyboardInterrupt) as exc:
        code = _interrupted(exc, show_tb)
    except OSError as exc:  # a full disk or lost permission deep inside a library (Lightning's logs)
        if show_tb:
            raise
        from .output import write_failure

        click.echo(f"error: {write_failure(Path(exc.filename) if exc.filename else None, exc)}", err=True)
        code = 1
    except MemoryError:
        if show_tb:
            raise
        click.echo("error: out of memory; try fewer --units, a smaller batch or another --device", err=True)
        code = 1
    return code if isinstance(code, int) else 0


def _interrupted(exc: BaseException, show_tb: bool) -> int:
    """Ctrl-C is one line and exit 130 (128 + SIGINT, what shells report), whatever was running.

    What was finished stays: results, gallery pages and checkpoints are renamed into place whole,
    so an interrupted run leaves the previous ones as they were and no half-written file.
    """
    if show_tb:
        import traceback

        traceback.print_exception(exc.__cause__ or exc)
    # after the terminal's ^C echo, start a fresh line
    click.echo(("\n" if sys.stderr.isatty() else "") + "vizkit: interrupted", err=True)
    return 130


@contextlib.contextmanager
def _held_back(show_all: bool) -> Iterator[dict[str, bool]]:
    """Collect library warnings and "Exception ignored in ..." reports (a writer's destructor
    retrying a write on a full disk) while the command runs, so that a refusal stays one line.

    The caller sets ``outcome["failed"]``; what was collected is shown when the command succeeded
    or ``show_all`` (``--traceback``) asks for everything, and dropped after a refusal.
    """
    outcome = {"failed": True}
    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield outcome
            finally:
                if outcome["failed"]:
                    gc.collect()  # a failed writer's destructor runs now, while its report is held
    finally:
        sys.unraisablehook = hook
        if show_all or not outcome["failed"]:
            for item in caught:
                warnings.showwarning(item.message, item.category, item.filename, item.lineno, item.file, item.line)
            for report in unraisable:
                hook(report)
