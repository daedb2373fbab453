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
from pathlib import Path
from typing import Any

from .errors import UsageError
from .output import (
    atomic_write_bytes,
    check_slug,
    ensure_writable,
    inside,
    out_lock,
    render_page,
    safe_href,
    sha256_file,
)

_MODEL_KEYS = {"name", "kind", "data", "epochs", "batch_size", "lr", "seed", "options", "data_options"}
_PROBE_KEYS = {"model", "probe", "plugin", "layers", "units", "options", "seed", "title"}
_INT_KEYS = {"epochs": 1, "batch_size": 1, "seed": 0}  # key -> minimum


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Parse and validate a recipe so mistakes surface before hours of training."""
    path = Path(path)
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
    names = set()
    for entry in models:
        _check_entry(entry, _MODEL_KEYS, "[[model]]", path)
        for key in ("name", "kind", "data"):
            if key not in entry:
                raise UsageError(f"{path}: a [[model]] lacks {key!r}")
            _check_type(entry, key, str, "a string", "[[model]]", path)
        try:
            check_slug(entry["name"], "[[model]] name")
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
        if entry["name"] in names:
            raise UsageError(f"{path}: two [[model]] tables are named {entry['name']!r}")
        names.add(entry["name"])
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


def _trained(ckpt: Path, stamp: Path, digest: str) -> bool:
    """Whether ``ckpt`` is the verified result of training this recipe entry.

    A stamp from before hashes were recorded (the bare digest) counts when the checkpoint still
    loads; the stamp is then rewritten with the checkpoint's hash.
    """
    try:
        text = stamp.read_text()
    except OSError:
        return False
    if text.strip() == digest and ckpt.is_file():
        from . import api
        from .errors import VizkitError

        try:
            api.load(ckpt)
        except VizkitError:
            return False
        atomic_write_bytes(stamp, json.dumps({"recipe": digest, "sha256": sha256_file(ckpt)}).encode())
        return True
    try:
        recorded = json.loads(text)
        return recorded["recipe"] == digest and recorded["sha256"] == sha256_file(ckpt)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build(recipe_path: str | Path, out: str | Path, progress: bool = True, force: bool = False) -> Path:
    """Train what the recipe asks for, run its probes and write ``out/index.html``.

    ``force`` lets the build replace an ``index.html`` (or probe results) in ``out`` that vizkit did
    not write there.
    """
    from . import api
    from .registry import get_host
    from .training import train

    recipe = read_recipe(recipe_path)
    host = get_host()
    for entry in recipe["probe"]:
        if entry["probe"] != "*":
            host.probe(entry["probe"])
    out = ensure_writable(out)
    _check_gallery_dir(out, force)
    out = ensure_writable(out, create=True)
    with out_lock(out):
        models: dict[str, Any] = {}
        for entry in recipe["model"]:
            ckpt = inside(out, out / "models" / f"{entry['name']}.pt")
            stamp = ckpt.with_suffix(".recipe")
            digest = _digest(entry)
            if not _trained(ckpt, stamp, digest):
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                if progress:
                    print(f"[gallery] training {entry['name']}: {entry['kind']} on {entry['data']}", flush=True)
                train(
                    entry["kind"], entry["data"], out=ckpt, epochs=entry.get("epochs", 1),
                    batch_size=entry.get("batch_size", 100), lr=entry.get("lr"), seed=entry.get("seed", 0),
                    model_options=entry.get("options", {}), data_options=entry.get("data_options", {}),
                    log_dir=inside(out, out / "logs"), progress=progress,
                )
                atomic_write_bytes(stamp, json.dumps({"recipe": digest, "sha256": sha256_file(ckpt)}).encode())
            models[entry["name"]] = api.load(ckpt)

        sections: list[dict[str, Any]] = []
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
                if every:  # only where the probe runs (a named probe that refuses a layer says why instead)
                    given = {k: v for k, v in entry.get("options", {}).items()
                             if k in {opt.name for opt in probe_cls.options}}
                    opts = {**probe_cls.default_options(), **given}
                    valid = [layer for layer in valid if probe_cls.can_run(model, layer, opts)]
                wanted = entry.get("layers", valid)
                skipped = [layer for layer in wanted if layer not in valid]
                if skipped and progress:
                    print(f"[gallery] {name} does not run on {', '.join(skipped)} of {entry['model']}; skipped",
                          file=sys.stderr, flush=True)
                for layer in [layer for layer in wanted if layer in valid]:
                    folder = check_slug(f"{name}-{layer}", "probe directory", allow_dots=True)
                    target = inside(out, out / entry["model"] / folder)
                    if progress:
                        print(f"[gallery] {name} on {entry['model']} {layer}", flush=True)
                    result = api.run_probe(
                        name, model, layer, units=entry.get("units"), out=target, seed=entry.get("seed", 0),
                        show_progress=progress, force=force, link_back="../../index.html",
                        **entry.get("options", {}),
                    )
                    sections.append({"model": entry["model"], "probe": name, "layer": layer,
                                     "title": entry.get("title", ""), "dir": f"{entry['model']}/{folder}",
                                     "thumbnail": _thumbnail(result)})
        page = _index(recipe, sections)
        atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"


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
    """A gallery replaces only its own index.html (a page vizkit wrote: it says so in its head)."""
    page = out / "index.html"
    if force or not page.exists():
        return
    try:
        ours = '<meta name="generator" content="vizkit' in page.read_text(errors="replace")[:2000]
    except OSError:
        ours = False
    if not ours and not (out / "models").is_dir():
        raise UsageError(f"--out {out} already has an index.html that vizkit did not write; choose another "
                         f"directory, or --force to replace it")


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
        opts = ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items())
        if "batch_size" in spec:
            opts += (", " if opts else "") + f"batch size {spec['batch_size']}"
        detail = f"{spec['kind']} on {spec['data']}{', ' + opts if opts else ''}, {spec.get('epochs', 1)} epoch(s)"
        cards = []
        for item in items:
            link = safe_href(f"{item['dir']}/index.html")
            # a recipe title covers all the entry's layers; the layer tells the cards apart
            heading = f"{item['title']} — {item['layer']}" if item["title"] else f"{item['probe']} — {item['layer']}"
            cards.append({"link": link, "heading": heading, "alt": f"{item['probe']} on {model_name} {item['layer']}",
                          "thumbnail": safe_href(f"{item['dir']}/{item['thumbnail']}") if item["thumbnail"] else None})
        models.append({"name": model_name, "detail": detail, "cards": cards})
    return render_page("gallery.html", title=recipe.get("title", "vizkit gallery"),
                       description=recipe.get("description", ""), models=models)
