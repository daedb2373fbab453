"""Every bad input gets one clear line, the right exit code, and leaves nothing behind."""

import types

import pytest

import vizkit

from .conftest import make_sdae


def one_line(res):
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err
    return lines[0]


def test_probe_happy_path(fresh_host, sdae_ckpt, tmp_path, cli):
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--units", "0:4", "--out", tmp_path / "o")
    assert res.code == 0, res.err
    assert "index.html" in res.out and (tmp_path / "o" / "filters.png").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--probe", "nope", "--layer", "h1"], 2, "unknown plugin 'nope'; available: "),
        (["--probe", "filters", "--layer", "h9"], 2, "unknown layer 'h9'; valid layers: h1, h2"),
        (["--probe", "filters", "--layer", "h2"], 2, "probe 'filters' cannot run on layer 'h2'; valid layers for it: h1"),
        (["--probe", "filters", "--layer", "h1", "--units", "0:7"], 2, "reach past the layer: it has 6 units"),
        (["--probe", "filters", "--layer", "h1", "--units", "9"], 2, "unit 9 is out of range"),
        (["--probe", "filters", "--layer", "h1", "--units", "1-3"], 2, "malformed units '1-3'"),
        (["--probe", "filters", "--layer", "h1", "-o", "colour", "red"], 2, "unknown option 'colour' for probe 'filters'; valid options: columns, order, scale"),
        (["--probe", "filters", "--layer", "h1", "-o", "columns", "many"], 2, "option 'columns' of probe 'filters' must be an integer, got 'many'"),
        (["--probe", "filters", "--layer", "h1", "-o", "columns", "500"], 2, "must be <= 100"),
        (["--probe", "filters", "--layer", "h1", "-o", "scale", "log"], 2, "must be one of ['unit', 'shared']"),
        (["--probe", "filters"], 2, "--layer is required; valid layers for 'filters': h1"),
    ],
)
def test_probe_usage_errors(fresh_host, sdae_ckpt, tmp_path, cli, args, code, message):
    out = tmp_path / "out"
    res = cli("probe", *args, sdae_ckpt, "--out", out)
    assert res.code == code
    assert message in one_line(res)
    assert not out.exists()


def test_probe_missing_checkpoint(fresh_host, tmp_path, cli):
    res = cli("probe", "--probe", "filters", tmp_path / "none.pt", "--layer", "h1", "--out", tmp_path / "o")
    assert res.code == 2 and "no such file" in one_line(res)
    assert not (tmp_path / "o").exists()


def test_missing_capability_names_it_and_lists_working_probes(fresh_host, sdae_ckpt, tmp_path, cli):
    class NeedsGibbs(vizkit.Probe):
        name = "needs-gibbs"
        requires = frozenset({"activations", "clamped_sample"})

        def run(self, ctx):
            return vizkit.Result()

    mod = types.ModuleType("gibbs_plugin")
    mod.register_probes = vizkit.hookimpl(lambda register: register(NeedsGibbs))
    fresh_host.add_plugin(mod, "gibbs")
    res = cli("probe", "--probe", "needs-gibbs", sdae_ckpt, "--layer", "h1", "--out", tmp_path / "o")
    assert res.code == 2
    line = one_line(res)
    assert "needs capability 'clamped_sample', which model 'sdae' does not have" in line
    assert "probes that work on this model: " in line and "filters" in line and "clamp" not in line.split("work on")[1]


def test_out_not_writable(fresh_host, sdae_ckpt, tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", blocker / "sub")
    assert res.code == 2 and "cannot write to --out" in one_line(res)
    res = cli("probe", "--probe", "filters", sdae_ckpt, "--layer", "h1", "--out", blocker)
    assert res.code == 2 and "is a file" in one_line(res)
    assert blocker.read_text() == "x"


def test_click_usage_errors_are_one_line(cli, sdae_ckpt):
    res = cli("probe", sdae_ckpt, "--layer", "h1")
    assert res.code == 2 and "Missing option '--probe'" in one_line(res)
    res = cli("nosuchcommand")
    assert res.code == 2 and "No such command" in one_line(res)


def test_traceback_flag_shows_the_traceback(cli, tmp_path):
    with pytest.raises(vizkit.UsageError):
        from vizkit.cli import main

        main(["--traceback", "inspect", str(tmp_path / "none.pt")])


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nokind", "--data", "digits"], 2, "unknown model kind 'nokind'; available: "),
        (["sdae", "--data", "nodata"], 2, "unknown dataset 'nodata'"),
        (["sdae", "--data", "digits", "--layers", "10,-3"], 2, "--layers must be positive integers"),
        (["sdae", "--data", "digits", "--layers", "10,x"], 2, "--layers must be positive integers"),
        (["sdae", "--data", "digits", "--wings", "2"], 2, "unknown option 'wings' for model 'sdae'"),
        (["sdae", "--data", "digits", "--noise", "2"], 2, "option 'noise' of model 'sdae' must be <= 1"),
        (["sdae", "--data", "digits", "--epochs", "0"], 2, "--epochs"),
        (["sdae", "--data", "digits", "-D", "size"], 2, "expects KEY=VALUE"),
    ],
)
def test_train_usage_errors(fresh_host, tmp_path, cli, args, code, message):
    out = tmp_path / "m.pt"
    res = cli("train", *args, "--out", out, "-q", "--log-dir", tmp_path / "logs")
    assert res.code == code
    assert message in one_line(res)
    assert not out.exists() and not (tmp_path / "logs").exists()


def test_data_dir_without_mnist_files(fresh_host, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("train", "sdae", "--data", "mnist", "--data-dir", empty, "--out", tmp_path / "m.pt", "-q")
    assert res.code == 2
    line = one_line(res)
    assert str(empty) in line and "train-images-idx3-ubyte" in line
    assert not (tmp_path / "m.pt").exists()


def test_train_out_in_missing_directory(fresh_host, tmp_path, cli):
    res = cli("train", "sdae", "--data", "digits", "--out", tmp_path / "no" / "m.pt", "-q")
    assert res.code == 2 and "does not exist" in one_line(res)


def test_listings(fresh_host, cli):
    res = cli("plugins")
    assert res.code == 0 and "filters  [plugin filters, distribution vizkit]" in res.out
    assert "-o scale unit|shared = 'unit'" in res.out
    res = cli("models")
    assert "sdae" in res.out and "--layers" in res.out
    res = cli("datasets")
    assert all(name in res.out for name in ("mnist", "digits", "patches"))


def test_inspect_shows_metrics(tmp_path, cli):
    model = make_sdae()
    model.metrics = {"layer 1": {"val_loss": 1.5}}
    from vizkit.checkpoint import save_checkpoint

    path = save_checkpoint(model.to_checkpoint(), tmp_path / "m.pt")
    res = cli("inspect", path)
    assert "layer 1: val_loss=1.5" in res.out


def test_clamp_on_an_sdae_names_the_missing_capability(fresh_host, sdae_ckpt, tmp_path, cli):
    res = cli("probe", "--probe", "clamp", sdae_ckpt, "--layer", "h2", "--out", tmp_path / "o")
    assert res.code == 2
    line = one_line(res)
    assert "probe 'clamp' needs capability 'clamped_sample', which model 'sdae' does not have" in line
    assert "filters" in line and "lincomb" in line
    assert not (tmp_path / "o").exists()
