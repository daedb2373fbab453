"""Start-up: ``plugins`` and ``datasets`` never import Lightning (seconds on a busy box); ``inspect``
does only when a probe's own check (its layers, its refusal) needs the model built, so that what it
lists is exactly what then runs.

Measured with ``python -X importtime``; the assertion is on *what* is imported, not on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import make_sdae
from vizkit.checkpoint import save_checkpoint


def imports(*args: str, cwd, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "vizkit", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, env={**os.environ, **(env or {})})
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc.returncode, proc.stdout, " ".join(sorted(modules))


@pytest.mark.parametrize("command", [("plugins",), ("datasets",), ("inspect", "listed.pt")])
def test_listings_and_inspect_do_not_import_lightning(tmp_path, command):
    model = make_sdae()
    save_checkpoint(model.to_checkpoint(), tmp_path / "listed.pt", model=model)
    env = {"VIZKIT_LOAD_PLUGINS": "actmax,hessian"} if command[0] == "inspect" else {}
    code, out, modules = imports(*command, cwd=tmp_path, env=env)
    assert code == 0, out
    assert "pytorch_lightning" not in modules.split() and "lightning_fabric" not in modules.split()
    if command[0] == "inspect":  # probes that need no more than capabilities and layer names: the listing
        assert "h1" in out and "activations" in out
        assert out.split("probes")[-1].split()[:2] == ["actmax,", "hessian"]


def test_inspect_asks_the_model_once_per_file_and_code(tmp_path):
    """Which probes run on a checkpoint is computed from the built model (Lightning) once, then
    reused while the file's bytes and the probes' and model's code are unchanged."""
    model = make_sdae()
    save_checkpoint(model.to_checkpoint(), tmp_path / "listed.pt", model=model)
    env = {"VIZKIT_CACHE_DIR": str(tmp_path / "cache")}
    first = imports("inspect", "listed.pt", cwd=tmp_path, env=env)
    second = imports("inspect", "listed.pt", cwd=tmp_path, env=env)
    assert first[0] == second[0] == 0 and first[1] == second[1] and "filters" in first[1]
    assert "pytorch_lightning" in first[2].split() and "pytorch_lightning" not in second[2].split()
    cache = tmp_path / "cache" / "inspect.json"
    entries = json.loads(cache.read_text())
    for entry in entries.values():
        entry["value"] = ["filters", "no-such-probe"]  # hand-edited: never shown, asked again
    cache.write_text(json.dumps(entries))
    edited = imports("inspect", "listed.pt", cwd=tmp_path, env=env)
    assert edited[1] == first[1] and "pytorch_lightning" in edited[2].split()
    other = make_sdae(seed=1)  # other weights, other bytes: asked again
    save_checkpoint(other.to_checkpoint(), tmp_path / "listed.pt", model=other)
    third = imports("inspect", "listed.pt", cwd=tmp_path, env=env)
    assert third[0] == 0 and "pytorch_lightning" in third[2].split()


def test_inspect_lists_exactly_the_probes_that_run(fresh_host, tmp_path, cli):
    """An sdae has no convolutions for the deconvnet and kept no epochs: neither is offered."""
    model = make_sdae()
    path = save_checkpoint(model.to_checkpoint(), tmp_path / "listed.pt", model=model)
    res = cli("inspect", path)
    listed = res.out.split("probes")[-1].split("\n")[0].replace(",", " ").split()
    assert "deconv" not in listed and "evolution" not in listed and "filters" in listed
    import vizkit

    loaded = vizkit.load(path)
    assert listed == vizkit.compatible_probes(loaded)
    for name in listed:
        probe_cls = fresh_host.probe(name)
        layer = probe_cls.valid_layers(loaded)[0]
        vizkit.api.prepare_run(name, loaded, layer)  # every listed probe passes every check


def test_inspect_builds_the_model_when_the_listing_does_not_match(fresh_host, tmp_path, cli):
    model = make_sdae()
    path = save_checkpoint(model.to_checkpoint(), tmp_path / "listed.pt", model=model)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hparams"]["layers"] = "6,5"  # changed after the listing was written: the weights disagree
    torch.save(ckpt, tmp_path / "tampered.pt")
    res = cli("inspect", tmp_path / "tampered.pt")
    assert res.code == 1 and "does not match model kind 'sdae'" in res.err
    listed = cli("inspect", path).out
    built = cli("inspect", save_checkpoint(model.to_checkpoint(), tmp_path / "plain.pt")).out
    assert listed.splitlines()[2:] == built.splitlines()[2:]  # the same report either way


def test_models_listing_is_cached_and_then_needs_no_lightning(tmp_path, monkeypatch):
    monkeypatch.setenv("VIZKIT_CACHE_DIR", str(tmp_path / "cache"))
    code, first, _ = imports("models", cwd=tmp_path)
    assert code == 0 and "sdae" in first and (tmp_path / "cache" / "models.json").exists()
    code, second, modules = imports("models", cwd=tmp_path)
    assert code == 0 and second == first
    assert "pytorch_lightning" not in modules.split()
    (tmp_path / "cache" / "models.json").write_text("{broken")  # a damaged cache is rebuilt, not an error
    assert imports("models", cwd=tmp_path)[1] == first
