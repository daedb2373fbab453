"""Reference models: LightningModules built from primitive hyperparameters only.

Names are imported on first use: importing a submodule (say ``vizkit.models.rbm.command``) must
not pay for importing Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReferenceModel", "TrainOption"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module 'vizkit.models' has no attribute {name!r}")
