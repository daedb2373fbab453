"""Splitting a probe's units over processes: parts merge into exactly the one-process result."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import vizkit
from vizkit.api import prepare_run
from vizkit.errors import PluginError
from vizkit.shard import compute_part, draw_merged, merge_parts, split_units

from .conftest import make_sdae
from .test_clamp_compare import tiny_dbn


def test_split_units_keeps_order_and_balances():
    parts = split_units(torch.arange(10), 3)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [len(p) for p in split_units(torch.arange(2), 4)] == [1, 1, 0, 0]


def in_parts(name, model, layer, units, parts, **options):
    run = prepare_run(name, model, layer, units=units, **options)
    pieces = [compute_part(run, u) if len(u) else None for u in split_units(run.units, parts)]
    return draw_merged(run, pieces, 0.0)


@pytest.mark.parametrize(
    "name, make, layer, units, options, exact",
    [
        ("filters", lambda: make_sdae("6,4"), "h1", "0:6", {"order": "norm"}, True),
        ("lincomb", lambda: make_sdae("6,4"), "h2", "0:4", {"k": 3}, True),
        ("clamp", lambda: tiny_dbn().double(), "h2", "0:4", {"chains": 3, "samples": 2, "every": 3, "burn_in": 2},
         True),
        ("actmax", lambda: make_sdae("6,4"), "h2", "0:4", {"steps": 40, "restarts": 3}, False),
        ("compare", lambda: tiny_dbn().double(), "h2", "0:4",
         {"k": 2, "chains": 3, "samples": 2, "every": 2, "burn_in": 2, "steps": 20, "restarts": 2}, False),
    ],
)
def test_parts_merge_into_the_one_process_result(fresh_host, name, make, layer, units, options, exact):
    model = make()
    whole = vizkit.run_probe(name, model, layer, units=units, **options)
    merged = in_parts(name, model, layer, units, 3, **options)
    assert set(merged.arrays) == set(whole.arrays)
    assert set(merged.figures) == set(whole.figures)
    for key, arr in whole.arrays.items():
        if exact:
            np.testing.assert_array_equal(merged.arrays[key], arr, err_msg=key)
        else:  # per-(unit, restart) seeds; float rounding of a batch of 12 vs 3 rows only
            np.testing.assert_allclose(merged.arrays[key], arr, rtol=1e-4, atol=1e-5, err_msg=key)


def test_arrays_that_are_not_per_unit_come_from_the_first_part():
    class P(vizkit.Probe):
        name = "p"
        unit_arrays = frozenset({"x"})

        def compute(self, ctx):
            return vizkit.Result()

    parts = [vizkit.Result(arrays={"x": np.ones((2, 3)), "scale": np.array(5.0)}, meta={"k": 1}),
             None,
             vizkit.Result(arrays={"x": np.zeros((1, 3)), "scale": np.array(7.0)}, meta={"k": 2})]
    merged = merge_parts(P, parts)
    assert merged.arrays["x"].shape == (3, 3) and merged.arrays["scale"] == 5.0 and merged.meta == {"k": 1}


def test_a_probe_with_compute_must_name_its_unit_arrays():
    class NoUnits(vizkit.Probe):
        name = "no-units"

        def compute(self, ctx):
            return vizkit.Result()

    with pytest.raises(PluginError, match="names no unit_arrays"):
        NoUnits.validate_class()
    assert not vizkit.Probe.splits_units()


def test_probe_over_two_processes_from_the_cli(fresh_host, tmp_path, cli):
    # Lightning re-runs the command in a second process (DDP on CPU), so this must be a real command
    from vizkit.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tiny_dbn().to_checkpoint(), tmp_path / "dbn.pt")
    args = ["probe", "--probe", "clamp", str(ckpt), "--layer", "h2", "--units", "0:4", "-o", "chains", "3",
            "-o", "samples", "2", "-o", "every", "3"]
    cmd = [sys.executable, "-m", "vizkit", *args, "--devices", "2", "--strategy", "ddp", "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = cli(*args, "--out", tmp_path / "one")
    assert res.code == 0, res.err
    with np.load(tmp_path / "one" / "arrays.npz") as one, np.load(tmp_path / "two" / "arrays.npz") as two:
        for key in one.files:
            np.testing.assert_allclose(two[key], one[key], atol=1e-6, err_msg=key)
    meta = json.loads((tmp_path / "two" / "result.json").read_text())
    assert meta["ranks"] == 2 and meta["units_per_rank"] == [2, 2]
    assert not (tmp_path / "two" / ".vizkit-shards").exists()


@pytest.mark.parametrize(
    "extra, message",
    [(["--devices", "2", "--accelerator", "banana"], "invalid accelerator name"),
     (["--devices", "2", "--device", "cpu", "--accelerator", "cpu"], "give --device or --accelerator"),
     (["--devices", "2", "--units", "0:999"], "reach past the layer")],  # checked before any process starts
)
def test_bad_split_options_are_one_line_errors(fresh_host, sdae_ckpt, tmp_path, cli, extra, message):
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", tmp_path / "o", *extra)
    assert res.code == 2 and message in res.err and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# -- a re-run into the same --out computes only the units it does not have -----------------------------------
def test_a_rerun_with_more_units_computes_only_the_new_ones(fresh_host, tmp_path, cli, sdae_ckpt):
    args = ["probe", "--probe", "actmax", sdae_ckpt, "--layer", "h2", "-o", "steps", "30", "-o", "restarts", "3",
            "--out", tmp_path / "o"]
    assert cli(*args, "--units", "0:2").code == 0
    first = dict(np.load(tmp_path / "o" / "arrays.npz"))
    res = cli(*args, "--units", "0:4")
    assert res.code == 0 and "2 of 4 units taken from the earlier run" in res.out
    grown = dict(np.load(tmp_path / "o" / "arrays.npz"))
    np.testing.assert_array_equal(grown["stimuli"][:2], first["stimuli"])  # kept, not recomputed
    fresh = vizkit.run_probe("actmax", vizkit.load(sdae_ckpt), "h2", units="0:4", steps=30, restarts=3)
    for key, arr in fresh.arrays.items():  # and the whole equals a fresh run of all four units
        np.testing.assert_allclose(grown[key], arr, rtol=1e-4, atol=1e-5, err_msg=key)
    meta = json.loads((tmp_path / "o" / "result.json").read_text())
    assert meta["units"] == [0, 1, 2, 3] and meta["units_reused"] == 2


def test_a_subset_is_taken_without_computing_and_other_options_start_afresh(fresh_host, tmp_path, monkeypatch):
    model = make_sdae("6,4")
    vizkit.run_probe("filters", model, "h1", units="0:6", out=tmp_path)
    from vizkit.registry import get_host

    filters = get_host().probe("filters")

    def refuse(self, ctx):
        raise AssertionError("recomputed")

    monkeypatch.setattr(filters, "compute", refuse)
    subset = vizkit.run_probe("filters", model, "h1", units="2,4", out=tmp_path)
    assert subset.meta["units_reused"] == 2 and subset.arrays["units"].tolist() == [2, 4]
    with pytest.raises(AssertionError, match="recomputed"):  # another option: not the same run
        vizkit.run_probe("filters", model, "h1", units="2,4", out=tmp_path, scale="shared")
