"""Nothing lost, nothing written outside --out, one line per mistake.

Each class of fault is tried as a user or an adversary would, and each test checks the message,
the exit code, and that nothing was half-written or written outside the output directory.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vizkit
from vizkit import output
from vizkit.errors import OutputError, UsageError, WriteError
from vizkit.gallery import _index, read_recipe


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to prove what did or did not change)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(res, code: int, *fragments: str) -> str:
    assert res.code == code, (res.code, res.out, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


RECIPE = """
title = "t"
[[model]]
name = "{name}"
kind = "sdae"
data = "digits"
options = {{ layers = "8,4" }}

[[probe]]
model = "{name}"
probe = "filters"
"""


# -- 1. and 2.: gallery names are slugs, paths stay inside --out, links never run script ----------------
@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "javascript:alert(1)", "a/b", ".hidden", "..", "a b"])
def test_recipe_names_that_are_not_slugs_are_refused_before_anything_is_written(tmp_path, cli, name):
    recipe = tmp_path / "deep" / "r.toml"
    recipe.parent.mkdir()
    recipe.write_text(RECIPE.format(name=name))
    before = tree(tmp_path)
    res = cli("gallery", "build", recipe, "--out", tmp_path / "deep" / "site", "-q")
    one_line(res, 2, "cannot be used as a file name")
    assert tree(tmp_path) == before and not (tmp_path / "deep" / "site").exists()


def test_gallery_text_is_escaped_and_links_are_relative_paths(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('title = "<script>alert(1)</script>"\ndescription = "<img src=x onerror=alert(1)>"\n'
                      + RECIPE.format(name="m1").replace('title = "t"', ""))
    spec = read_recipe(recipe)
    page = _index(spec, [{"model": "m1", "probe": "filters", "layer": "h1", "title": '"><script>x</script>',
                          "dir": "m1/filters-h1", "thumbnail": "filters.png"}])
    assert "<script>" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;" in page
    hrefs = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    assert hrefs and all(not h.startswith(("javascript:", "/", "http")) and ".." not in h for h in hrefs)
    with pytest.raises(OutputError):
        output.safe_href("javascript:alert(1)/index.html")


def test_inside_refuses_paths_that_resolve_out_of_the_root(tmp_path):
    assert output.inside(tmp_path, tmp_path / "a" / "b.pt") == tmp_path / "a" / "b.pt"
    with pytest.raises(OutputError, match="outside --out"):
        output.inside(tmp_path / "site", tmp_path / "site" / ".." / "x.pt")


@pytest.mark.parametrize("bad, message", [
    ('epochs = "abc"', "'epochs' in [[model]] must be an integer"),
    ("name = 7", "'name' in [[model]] must be a string"),
    ('options = "oops"', "'options' in [[model]] must be a table"),
    ("lr = nan", "'lr' in [[model]] 'm1' must be a positive number"),
    ("seed = 18446744073709551615", "'seed' in [[model]] must be an integer from 0"),
])
def test_recipe_values_of_the_wrong_type_are_one_line(tmp_path, bad, message):
    text = RECIPE.format(name="m1").replace('kind = "sdae"', f'kind = "sdae"\n{bad}')
    if bad.startswith("name"):
        text = text.replace('name = "m1"\n', "")
    if bad.startswith("options"):
        text = text.replace('options = { layers = "8,4" }\n', "")
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_recipe(path)


def test_recipe_layers_given_as_a_string_are_refused(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(name="m1") + 'layers = "h1"\n')
    with pytest.raises(UsageError, match="'layers' in \\[\\[probe\\]\\] must be a list"):
        read_recipe(path)


# -- 3.: reuse verifies what it reuses --------------------------------------------------------------
def test_a_damaged_earlier_result_is_recomputed_not_reused(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    args = ("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--units", "0:3", "--out", out)
    assert cli(*args).code == 0
    good = tree(out)
    for damage in ("truncate arrays", "garbage json", "swap arrays", "delete png"):
        if damage == "truncate arrays":
            (out / "arrays.npz").write_bytes(good["arrays.npz"][:40])
        elif damage == "garbage json":
            (out / "result.json").write_text("{not json")
        elif damage == "swap arrays":  # another run's (valid) arrays under this run's result.json
            np.savez(out / "arrays.npz", filters=np.zeros((1, 64)))
        else:
            (out / "filters.png").unlink()
        res = cli(*args)
        assert res.code == 0 and "Traceback" not in res.err, (damage, res.err)
        assert "identical finished run" not in res.out, damage
        again = tree(out)  # recomputed: the same arrays and figure as the first run (timings differ)
        assert all(again[k] == good[k] for k in ("arrays.npz", "filters.png")) and set(again) == set(good), damage
    res = cli(*args)
    assert "identical finished run" in res.out and "wrote" not in res.out  # nothing written, nothing claimed


def test_unit_subset_from_another_run_is_not_reused(fresh_host, sdae_ckpt, tmp_path):
    model = vizkit.load(sdae_ckpt)
    wide = vizkit.run_probe("filters", model, "h1", units="0:2", out=tmp_path / "wide")
    narrow = vizkit.run_probe("filters", model, "h1", units="0:1", out=tmp_path / "narrow")
    (tmp_path / "narrow" / "arrays.npz").write_bytes((tmp_path / "wide" / "arrays.npz").read_bytes())
    again = vizkit.run_probe("filters", model, "h1", units="0:1", out=tmp_path / "narrow")
    assert not again.meta.get("reused") and again.meta["units"] == [0]
    assert len(again.arrays["filters"]) == len(narrow.arrays["filters"]) == 1 != len(wide.arrays["filters"])


def test_two_runs_into_one_directory_do_not_interleave(fresh_host, sdae_ckpt, tmp_path):
    """The second run waits for the lock the first holds, then reuses the finished result."""
    model = vizkit.load(sdae_ckpt)
    out = tmp_path / "o"
    done: list[vizkit.Result] = []
    with output.out_lock(out, quiet=True):
        worker = threading.Thread(target=lambda: done.append(
            vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", units="0:2", out=out)))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive() and not (out / "result.json").exists()  # waiting, nothing written
        first = vizkit.run_probe("filters", model, "h1", units="0:2", out=out)  # this thread holds the lock
    worker.join(30)
    assert not first.meta.get("reused") and done and done[0].meta.get("reused")


def test_a_killed_runs_temporary_files_are_removed(fresh_host, sdae_ckpt, tmp_path):
    out = tmp_path / "o"
    (out / ".vizkit-tmp-999999-abc").mkdir(parents=True)
    (out / ".vizkit-tmp-999999-abc" / "arrays.npz").write_bytes(b"half")
    (out / ".result.json.vizkit-tmp-999999-xyz").write_bytes(b"half")
    vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=out)
    assert not [p.name for p in out.iterdir() if ".vizkit-tmp-" in p.name]


# -- 4.: the overwrite rule ----------------------------------------------------------------------------
def test_another_probes_result_is_kept_unless_force(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    assert cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out).code == 0
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    lincomb = ("probe", "--probe", "lincomb", sdae_ckpt, "--layer", "h2", "--units", "0:2", "--out", out)
    one_line(cli(*lincomb), 2, "holds the result of probe 'filters'", "--force")
    assert tree(out) == before
    assert cli(*lincomb, "--force").code == 0
    names = {p.name for p in out.iterdir()}
    assert "lincomb.png" in names and "filters.png" not in names  # the old run's files go ...
    assert (out / "notes.txt").read_text() == "mine"  # ... and the user's stay


def test_a_users_own_index_html_is_not_replaced_without_force(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "index.html").write_text("my page")
    args = ("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out)
    one_line(cli(*args), 2, "already has index.html, which vizkit did not write")
    assert (out / "index.html").read_text() == "my page" and sorted(p.name for p in out.iterdir()) == ["index.html"]
    assert cli(*args, "--force").code == 0 and "my page" not in (out / "index.html").read_text()


def test_gallery_refuses_a_foreign_index_html(fresh_host, tmp_path, cli):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>my site</p>")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(name="m1"))
    one_line(cli("gallery", "build", recipe, "--out", site, "-q"), 2, "index.html that vizkit did not write")
    assert sorted(p.name for p in site.iterdir()) == ["index.html"]


# -- 6.: a full disk -----------------------------------------------------------------------------------
def test_disk_full_is_one_line_and_the_previous_result_stays(fresh_host, sdae_ckpt, tmp_path, cli, monkeypatch):
    out = tmp_path / "o"
    assert cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out).code == 0
    before = tree(out)
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if self.name.startswith(".filters.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--units", "0:2", "--out", out)
    one_line(res, 1, "disk is full")
    assert tree(out) == before and not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(WriteError, match="disk is full"):
        output.atomic_write_bytes(out / "filters.png", b"x")


def test_files_honour_the_umask(fresh_host, sdae_ckpt, tmp_path):
    old = os.umask(0o022)
    try:
        vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=tmp_path / "o")
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "o").iterdir()}
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o644}, modes


def test_identical_checkpoints_have_identical_bytes(tmp_path):
    from tests.conftest import make_sdae
    from vizkit.checkpoint import save_checkpoint

    a = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "a.pt").read_bytes()
    b = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "sub-b.pt").read_bytes()
    assert a == b


def test_result_json_records_hashes_and_the_declared_thumbnail(fresh_host, sdae_ckpt, tmp_path):
    vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=tmp_path / "o")
    meta = json.loads((tmp_path / "o" / "result.json").read_text())
    assert set(meta["hashes"]) == set(meta["files"]) - {"result.json"}
    assert meta["thumbnail_file"] == "filters.png"
    assert output.verified_meta(tmp_path / "o") is not None


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    from tests.conftest import make_sdae
    from vizkit.checkpoint import save_checkpoint

    path = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "m.pt")
    old = path.read_bytes()
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if ".vizkit-tmp-" in self.name:
            real(self, data[:10])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError, match="disk is full"):
        save_checkpoint(make_sdae(seed=1).to_checkpoint(), path)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_checkpoints_honour_the_umask(tmp_path):
    from tests.conftest import make_sdae
    from vizkit.checkpoint import save_checkpoint

    old = os.umask(0o027)
    try:
        path = save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_probe_declares_its_thumbnail(tmp_path):
    from matplotlib.figure import Figure

    from vizkit.probe import Result

    def fig() -> Figure:
        figure = Figure(figsize=(1, 1))
        figure.add_subplot().plot([0, 1])
        return figure

    result = Result(arrays={"a": np.zeros(2)}, figures={"scatter": fig(), "grid": fig()}, meta={"probe": "x"})
    output.write_result(result, tmp_path / "first")
    assert json.loads((tmp_path / "first" / "result.json").read_text())["thumbnail_file"] == "scatter.png"
    result.meta["thumbnail"] = "grid"
    output.write_result(result, tmp_path / "declared")
    assert json.loads((tmp_path / "declared" / "result.json").read_text())["thumbnail_file"] == "grid.png"


def test_a_probe_that_fails_leaves_no_directory_behind(fresh_host, sdae_ckpt, tmp_path, monkeypatch):
    from vizkit.errors import ProbeFailure

    probe_cls = fresh_host.probe("filters")

    def diverge(self, ctx):
        raise ProbeFailure("diverged")

    monkeypatch.setattr(probe_cls, "compute", diverge)
    with pytest.raises(ProbeFailure):
        vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_each_training_run_gets_its_own_log_directories(tmp_path):
    """Lightning's CSVLogger deletes the metrics.csv of a directory it reuses: never reuse one."""
    from vizkit.training import _log_versions

    tags = ["stage0", "stage1"]
    first = _log_versions(tmp_path, "sdae", "model", tags)
    assert first == {"stage0": "model-stage0", "stage1": "model-stage1"}
    (tmp_path / "sdae" / "model-stage1").mkdir(parents=True)  # an earlier run (or the --resume source)
    second = _log_versions(tmp_path, "sdae", "model", tags)
    assert second == {"stage0": "model-v2-stage0", "stage1": "model-v2-stage1"}
    (tmp_path / "sdae" / "model-v2-stage0").mkdir()
    assert _log_versions(tmp_path, "sdae", "model", tags)["stage1"] == "model-v3-stage1"


def test_a_result_of_no_probe_does_not_replace_a_probes(fresh_host, sdae_ckpt, tmp_path):
    """``vizkit sample`` writes results without a probe name: not over a probe's result either."""
    from vizkit.probe import Result

    vizkit.run_probe("filters", vizkit.load(sdae_ckpt), "h1", out=tmp_path / "o")
    with pytest.raises(OutputError, match="holds the result of probe 'filters'"):
        output.write_result(Result(arrays={"samples": np.zeros(3)}, meta={}), tmp_path / "o")
    assert (tmp_path / "o" / "filters.png").exists()
