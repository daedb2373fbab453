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
    from .models.sdae import SDAE

    register(SDAE)


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from .data import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        register(spec)
