"""Adapters that turn models fitted by other libraries into vizkit models and checkpoints."""

from .sklearn_rbm import from_sklearn_rbm, save_sklearn_rbm

__all__ = ["from_sklearn_rbm", "save_sklearn_rbm"]
