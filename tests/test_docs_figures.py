"""Figures in docs are built, not kept: every image under docs/img has a manifest entry (written by
``make figures``) whose fingerprint still matches what the image claims to show — the recipe's
tables, the model kind's and the probe's code — and whose bytes are the file's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures.py"


def figures_module():
    spec = importlib.util.spec_from_file_location("vizkit_docs_figures", FIGURES)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_docs_image_matches_its_manifest_entry():
    problems = figures_module().stale()
    assert not problems, "\n".join(problems)


def test_a_changed_recipe_or_code_makes_an_image_stale(tmp_path, monkeypatch):
    """The check can fail: an edited [[probe]] table, or other code behind the probe, changes the
    fingerprint of an image that recipe made."""
    figures = figures_module()
    spec = figures.spec()
    name = "zeiler-topk-conv1.png"
    before = figures.fingerprint(spec[name])
    recipe = tmp_path / "zeiler2013.toml"
    recipe.write_text((figures.ROOT / spec[name]["recipe"]).read_text().replace('units = "0:16"', 'units = "0:8"', 1))
    assert figures.fingerprint({**spec[name], "recipe": str(recipe)}) != before
    from vizkit import freshness

    real = freshness.code_sha256
    monkeypatch.setattr(freshness, "code_sha256", lambda classes: {k: "edited" for k in real(classes)})
    assert figures.fingerprint(spec[name]) != before
