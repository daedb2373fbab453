"""The probe plugin interface: what a visualization declares and what it receives when run."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from . import capabilities as caps
from .model import LayerInfo, ProbeModel
from .options import Option

T = TypeVar("T")


@dataclass
class Video:
    """Frames ([T, H, W, 3] uint8) written as both GIF and MP4 by :meth:`Result.save`."""

    frames: np.ndarray
    fps: float = 12.0


@dataclass
class Result:
    """What a probe returns: named arrays, figures, videos and metadata.

    In Python the figures stay in memory; with an output directory everything is written there
    and ``files`` lists the paths.
    """

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    videos: dict[str, Video] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def file_names(self) -> list[str]:
        """Names of the files the result has in its directory (written now, or found when reused)."""
        return sorted({p.name for p in self.files} | set(self.meta.get("files", [])))

    def save(self, out: str | Path) -> list[Path]:
        """Write every part atomically into ``out`` and return the paths written."""
        from .output import write_result

        self.files = write_result(self, Path(out))
        return self.files


@dataclass
class UnitView:
    """One unit as one probe's result shows it, for the gallery's unit pages (the Microscope view:
    every method's picture of a unit side by side). ``figure`` is a small matplotlib Figure of
    this unit only, ``files`` names files of the result that are about this unit (its video), and
    ``text`` is one line of its numbers."""

    figure: Any = None
    files: tuple[str, ...] = ()
    text: str = ""


@dataclass
class ProbeContext:
    """Everything a probe's :meth:`Probe.run` may use, already validated by the core."""

    model: ProbeModel
    layer: str
    layer_info: LayerInfo
    units: torch.Tensor
    options: dict[str, Any]
    seed: int
    device: torch.device
    show_progress: bool = True

    def generator(self, offset: int = 0) -> torch.Generator:
        """A generator seeded from the run's seed, so equal seeds give equal arrays."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + offset)
        return gen

    def progress(self, items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
        """Wrap long loops (steps, not units) in a progress bar on stderr (a terminal only: a bar
        redrawn into a log file is just noise)."""
        if not self.show_progress:
            yield from items
            return
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=None)


class Probe:
    """Base class of every probe, built-in or third-party.

    Subclasses set ``name``, ``summary``, ``requires`` (capabilities) and ``options`` and implement
    :meth:`run`. :meth:`valid_layers` may narrow which layers make sense (e.g. only layers fed by
    the input), and :meth:`refusal` says what capabilities cannot (e.g. that this model kept no
    training epochs); :meth:`can_run` combines the three, and listings offer a probe only where it
    is true, so what ``vizkit inspect`` lists is what then runs.

    A probe whose units are independent can instead implement :meth:`compute` (the numbers, for
    the units in ``ctx.units``) and :meth:`draw` (figures, captions, videos and anything that
    mixes units, from all units' arrays) and name in ``unit_arrays`` the arrays whose first axis
    follows ``ctx.units``. Then vizkit can split the units over processes (``vizkit probe
    --devices N``): each computes its share, and one process concatenates the unit arrays and
    draws once.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({caps.ACTIVATIONS})
    options: ClassVar[tuple[Option, ...]] = ()
    unit_arrays: ClassVar[frozenset[str]] = frozenset()
    #: A probe that reads the whole model (templates) may be run without ``--layer`` when only one
    #: layer is valid for it; the CLI then picks that layer.
    layer_optional: ClassVar[bool] = False

    @classmethod
    def validate_class(cls) -> None:
        """Catch a malformed probe when it is registered rather than when a user runs it."""
        from .errors import PluginError

        if not isinstance(cls.name, str) or not re.match(r"^[a-z][a-z0-9_\-]*$", cls.name):
            raise PluginError(f"probe class {cls.__qualname__} has an invalid name {cls.name!r}")
        try:
            cls.requires = caps.validate(cls.requires)
        except ValueError as exc:
            raise PluginError(f"probe {cls.name!r} requires {exc}") from None
        if not all(isinstance(o, Option) for o in cls.options):
            raise PluginError(f"probe {cls.name!r} has options that are not vizkit.Option")
        legacy = getattr(cls, "render", None)  # a probe written before draw() was named draw
        if legacy is not None and cls.draw is Probe.draw:
            cls.draw = legacy
        if cls.run is Probe.run and cls.compute is Probe.compute:
            raise PluginError(f"probe {cls.name!r} implements neither run() nor compute()")
        if cls.compute is not Probe.compute and not cls.unit_arrays:
            raise PluginError(f"probe {cls.name!r} implements compute() but names no unit_arrays")

    @classmethod
    def splits_units(cls) -> bool:
        """Whether this probe's units can be computed in separate processes and merged."""
        return cls.compute is not Probe.compute and cls.run is Probe.run

    @classmethod
    def valid_layers(cls, model: ProbeModel) -> list[str]:
        """Layers this probe can run on; by default every layer of the model."""
        return list(model.layer_infos())

    @classmethod
    def refusal(cls, model: ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        """Why this probe cannot run on ``model``'s ``layer`` with these (resolved) ``options``, in
        one line, or None when it can: for what the required capabilities cannot say."""
        return None

    @classmethod
    def can_run(cls, model: ProbeModel, layer: str | None = None, options: dict[str, Any] | None = None) -> bool:
        """Whether the probe runs on ``layer`` (or on some layer) of ``model``, with ``options`` (its
        defaults when None): requirements, valid layers and :meth:`refusal` together."""
        if not set(cls.requires) <= set(model.capabilities):
            return False
        valid = cls.valid_layers(model)
        layers = valid if layer is None else [layer] if layer in valid else []
        opts = options if options is not None else cls.default_options()
        return any(cls.refusal(model, name, opts) is None for name in layers)

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {opt.name: opt.default for opt in cls.options}

    def run(self, ctx: ProbeContext) -> Result:
        """The whole result for ``ctx.units``; by default :meth:`draw` of :meth:`compute`."""
        return self.draw(ctx, self.compute(ctx))

    def compute(self, ctx: ProbeContext) -> Result:
        """Arrays (and run-level ``meta``) for the units in ``ctx.units``, no figures.

        Every array named in ``unit_arrays`` has one row per unit of ``ctx.units``, and a unit's
        row must not depend on which other units are in ``ctx.units`` (seed per unit, or shared
        random numbers), so that computing the units in parts gives the same arrays. Other arrays
        and ``meta`` are taken from the first part.
        """
        raise NotImplementedError

    def draw(self, ctx: ProbeContext, result: Result) -> Result:
        """Figures, captions and videos for all units (``ctx.units`` is then every unit of the run);
        may also add arrays that compare units with each other."""
        return result

    def unit_view(self, result: Result, index: int) -> UnitView | None:
        """Unit ``result.meta["units"][index]`` alone, for a gallery's unit page; None (the
        default) when this probe has no per-unit picture. Works on a finished result read back
        from disk (arrays and meta only), so a reused run still gets its unit pages."""
        return None
