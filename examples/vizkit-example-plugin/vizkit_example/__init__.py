"""An example third-party vizkit plugin.

It adds

* the probe ``mean-response``: feed random inputs shaped like the model's input and report the
  mean and standard deviation of each selected unit's activation, as arrays and a bar chart;
* a capability of its own, ``prototypes``, with a model kind that provides it (``protonet``) and a
  probe that requires it (``prototype-match``), in :mod:`vizkit_example.prototypes`; and
* the command ``vizkit example-hello``, which prints one line.

It imports only vizkit's public API and is found through the ``vizkit`` entry-point group declared
in this distribution's ``pyproject.toml``. See ``docs/writing_plugins.md`` in vizkit for a
walk-through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import vizkit
from vizkit import Option, Probe, ProbeContext, Result
from vizkit import capabilities as caps

__version__ = "0.1.0"

# Inputs plus activations held at once per forward pass, in numbers (float32: 4 bytes each).
CHUNK_BUDGET = 1 << 22


class MeanResponse(Probe):
    """Mean and spread of each unit's response to random inputs.

    Random inputs are drawn element-wise from U(-1, 1) (``noise=uniform``) or N(0, 1)
    (``noise=gaussian``). When the model knows its training data's mean input norm
    (``data_info["stats"]["mean_norm"]``, stored in every checkpoint ``vizkit train`` writes),
    each input is rescaled to exactly that norm so the units see inputs as large as the data.
    ``std`` is the population standard deviation (divide by ``samples``).
    """

    name = "mean-response"
    summary = "mean and std of each unit's activation over random inputs (bar chart)"
    requires = frozenset({caps.ACTIVATIONS})
    options = (
        Option("samples", int, 256, "number of random inputs", min=1, max=10_000_000),
        Option("noise", str, "uniform", "input distribution: U(-1,1) or N(0,1) per element",
               choices=("uniform", "gaussian")),
    )

    # valid_layers() is inherited: activations exist for every layer, so every layer is valid.

    # compute() + render() instead of run(): every unit sees the same random inputs (one generator,
    # seeded by the run), so a unit's statistics do not depend on which other units are computed
    # with it, and `vizkit probe --devices N` can split the units over processes.
    unit_arrays = frozenset({"mean", "std", "units"})

    def compute(self, ctx: ProbeContext) -> Result:
        samples = ctx.options["samples"]
        noise = ctx.options["noise"]
        input_shape = tuple(ctx.model.input_shape)
        d = math.prod(input_shape)
        radius = (ctx.model.data_info or {}).get("stats", {}).get("mean_norm")
        radius = float(radius) if radius else None

        # Chunk the samples to a memory budget; every chunk is one batched forward pass.
        chunk = max(1, min(samples, CHUNK_BUDGET // (d + math.prod(ctx.layer_info.shape))))
        gen = ctx.generator()
        n_units = len(ctx.units)
        count = 0
        # Running statistics in float64 on the CPU (MPS has no float64); only [n, units] moves.
        mean = torch.zeros(n_units, dtype=torch.float64)
        m2 = torch.zeros(n_units, dtype=torch.float64)
        steps = range(0, samples, chunk)
        with torch.no_grad():
            for start in ctx.progress(steps, desc="mean-response", total=len(steps)):
                n = min(chunk, samples - start)
                x = self._noise(noise, (n, *input_shape), gen, ctx.device)
                if radius is not None:
                    norms = x.reshape(n, -1).norm(dim=1).clamp_min(1e-12)
                    x = x * (radius / norms).reshape(n, *([1] * len(input_shape)))
                acts = vizkit.unit_activations(ctx.model, x, ctx.layer, ctx.units).to("cpu", torch.float64)
                # Chan et al.'s pairwise update: numerically stable, exact for constant responses.
                chunk_mean = acts.mean(dim=0)
                chunk_m2 = ((acts - chunk_mean) ** 2).sum(dim=0)
                delta = chunk_mean - mean
                total = count + n
                mean = mean + delta * (n / total)
                m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
                count = total
        std = (m2 / count).sqrt()
        return Result(
            arrays={"mean": mean.numpy().astype(np.float32), "std": std.numpy().astype(np.float32),
                    "units": ctx.units.cpu().numpy().astype(np.int64)},
            meta={"input_norm": radius},
        )

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        """The bar chart and caption, once, for all units (after any split run is merged)."""
        samples, noise, radius = ctx.options["samples"], ctx.options["noise"], result.meta["input_norm"]
        units, mean, std = result.arrays["units"], result.arrays["mean"], result.arrays["std"]
        scale = f"rescaled to norm {radius:.3g}" if radius is not None else "unscaled"
        result.figures["mean_response"] = _bar_chart(
            units, mean, std, title=f"layer {ctx.layer}: mean response to {samples} {noise} random inputs")
        result.captions["mean_response"] = (
            f"Mean ± standard deviation of {len(units)} units of layer {ctx.layer} over {samples} random "
            f"{noise} inputs ({scale}); means range {mean.min():.3g} to {mean.max():.3g}."
        )
        return result

    @staticmethod
    def _noise(kind: str, shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
        if kind == "gaussian":
            return torch.randn(shape, generator=gen, device=device)
        return torch.rand(shape, generator=gen, device=device) * 2 - 1


def _bar_chart(units: np.ndarray, mean: np.ndarray, std: np.ndarray, title: str) -> Any:
    """One bar per unit (mean) with its standard deviation as an error bar."""
    from matplotlib.figure import Figure

    n = len(units)
    fig = Figure(figsize=(min(max(5.5, 0.22 * n + 1.5), 16.0), 3.2), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(n)
    ax.bar(pos, mean, yerr=std, color="#4c72b0", ecolor="#333333",
           capsize=2 if n <= 40 else 0, width=0.8)
    step = max(1, math.ceil(n / 40))
    ax.set_xticks(pos[::step])
    ax.set_xticklabels([str(u) for u in units[::step]], fontsize=7)
    ax.set_xlim(-0.6, n - 0.4)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("unit")
    ax.set_ylabel("mean activation (± std)")
    ax.set_title(title, fontsize=10)
    return fig


@vizkit.hookimpl
def register_capabilities(register: Callable[[Any], None]) -> None:
    from .prototypes import CAPABILITY

    register(CAPABILITY)


@vizkit.hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    from .prototypes import ProtoNet

    register(ProtoNet)


@vizkit.hookimpl
def register_probes(register: Callable[[Any], None]) -> None:
    from .prototypes import PrototypeMatch

    register(MeanResponse)
    register(PrototypeMatch)


@vizkit.hookimpl
def register_commands(cli: Any) -> None:
    import click

    @click.command("example-hello")
    def example_hello() -> None:
        """Print one line to show that the example plugin's command is installed."""
        click.echo(f"hello from vizkit-example-plugin {__version__} (vizkit {vizkit.__version__})")

    cli.add_command(example_hello)
