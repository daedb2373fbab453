"""``vizkit sample``: the shortcut for ``vizkit probe --probe sample`` on an rbm/dbn checkpoint.

It runs the ``sample`` probe through the same runner as every probe (checks, fingerprint, reuse of
a finished identical run), defaulting to the top layer, which a DBN's probe run must name.
"""

from __future__ import annotations

from pathlib import Path

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.command("sample", context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--layer", default=None, help="Sample the RBM under this layer, then pass down (default: the top).")
@click.option("--chains", type=click.IntRange(1, 10000), default=100, show_default=True, help="Independent chains.")
@click.option("--samples", type=click.IntRange(1, 100), default=1, show_default=True, help="Samples kept per chain.")
@click.option("--every", type=click.IntRange(min=1), default=1000, show_default=True, help="Gibbs steps between kept samples.")
@click.option("--burn-in", type=click.IntRange(min=0), default=0, show_default=True, help="Gibbs steps before the first.")
@click.option("--binary", is_flag=True, help="Show binary samples instead of pixel probabilities.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, mps (default cpu).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for the result.")
@click.option("--force", is_flag=True, help="Replace another probe's result, or files vizkit did not write, in --out.")
def sample_command(checkpoint: str, layer: str | None, chains: int, samples: int, every: int, burn_in: int,
                   binary: bool, seed: int, device: str | None, out: str, force: bool) -> None:
    """Draw Gibbs samples from an rbm or dbn CHECKPOINT and write them as an image grid to --out."""
    import vizkit
    from vizkit import CapabilityError

    model = vizkit.load(checkpoint)
    if "sample" not in model.capabilities:
        raise CapabilityError(f"vizkit sample needs an rbm or dbn checkpoint (a model with the 'sample' "
                              f"capability); {checkpoint} is a {model.kind!r} model")
    top = layer if layer is not None else list(model.layer_infos())[-1]
    result = vizkit.run_probe("sample", model, top, out=out, seed=seed, device=device, force=force,
                              chains=chains, samples=samples, every=every, burn_in=burn_in, binary=binary)
    if result.meta.get("reused"):
        click.echo(f"{out}: an identical finished run is already there (files verified); nothing recomputed")
    for path in result.files if not result.meta.get("reused") else ():
        click.echo(f"wrote {path}")
    click.echo(f"open {Path(out) / 'index.html'}")
