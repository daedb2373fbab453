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
