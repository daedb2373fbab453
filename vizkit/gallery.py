"""``vizkit gallery build``: run a TOML recipe of trainings and probes into one static HTML site.

A recipe names models to train (``[[model]]``) and probes to run on them (``[[probe]]``).
Trained checkpoints and finished probe runs are reused when their inputs have not changed, so a
gallery can be rebuilt cheaply after editing one entry.
"""

from __future__ import annotations

import hashlib
import html
import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError
from .output import atomic_write_bytes, ensure_writable

_MODEL_KEYS = {"name", "kind", "data", "epochs", "batch_size", "lr", "seed", "options", "data_options"}
_PROBE_KEYS = {"model", "plugin", "layers", "units", "options", "seed", "title"}


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
    if not models or not probes:
        raise UsageError(f"{path} needs at least one [[model]] and one [[probe]] table")
    names = set()
    for entry in models:
        _check_keys(entry, _MODEL_KEYS, "[[model]]", path)
        for key in ("name", "kind", "data"):
            if key not in entry:
                raise UsageError(f"{path}: a [[model]] lacks {key!r}")
        if entry["name"] in names:
            raise UsageError(f"{path}: two [[model]] tables are named {entry['name']!r}")
        names.add(entry["name"])
    for entry in probes:
        _check_keys(entry, _PROBE_KEYS, "[[probe]]", path)
        if entry.get("model") not in names:
            raise UsageError(f"{path}: [[probe]] refers to model {entry.get('model')!r}; models: {', '.join(sorted(names))}")
        if "plugin" not in entry:
            raise UsageError(f"{path}: a [[probe]] lacks 'plugin' (a probe name or \"*\" for all compatible)")
    return recipe


def _check_keys(entry: dict[str, Any], allowed: set[str], table: str, path: Path) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise UsageError(f"{path}: unknown key {sorted(unknown)[0]!r} in {table}; allowed: {', '.join(sorted(allowed))}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build(recipe_path: str | Path, out: str | Path, progress: bool = True) -> Path:
    """Train what the recipe asks for, run its probes and write ``out/index.html``."""
    from . import api
    from .plugins import get_host
    from .training import train

    recipe = read_recipe(recipe_path)
    out = ensure_writable(out, create=True)
    host = get_host()
    for entry in recipe["probe"]:
        if entry["plugin"] != "*":
            host.probe(entry["plugin"])
    models: dict[str, Any] = {}
    for entry in recipe["model"]:
        ckpt = out / "models" / f"{entry['name']}.pt"
        stamp = ckpt.with_suffix(".recipe")
        digest = _digest(entry)
        if not (ckpt.exists() and stamp.exists() and stamp.read_text() == digest):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            if progress:
                print(f"[gallery] training {entry['name']}: {entry['kind']} on {entry['data']}", flush=True)
            train(
                entry["kind"], entry["data"], out=ckpt, epochs=int(entry.get("epochs", 1)),
                batch_size=int(entry.get("batch_size", 100)), lr=entry.get("lr"), seed=int(entry.get("seed", 0)),
                model_options=entry.get("options", {}), data_options=entry.get("data_options", {}),
                log_dir=out / "logs", progress=progress,
            )
            atomic_write_bytes(stamp, digest.encode())
        models[entry["name"]] = api.load(ckpt)

    sections: list[dict[str, Any]] = []
    for entry in recipe["probe"]:
        model = models[entry["model"]]
        names = api.compatible_probes(model) if entry["plugin"] == "*" else [entry["plugin"]]
        for name in names:
            probe_cls = host.probe(name)
            valid = probe_cls.valid_layers(model)
            wanted = entry.get("layers", valid)
            for layer in [layer for layer in wanted if layer in valid]:
                target = out / entry["model"] / f"{name}-{layer}"
                if progress:
                    print(f"[gallery] {name} on {entry['model']} {layer}", flush=True)
                result = api.run_probe(
                    name, model, layer, units=entry.get("units"), out=target, seed=int(entry.get("seed", 0)),
                    show_progress=progress, **entry.get("options", {}),
                )
                sections.append({"model": entry["model"], "probe": name, "layer": layer,
                                 "title": entry.get("title", ""), "dir": target.relative_to(out),
                                 "files": [p.name for p in result.files] or result.meta.get("files", [])})
    page = _index(recipe, sections)
    atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"


def _index(recipe: dict[str, Any], sections: list[dict[str, Any]]) -> str:
    esc = html.escape
    title = recipe.get("title", "vizkit gallery")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
        ".grid{display:flex;flex-wrap:wrap;gap:1.5em}.card{width:420px}"
        ".card img{width:100%;border:1px solid #ccc}h3{margin:.2em 0}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if recipe.get("description"):
        parts.append(f"<p>{esc(recipe['description'])}</p>")
    by_model: dict[str, list[dict[str, Any]]] = {}
    for section in sections:
        by_model.setdefault(section["model"], []).append(section)
    for model_name, items in by_model.items():
        spec = next(m for m in recipe["model"] if m["name"] == model_name)
        opts = ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items())
        if "batch_size" in spec:
            opts += (", " if opts else "") + f"batch size {spec['batch_size']}"
        parts.append(f"<h2>{esc(model_name)} <small>({esc(spec['kind'])} on {esc(spec['data'])}"
                     f"{', ' + esc(opts) if opts else ''}, {spec.get('epochs', 1)} epoch(s))</small></h2>")
        parts.append('<div class="grid">')
        for item in items:
            link = f"{item['dir']}/index.html"
            pngs = [f for f in item["files"] if f.endswith((".png", ".gif"))]
            alt = f"{item['probe']} on {model_name} {item['layer']}"
            image = (f'<a href="{esc(link)}"><img src="{esc(str(item["dir"]))}/{esc(pngs[0])}" alt="{esc(alt)}"></a>'
                     if pngs else "")
            # a recipe title covers all the entry's layers; the layer tells the cards apart
            heading = f"{item['title']} — {item['layer']}" if item["title"] else f"{item['probe']} — {item['layer']}"
            parts.append(f'<div class="card"><h3><a href="{esc(link)}">{esc(heading)}</a></h3>{image}</div>')
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
