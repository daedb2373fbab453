"""pluggy hook specifications of the ``vizkit`` project.

Hooks are deliberately few: each receives a ``register`` callback so the host can validate what a
plugin adds, and knows which plugin added it when two claim the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("vizkit")
hookimpl = pluggy.HookimplMarker("vizkit")


@hookspec
def register_capabilities(register: Callable[[Any], None]) -> None:
    """Call ``register(vizkit.Capability(name, summary, interface))`` for each capability your models
    declare or your probes require that no other plugin provides."""


@hookspec
def register_probes(register: Callable[[Any], None]) -> None:
    """Call ``register(ProbeClass)`` for each probe (a :class:`vizkit.Probe` subclass)."""


@hookspec
def register_models(register: Callable[[Any], None]) -> None:
    """Call ``register(ModelClass)`` for each model kind (class with ``kind`` and ``from_checkpoint``)."""


@hookspec
def register_datasets(register: Callable[[Any], None]) -> None:
    """Call ``register(DatasetSpec(...))`` for each dataset name."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``vizkit`` CLI group ``cli``."""
