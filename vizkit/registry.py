"""The plugin host: finds plugins through entry points and collects what they register.

Loading is lazy (nothing happens at ``import vizkit``), idempotent, and isolates plugins from each
other: one that fails to import or to register is reported on stderr by name and skipped, unless
``VIZKIT_STRICT_PLUGINS=1`` asks for failure (as CI should). ``VIZKIT_LOAD_PLUGINS=a,b`` loads only
the named entry points. Built-in probes and model kinds are ordinary entry points of the ``vizkit``
distribution; its model kinds load even when ``VIZKIT_LOAD_PLUGINS`` leaves them out, so a
checkpoint always finds its class.

A ``KeyboardInterrupt`` while a plugin imports or registers is not a broken plugin: it is the user's
Ctrl-C (plugins that import torch take seconds, which is when people press it), so it propagates
and the CLI exits 130. A plugin module that raises KeyboardInterrupt by itself cannot be told
apart from that, and stops vizkit the same way; ``sys.exit`` and every ``Exception`` in a plugin
only mark it broken.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "vizkit"
CORE_PLUGIN = "vizkit-core"
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass
class Registered:
    """Something a plugin registered, with the plugin it came from (for messages and listings)."""

    name: str
    obj: Any
    plugin: str


@dataclass(frozen=True)
class LazyModel:
    """A model kind registered by name, imported only when something needs the class.

    Model classes are usually LightningModules, and importing Lightning takes seconds; a plugin
    that registers ``LazyModel("mykind", "mypkg.models:MyModel")`` keeps ``vizkit --help``,
    ``vizkit plugins`` and probes that never load that kind fast.
    """

    kind: str
    target: str  # "package.module:ClassName"

    def resolve(self, plugin: str) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (Exception, SystemExit) as exc:  # the plugin's import error, reported as the plugin's fault
            raise PluginError(f"plugin {plugin!r} registered model kind {self.kind!r} as {self.target!r}, "
                              f"which cannot be imported: {type(exc).__name__}: {exc}") from None
        if _check_model(obj, plugin) != self.kind:
            raise PluginError(f"plugin {plugin!r} registered model kind {self.kind!r}, but {self.target} "
                              f"has kind {getattr(obj, 'kind', None)!r}")
        return obj


@dataclass
class PluginHost:
    """One plugin manager and the probes, models and datasets its plugins registered.

    Tests build a fresh host with ``PluginHost(entry_points=[...])`` or register plugin objects
    directly with :meth:`add_plugin`, so nothing leaks between them.
    """

    entry_points: Iterable[Any] | None = None
    strict: bool | None = None
    only: set[str] | None = None
    include_core: bool = True
    probes: dict[str, Registered] = field(default_factory=dict)
    models: dict[str, Registered] = field(default_factory=dict)
    capabilities: dict[str, Registered] = field(default_factory=dict)
    datasets: dict[str, Registered] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    distributions: dict[str, str] = field(default_factory=dict)
    _loaded: bool = False

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager("vizkit")
        self.pm.add_hookspecs(hookspecs)
        if self.strict is None:
            self.strict = os.environ.get("VIZKIT_STRICT_PLUGINS", "") not in ("", "0")
        if self.only is None and os.environ.get("VIZKIT_LOAD_PLUGINS") is not None:
            self.only = {n.strip() for n in os.environ["VIZKIT_LOAD_PLUGINS"].split(",") if n.strip()}
        # the probe protocol's own capabilities: every host has them, as every model has activations
        from .model import core_capabilities

        for cap in core_capabilities():
            self.capabilities[cap.name] = Registered(cap.name, cap, CORE_PLUGIN)

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> PluginHost:
        """Import every plugin once and collect its registrations; later calls do nothing."""
        if self._loaded:
            return self
        if self.include_core:
            from . import builtins

            self.add_plugin(builtins, CORE_PLUGIN, distribution="vizkit")
        eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP) if self.entry_points is None else self.entry_points)
        core_kinds = _core_model_entry_points() if self.include_core else []
        names = {ep.name for ep in eps}
        eps += [ep for ep in core_kinds if ep.name not in names]
        exempt = {ep.name for ep in core_kinds}
        # vizkit's own plugins first, so a third-party name clash skips the newcomer, not a built-in
        for ep in sorted(eps, key=lambda e: (_distribution(e) != "vizkit", e.name)):
            if self.only is not None and ep.name not in self.only and ep.name not in exempt:
                continue
            dist = _distribution(ep) or "?"
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a plugin's import error (even sys.exit) must not take vizkit down
                what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
                self._broken(ep.name, f"failed to import: {what}")
                continue
            try:
                self.add_plugin(plugin, ep.name, distribution=dist)
            except PluginError as exc:  # e.g. a name another plugin owns: name it, skip it, go on
                self._broken(ep.name, f"was not added: {exc}")
        self._loaded = True
        self._check_declarations(set(self.probes) | set(self.models))
        return self

    def add_plugin(self, plugin: Any, name: str, distribution: str = "?") -> bool:
        """Register one plugin object and collect its probes, models and datasets.

        Nothing of a plugin is kept unless all of it registers cleanly; a name another plugin
        already owns is always an error naming both.
        """
        if self.pm.has_plugin(name):
            raise PluginError(f"two plugins are both named {name!r}")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._broken(name, f"has an invalid hook: {exc}")
            return False
        tables = {"capability": self.capabilities, "probe": self.probes, "model": self.models,
                  "dataset": self.datasets}
        hooks = {"capability": ("register_capabilities", _check_capability),
                 "probe": ("register_probes", _check_probe), "model": ("register_models", _check_model),
                 "dataset": ("register_datasets", _check_dataset)}
        collected: list[tuple[str, str, Any]] = []
        try:
            for what, (hook_name, check) in hooks.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    items: list[Any] = []
                    impl.function(register=items.append)
                    collected.extend((what, check(item, name), item) for item in items)
        except (Exception, SystemExit) as exc:
            self.pm.unregister(name=name)
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self._broken(name, f"failed while registering: {reason}")
            return False
        seen: dict[tuple[str, str], str] = {}
        for what, item_name, _item in collected:
            owner = tables[what][item_name].plugin if item_name in tables[what] else seen.get((what, item_name))
            if owner is not None:
                self.pm.unregister(name=name)
                raise PluginError(
                    f"{what} name {item_name!r} is registered by plugin {owner!r} already; plugin {name!r} "
                    f"cannot take it"
                )
            seen[(what, item_name)] = name
        for what, item_name, item in collected:
            tables[what][item_name] = Registered(item_name, item, name)
        self.distributions[name] = distribution
        if self._loaded:  # added by hand after loading: its names are checked now, not at the end of load()
            self._check_declarations({item_name for what, item_name, _ in collected if what in ("probe", "model")})
        return True

    def _check_declarations(self, names: set[str]) -> None:
        """Drop probes that require, and model classes that declare, a capability no plugin
        registered or whose interface the class does not implement (a lazily registered kind is
        checked when its class is first imported, in :meth:`model_class`)."""
        for name in sorted(names & set(self.probes)):
            reg = self.probes[name]
            unknown = set(reg.obj.requires) - set(self.capabilities)
            if unknown:
                del self.probes[name]
                self._broken(reg.plugin, f"registered probe {name!r}, which requires capabilities no installed "
                                         f"plugin registers: {', '.join(sorted(unknown))}")
        for name in sorted(names & set(self.models)):
            reg = self.models[name]
            if isinstance(reg.obj, LazyModel):
                continue
            try:
                self.check_model_class(reg.obj, reg.plugin)
            except PluginError as exc:
                del self.models[name]
                self._broken(reg.plugin, str(exc).removeprefix(f"plugin {reg.plugin!r} "))

    def check_model_class(self, cls: Any, plugin: str) -> None:
        """A model class must implement every interface it declares, and declare only registered
        capabilities: what probes are promised is what the class has."""
        declared = set(getattr(cls, "capabilities", None) or ())
        kind = getattr(cls, "kind", cls.__name__)
        unknown = declared - set(self.capabilities)
        if unknown:
            raise PluginError(f"plugin {plugin!r} registered model kind {kind!r}, which declares capabilities no "
                              f"installed plugin registers: {', '.join(sorted(unknown))}")
        for cap_name in sorted(declared):
            missing = self.capabilities[cap_name].obj.missing(cls)
            if missing:
                raise PluginError(f"plugin {plugin!r} registered model kind {kind!r}, which declares capability "
                                  f"{cap_name!r} but lacks {', '.join(missing)}")

    def _broken(self, name: str, reason: str) -> None:
        self.broken[name] = reason
        if self.strict:
            raise PluginError(f"plugin {name!r} {reason}")
        print(
            f"vizkit: plugin {name!r} {reason}; skipped (VIZKIT_STRICT_PLUGINS=1 makes this fatal)",
            file=sys.stderr,
        )

    # -- lookups ---------------------------------------------------------------------------
    def probe(self, name: str) -> Any:
        return _lookup(self.load().probes, name, "plugin")

    def model_class(self, kind: str) -> Any:
        obj = _lookup(self.load().models, kind, "model kind")
        if isinstance(obj, LazyModel):
            reg = self.models[kind]
            resolved = obj.resolve(reg.plugin)
            self.check_model_class(resolved, reg.plugin)
            obj = reg.obj = resolved
        return obj

    def capability(self, name: str) -> Any:
        return _lookup(self.load().capabilities, name, "capability")

    def model_summary(self, kind: str) -> dict[str, Any]:
        """What ``vizkit models`` lists for ``kind`` (summary, capabilities, train options).

        Model classes are LightningModules and importing Lightning takes seconds, so the listing
        of a lazily registered kind is cached (``$VIZKIT_CACHE_DIR``, default ``~/.cache/vizkit``)
        under a key made of its target and the size and mtime of every ``.py`` file of its
        top-level package: any edit there rebuilds it.
        """
        obj = _lookup(self.load().models, kind, "model kind")
        if not isinstance(obj, LazyModel):
            return _describe_model(obj)
        return cached("models", kind, source_key(obj.target), lambda: _describe_model(self.model_class(kind)),
                      check=lambda value: isinstance(value, dict) and {"summary", "capabilities", "options"} <= set(value))

    def code_key(self, *targets: Any) -> str | None:
        """A digest of the source of every package behind ``targets`` (probe or model classes,
        ``LazyModel``s, ``"pkg.mod:Name"`` strings) and of vizkit itself, which they call into:
        equal only while none of those files changed."""
        keys = []
        for target in (*targets, "vizkit.registry:PluginHost"):
            if isinstance(target, LazyModel):
                target = target.target
            elif isinstance(target, type):
                target = f"{target.__module__}:{target.__name__}"
            key = source_key(str(target))
            if key is None:
                return None
            keys.append(key)
        return hashlib.sha256(json.dumps(sorted(keys)).encode()).hexdigest()

    def dataset(self, name: str) -> Any:
        return _lookup(self.load().datasets, name, "dataset")

    def register_commands(self, cli: Any) -> None:
        """Let each plugin add CLI commands; taking an existing command name is an error."""
        owners = {name: "vizkit" for name in cli.commands}
        for impl in self.load().pm.hook.register_commands.get_hookimpls():
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except (Exception, SystemExit) as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._broken(impl.plugin_name, f"failed while adding commands: {type(exc).__name__}: {exc}")
                continue
            for cmd_name, command in list(cli.commands.items()):
                if cmd_name in before and before[cmd_name] is not command:
                    cli.commands[cmd_name] = before[cmd_name]
                    self._broken(impl.plugin_name, f"tried to replace command {cmd_name!r} of {owners[cmd_name]!r}; "
                                                   f"its commands were not added")
                    for added in set(cli.commands) - set(before):
                        del cli.commands[added]
                    break
                owners.setdefault(cmd_name, impl.plugin_name)


def _lookup(table: dict[str, Registered], name: str, what: str) -> Any:
    if name not in table:
        valid = ", ".join(sorted(table)) or "(none installed)"
        raise UnknownNameError(f"unknown {what} {name!r}; available: {valid}")
    return table[name].obj


def _distribution(ep: Any) -> str | None:
    return getattr(getattr(ep, "dist", None), "name", None)


def _core_model_entry_points() -> list[Any]:
    """vizkit's own model kinds (entry points into ``vizkit.models``), which every host loads."""
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if _distribution(ep) == "vizkit" and ep.value.startswith("vizkit.models.")]


def _check_capability(obj: Any, plugin: str) -> str:
    from .capabilities import Capability, check_name

    if not isinstance(obj, Capability):
        raise PluginError(f"plugin {plugin!r} registered {obj!r}, which is not a vizkit.Capability")
    try:
        check_name(obj.name)
    except ValueError as exc:
        raise PluginError(f"plugin {plugin!r} registered a capability with an {exc}") from None
    if obj.interface is not None and not isinstance(obj.interface, type):
        raise PluginError(f"plugin {plugin!r} registered capability {obj.name!r} whose interface is not a class")
    return obj.name


def _check_name(name: Any, what: str, plugin: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"plugin {plugin!r} registered a {what} with invalid name {name!r}")
    return name


def _check_probe(obj: Any, plugin: str) -> str:
    from .probe import Probe

    if not (isinstance(obj, type) and issubclass(obj, Probe)):
        raise PluginError(f"plugin {plugin!r} registered {obj!r}, which is not a vizkit.Probe subclass")
    obj.validate_class()
    return _check_name(obj.name, "probe", plugin)


def _check_model(obj: Any, plugin: str) -> str:
    if isinstance(obj, LazyModel):
        if not re.match(r"^[\w.]+:\w+$", obj.target):
            raise PluginError(f"plugin {plugin!r} registered model kind {obj.kind!r} with target {obj.target!r}; "
                              f"expected 'package.module:ClassName'")
        return _check_name(obj.kind, "model kind", plugin)
    if not (isinstance(obj, type) and callable(getattr(obj, "from_checkpoint", None))):
        raise PluginError(
            f"plugin {plugin!r} registered model {obj!r} without a from_checkpoint classmethod"
        )
    return _check_name(getattr(obj, "kind", None), "model kind", plugin)


def _check_dataset(obj: Any, plugin: str) -> str:
    if not callable(getattr(obj, "build", None)):
        raise PluginError(f"plugin {plugin!r} registered dataset {obj!r} without a build callable")
    return _check_name(getattr(obj, "name", None), "dataset", plugin)


def _describe_model(cls: Any) -> dict[str, Any]:
    return {
        "summary": str(getattr(cls, "summary", "") or ""),
        "capabilities": sorted(getattr(cls, "capabilities", ())),
        "options": [[f"--{o.name.replace('_', '-')}", o.describe(), o.help] for o in getattr(cls, "train_options", ())],
    }


def _cache_dir() -> Path:
    return Path(os.environ.get("VIZKIT_CACHE_DIR") or Path.home() / ".cache" / "vizkit")


def cached(table: str, name: str, key: str | None, build: Callable[[], Any],
           check: Callable[[Any], bool] = lambda value: True) -> Any:
    """``build()``'s JSON value for ``name``, kept in ``$VIZKIT_CACHE_DIR/<table>.json`` (default
    ``~/.cache/vizkit``) and reused only while ``key`` is unchanged and ``check`` accepts the stored
    value (a hand-edited cache is rebuilt, never shown): for listings that would otherwise import
    Lightning (seconds) on every call. ``key=None`` never reuses nor stores."""
    cache_file = _cache_dir() / f"{table}.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    entry = cache.get(name)
    if key is not None and isinstance(entry, dict) and entry.get("key") == key and "value" in entry \
            and check(entry["value"]):
        return entry["value"]
    value = build()
    if key is not None:
        cache[name] = {"key": key, "value": value}
        try:
            from .output import atomic_write_bytes

            atomic_write_bytes(cache_file, json.dumps(cache, sort_keys=True).encode())
        except Exception:  # a read-only home only costs speed  # noqa: BLE001
            pass
    return value


def source_key(target: str) -> str | None:
    """A digest of the size and mtime of every source file of ``target``'s top-level package."""
    import importlib.util

    top = target.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        files = [p for root in spec.submodule_search_locations for p in sorted(Path(root).rglob("*.py"))]
    elif spec.origin:
        files = [Path(spec.origin)]  # a single-module plugin
    else:
        return None
    digest = hashlib.sha256(target.encode())
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, created and loaded on first use.

    A load cut short by Ctrl-C leaves no half-filled host behind: the next call (in a notebook,
    say) starts afresh instead of finding plugins registered twice.
    """
    global _host
    if _host is None:
        _host = PluginHost()
    try:
        return _host.load()
    except KeyboardInterrupt:
        _host = None
        raise


def reset_host(host: PluginHost | None = None) -> None:
    """Replace the process-wide host (tests use this to install a fresh one)."""
    global _host
    _host = host
