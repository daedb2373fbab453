"""Galleries of models you already have: a checkpoint (``path``) or your module (``module``), with
unit pages that put every view of one unit side by side."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from tests import browser
from tests.conftest import make_sdae
from vizkit.checkpoint import save_checkpoint

NETS = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Block()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.block(torch.relu(self.stem(x)))).flatten(1))
'''

MODULE_RECIPE = """
title = "mine"
unit_pages = 2

[[model]]
name = "net"
module = "owngallery_nets:Net"
weights = "net.pt"
input_shape = [1, 8, 8]
data = "images.npy"

[[probe]]
model = "net"
probe = "topk"
layers = ["block"]
units = "0:3"
options = { k = 4 }

[[probe]]
model = "net"
probe = "actmax"
layers = ["block"]
units = "0:3"
options = { restarts = 2, steps = 20 }

[[probe]]
model = "net"
probe = "filters"
layers = ["stem"]
units = "0:2"
"""


@pytest.fixture
def recipe_dir(tmp_path):
    home = tmp_path / "recipes"
    home.mkdir()
    (home / "owngallery_nets.py").write_text(NETS)
    sys.modules.pop("owngallery_nets", None)
    sys.path.insert(0, str(home))
    from owngallery_nets import Net

    sys.path.remove(str(home))
    torch.manual_seed(0)
    torch.save(Net().state_dict(), home / "net.pt")
    import numpy as np

    np.save(home / "images.npy", np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32))
    (home / "mine.toml").write_text(MODULE_RECIPE)
    yield home
    sys.modules.pop("owngallery_nets", None)
    while str(home.resolve()) in sys.path:
        sys.path.remove(str(home.resolve()))


def links(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#:]+)"', page.read_text())  # local links (no scheme)


def assert_links_resolve(root: Path) -> int:
    count = 0
    for page in root.rglob("*.html"):
        for link in links(page):
            assert (page.parent / link).resolve().exists(), f"{page}: {link}"
            count += 1
    return count


def test_gallery_of_a_module_with_unit_pages(fresh_host, recipe_dir, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in the recipe are read from its folder, not from here
    out = tmp_path / "site"
    res = cli("gallery", "build", recipe_dir / "mine.toml", "--out", out, "-q")
    assert res.code == 0, res.err
    page = (out / "index.html").read_text()
    assert "net/topk-block/index.html" in page and "module owngallery_nets:Net with weights net.pt" in page
    assert "<h1>net · topk — block</h1>" in (out / "net" / "topk-block" / "index.html").read_text()
    assert not (out / "models").exists()  # nothing trained
    # unit pages: the recipe asked for 2 per layer; block has topk and actmax views, stem filters
    unit0 = out / "units" / "net" / "block" / "unit-0.html"
    assert unit0.exists() and (out / "units" / "net" / "block" / "unit-1.html").exists()
    assert not (out / "units" / "net" / "block" / "unit-2.html").exists()
    text = unit0.read_text()
    assert ">topk</a>" in text and ">actmax</a>" in text and "filters" not in text
    assert (out / "units" / "net" / "block" / "unit-0-topk.png").stat().st_size > 0
    assert 'href="units/net/block/unit-0.html"' in page and 'href="units/net/stem/unit-1.html"' in page
    assert assert_links_resolve(out) > 10
    # a rebuild reuses every probe result by the weights' and data's hashes, and keeps the unit pages
    stamp = (out / "net" / "topk-block" / "result.json").stat().st_mtime_ns
    res = cli("gallery", "build", recipe_dir / "mine.toml", "--out", out)
    assert res.code == 0 and unit0.exists() and res.out.count("reused: an identical") == 3, res.out
    assert "0 probe result(s) computed, 3 reused" in res.out
    assert (out / "net" / "topk-block" / "result.json").stat().st_mtime_ns == stamp


def test_gallery_of_an_existing_checkpoint(fresh_host, tmp_path, cli):
    save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "mine.pt")
    recipe = tmp_path / "ckpt.toml"
    recipe.write_text('[[model]]\nname = "m"\npath = "mine.pt"\n\n[[probe]]\nmodel = "m"\nprobe = "filters"\n'
                      'layers = ["h1"]\nunits = "0:3"\n')
    res = cli("gallery", "build", recipe, "--out", tmp_path / "site", "-q")
    assert res.code == 0, res.err
    page = (tmp_path / "site" / "index.html").read_text()
    assert "checkpoint mine.pt" in page and "m/filters-h1/index.html" in page
    assert (tmp_path / "site" / "units" / "m" / "h1" / "unit-2.html").exists()
    assert_links_resolve(tmp_path / "site")


@pytest.mark.parametrize("table, message", [
    ('name = "m"\npath = "nowhere.pt"', "names checkpoint 'nowhere.pt', which does not exist"),
    ('name = "m"\npath = "a.pt"\nkind = "sdae"\ndata = "digits"', "exactly one of kind"),
    ('name = "m"\nmodule = "x:Y"', "lacks input_shape"),
    ('name = "m"\nmodule = "x:Y"\ninput_shape = [1, 0]', "input_shape must be a list of positive sizes"),
    ('name = "m"\npath = "a.pt"\nepochs = 3', "'epochs' does not go with path"),
    ('name = "m"\nkind = "sdae"', "lacks 'data'"),
])
def test_bad_model_tables_are_one_line(fresh_host, tmp_path, cli, table, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[[model]]\n{table}\n\n[[probe]]\nmodel = "m"\nprobe = "filters"\n')
    res = cli("gallery", "build", recipe, "--out", tmp_path / "site")
    assert res.code == 2 and message in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert not (tmp_path / "site").exists()


@pytest.mark.skipif(browser.CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_gallery_and_its_unit_pages_in_a_browser(fresh_host, recipe_dir, tmp_path, cli):
    out = tmp_path / "site"
    res = cli("gallery", "build", recipe_dir / "mine.toml", "--out", out, "-q")
    assert res.code == 0, res.err
    seen = browser.check_site(out, tmp_path)
    assert seen["pages"] >= 8 and seen["fetched"] > seen["pages"]  # index, 3 results, 5 unit pages


def test_every_probe_on_a_module_takes_only_its_own_options(fresh_host, recipe_dir, tmp_path, cli):
    (recipe_dir / "star.toml").write_text(MODULE_RECIPE.split("[[probe]]")[0] + (
        '[[probe]]\nmodel = "net"\nprobe = "*"\nlayers = ["block"]\nunits = "0:2"\n'
        'options = { k = 3, restarts = 2, steps = 10 }\n'))
    res = cli("gallery", "build", recipe_dir / "star.toml", "--out", tmp_path / "site")
    assert res.code == 0, res.err
    ran = {p.name.split("-")[0] for p in (tmp_path / "site" / "net").iterdir()}
    assert {"topk", "actmax", "deconv", "occlusion"} <= ran  # k went to topk, restarts to actmax
    assert "clamp does not run on net: it needs clamped_sample; skipped" in res.err
