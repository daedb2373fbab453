"""The plugin host: isolation, strictness, duplicates, misspelled hooks, lazy loading."""

from __future__ import annotations

import subprocess
import sys
import types
import typing

import numpy as np
import pytest
import torch

import vizkit
from vizkit.errors import PluginError
from vizkit.registry import PluginHost


def probe_plugin(probe_name: str, requires=frozenset({"activations"})) -> types.ModuleType:
    class P(vizkit.Probe):
        name = probe_name
        summary = "test probe"

        def run(self, ctx):
            return vizkit.Result()

    P.requires = frozenset(requires)
    mod = types.ModuleType(f"plugin_{probe_name}")

    @vizkit.hookimpl
    def register_probes(register):
        register(P)

    mod.register_probes = register_probes
    return mod


class FakeEntryPoint:
    def __init__(self, name, loader):
        self.name = name
        self._loader = loader
        self.dist = types.SimpleNamespace(name=f"dist-{name}")

    def load(self):
        return self._loader()


def test_entry_points_register_and_load_is_idempotent():
    host = PluginHost(entry_points=[FakeEntryPoint("a", lambda: probe_plugin("alpha"))], strict=True)
    host.load()
    host.load()
    assert "alpha" in host.probes
    assert host.probes["alpha"].plugin == "a"
    assert host.distributions["a"] == "dist-a"
    assert "sdae" in host.models  # the core registers through the same hooks


def test_broken_plugin_is_named_and_skipped(capsys):
    def boom():
        raise ImportError("no module named 'missing_dep'")

    host = PluginHost(
        entry_points=[FakeEntryPoint("bad", boom), FakeEntryPoint("good", lambda: probe_plugin("fine"))],
        strict=False,
    ).load()
    err = capsys.readouterr().err
    assert "plugin 'bad' failed to import: ImportError: no module named 'missing_dep'; skipped" in err
    assert "fine" in host.probes
    assert "bad" in host.broken


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    monkeypatch.setenv("VIZKIT_STRICT_PLUGINS", "1")

    def boom():
        raise RuntimeError("kaput")

    with pytest.raises(PluginError, match="plugin 'bad' failed to import: RuntimeError: kaput"):
        PluginHost(entry_points=[FakeEntryPoint("bad", boom)]).load()


def test_load_plugins_env_restricts(monkeypatch):
    monkeypatch.setenv("VIZKIT_LOAD_PLUGINS", "b")
    eps = [FakeEntryPoint("a", lambda: probe_plugin("alpha")), FakeEntryPoint("b", lambda: probe_plugin("beta"))]
    host = PluginHost(entry_points=eps).load()
    assert "beta" in host.probes and "alpha" not in host.probes


def test_duplicate_names_name_both_plugins():
    eps = [FakeEntryPoint("one", lambda: probe_plugin("same")), FakeEntryPoint("two", lambda: probe_plugin("same"))]
    with pytest.raises(PluginError, match="probe name 'same' is registered by plugin 'one' already; plugin 'two' cannot take it"):
        PluginHost(entry_points=eps, strict=True).load()


def test_a_name_clash_skips_only_the_late_plugin(capsys):
    """Not strict: the clashing plugin is named on stderr and skipped; everything else still loads."""
    eps = [FakeEntryPoint("one", lambda: probe_plugin("same")), FakeEntryPoint("two", lambda: probe_plugin("same")),
           FakeEntryPoint("three", lambda: probe_plugin("other"))]
    host = PluginHost(entry_points=eps, strict=False).load()
    assert host.probes["same"].plugin == "one" and "other" in host.probes
    assert "two" in host.broken and "plugin 'two' cannot take it" in capsys.readouterr().err


def test_a_plugin_calling_sys_exit_on_import_is_named_and_skipped(capsys):
    def leave():
        raise SystemExit(3)

    host = PluginHost(entry_points=[FakeEntryPoint("quitter", leave),
                                    FakeEntryPoint("fine", lambda: probe_plugin("fine"))], strict=False).load()
    assert "fine" in host.probes and "sys.exit(3)" in host.broken["quitter"]
    assert "plugin 'quitter' failed to import: called sys.exit(3)" in capsys.readouterr().err


def test_misspelled_hook_is_caught_by_check_pending(capsys):
    mod = types.ModuleType("typo")

    @vizkit.hookimpl
    def register_probe(register):  # missing "s"
        pass

    mod.register_probe = register_probe
    host = PluginHost(entry_points=[FakeEntryPoint("typo", lambda: mod)], strict=False).load()
    assert "typo" in host.broken
    assert "register_probe" in capsys.readouterr().err
    assert not host.pm.has_plugin("typo")


def test_registering_a_non_probe_is_an_error():
    mod = types.ModuleType("wrong")

    @vizkit.hookimpl
    def register_probes(register):
        register(object)

    mod.register_probes = register_probes
    with pytest.raises(PluginError, match="not a vizkit.Probe subclass"):
        PluginHost(entry_points=[FakeEntryPoint("wrong", lambda: mod)], strict=True).load()


def test_probe_class_validation():
    class Nameless(vizkit.Probe):
        def run(self, ctx):
            return vizkit.Result()

    with pytest.raises(PluginError, match="invalid name"):
        Nameless.validate_class()

    class Malformed(vizkit.Probe):
        name = "x"
        requires = frozenset({"Activations!"})

        def run(self, ctx):
            return vizkit.Result()

    with pytest.raises(PluginError, match="invalid capability name 'Activations!'"):
        Malformed.validate_class()


# -- capabilities: an open vocabulary, declared and checked ---------------------------------------
class Shiny(vizkit.ProbeModel, typing.Protocol):
    def shine(self, layer: str) -> torch.Tensor: ...


def capability_plugin(*capabilities) -> Registers:
    return Registers(capabilities=capabilities)


def shiny_model(with_method: bool = True) -> type:
    class ShinyModel(vizkit.VizModel):
        kind = "shiny"
        capabilities = frozenset({"activations", "shiny"})

        @classmethod
        def from_checkpoint(cls, ckpt):
            return cls()

    if with_method:
        ShinyModel.shine = lambda self, layer: torch.zeros(1)
    return ShinyModel


def test_a_plugin_registers_a_capability_a_model_declares_and_a_probe_requires():
    shiny = vizkit.Capability("shiny", "shine(layer): how shiny a layer is", Shiny)
    eps = [FakeEntryPoint("caps", lambda: capability_plugin(shiny)),
           FakeEntryPoint("models", lambda: model_plugin(shiny_model())),
           FakeEntryPoint("probes", lambda: probe_plugin("polish", requires={"activations", "shiny"}))]
    host = PluginHost(entry_points=eps, strict=True).load()
    assert host.capability("shiny") is shiny and host.capabilities["shiny"].plugin == "caps"
    assert {"activations", "input_grad", "weights", "reconstruct"} <= set(host.capabilities)  # the core's
    assert "polish" in host.probes and "shiny" in host.models
    assert shiny.methods() == ("shine", "layer_infos", "activations")


def test_a_model_lacking_its_interface_is_refused_by_name():
    shiny = vizkit.Capability("shiny", "shine(layer)", Shiny)
    eps = [FakeEntryPoint("caps", lambda: capability_plugin(shiny)),
           FakeEntryPoint("models", lambda: model_plugin(shiny_model(with_method=False)))]
    with pytest.raises(PluginError, match="declares capability 'shiny' but lacks shine"):
        PluginHost(entry_points=eps, strict=True).load()
    host = PluginHost(entry_points=eps, strict=False).load()
    assert "shiny" not in host.models and "models" in host.broken


def test_names_no_plugin_registers_are_refused():
    with pytest.raises(PluginError, match="requires capabilities no installed plugin registers: activation"):
        PluginHost(entry_points=[FakeEntryPoint("typo", lambda: probe_plugin("p", requires={"activation"}))],
                   strict=True).load()
    with pytest.raises(PluginError, match="declares capabilities no installed plugin registers: shiny"):
        PluginHost(entry_points=[FakeEntryPoint("models", lambda: model_plugin(shiny_model()))], strict=True).load()


def test_a_capability_name_is_owned_once():
    eps = [FakeEntryPoint("mine", lambda: capability_plugin(vizkit.Capability("weights", "my weights")))]
    with pytest.raises(PluginError, match="capability name 'weights' is registered by plugin 'vizkit-core' already"):
        PluginHost(entry_points=eps, strict=True).load()
    with pytest.raises(PluginError, match="not a vizkit.Capability"):
        PluginHost(entry_points=[FakeEntryPoint("bad", lambda: capability_plugin("shiny"))], strict=True).load()


def test_a_lazy_kind_is_checked_against_its_interfaces_when_imported(monkeypatch):
    from vizkit.models.rbm.model import RBM

    host = PluginHost(entry_points=[], strict=True).load()
    assert host.model_class("rbm") is RBM  # declares clamped_sample and sample, and has both
    monkeypatch.delattr(RBM.__mro__[1], "clamped_sample")
    host = PluginHost(entry_points=[], strict=True).load()
    with pytest.raises(PluginError, match="declares capability 'clamped_sample' but lacks clamped_sample"):
        host.model_class("rbm")


def test_vizkit_model_kinds_load_whatever_load_plugins_says(monkeypatch):
    monkeypatch.setenv("VIZKIT_LOAD_PLUGINS", "filters")
    host = PluginHost().load()
    assert set(host.probes) == {"filters"}
    assert {"rbm", "dbn", "sdae", "capsule", "convnet", "ladder", "tcnn"} <= set(host.models)
    assert {"clamped_sample", "sample", "templates", "epoch_snapshots"} <= set(host.capabilities)


def test_builtin_filters_registers_through_entry_points(fresh_host):
    assert fresh_host.probes["filters"].plugin == "filters"
    assert fresh_host.distributions["filters"] == "vizkit"
    assert vizkit.list_probes() == sorted(fresh_host.probes)
    assert "sdae" in vizkit.list_models()
    assert {"mnist", "digits", "patches"} <= set(vizkit.list_datasets())


def test_import_vizkit_loads_no_plugin():
    code = "import vizkit, vizkit.registry as p, sys; vizkit.wrap; print(p._host is None, 'vizkit.probes.filters' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


class Registers:
    """A plugin object whose hooks register the given capabilities, models and probes."""

    def __init__(self, capabilities=(), models=(), probes=()):
        self.items = {"capabilities": capabilities, "models": models, "probes": probes}

    @vizkit.hookimpl
    def register_capabilities(self, register):
        for capability in self.items["capabilities"]:
            register(capability)

    @vizkit.hookimpl
    def register_models(self, register):
        for model in self.items["models"]:
            register(model)

    @vizkit.hookimpl
    def register_probes(self, register):
        for probe in self.items["probes"]:
            register(probe)


def model_plugin(*refs) -> Registers:
    return Registers(models=refs)


def test_lazy_model_is_imported_on_first_use():
    ref = vizkit.LazyModel("sdae2", "vizkit.models.sdae:SDAE")
    host = PluginHost(entry_points=[FakeEntryPoint("lazy", lambda: model_plugin(ref))], strict=True).load()
    assert host.models["sdae2"].obj is ref  # registered, not imported
    with pytest.raises(PluginError, match="registered model kind 'sdae2', but vizkit.models.sdae:SDAE has kind 'sdae'"):
        host.model_class("sdae2")
    from vizkit.models.sdae import SDAE

    host = PluginHost(entry_points=[], strict=True).load()
    assert host.model_class("sdae") is SDAE and host.models["sdae"].obj is SDAE  # resolved once, cached


@pytest.mark.parametrize(
    "target, message",
    [("no_such_module_xyz:Model", "cannot be imported: ModuleNotFoundError"),
     ("vizkit.models.sdae:Nope", "cannot be imported: AttributeError")],
)
def test_lazy_model_import_errors_name_the_plugin(target, message):
    host = PluginHost(entry_points=[FakeEntryPoint("lazy", lambda: model_plugin(vizkit.LazyModel("m", target)))],
                      strict=True).load()
    with pytest.raises(PluginError, match=f"plugin 'lazy' registered model kind 'm' as .*{message}"):
        host.model_class("m")


def test_lazy_model_target_must_name_a_class():
    with pytest.raises(PluginError, match="expected 'package.module:ClassName'"):
        PluginHost(entry_points=[FakeEntryPoint("lazy", lambda: model_plugin(vizkit.LazyModel("m", "just.a.module")))],
                   strict=True).load()


@pytest.mark.parametrize("command", ["--help", "plugins", "datasets"])
def test_listing_commands_do_not_import_lightning(command):
    # Lightning takes seconds to import; only commands that build a model or data should pay it.
    code = (f"import sys\nfrom vizkit.cli import main\ntry:\n    main([{command!r}])\nexcept SystemExit:\n    pass\n"
            "print('LIGHTNING' if 'pytorch_lightning' in sys.modules else 'NO-LIGHTNING')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "NO-LIGHTNING"


def test_register_datasets_and_register_commands_hooks(fresh_host, cli):
    """A plugin's dataset is trainable by name and its command runs; a command clash skips it."""
    import click
    import torch

    from vizkit.datasets.base import VizDataModule

    mod = types.ModuleType("plugin_extras")

    def build(batch_size, seed, **options):
        gen = torch.Generator().manual_seed(seed)
        data = torch.rand(40, 1, 4, 4, generator=gen)
        return VizDataModule("ramp-test", data[:30], data[30:], batch_size=batch_size, seed=seed)

    @vizkit.hookimpl
    def register_datasets(register):
        register(vizkit.DatasetSpec("ramp-test", build, "random 4x4 images (test)"))

    @click.command("hello-vizkit-test")
    def hello():
        click.echo("hello from a plugin")

    @vizkit.hookimpl
    def register_commands(cli):
        cli.add_command(hello)

    mod.register_datasets, mod.register_commands = register_datasets, register_commands
    assert fresh_host.add_plugin(mod, "extras")
    assert "ramp-test" in fresh_host.datasets
    assert vizkit.load_dataset("ramp-test").images.shape == (10, 1, 4, 4)
    from vizkit.cli import cli as group

    group._plugins_added = False
    try:
        res = cli("hello-vizkit-test")
        assert res.code == 0 and "hello from a plugin" in res.out
    finally:
        group.commands.pop("hello-vizkit-test", None)
        group._plugins_added = False

    clash = types.ModuleType("plugin_clash")

    @vizkit.hookimpl
    def register_commands(cli):  # noqa: F811 - a second plugin taking an existing command name
        cli.add_command(click.Command("train", callback=lambda: None))

    clash.register_commands = register_commands
    fresh_host.add_plugin(clash, "clash")
    strict, fresh_host.strict = fresh_host.strict, False  # CI runs with VIZKIT_STRICT_PLUGINS=1
    try:
        fresh_host.register_commands(group)
    finally:
        fresh_host.strict = strict
    assert group.commands["train"].callback.__name__ == "train" and "clash" in fresh_host.broken
    group.commands.pop("hello-vizkit-test", None)
    group._plugins_added = False


def test_a_probe_written_with_render_still_draws():
    """``Probe.render`` was renamed ``draw``; a third-party probe that defines ``render`` keeps working."""
    class Old(vizkit.Probe):
        name = "old"
        unit_arrays = frozenset({"x"})

        def compute(self, ctx):
            return vizkit.Result(arrays={"x": np.zeros(len(ctx.units))})

        def render(self, ctx, result):
            result.captions["x"] = "drawn"
            return result

    host = PluginHost(entry_points=[], strict=True).load()
    host.add_plugin(probes_module(Old), "old")
    model = vizkit.wrap(torch.nn.Sequential(torch.nn.Linear(3, 2)), input_shape=(3,))
    from vizkit.registry import reset_host

    reset_host(host)
    try:
        result = vizkit.run_probe("old", model, "0", show_progress=False)
    finally:
        reset_host(None)
    assert result.captions == {"x": "drawn"} and Old.splits_units()


def probes_module(*probes) -> Registers:
    return Registers(probes=probes)


def test_a_probe_whose_own_check_fails_is_left_out_of_listings_by_name(capsys):
    class Fragile(vizkit.Probe):
        name = "fragile"

        @classmethod
        def refusal(cls, model, layer, options):
            raise RuntimeError("bug in the plugin")

        def run(self, ctx):
            return vizkit.Result()

    class Sturdy(vizkit.Probe):
        name = "sturdy"

        def run(self, ctx):
            return vizkit.Result()

    host = PluginHost(entry_points=[], strict=True).load()
    host.add_plugin(probes_module(Fragile, Sturdy), "fragile-plugin")
    from vizkit.registry import reset_host

    reset_host(host)
    try:
        model = vizkit.wrap(torch.nn.Sequential(torch.nn.Linear(3, 2)), input_shape=(3,))
        listed = vizkit.compatible_probes(model)
    finally:
        reset_host(None)
    assert listed == ["sturdy"]  # the failing check costs its own probe, not the listing
    assert "probe 'fragile' (plugin 'fragile-plugin') failed to check this model: RuntimeError: bug" in \
        capsys.readouterr().err
