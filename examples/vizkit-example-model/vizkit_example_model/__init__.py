"""The hooks of the example model kind: one ``register_models`` call.

The class is registered lazily (``LazyModel``): it is a LightningModule, and importing Lightning
takes seconds, which ``vizkit --help`` and ``vizkit plugins`` should not pay for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import vizkit


@vizkit.hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    register(vizkit.LazyModel("linae", "vizkit_example_model.model:LinearAE"))
