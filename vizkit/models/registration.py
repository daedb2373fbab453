"""The single-module reference kinds (sdae, tcnn, ladder, convnet) as plugins, one entry point
each, registered through the same hooks a third-party plugin uses; importing this module costs no
Lightning import. The convnet's ``epoch_snapshots`` capability is defined here, next to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vizkit import Capability, LazyModel, ProbeModel, hookimpl

EPOCH_SNAPSHOTS = "epoch_snapshots"


class EpochSnapshotModel(ProbeModel, Protocol):
    def epoch_models(self) -> dict[int, Any]:
        """``{epoch: model}`` for the training epochs the model kept (may be empty)."""
        ...


class KindPlugin:
    """A plugin object registering model kinds and the capabilities only they have."""

    def __init__(self, *models: LazyModel, capabilities: Sequence[Capability] = ()) -> None:
        self.models = models
        self.own_capabilities = tuple(capabilities)

    @hookimpl
    def register_capabilities(self, register: Callable[[Any], None]) -> None:
        for capability in self.own_capabilities:
            register(capability)

    @hookimpl
    def register_models(self, register: Callable[[Any], None]) -> None:
        for model in self.models:
            register(model)


sdae = KindPlugin(LazyModel("sdae", "vizkit.models.sdae:SDAE"))
tcnn = KindPlugin(LazyModel("tcnn", "vizkit.models.tcnn:TCNN"))
ladder = KindPlugin(LazyModel("ladder", "vizkit.models.ladder:Ladder"))
convnet = KindPlugin(
    LazyModel("convnet", "vizkit.models.convnet:ConvNet"),
    capabilities=[Capability(EPOCH_SNAPSHOTS, "epoch_models(): the weights of the training epochs the model kept",
                             EpochSnapshotModel)],
)
