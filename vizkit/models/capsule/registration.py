"""The ``capsule`` kind as a plugin: registers the model kind and its ``templates`` capability
through the same hooks a third-party plugin uses (no Lightning import until a model is built)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vizkit import LazyModel, hookimpl


@hookimpl
def register_capabilities(register: Callable[[Any], None]) -> None:
    from .interfaces import CAPABILITY

    register(CAPABILITY)


@hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    register(LazyModel("capsule", "vizkit.models.capsule.model:CapsuleAE"))
