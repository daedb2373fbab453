"""The core's own registrations: reference models and datasets.

Registered through the same hooks a third-party plugin uses, so listings, duplicate checks and
lookups treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hookspecs import hookimpl


@hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    from .models.rbm import DBN, RBM
    from .models.sdae import SDAE
    from .models.tcnn import TCNN

    register(SDAE)
    register(RBM)
    register(DBN)
    register(TCNN)


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from .data import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        register(spec)


@hookimpl
def register_commands(cli: Any) -> None:
    from .models.rbm.command import sample_command

    cli.add_command(sample_command)
