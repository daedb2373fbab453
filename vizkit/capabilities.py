"""Capabilities: named interfaces a model declares and a probe requires.

The vocabulary is open. Any plugin registers a :class:`Capability` through the
``register_capabilities`` hook (the core's own four below go through the same hook), so a new
kind of model can bring a new kind of probe without touching vizkit. A model states what it
implements in its ``capabilities`` set and is checked against each interface when its kind is
registered or loaded; probes are matched to models by these names alone, never by looking for
methods a model happens to have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = "activations"
INPUT_GRAD = "input_grad"
WEIGHTS = "weights"
RECONSTRUCT = "reconstruct"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Capability:
    """One capability: its ``name``, a one-line ``summary`` for listings, and the ``interface``
    (a ``typing.Protocol`` or any class) whose public methods a declaring model must have.

    An interface of ``None`` states a property the core cannot check by name (``input_grad``:
    activations are differentiable in the input).
    """

    name: str
    summary: str
    interface: type | None = None

    def methods(self) -> tuple[str, ...]:
        """The calls a declaring model must have: the interface's public methods, inherited ones
        included (every interface extends the probe protocol, so those are always there)."""
        if self.interface is None:
            return ()
        names: list[str] = []
        for klass in self.interface.__mro__:
            if klass is object or klass.__name__ in ("Protocol", "Generic"):
                continue
            names.extend(n for n, v in vars(klass).items() if callable(v) and not n.startswith("_"))
        return tuple(dict.fromkeys(names))

    def missing(self, model_cls: type) -> list[str]:
        """Methods of the interface that ``model_cls`` does not define."""
        return [name for name in self.methods() if not callable(getattr(model_cls, name, None))]


def check_name(name: Any) -> str:
    """A capability name is a lower-case identifier (it is written into listings and recipes)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid capability name {name!r}; use lower-case letters, digits and _")
    return name


def validate(capabilities: Any) -> frozenset[str]:
    """A model's or probe's declared set, as a frozenset of well-formed names.

    Whether each name is *registered* is checked by the registry, which knows every plugin's
    capabilities; here only the spelling, so a typo fails where the class is defined.
    """
    if isinstance(capabilities, str) or not hasattr(capabilities, "__iter__"):
        raise ValueError(f"capabilities must be a set of names, got {capabilities!r}")
    return frozenset(check_name(name) for name in capabilities)
