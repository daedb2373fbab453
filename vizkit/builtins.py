"""The core plugin ``vizkit-core``: the datasets vizkit ships.

Registered through the same hook a third-party plugin uses, so listings, duplicate checks and
lookups treat them alike. Model kinds and probes are entry points of their own (pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hookspecs import hookimpl


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from .datasets import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        register(spec)

