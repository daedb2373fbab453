"""The ``rbm`` and ``dbn`` kinds as a plugin: an entry point of the vizkit distribution that
registers them, their capabilities and the ``vizkit sample`` shortcut through the same hooks a
third-party plugin uses. Importing it costs no Lightning import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vizkit import LazyModel, hookimpl


@hookimpl
def register_capabilities(register: Callable[[Any], None]) -> None:
    from .interfaces import CAPABILITIES

    for capability in CAPABILITIES:
        register(capability)


@hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    register(LazyModel("rbm", "vizkit.models.rbm.model:RBM"))
    register(LazyModel("dbn", "vizkit.models.rbm.model:DBN"))


@hookimpl
def register_commands(cli: Any) -> None:
    from .command import sample_command

    cli.add_command(sample_command)
