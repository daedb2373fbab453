"""``vizkit sample``: long Gibbs chains of an ``rbm``/``dbn`` checkpoint as an image grid.

Free-running samples are how Tieleman (2014, Fig. 3.2) compares trainers: a PCD-trained RBM
generates digits, a CD-1-trained one mostly does not. The command reuses the probe output
format (``result.json``, ``arrays.npz``, a PNG and ``index.html``) so results look alike.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

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
def sample_command(checkpoint: str, layer: str | None, chains: int, samples: int, every: int, burn_in: int,
                   binary: bool, seed: int, device: str | None, out: str) -> None:
    """Draw Gibbs samples from an rbm or dbn CHECKPOINT and write them as an image grid to --out."""
    from ... import api
    from ...errors import UsageError
    from ...output import ensure_writable
    from .model import BoltzmannStack

    out_path = ensure_writable(out)
    model = api.load(checkpoint)
    if not isinstance(model, BoltzmannStack):
        raise UsageError(f"vizkit sample needs an rbm or dbn checkpoint; {checkpoint} is a {model.kind!r} model")
    if layer is not None:
        from ...model import layer_info

        layer_info(model, layer)
    result = sample_result(model, layer=layer, chains=chains, samples=samples, every=every, burn_in=burn_in,
                           probabilities=not binary, seed=seed, device=device)
    result.meta.update({"checkpoint": {"path": checkpoint, "sha256": model.source["sha256"]}})
    for path in result.save(out_path):
        click.echo(f"wrote {path}")
    click.echo(f"open {Path(out) / 'index.html'}")


def sample_result(model, *, layer: str | None = None, chains: int = 100, samples: int = 1, every: int = 1000,
                  burn_in: int = 0, probabilities: bool = True, seed: int = 0, device: str | None = None):
    """The samples as a :class:`vizkit.Result` (arrays, one figure, caption, metadata)."""
    from ...api import check_device, check_seed
    from ...figure import as_images, image_grid
    from ...probe import Result

    check_seed(seed)
    dev = check_device(device)
    model.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    top = layer or f"h{model.depth}"
    x = model.sample(layer=top, chains=chains, samples=samples, every=every, burn_in=burn_in,
                     probabilities=probabilities, generator=gen).cpu()
    shape = tuple(model.input_shape)
    flat = x.reshape(chains * samples, *shape).numpy()
    images = as_images(flat, shape)
    hp = model.hparams
    how = f"{hp['trainer']}" + (f"-{hp['k']}" if hp["trainer"] == "cd" else "")
    per_chain = samples > 1
    fig = image_grid(images, mode="minmax", shared_scale=True, ncols=samples if per_chain else None,
                     row_labels=[str(c) for c in range(chains)] if per_chain else None,
                     col_labels=[str(burn_in + (s + 1) * every) for s in range(samples)] if per_chain else None,
                     title=f"Gibbs samples, {model.kind} ({how}), RBM under {top}: {chains} chains"
                           + (f", {every} steps apart" if per_chain else f" after {burn_in + every} steps"))
    fig.axes[0].set_ylabel("chain" + (" (Gibbs step above)" if per_chain else ""), fontsize=8)
    fig.axes[0].set_xlabel("one grey scale for all tiles: lowest value black, highest white", fontsize=8)
    caption = (f"{chains} independent chains from random states, a sample every {every} Gibbs steps after "
               f"{burn_in} burn-in ({samples} per chain" + (", one row per chain" if samples > 1 else "")
               + f"); {'pixel probabilities E[x | h1]' if probabilities else 'binary samples'}, black 0, white 1.")
    meta = {"command": "sample", "kind": model.kind, "layer": top, "chains": chains, "samples": samples,
            "every": every, "burn_in": burn_in, "probabilities": probabilities, "seed": seed,
            "device": str(dev), "hparams": dict(hp)}
    return Result(arrays={"samples": x.numpy().astype(np.float32)}, meta=meta, figures={"samples": fig},
                  captions={"samples": caption})
