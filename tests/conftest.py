"""Shared fixtures: small checkpoints built without training, fresh plugin hosts, a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vizkit.checkpoint import save_checkpoint
from vizkit.registry import PluginHost, reset_host

DATA_INFO = {
    "name": "digits",
    "options": {},
    "input_shape": [1, 8, 8],
    "stats": {"mean_norm": 3.0, "pixel_min": 0.0, "pixel_max": 1.0, "binary_like": True},
}


def make_sdae(layers: str = "6,4", seed: int = 0):
    from vizkit.models.sdae import SDAE

    torch.manual_seed(seed)
    model = SDAE(input_shape=[1, 8, 8], layers=layers)
    with torch.no_grad():
        for w in model.weight:
            w.normal_()
    model.data_info = dict(DATA_INFO)
    return model


@pytest.fixture
def sdae_ckpt(tmp_path: Path) -> Path:
    """A small SDAE checkpoint (random weights) on 8×8 inputs."""
    return save_checkpoint(make_sdae().to_checkpoint(), tmp_path / "sdae.pt")


@pytest.fixture
def fresh_host() -> Iterator[PluginHost]:
    """A process-wide host with the core and the installed entry points, rebuilt for this test."""
    host = PluginHost()
    reset_host(host)
    yield host.load()
    reset_host(None)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``vizkit ARGS`` in-process and return exit code, stdout and stderr."""
    from vizkit.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# --- the slow science checks' measured values -------------------------------------------------------
# A slow test passes on a bound; what it measured is the evidence behind the numbers docs quote. Each
# calls ``measured(name, value, bound)``; the values are printed at the end of the run and, with
# ``--science-log FILE`` (make test-slow), written with the date, commit and each test's outcome and time.
_MEASURED: list[dict] = []
_OUTCOMES: dict[str, dict] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--science-log", default=None, help="write the slow tests' measured values to this markdown file")


@pytest.fixture
def measured(request: pytest.FixtureRequest):
    """``measured("test log-likelihood", -161.6, "-200 < x < -175")``: record what the test measured."""

    def record(name: str, value: float, bound: str) -> float:
        _MEASURED.append({"test": request.node.nodeid, "name": name, "value": float(value), "bound": bound})
        return float(value)

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        entry = _OUTCOMES.setdefault(report.nodeid, {"outcome": report.outcome, "seconds": 0.0})
        entry["seconds"] += report.duration
        if report.outcome != "passed":
            entry["outcome"] = report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest's hook
    if not _MEASURED:
        return
    terminalreporter.section("measured by the slow science checks")
    for m in _MEASURED:
        terminalreporter.write_line(f"{m['test']}: {m['name']} = {m['value']:.4g} (bound {m['bound']})")
    path = config.getoption("--science-log")
    if path:
        _write_science_log(Path(path), config)


def _write_science_log(path: Path, config: pytest.Config) -> None:
    import datetime
    import os
    import platform
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=config.rootpath).stdout.strip() or "unknown"
    lines = [
        "# `make test-slow`: what the slow science checks measured",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at commit {commit}, "
        f"{platform.machine()} with {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Written by tests/conftest.py; "
        "regenerate with `make test-slow`.",
        "",
        "| test | outcome | seconds | measured | value | bound |",
        "|---|---|---|---|---|---|",
    ]
    by_test: dict[str, list[dict]] = {}
    for m in _MEASURED:
        by_test.setdefault(m["test"], []).append(m)
    for nodeid, outcome in _OUTCOMES.items():
        rows = by_test.get(nodeid) or [{"name": "", "value": None, "bound": ""}]
        for i, m in enumerate(rows):
            value = "" if m["value"] is None else f"{m['value']:.4g}"
            head = (f"`{nodeid.removeprefix('tests/')}` | {outcome['outcome']} | {outcome['seconds']:.0f}"
                    if i == 0 else " | | ")
            name, bound = (str(m[k]).replace("|", "\\|") for k in ("name", "bound"))
            lines.append(f"| {head} | {name} | {value} | {bound} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
