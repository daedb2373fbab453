"""The example third-party plugin (examples/vizkit-example-plugin) installed and run like a user would.

The distribution is built and installed offline into a temporary directory with pip, then:

* the ``vizkit`` CLI runs in a subprocess with ``PYTHONPATH=<tmp>`` and ``VIZKIT_STRICT_PLUGINS=1``,
  so the plugin is found only through its installed entry point and any plugin failure is fatal;
* the installed module is registered in-process on a fresh :class:`PluginHost`;
* the probe is checked against answers known exactly (a linear layer with zero weights responds
  with its bias and nothing else; inputs rescaled to norm r give sum(mean² + std²) = r²).

Every CLI command of a fresh interpreter pays for importing torch and Lightning (about ten seconds
on a small CI machine), so all CLI invocations share one subprocess that calls ``vizkit.cli.main``
(the console script's own entry function) once per command.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

import vizkit
from vizkit.errors import OptionError, PluginError
from vizkit.registry import PluginHost, reset_host

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "vizkit-example-plugin"
DIST = "vizkit-example-plugin"

# Runs in the subprocess: builds the SDAE checkpoint, then runs each CLI command through the console
# script's entry function and reports exit code, stdout and stderr of each as JSON on the last line.
DRIVER = r"""
import contextlib, io, json, sys

ckpt_path, commands = sys.argv[1], json.loads(sys.argv[2])
from vizkit.checkpoint import save_checkpoint
from vizkit.models.sdae import SDAE

m = SDAE(input_shape=[1, 8, 8], layers="6,4")
m.data_info = {"name": "digits", "options": {}, "input_shape": [1, 8, 8], "stats": {"mean_norm": 3.0}}
save_checkpoint(m.to_checkpoint(), ckpt_path)

# the example's own model kind: digit-class means of the 8x8 digits as prototypes
import torch
from sklearn.datasets import load_digits
from vizkit_example.prototypes import protonet_checkpoint

digits = load_digits()
images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
prototypes = torch.stack([images[digits.target == k].mean(0) for k in range(10)])
save_checkpoint(protonet_checkpoint(prototypes, m.data_info), ckpt_path.replace("sdae.pt", "proto.pt"))

from vizkit.cli import main

report = []
listed = []
for argv in commands:
    if argv[0] == "@each-listed":  # every probe the last `vizkit inspect` listed, on the layer given
        proto, out_dir = argv[1], argv[2]
        listed = report[-1]["out"].split("probes")[-1].splitlines()[0].replace(",", " ").split()
        report.append({"listed": listed, "runs": []})
        for name in listed:
            run_argv = ["probe", "--probe", name, proto, "--layer", "match", "--units", "0:2",
                        "--out", out_dir + "/" + name]
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(run_argv)
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            report[-1]["runs"].append({"probe": name, "code": code, "err": err.getvalue()[-500:]})
        continue
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    report.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(report))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIZKIT_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built and installed offline into a temporary --target directory.

    pip builds in the source tree (build/, *.egg-info), so it builds from a copy and the
    repository stays clean.
    """
    root = tmp_path_factory.mktemp("example-plugin")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(src)],
        capture_output=True, text=True, env=_clean_env(PIP_NO_INPUT="1"), timeout=300,
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "vizkit_example" / "__init__.py").is_file()
    return target


@pytest.fixture(scope="module")
def cli_runs(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every CLI command of this file, run in one subprocess that sees the plugin only via PYTHONPATH."""
    work = tmp_path_factory.mktemp("example-cli")
    ckpt = work / "sdae.pt"
    commands = {
        "plugins": ["plugins"],
        "hello": ["example-hello"],
        "probe": ["probe", "--probe", "mean-response", str(ckpt), "--layer", "h1", "--units", "0:4",
                  "--out", str(work / "out")],
        "bad_option": ["probe", "--probe", "mean-response", str(ckpt), "--layer", "h1",
                       "-o", "noise", "pink", "--out", str(work / "bad")],
        "bad_units": ["probe", "--probe", "mean-response", str(ckpt), "--layer", "h1",
                      "--units", "0:9", "--out", str(work / "bad")],
        "inspect_proto": ["inspect", str(work / "proto.pt")],
        "listed_run": ["@each-listed", str(work / "proto.pt"), str(work / "listed")],
    }
    pythonpath = os.pathsep.join([str(installed), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(ckpt), json.dumps(list(commands.values()))],
        capture_output=True, text=True, cwd=work, timeout=300,
        env=_clean_env(PYTHONPATH=pythonpath, VIZKIT_STRICT_PLUGINS="1"),
    )
    assert proc.returncode == 0, f"driver failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    runs = dict(zip(commands, report))
    runs["_dir"] = {"out": work / "out", "listed": work / "listed"}
    return runs


# -- the installed distribution through the CLI ------------------------------------------------------
def test_installed_metadata_has_the_entry_point(installed: Path) -> None:
    (dist_info,) = installed.glob("vizkit_example_plugin-*.dist-info")
    assert "[vizkit]\nexample = vizkit_example" in (dist_info / "entry_points.txt").read_text()
    assert f"Name: {DIST}" in (dist_info / "METADATA").read_text()


def test_plugins_lists_the_probe_with_its_distribution(cli_runs: dict) -> None:
    run = cli_runs["plugins"]
    assert run["code"] == 0, run["err"]
    line = next(ln for ln in run["out"].splitlines() if ln.startswith("mean-response "))
    assert "plugin example" in line and f"distribution {DIST}" in line
    assert "requires: activations" in run["out"]
    assert "-o samples int [1..1e+07] = 256" in run["out"]
    assert "-o noise uniform|gaussian = 'uniform'" in run["out"]
    assert "BROKEN" not in run["out"]


def test_example_hello_command(cli_runs: dict) -> None:
    run = cli_runs["hello"]
    assert run["code"] == 0, run["err"]
    assert run["out"].strip().splitlines() == [f"hello from {DIST} 0.1.0 (vizkit {vizkit.__version__})"]


def test_probe_writes_every_output(cli_runs: dict) -> None:
    run = cli_runs["probe"]
    assert run["code"] == 0, run["err"]
    out = cli_runs["_dir"]["out"]
    for name in ("result.json", "arrays.npz", "index.html", "mean_response.png"):
        assert (out / name).is_file(), name
    assert (out / "mean_response.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "result.json").read_text())
    assert meta["probe"] == "mean-response" and meta["plugin"] == "example"
    assert meta["layer"] == "h1" and meta["units"] == [0, 1, 2, 3]
    assert meta["options"] == {"samples": 256, "noise": "uniform"}
    assert meta["input_norm"] == 3.0
    with np.load(out / "arrays.npz") as arrays:
        assert sorted(arrays.files) == ["mean", "std", "units"]
        mean, std = arrays["mean"], arrays["std"]
        assert mean.shape == (4,) and std.shape == (4,)
        assert arrays["units"].tolist() == [0, 1, 2, 3]
    # h1 is a sigmoid layer with random weights: responses lie strictly inside (0, 1) and vary.
    assert np.all((mean > 0) & (mean < 1)) and np.all(std > 0)
    assert "mean_response.png" in (out / "index.html").read_text()


def test_a_new_capability_its_model_and_its_probe(cli_runs: dict) -> None:
    """The plugin registers ``prototypes``, the ``protonet`` kind that declares it and the
    ``prototype-match`` probe that requires it; ``vizkit inspect`` lists exactly the probes that
    then run on a protonet checkpoint, and the new probe gets its known answer."""
    inspect = cli_runs["inspect_proto"]
    assert inspect["code"] == 0, inspect["err"]
    assert "kind         protonet" in inspect["out"]
    assert "capabilities activations, input_grad, prototypes" in inspect["out"]
    listed = cli_runs["listed_run"]["listed"]
    # offered: what needs activations (and input gradients) and its own probe; not what needs weights,
    # reconstructions or modules a deconvnet can follow
    assert "prototype-match" in listed and "mean-response" in listed and "actmax" in listed
    assert not {"filters", "lincomb", "templates", "deconv", "evolution", "clamp", "sample"} & set(listed)
    for run in cli_runs["listed_run"]["runs"]:
        assert run["code"] == 0, (run["probe"], run["err"])
    meta = json.loads((cli_runs["_dir"]["listed"] / "prototype-match" / "result.json").read_text())
    assert meta["self_best_fraction"] == 1.0  # every unit prefers its own prototype


def test_probe_usage_errors_exit_2_with_one_line(cli_runs: dict) -> None:
    bad = cli_runs["bad_option"]
    assert bad["code"] == 2
    assert bad["err"].strip() == (
        "error: option 'noise' of probe 'mean-response' must be one of ['uniform', 'gaussian'], got 'pink'"
    )
    units = cli_runs["bad_units"]
    assert units["code"] == 2
    assert len(units["err"].strip().splitlines()) == 1 and "6 units" in units["err"]


# -- the installed module in-process ---------------------------------------------------------------
@pytest.fixture(scope="module")
def example_module(installed: Path) -> Iterator[ModuleType]:
    """``vizkit_example`` imported from the pip --target directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(installed))
        sys.modules.pop("vizkit_example", None)
        module = importlib.import_module("vizkit_example")
        assert Path(module.__file__).resolve().is_relative_to(installed.resolve())
        yield module
        sys.modules.pop("vizkit_example", None)


@pytest.fixture
def example_host(example_module: ModuleType) -> Iterator[PluginHost]:
    """A process-wide host holding only the example plugin (the core's reference models are not
    needed for wrapped modules, and leaving them out keeps Lightning out of this process)."""
    host = PluginHost(entry_points=[], strict=True, include_core=False)
    host.load()
    assert host.add_plugin(example_module, "example", distribution=DIST)
    reset_host(host)
    yield host
    reset_host()


def test_fresh_host_registers_the_probe(example_module: ModuleType) -> None:
    host = PluginHost(entry_points=[])
    assert host.add_plugin(example_module, "example", distribution=DIST) is True
    assert {"mean-response", "prototype-match"} <= set(host.probes) and "protonet" in host.models
    assert host.capabilities["prototypes"].plugin == "example"
    reg = host.probes["mean-response"]
    assert reg.obj is example_module.MeanResponse and reg.plugin == "example"
    assert host.distributions["example"] == DIST and host.broken == {}
    assert reg.obj.requires == frozenset({"activations"})


def test_a_second_plugin_claiming_the_name_is_an_error_naming_both(example_module: ModuleType) -> None:
    host = PluginHost(entry_points=[], include_core=False)
    host.add_plugin(example_module, "example")

    class Copycat:
        @vizkit.hookimpl
        def register_probes(self, register):  # noqa: ANN001, ANN202
            register(example_module.MeanResponse)

    with pytest.raises(PluginError, match="'mean-response'.*'example'.*'copycat'"):
        host.add_plugin(Copycat(), "copycat")
    assert host.probes["mean-response"].plugin == "example"


def _linear(weight: list[list[float]], bias: list[float], **kw) -> vizkit.WrappedModel:  # noqa: ANN003
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return vizkit.wrap(nn.Sequential(layer), input_shape=(len(weight[0]),), layers=["0"], **kw)


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_known_answer_zero_weights_give_the_bias(example_host: PluginHost, noise: str) -> None:
    model = _linear([[0.0] * 4] * 2, [1.0, -2.0])
    result = vizkit.run_probe("mean-response", model, "0", samples=37, noise=noise, seed=3)
    assert result.arrays["mean"].tolist() == [1.0, -2.0]
    assert result.arrays["std"].tolist() == [0.0, 0.0]
    assert result.arrays["units"].tolist() == [0, 1]


def test_known_answer_input_norm_across_chunks(example_host: PluginHost, example_module: ModuleType,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Identity layer, inputs rescaled to norm 3: sum over units of E[x_i^2] = mean^2 + std^2 = 9.
    model = _linear(np.eye(4).tolist(), [0.0] * 4, data_info={"stats": {"mean_norm": 3.0}})
    monkeypatch.setattr(example_module, "CHUNK_BUDGET", 8 * 7)  # 7 samples per forward pass
    result = vizkit.run_probe("mean-response", model, "0", samples=100, noise="gaussian")
    mean, std = result.arrays["mean"].astype(np.float64), result.arrays["std"].astype(np.float64)
    assert np.sum(mean**2 + std**2) == pytest.approx(9.0, rel=1e-5)
    assert result.meta["input_norm"] == 3.0
    # Merging chunks leaves a constant response exactly constant.
    flat = _linear([[0.0] * 4], [0.5])
    const = vizkit.run_probe("mean-response", flat, "0", samples=100)
    assert const.arrays["mean"].tolist() == [0.5] and const.arrays["std"].tolist() == [0.0]


def test_seed_reproducibility_figure_and_options(example_host: PluginHost) -> None:
    torch.manual_seed(0)
    model = vizkit.wrap(nn.Sequential(nn.Linear(5, 3), nn.Tanh()), input_shape=(5,), layers=["1"])
    a = vizkit.run_probe("mean-response", model, "1", units=[0, 2], samples=64, seed=1)
    b = vizkit.run_probe("mean-response", model, "1", units=[0, 2], samples=64, seed=1)
    c = vizkit.run_probe("mean-response", model, "1", units=[0, 2], samples=64, seed=2)
    assert np.array_equal(a.arrays["mean"], b.arrays["mean"]) and np.array_equal(a.arrays["std"], b.arrays["std"])
    assert not np.array_equal(a.arrays["mean"], c.arrays["mean"])
    assert a.arrays["mean"].shape == (2,) and a.arrays["units"].tolist() == [0, 2]

    from matplotlib.figure import Figure

    fig = a.figures["mean_response"]
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "unit" and "mean activation" in ax.get_ylabel()
    assert "64 uniform random inputs" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2"]
    assert "2 units of layer 1" in a.captions["mean_response"]

    with pytest.raises(OptionError, match="'samples'.*>= 1"):
        vizkit.run_probe("mean-response", model, "1", samples=0)
    with pytest.raises(OptionError, match="'noise'.*must be one of"):
        vizkit.run_probe("mean-response", model, "1", noise="pink")


def test_units_split_over_parts_give_the_same_result(example_host: PluginHost) -> None:
    # the third-party probe implements compute/render, so vizkit can split its units
    from vizkit.api import prepare_run
    from vizkit.shard import compute_part, draw_merged, split_units

    model = _linear(np.random.default_rng(0).normal(size=(5, 4)).tolist(), [0.1] * 5)
    whole = vizkit.run_probe("mean-response", model, "0", samples=64, seed=2)
    run = prepare_run("mean-response", model, "0", samples=64, seed=2)
    merged = draw_merged(run, [compute_part(run, u) for u in split_units(run.units, 2)], 0.0)
    for key in ("mean", "std", "units"):
        np.testing.assert_allclose(merged.arrays[key], whole.arrays[key], rtol=1e-6, err_msg=key)
    assert set(merged.figures) == {"mean_response"}
