"""Reference models: LightningModules built from primitive hyperparameters only."""

from .base import ReferenceModel, TrainOption

__all__ = ["ReferenceModel", "TrainOption"]
