"""Nothing a user owns is lost: kills at every step, foreign files, tampered records, shared folders.

A result directory is replaced in one step (a swap of two directories), so a run killed at any
file operation leaves the old verified result or the new one; vizkit deletes only files whose
SHA-256 its own ``result.json`` records; and a folder, file or gallery that is not vizkit's is
refused with one line unless ``--force``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.test_safety import one_line, tree
from vizkit import output
from vizkit.probe import Result

MODES = {"ctrl-c": False, "sigkill": True}  # mode -> whether nothing runs after the killed step
OPS = [(os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (os, "rmdir"), (os, "link"),
       (output, "_exchange")]


class Killed(BaseException):
    """Stands for Ctrl-C (KeyboardInterrupt) or SIGKILL arriving at one file operation."""


@contextlib.contextmanager
def kill_at(step: int, dead: bool) -> Iterator[list[str]]:
    """Raise :class:`Killed` at the ``step``-th rename/replace/unlink/link/exchange; with ``dead``,
    every later one raises too (a killed process runs no clean-up). Yields the operations seen."""
    seen: list[str] = []
    state = {"dead": False}

    def wrap(name: str, real):
        def op(*args, **kwargs):
            if state["dead"]:
                raise Killed(name)
            seen.append(name)
            if len(seen) == step:
                state["dead"] = dead
                raise Killed(name)
            return real(*args, **kwargs)
        return op

    with pytest.MonkeyPatch.context() as patch:
        for module, name in OPS:
            patch.setattr(module, name, wrap(name, getattr(module, name)))
        yield seen


def figure(value: float) -> Figure:
    fig = Figure(figsize=(0.4, 0.4))
    fig.add_subplot().plot([0, value])
    return fig


def result(tag: str, figures: list[str]) -> Result:
    """A small result whose ``fingerprint`` says which one it is."""
    value = 1.0 if tag == "old" else 2.0
    return Result(arrays={"a": np.full(3, value)}, figures={name: figure(value) for name in figures},
                  meta={"probe": "p", "fingerprint": tag})


OLD, NEW = ["grid", "gone"], ["grid", "extra"]


def old_result_with_notes(root: Path) -> Path:
    out = root / "o"
    output.write_result(result("old", OLD), out)
    (out / "notes.txt").write_text("mine")
    return out


def listing(path: Path) -> set[str]:
    """The names a reader sees: vizkit's marked temporaries (a killed step's) are never results."""
    return {name for name in os.listdir(path) if output.TMP_MARK not in name}




def steps_of_a_write(tmp_path: Path) -> list[str]:
    out = old_result_with_notes(tmp_path / "count")
    with kill_at(10**9, False) as seen:
        output.write_result(result("new", NEW), out)
    return seen


def check_rerun(root: Path, out: Path) -> None:
    """A rerun succeeds, writes the new result whole, keeps the user's file and leaves nothing beside."""
    output.write_result(result("new", NEW), out)
    meta = output.verified_meta(out)
    assert meta is not None and meta["fingerprint"] == "new"
    assert listing(out) == set(meta["files"]) | {"notes.txt"} and (out / "notes.txt").read_text() == "mine"
    assert os.listdir(root) == ["o"]
    # a killed write's temporary file goes once its writer's pid is gone; here the "killed" writer
    # is this test process, still alive
    assert all(f"{output.TMP_MARK}{os.getpid()}-" in n for n in os.listdir(out) if output.TMP_MARK in n)


# -- 1. a kill at any step ----------------------------------------------------------------------------
def killed_writes(tmp_path: Path, steps: list[str], mode: str) -> Iterator[tuple[int, Path, Path]]:
    """For each step of a write, a fresh old result killed there: ``(step, root, out)``."""
    for step in range(1, len(steps) + 1):
        root = tmp_path / f"step{step}"
        out = old_result_with_notes(root)
        with kill_at(step, MODES[mode]), pytest.raises(Killed):
            output.write_result(result("new", NEW), out)
        yield step, root, out


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_at_any_step_leaves_the_old_or_the_new_result(tmp_path, mode):
    steps = steps_of_a_write(tmp_path)
    assert "_exchange" in steps and len(steps) > 5, steps  # the result went in by a swap
    found = set()
    for step, root, out in killed_writes(tmp_path, steps, mode):
        meta = output.verified_meta(out)
        assert meta is not None, (step, steps[step - 1], listing(out))
        found.add(meta["fingerprint"])
        # exactly that result's files (no file of the other one) and the user's own
        assert listing(out) == set(meta["files"]) | {"notes.txt"}, (step, steps[step - 1])
        assert (out / "notes.txt").read_text() == "mine"
        assert listing(root) == {"o"}, os.listdir(root)
        check_rerun(root, out)
    assert found == {"old", "new"}


@pytest.mark.parametrize("mode", MODES)
def test_without_a_swap_a_kill_leaves_only_files_vizkit_can_prove(tmp_path, mode, monkeypatch):
    """Where directories cannot be swapped, files go in one by one: a kill may leave a half-replaced
    result, but it is never taken for finished, every file in it is provably vizkit's or the
    user's, and the next run finishes it."""
    monkeypatch.setattr(output, "_swap_place", lambda out: False)
    steps = steps_of_a_write(tmp_path)
    assert "_exchange" not in steps
    for step, root, out in killed_writes(tmp_path, steps, mode):
        meta = output.verified_meta(out)
        record = output.read_record(out)
        assert record.state == "vizkit" and (meta is not None or record.meta.get("pending")), step
        visible = listing(out)
        assert visible - {"notes.txt"} <= output.proven_files(out), (step, steps[step - 1], visible)
        assert (out / "notes.txt").read_text() == "mine"
        check_rerun(root, out)


def test_the_swapped_directory_keeps_its_mode_and_the_users_files(tmp_path):
    out = old_result_with_notes(tmp_path)
    os.chmod(out, 0o750)
    inode = os.stat(out / "notes.txt").st_ino
    output.write_result(result("new", NEW), out)
    assert os.stat(out).st_mode & 0o777 == 0o750
    assert os.stat(out / "notes.txt").st_ino == inode  # the same file, not a copy
    assert "gone.png" not in listing(out) and "extra.png" in listing(out)


def test_dispose_deletes_only_what_is_proven_and_returns_or_keeps_the_rest(tmp_path):
    """What a killed run left beside --out: vizkit's files go, the user's come back or are kept."""
    out = old_result_with_notes(tmp_path)
    stale = tmp_path / ".o.vizkit-tmp-999999-abc"
    output.write_result(result("new", NEW), stale)  # a complete result: its files are proven
    (stale / "mine.txt").write_text("stranded")  # a user's file that is not in --out
    (stale / "index.html").write_text("<p>edited</p>")  # unproven, and --out has that name
    output.write_result(result("old", OLD), out)  # the lock's tidy-up disposes of the stale one
    assert (out / "mine.txt").read_text() == "stranded"
    assert (tmp_path / "o.vizkit-kept" / "index.html").read_text() == "<p>edited</p>"
    assert not stale.exists() and output.verified_meta(out)["fingerprint"] == "old"


def test_a_half_staged_directory_is_removed(tmp_path):
    out = old_result_with_notes(tmp_path)
    stale = tmp_path / ".o.vizkit-tmp-999999-half"
    stale.mkdir()
    (stale / ".vizkit-staging").touch()
    (stale / "arrays.npz").write_bytes(b"half")
    output.write_result(result("new", NEW), out)
    assert not stale.exists() and "arrays.npz" in listing(out)
    assert output.verified_meta(out)["fingerprint"] == "new"


# -- 2. the user's folder -------------------------------------------------------------------------------
def test_a_users_own_index_and_result_json_are_refused_without_force(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "index.html").write_text("my page")
    (out / "result.json").write_text('{"mine": true}')
    args = ("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out)
    before = tree(tmp_path)
    one_line(cli(*args), 2, "result.json that vizkit did not write", "--force")
    assert tree(tmp_path) == before
    assert cli(*args, "--force").code == 0 and output.verified_meta(out) is not None
    kept = tmp_path / "o.vizkit-kept"  # replaced on request, yet not lost
    assert (kept / "index.html").read_text() == "my page" and json.loads((kept / "result.json").read_text()) == {
        "mine": True}


def test_a_result_json_without_the_vizkit_mark_is_the_users(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    for text in ('{"mine": true}', '{"files": ["x"]}', "[1, 2]"):
        (out / "result.json").write_text(text)
        assert output.read_record(out).state == "foreign"
        with pytest.raises(output.OutputError, match="vizkit did not write"):
            output.check_overwrite(out, output.RESULT_FIXED, "filters")


def test_a_tampered_result_json_deletes_nothing(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    args = ("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out)
    assert cli(*args, "--units", "0:3").code == 0
    (out / "precious.txt").write_text("mine")
    (tmp_path / "victim.txt").write_text("outside")
    meta = json.loads((out / "result.json").read_text())
    old_png = (out / "filters.png").read_bytes()
    meta["files"] += ["precious.txt", "../victim.txt"]
    meta["hashes"].update({"precious.txt": "0" * 64, "filters.png": "0" * 64,
                           "../victim.txt": output.sha256_file(tmp_path / "victim.txt")})
    (out / "result.json").write_text(json.dumps(meta))
    for extra in ((), ("--force",)):
        assert cli(*args, "--units", "0:2", *extra).code == 0
        assert (out / "precious.txt").read_text() == "mine" and (tmp_path / "victim.txt").read_text() == "outside"
    # the filters.png its record no longer proved was moved out of the way, not deleted
    assert (tmp_path / "o.vizkit-kept" / "filters.png").read_bytes() == old_png


# -- 3. checkpoints --------------------------------------------------------------------------------------
def test_train_out_over_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, cli, sdae_ckpt):
    from vizkit.training import _check_out

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    res = cli("train", "sdae", "--data", "digits", "--out", notes, "-q", "--log-dir", tmp_path / "logs")
    one_line(res, 2, "is not a vizkit checkpoint", "--force")
    assert notes.read_text() == "my notes" and not (tmp_path / "logs").exists()
    assert _check_out(notes, force=True) == notes and notes.read_text() == "my notes"
    assert _check_out(sdae_ckpt) == sdae_ckpt  # a vizkit checkpoint is replaced as before


# -- 4. galleries ----------------------------------------------------------------------------------------
TWO_ENTRIES = """
[[model]]
name = "m"
path = "sdae.pt"

[[probe]]
model = "m"
probe = "filters"
layers = ["h1"]
units = "0:2"

[[probe]]
model = "m"
probe = "filters"
layers = ["h1"]
units = "0:3"
"""


def test_two_probe_entries_on_one_layer_get_two_folders(fresh_host, sdae_ckpt, tmp_path):
    from vizkit.gallery import build

    recipe = tmp_path / "r.toml"
    recipe.write_text(TWO_ENTRIES)
    site = tmp_path / "site"
    build(recipe, site, progress=False)
    folders = sorted(p.name for p in (site / "m").iterdir())
    assert len(folders) == 2 and folders[0] == "filters-h1", folders
    units = {name: json.loads((site / "m" / name / "result.json").read_text())["units"] for name in folders}
    assert units == {"filters-h1": [0, 1], folders[1]: [0, 1, 2]}
    page = (site / "index.html").read_text()
    assert all(f"m/{name}/index.html" in page for name in folders)
    build(recipe, site, progress=False)  # a rebuild finds the same folders and reuses both runs
    assert sorted(p.name for p in (site / "m").iterdir()) == folders
    assert all(json.loads((site / "m" / n / "result.json").read_text())["units"] == units[n] for n in folders)


def test_a_gallery_is_not_built_into_a_probe_result_folder(fresh_host, sdae_ckpt, tmp_path, cli):
    out = tmp_path / "o"
    assert cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", out).code == 0
    recipe = tmp_path / "r.toml"
    recipe.write_text(TWO_ENTRIES)
    before = tree(tmp_path)
    for extra in ((), ("--force",)):
        one_line(cli("gallery", "build", recipe, "--out", out, "-q", *extra), 2,
                 "holds the result of probe 'filters'", "a directory of its own")
        assert tree(tmp_path) == before
