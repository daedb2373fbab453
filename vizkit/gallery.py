"""``vizkit gallery build``: run a TOML recipe of trainings and probes into one static HTML site.

A recipe names models to train (``[[model]]``) and probes to run on them (``[[probe]]``).
Trained checkpoints and finished probe runs are reused when their inputs have not changed (and
their files still have the hashes recorded when they were written), so a gallery can be rebuilt
cheaply after editing one entry.

Everything a recipe names that becomes a path (model names, layers) must be a safe slug, and
every path is checked to resolve inside ``--out``; links on the page are built only from those
slugs, and all text is escaped by the Jinja2 template (``vizkit/templates/gallery.html``).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UsageError
from .output import (
    atomic_write_bytes,
    check_slug,
    ensure_writable,
    inside,
    is_vizkit_page,
    out_lock,
    read_record,
    render_page,
    safe_href,
    sha256_file,
)
from .paths import refuse_special
from .unit_pages import DEFAULT_PER_LAYER, LayerResults, layer_slug, write_unit_pages

_TRAIN_KEYS = {"kind", "epochs", "batch_size", "lr", "seed", "options", "data_options"}
_MODEL_KEYS = {"name", "data", "path", "module", "weights", "input_shape", "layers", *_TRAIN_KEYS}
#: how a [[model]] gets its model: trained from ``kind``, read from a checkpoint ``path``, or built
#: by a ``module`` factory (with ``weights``); exactly one of them
_SOURCES = ("kind", "path", "module")
_PROBE_KEYS = {"model", "probe", "plugin", "layers", "units", "options", "seed", "title"}
_INT_KEYS = {"epochs": 1, "batch_size": 1, "seed": 0}  # key -> minimum


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Parse and validate a recipe so mistakes surface before hours of training."""
    path = refuse_special(path, "recipe", UsageError)
    if not path.is_file():
        raise UsageError(f"no such recipe: {path}")
    try:
        recipe = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    models = recipe.get("model", [])
    probes = recipe.get("probe", [])
    if not isinstance(models, list) or not isinstance(probes, list):
        raise UsageError(f"{path}: 'model' and 'probe' must be tables written [[model]] and [[probe]]")
    if not models or not probes:
        raise UsageError(f"{path} needs at least one [[model]] and one [[probe]] table")
    for key in ("title", "description"):
        if key in recipe and not isinstance(recipe[key], str):
            raise UsageError(f"{path}: {key!r} must be a string, got {recipe[key]!r}")
    pages = recipe.get("unit_pages", DEFAULT_PER_LAYER)
    if isinstance(pages, bool) or not isinstance(pages, int) or not 0 <= pages <= 1000:
        raise UsageError(f"{path}: 'unit_pages' must be a number of unit pages per layer from 0 to 1000, got {pages!r}")
    names = set()
    for entry in models:
        _check_entry(entry, _MODEL_KEYS, "[[model]]", path)
        if "name" not in entry:
            raise UsageError(f"{path}: a [[model]] lacks 'name'")
        for key in ("name", "kind", "data", "path", "module", "weights"):
            _check_type(entry, key, str, "a string", "[[model]]", path)
        try:
            check_slug(entry["name"], "[[model]] name")
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
        if entry["name"] in names:
            raise UsageError(f"{path}: two [[model]] tables are named {entry['name']!r}")
        names.add(entry["name"])
        _check_source(entry, path)
        for key, minimum in _INT_KEYS.items():
            if key in entry:
                _check_int(entry, key, minimum, "[[model]]", path)
        if "lr" in entry:
            lr = entry["lr"]
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
                raise UsageError(f"{path}: 'lr' in [[model]] {entry['name']!r} must be a positive number, got {lr!r}")
        for key in ("options", "data_options"):
            _check_type(entry, key, dict, "a table such as { layers = \"500,500\" }", "[[model]]", path)
    for entry in probes:
        _check_entry(entry, _PROBE_KEYS, "[[probe]]", path)
        if entry.get("model") not in names:
            raise UsageError(f"{path}: [[probe]] refers to model {entry.get('model')!r}; models: {', '.join(sorted(names))}")
        if "plugin" in entry:  # the older name of the key
            if "probe" in entry:
                raise UsageError(f"{path}: a [[probe]] names both 'probe' and 'plugin' (the older name of 'probe')")
            entry["probe"] = entry.pop("plugin")
        if "probe" not in entry:
            raise UsageError(f"{path}: a [[probe]] lacks 'probe' (a probe name or \"*\" for all that run)")
        _check_type(entry, "probe", str, "a string", "[[probe]]", path)
        _check_type(entry, "title", str, "a string", "[[probe]]", path)
        _check_type(entry, "options", dict, "a table such as { steps = 100 }", "[[probe]]", path)
        if "layers" in entry and not (isinstance(entry["layers"], list)
                                      and all(isinstance(x, str) for x in entry["layers"]) and entry["layers"]):
            raise UsageError(f"{path}: 'layers' in [[probe]] must be a list of layer names such as [\"h1\", \"h2\"], "
                             f"got {entry['layers']!r}")
        if "units" in entry and (isinstance(entry["units"], bool) or not isinstance(entry["units"], str | int | list)):
            raise UsageError(f"{path}: 'units' in [[probe]] must be a string such as \"0:36\", got {entry['units']!r}")
        if "seed" in entry:
            _check_int(entry, "seed", 0, "[[probe]]", path)
    return recipe


def _check_source(entry: dict[str, Any], path: Path) -> None:
    """One way to get the model, and only the keys that go with it."""
    given = [key for key in _SOURCES if key in entry]
    where = f"{path}: [[model]] {entry['name']!r}"
    if len(given) != 1:
        raise UsageError(f"{where} needs exactly one of kind = ... (train it), path = ... (a checkpoint) or "
                         f"module = \"pkg.mod:Factory\" (your module){'; it has ' + ', '.join(given) if given else ''}")
    source = given[0]
    if source == "kind" and "data" not in entry:
        raise UsageError(f"{where} lacks 'data' (what to train the {entry['kind']} on)")
    extra = sorted(set(entry) & ({"weights", "input_shape", "layers"} if source != "module" else set()))
    extra += sorted(set(entry) & (_TRAIN_KEYS - {"kind"}) if source != "kind" else set())
    if source == "path" and "data" in entry:
        extra.append("data")
    if extra:
        raise UsageError(f"{where}: {extra[0]!r} does not go with {source} = ... (a {_SOURCE_WORDS[source]})")
    for key, what in (("path", "checkpoint"), ("weights", "weights")):
        if key in entry:  # before anything is written, like every other mistake in a recipe
            _recipe_file(path.parent, entry[key], entry["name"], what)
    if source == "module":
        if "input_shape" not in entry:
            raise UsageError(f"{where} lacks input_shape (one example's shape, e.g. [3, 64, 64])")
        shape = entry["input_shape"]
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                          for d in shape)):
            raise UsageError(f"{where}: input_shape must be a list of positive sizes such as [3, 64, 64], got {shape!r}")
        layers = entry.get("layers", [])
        if not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)):
            raise UsageError(f"{where}: layers must be a list of layer names, got {layers!r}")


_SOURCE_WORDS = {"kind": "model trained by the recipe", "path": "checkpoint, which records its own data",
                 "module": "module factory"}


def _check_entry(entry: Any, allowed: set[str], table: str, path: Path) -> None:
    if not isinstance(entry, dict):
        raise UsageError(f"{path}: each {table} must be a table, got {entry!r}")
    unknown = set(entry) - allowed
    if unknown:
        raise UsageError(f"{path}: unknown key {sorted(unknown)[0]!r} in {table}; allowed: {', '.join(sorted(allowed))}")


def _check_type(entry: dict[str, Any], key: str, kind: type, words: str, table: str, path: Path) -> None:
    if key in entry and not isinstance(entry[key], kind):
        raise UsageError(f"{path}: {key!r} in {table} must be {words}, got {entry[key]!r}")


def _check_int(entry: dict[str, Any], key: str, minimum: int, table: str, path: Path) -> None:
    from .validation import MAX_SEED

    value = entry[key]
    top = MAX_SEED if key == "seed" else 10**9
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= top:
        raise UsageError(f"{path}: {key!r} in {table} must be an integer from {minimum} to {top}, got {value!r}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _trained(ckpt: Path, stamp: Path, digest: str, code: dict[str, Any], say: Callable[[str], None]) -> bool:
    """Whether ``ckpt`` is the verified result of training this recipe entry with this code.

    The stamp records the ``[[model]]`` table's digest, the checkpoint's hash and what the training
    read besides the table (``code``: the model kind's code, vizkit's training harness, the dataset's
    code, the data files; see :func:`vizkit.freshness.training_inputs`): a change to any of them
    retrains. A stamp without a code hash (an older vizkit's) cannot say what made the checkpoint,
    so it retrains too, and ``say`` tells why in one line.
    """
    try:
        text = stamp.read_text()
    except OSError:
        return False
    try:
        recorded = json.loads(text)
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict):
        recorded = {"recipe": text.strip()}  # the first stamps held the bare digest
    if recorded.get("recipe") != digest or not ckpt.is_file():
        return False
    if not isinstance(recorded.get("code"), dict):
        say("its stamp has no code hash (written by an older vizkit); retraining")
        return False
    if recorded["code"] != code:
        labels = {"model": "the model kind's code", "training": "vizkit's training harness",
                  "data": "the dataset's code", "inputs": "the data files"}
        changed = [labels.get(key, key) for key in sorted(code) if recorded["code"].get(key) != code[key]]
        say(f"{', '.join(changed) or 'what it was trained from'} changed since it was trained; retraining")
        return False
    try:
        return recorded.get("sha256") == sha256_file(ckpt)
    except OSError:
        return False


def build(recipe_path: str | Path, out: str | Path, progress: bool = True, force: bool = False) -> Path:
    """Train what the recipe asks for, run its probes and write ``out/index.html``.

    ``force`` lets the build replace an ``index.html`` (or probe results) in ``out`` that vizkit did
    not write there.
    """
    from . import api
    from .registry import get_host

    recipe = read_recipe(recipe_path)
    host = get_host()
    for entry in recipe["probe"]:
        if entry["probe"] != "*":
            host.probe(entry["probe"])
    out = ensure_writable(out)
    _check_gallery_dir(out, force)
    out = ensure_writable(out, create=True)
    with out_lock(out):
        models = {entry["name"]: _model(entry, Path(recipe_path).parent, out, progress) for entry in recipe["model"]}

        sections: list[dict[str, Any]] = []
        counts = {"reused": 0, "computed": 0}
        by_layer: dict[tuple[str, str], LayerResults] = {}
        taken: set[tuple[str, str]] = set()  # (model, folder): no two runs share one
        for entry in recipe["probe"]:
            model = models[entry["model"]]
            have = list(model.layer_infos())
            for layer in entry.get("layers", ()):
                if layer not in have:
                    raise UsageError(f"{recipe_path}: [[probe]] on {entry['model']!r} names layer {layer!r}, which "
                                     f"the model does not have; its layers: {', '.join(have)}")
            every = entry["probe"] == "*"
            names = api.compatible_probes(model) if every else [entry["probe"]]
            if every and progress:
                for name in sorted(set(host.probes) - set(names)):
                    print(f"[gallery] {name} does not run on {entry['model']}: {_why_not(host.probe(name), model)}; "
                          f"skipped", file=sys.stderr, flush=True)
            for name in names:
                probe_cls = host.probe(name)
                valid = probe_cls.valid_layers(model)
                options = _read_from(Path(recipe_path).parent, entry.get("options", {}))
                if every:  # each probe takes its own options, and runs only where it can (a named probe
                    # that refuses a layer says why instead)
                    options = {k: v for k, v in options.items() if k in {opt.name for opt in probe_cls.options}}
                    opts = {**probe_cls.default_options(), **options}
                    valid = [layer for layer in valid if probe_cls.can_run(model, layer, opts)]
                wanted = entry.get("layers", valid)
                skipped = [layer for layer in wanted if layer not in valid]
                if skipped and progress:
                    print(f"[gallery] {name} does not run on {', '.join(skipped)} of {entry['model']}; skipped",
                          file=sys.stderr, flush=True)
                for layer in [layer for layer in wanted if layer in valid]:
                    folder = _result_folder(entry["model"], name, layer, entry, taken)
                    target = inside(out, out / entry["model"] / folder)
                    if progress:
                        print(f"[gallery] {name} on {entry['model']} {layer}", flush=True)
                    heading = f"{entry['model']} · {entry.get('title') or name} — {layer}"
                    result = api.run_probe(
                        name, model, layer, units=entry.get("units"), out=target, seed=entry.get("seed", 0),
                        show_progress=progress, force=force, link_back="../../index.html", page_heading=heading,
                        **options,
                    )
                    counts["reused" if result.meta.get("reused") else "computed"] += 1
                    if progress and result.meta.get("reused"):
                        print("[gallery]   reused: an identical finished run (files verified)", flush=True)
                    for note in result.meta.get("notes") or ():  # e.g. fewer examples than asked for
                        print(f"[gallery]   note: {note}", file=sys.stderr, flush=True)
                    by_layer.setdefault((entry["model"], layer), LayerResults(entry["model"], layer)).runs.append(
                        (probe_cls(), result, f"{entry['model']}/{folder}"))
                    sections.append({"model": entry["model"], "probe": name, "layer": layer,
                                     "title": entry.get("title", ""), "dir": f"{entry['model']}/{folder}",
                                     "thumbnail": _thumbnail(result)})
        limit = recipe.get("unit_pages", DEFAULT_PER_LAYER)
        unit_links = {key: write_unit_pages(out, results, limit, recipe.get("title", "vizkit gallery"))
                      for key, results in by_layer.items()}
        for section in sections:
            section["units"] = unit_links.get((section["model"], section["layer"]), {})
        page = _index(recipe, sections)
        atomic_write_bytes(out / "index.html", page.encode())
    if progress:  # one line a reader can trust: was anything recomputed?
        print(f"[gallery] {counts['computed']} probe result(s) computed, {counts['reused']} reused "
              f"(identical finished runs, files verified); {sum(map(len, unit_links.values()))} unit page(s)",
              flush=True)
    return out / "index.html"


def _model(entry: dict[str, Any], home: Path, out: Path, progress: bool) -> Any:
    """The model a [[model]] table names: trained (and reused while its table, checkpoint and code are
    unchanged), a checkpoint, or the user's module; relative paths are read from the recipe's
    folder. Probe results on a checkpoint or module are reused by the files' hashes (the probe
    fingerprint holds them)."""
    from . import api

    if "path" in entry:
        ckpt = _recipe_file(home, entry["path"], entry["name"], "checkpoint")
        return api.load(ckpt)
    if "module" in entry:
        weights = _recipe_file(home, entry["weights"], entry["name"], "weights") if "weights" in entry else None
        if str(home.resolve()) not in sys.path:
            sys.path.insert(0, str(home.resolve()))  # the module sits next to the recipe, as it would next to you
        model = api.load_module(entry["module"], weights, entry["input_shape"], entry.get("layers") or None)
        if "data" in entry:
            data = entry["data"]
            local = home / data
            model.data_info = {"name": str(local.resolve()) if local.exists() else data}
        return model
    return train_entry(entry, out, progress)


#: probe options whose value may name a file or folder; in a recipe they are read from its folder
_PATH_OPTIONS = ("data", "labels", "from_dir")


def _read_from(home: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Probe options with relative paths that exist next to the recipe made absolute, so a recipe
    and its data travel together (``data = "photos"`` beside the recipe is that folder)."""
    resolved = dict(options)
    for key in _PATH_OPTIONS:
        value = options.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and (home / value).exists():
            resolved[key] = str((home / value).resolve())
    return resolved


def _recipe_file(home: Path, name: str, model: str, what: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else home / name
    if not path.is_file():
        raise UsageError(f"[[model]] {model!r} names {what} {name!r}, which does not exist (relative paths are read "
                         f"from the recipe's folder {home})")
    return path


def train_entry(entry: dict[str, Any], out: Path, progress: bool = True) -> Any:
    """The model of a recipe's ``[[model]]`` table, trained into ``out``/models as the gallery build
    trains it, or that build's own file while the table, the checkpoint and the code are unchanged.

    Public so a script that needs a recipe's model (a benchmark drawing its training record) shares
    the gallery's copy instead of training a second one.
    """
    from . import api
    from .freshness import training_inputs
    from .training import train

    ckpt = inside(out, out / "models" / f"{entry['name']}.pt")
    stamp = ckpt.with_suffix(".recipe")
    digest = _digest(entry)
    code = training_inputs(entry["kind"], entry["data"], entry.get("data_options", {}))

    def say(line: str) -> None:
        if progress:
            print(f"[gallery] {entry['name']}: {line}", flush=True)

    if not _trained(ckpt, stamp, digest, code, say):
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"[gallery] training {entry['name']}: {entry['kind']} on {entry['data']}", flush=True)
        train(
            entry["kind"], entry["data"], out=ckpt, epochs=entry.get("epochs", 1),
            batch_size=entry.get("batch_size", 100), lr=entry.get("lr"), seed=entry.get("seed", 0),
            model_options=entry.get("options", {}), data_options=entry.get("data_options", {}),
            log_dir=inside(out, out / "logs"), progress=progress,
        )
        atomic_write_bytes(stamp, json.dumps({"recipe": digest, "sha256": sha256_file(ckpt), "code": code}).encode())
    return api.load(ckpt)


def _why_not(probe_cls: Any, model: Any) -> str:
    """One line on why ``plugin = "*"`` leaves a probe out: a capability, no layer, or its refusal."""
    missing = set(probe_cls.requires) - set(model.capabilities)
    if missing:
        return f"it needs {', '.join(sorted(missing))}"
    layers = probe_cls.valid_layers(model)
    if not layers:
        return "no layer of the model suits it"
    return probe_cls.refusal(model, layers[0], probe_cls.default_options()) or "it refuses every layer"


def _check_gallery_dir(out: Path, force: bool) -> None:
    """A gallery replaces only its own index.html (a page vizkit wrote: it says so in its head), and
    is never built over a probe's result folder, whose index.html is part of that verified result."""
    record = read_record(out)
    if record.state == "vizkit":
        probe = record.meta.get("probe")
        what = f"the result of probe {probe!r}" if isinstance(probe, str) else "a vizkit result"
        raise UsageError(f"--out {out} holds {what} (its result.json); a gallery needs a directory of its own")
    page = out / "index.html"
    if force or not page.exists():
        return
    if not is_vizkit_page(page) and not (out / "models").is_dir():
        raise UsageError(f"--out {out} already has an index.html that vizkit did not write; choose another "
                         f"directory, or --force to replace it")


def _result_folder(model: str, probe: str, layer: str, entry: dict[str, Any], taken: set[tuple[str, str]]) -> str:
    """The folder of one probe run, unique in the gallery: ``PROBE-LAYER``, and for a later
    [[probe]] entry with the same model, probe and layer that name plus a digest of what sets the
    entry apart (units, options, seed, title), so each card shows its own run and a rebuild of the
    same recipe finds the same folders."""
    base = check_slug(f"{probe}-{layer_slug(layer)}", "probe directory", allow_dots=True)
    folder = base
    if (model, folder) in taken:
        tag = _digest([entry.get(key) for key in ("units", "options", "seed", "title")])[:8]
        folder, n = f"{base}-{tag}", 2
        while (model, folder) in taken:  # entries alike in all of that: numbered in recipe order
            folder, n = f"{base}-{tag}-{n}", n + 1
    taken.add((model, folder))
    return folder


def _thumbnail(result: Any) -> str | None:
    """The figure the probe declared as its thumbnail (``meta["thumbnail"]``; default its first)."""
    name = result.meta.get("thumbnail_file")
    files = [Path(p).name for p in result.files] or result.meta.get("files", [])
    if isinstance(name, str) and name in files:
        return name
    images = [f for f in files if f.endswith((".png", ".gif"))]
    return images[0] if images else None


def _index(recipe: dict[str, Any], sections: list[dict[str, Any]]) -> str:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for section in sections:
        by_model.setdefault(section["model"], []).append(section)
    models = []
    for model_name, items in by_model.items():
        spec = next(m for m in recipe["model"] if m["name"] == model_name)
        detail = _model_detail(spec)
        cards = []
        for item in items:
            link = safe_href(f"{item['dir']}/index.html")
            # a recipe title covers all the entry's layers; the layer tells the cards apart
            heading = f"{item['title']} — {item['layer']}" if item["title"] else f"{item['probe']} — {item['layer']}"
            cards.append({"link": link, "heading": heading, "alt": f"{item['probe']} on {model_name} {item['layer']}",
                          "thumbnail": safe_href(f"{item['dir']}/{item['thumbnail']}") if item["thumbnail"] else None,
                          "units": [{"unit": u, "href": href} for u, href in item.get("units", {}).items()]})
        models.append({"name": model_name, "detail": detail, "cards": cards})
    return render_page("gallery.html", title=recipe.get("title", "vizkit gallery"),
                       description=recipe.get("description", ""), models=models)


def _model_detail(spec: dict[str, Any]) -> str:
    """One line on where a [[model]] comes from, for its heading."""
    if "path" in spec:
        return f"checkpoint {spec['path']}"
    if "module" in spec:
        shape = "x".join(map(str, spec["input_shape"]))
        weights = f" with weights {spec['weights']}" if "weights" in spec else " (its initial weights)"
        return f"module {spec['module']}{weights}, input {shape}" + (f", data {spec['data']}" if "data" in spec else "")
    opts = ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items())
    if "batch_size" in spec:
        opts += (", " if opts else "") + f"batch size {spec['batch_size']}"
    return f"{spec['kind']} on {spec['data']}{', ' + opts if opts else ''}, {spec.get('epochs', 1)} epoch(s)"
