"""Meta-tests (as datasette has): every hook is documented in docs/plugin_hooks.md and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from vizkit import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if inspect.isfunction(obj) and hasattr(obj, "vizkit_spec"))


def test_there_are_hooks():
    assert HOOKS == ["register_capabilities", "register_commands", "register_datasets", "register_models",
                     "register_probes"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook):
    docs = (ROOT / "docs" / "plugin_hooks.md").read_text()
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({params})`" in docs, f"docs/plugin_hooks.md lacks a '### `{hook}({params})`' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook):
    """A test module implements the hook (``def HOOK(``) for a plugin it registers."""
    implemented = [p.name for p in (ROOT / "tests").glob("test_*.py")
                   if p.name != Path(__file__).name and re.search(rf"def {hook}\(", p.read_text())]
    assert implemented, f"no test implements hook {hook!r}"
