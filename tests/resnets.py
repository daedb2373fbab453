"""The example's torchvision-style ResNet (examples/resnet-gallery/mynets.py), the one branching
network the tests, benchmarks and the README's walkthrough share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

MYNETS = Path(__file__).resolve().parents[1] / "examples" / "resnet-gallery" / "mynets.py"


def mynets() -> ModuleType:
    """``mynets`` imported from its file (under a name of its own, so a user's ``mynets`` is untouched)."""
    name = "vizkit_example_mynets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, MYNETS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
