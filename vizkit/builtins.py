"""The core's own registrations: reference models and datasets.

Registered through the same hooks a third-party plugin uses, so listings, duplicate checks and
lookups treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hookspecs import hookimpl
from .registry import LazyModel


@hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    # Lazy: the classes are LightningModules, and only commands that build a model should pay
    # for importing Lightning.
    register(LazyModel("sdae", "vizkit.models.sdae:SDAE"))
    register(LazyModel("rbm", "vizkit.models.rbm.model:RBM"))
    register(LazyModel("dbn", "vizkit.models.rbm.model:DBN"))
    register(LazyModel("tcnn", "vizkit.models.tcnn:TCNN"))
    register(LazyModel("capsule", "vizkit.models.capsule.model:CapsuleAE"))
    register(LazyModel("convnet", "vizkit.models.convnet:ConvNet"))
    register(LazyModel("ladder", "vizkit.models.ladder:Ladder"))


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from .datasets import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        register(spec)


@hookimpl
def register_commands(cli: Any) -> None:
    from .models.rbm.command import sample_command

    cli.add_command(sample_command)
