"""``vizkit gallery build``: recipes are validated, models trained once, pages written."""

import pytest

from vizkit.errors import UsageError
from vizkit.gallery import read_recipe

RECIPE = """
title = "tiny"
[[model]]
name = "tiny-sdae"
kind = "sdae"
data = "digits"
epochs = 1
options = { layers = "8,4" }

[[probe]]
model = "tiny-sdae"
probe = "filters"
layers = ["h1", "h2"]
units = "0:4"

[[probe]]
model = "tiny-sdae"
probe = "lincomb"
layers = ["h2"]
units = "0:4"
title = "Top filters"
"""


def test_gallery_build_trains_once_and_links_every_probe(fresh_host, tmp_path, cli):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "site"
    res = cli("gallery", "build", recipe, "--out", out, "-q")
    assert res.code == 0, res.err
    page = (out / "index.html").read_text()
    assert "tiny-sdae/filters-h1/index.html" in page and "filters-h2" not in page  # filters: h1 only
    assert "tiny-sdae/lincomb-h2/index.html" in page
    assert ">Top filters — h2</a>" in page and ">filters — h1</a>" in page  # every card names its layer
    assert (out / "tiny-sdae" / "filters-h1" / "filters.png").exists()
    assert 'src="tiny-sdae/filters-h1/filters.png"' in page  # the probe's declared thumbnail
    assert '<meta name="generator" content="vizkit' in page
    probe_page = (out / "tiny-sdae" / "filters-h1" / "index.html").read_text()
    assert 'href="../../index.html"' in probe_page  # probe pages link back to the gallery
    stamp = (out / "models" / "tiny-sdae.pt").stat().st_mtime_ns
    res = cli("gallery", "build", recipe, "--out", out, "-q")
    assert res.code == 0 and (out / "models" / "tiny-sdae.pt").stat().st_mtime_ns == stamp
    # the stamp records the code the model was trained with (stamps without it retrain: test_freshness.py)
    assert '"code"' in (out / "models" / "tiny-sdae.recipe").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("title = 1", "needs at least one [[model]]"),
        ("[[model]\n", "not valid TOML"),
        (RECIPE.replace('probe = "lincomb"', 'probe = "lincomb"\ncolour = 1'), "unknown key 'colour' in [[probe]]"),
        (RECIPE.replace('model = "tiny-sdae"\nprobe', 'model = "other"\nprobe'), "refers to model 'other'"),
    ],
)
def test_bad_recipes(tmp_path, text, message):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_recipe(path)


def test_missing_recipe(tmp_path, cli):
    res = cli("gallery", "build", tmp_path / "none.toml", "--out", tmp_path / "o")
    assert res.code == 2 and "no such recipe" in res.err


def test_every_probe_means_every_probe_that_runs(tmp_path, cli, monkeypatch):
    """``probe = "*"`` runs the probes that run on the model and skips, without aborting, those
    that refuse it (an sdae: no module for the deconvnet to follow, no kept epochs)."""
    from vizkit.registry import PluginHost, reset_host

    monkeypatch.setenv("VIZKIT_LOAD_PLUGINS", "deconv,evolution,filters,topk")
    reset_host(PluginHost())
    try:
        recipe = tmp_path / "every.toml"
        recipe.write_text(RECIPE.split("[[probe]]")[0] + '[[probe]]\nmodel = "tiny-sdae"\nprobe = "*"\nunits = "0:2"\n')
        res = cli("gallery", "build", recipe, "--out", tmp_path / "site")
    finally:
        reset_host(None)
    assert res.code == 0, res.err
    assert "[gallery] deconv does not run on tiny-sdae: -o rule deconv follows networks" in res.err
    assert "[gallery] evolution does not run on tiny-sdae: the model keeps no training epochs" in res.err
    page = (tmp_path / "site" / "index.html").read_text()
    assert "tiny-sdae/filters-h1/index.html" in page and "tiny-sdae/topk-h2/index.html" in page
    assert "deconv-" not in page and "evolution-" not in page


def test_probe_key_and_its_older_name(tmp_path):
    recipe = tmp_path / "old.toml"
    recipe.write_text(RECIPE.replace('probe = "filters"', 'plugin = "filters"'))
    assert [p["probe"] for p in read_recipe(recipe)["probe"]] == ["filters", "lincomb"]
    recipe.write_text(RECIPE.replace('probe = "filters"', 'probe = "filters"\nplugin = "filters"'))
    with pytest.raises(UsageError, match="names both 'probe' and 'plugin'"):
        read_recipe(recipe)
