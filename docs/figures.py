"""``make figures``: every image under docs/img built from a recipe (or a benchmark), never kept by hand.

``docs/img/figures.toml`` says where each image comes from: a file of one probe result of a gallery
recipe (``recipe``, ``model``, ``probe``, ``layer``, ``file``), or a benchmark command that writes
it (``command`` with ``{out}``, ``script``, and the model ``kinds`` whose code it runs). This script
builds every recipe named there (``vizkit gallery build``, reusing finished runs), copies the files
into docs/img and writes ``docs/img/manifest.json``: for each image its source, the commit it was
built at, the machine (the CPU and torch's thread count: the same commit trains to slightly
different models on another CPU, or on another number of threads), the SHA-256 of the image and a
**fingerprint of what it shows**, computed without training anything, from

* the recipe's [[model]] table and the [[probe]] table(s) of that model, probe and layer,
* the content hash of the model kind's code, vizkit's training harness and the dataset's module
  (:func:`vizkit.freshness.training_inputs`) and of the probe's code,
* for a command: the command, the script's content hash, the kinds' code and the files it reads
  (``inputs``, e.g. the recipe whose options it trains with).

tests/test_docs_figures.py recomputes every fingerprint and fails when one no longer matches (a
model kind, a probe or a recipe changed since the image was made) or an image's bytes differ from
its entry: run ``make figures`` and look at what changed.

    python docs/figures.py              # build what is missing, copy, write the manifest
    python docs/figures.py --check      # only compare (what the test does)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
SPEC = IMG / "figures.toml"
MANIFEST = IMG / "manifest.json"
BUILD = ROOT / "gallery" / "_build"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec() -> dict[str, dict[str, Any]]:
    """``{image name: where it comes from}`` from docs/img/figures.toml."""
    return tomllib.loads(SPEC.read_text())["images"]


def fingerprint(source: dict[str, Any]) -> str:
    """What an image shows, as a hash of everything that decides it (see the module docstring)."""
    from vizkit import freshness
    from vizkit.registry import get_host

    if "command" in source:
        kinds = sorted(source.get("kinds", []))
        host = get_host()
        made = {"command": source["command"], "script": freshness.file_sha256(ROOT / source["script"]),
                "code": {k: freshness.code_sha256([host.model_class(k)]) for k in kinds}}
        if source.get("inputs"):  # files the script reads (a recipe's options): only when listed, so
            made["inputs"] = {f: freshness.file_sha256(ROOT / f) for f in source["inputs"]}  # older entries keep theirs
        return _digest(made)
    recipe = tomllib.loads((ROOT / source["recipe"]).read_text())
    model = next(m for m in recipe["model"] if m["name"] == source["model"])
    probes = [p for p in recipe["probe"] if p.get("model") == source["model"]
              and p.get("probe", p.get("plugin")) == source["probe"]
              and source["layer"] in p.get("layers", [source["layer"]])]
    if not probes:
        raise SystemExit(f"{source['recipe']} has no [[probe]] {source['probe']} on {source['model']} "
                         f"{source['layer']}")
    trained = (freshness.training_inputs(model["kind"], model["data"], model.get("data_options", {}))
               if "kind" in model else None)
    probe_cls = get_host().probe(source["probe"])
    return _digest({"model": model, "probes": probes, "trained": trained,
                    "probe_code": freshness.code_sha256([probe_cls]), "file": source["file"]})


def _result_file(source: dict[str, Any]) -> Path:
    """The image inside the gallery build: ``<build>/<model>/<probe>-<layer>/<file>``."""
    from vizkit.unit_pages import layer_slug

    stem = Path(source["recipe"]).stem
    return BUILD / stem / source["model"] / f"{source['probe']}-{layer_slug(source['layer'])}" / source["file"]


def build(names: list[str] | None = None) -> None:
    """Build the recipes and commands the images come from, copy them and write the manifest."""
    from vizkit.machine import machine_name
    from vizkit.output import verified_meta

    images = spec()
    chosen = names or sorted(images)
    recipes = sorted({images[n]["recipe"] for n in chosen if "recipe" in images[n]})
    for recipe in recipes:
        out = BUILD / Path(recipe).stem
        print(f"[figures] vizkit gallery build {recipe} --out {out.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "vizkit", "gallery", "build", str(ROOT / recipe), "--out", str(out)],
                       check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    machine = machine_name()
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for name in chosen:
        source = images[name]
        if "command" in source:
            made = BUILD / name
            stamp, log = made.with_name(made.name + ".fingerprint"), made.with_name(made.name + ".log")
            wanted = fingerprint(source)
            if not (made.is_file() and stamp.is_file() and stamp.read_text() == wanted):
                command = source["command"].format(out=made)
                print(f"[figures] {command} > {log.relative_to(ROOT)}", flush=True)
                BUILD.mkdir(parents=True, exist_ok=True)
                with log.open("w") as output:  # the benchmark's table: docs quote its numbers
                    subprocess.run([sys.executable, *command.split()], cwd=ROOT, check=True, stdout=output)
                stamp.write_text(wanted)
            origin = {"command": source["command"], "log": str(log.relative_to(ROOT))}
        else:
            made = _result_file(source)
            if verified_meta(made.parent) is None or not made.is_file():
                raise SystemExit(f"{made} is not part of a verified result; rebuild {source['recipe']}")
            _check_made_by_todays_probe(made.parent, source)
            origin = {k: source[k] for k in ("recipe", "model", "probe", "layer", "file")}
            origin["result_fingerprint"] = json.loads((made.parent / "result.json").read_text())["fingerprint"]
        shutil.copyfile(made, IMG / name)
        # the CPU and threads too: the same commit trains to other last bits, so other images, on another
        manifest[name] = {**origin, "commit": commit, "machine": machine, "fingerprint": fingerprint(source),
                          "sha256": _sha256(IMG / name)}
        print(f"[figures] docs/img/{name} <- {made.relative_to(ROOT) if made.is_relative_to(ROOT) else made}")
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


def _check_made_by_todays_probe(folder: Path, source: dict[str, Any]) -> None:
    """Refuse a result whose probe code is not today's: the manifest's fingerprint is computed now,
    so a probe edited while ``make figures`` ran would otherwise vouch for an image of the old code."""
    from vizkit import freshness
    from vizkit.registry import get_host

    recorded = json.loads((folder / "result.json").read_text()).get("inputs", {}).get("code", {}).get("probe")
    today = freshness.code_sha256([get_host().probe(source["probe"])])
    if recorded != today:
        raise SystemExit(f"{folder} was made by other {source['probe']} code than today's (edited while make "
                         f"figures ran?); run make figures again")


def stale() -> list[str]:
    """One line per docs image whose manifest entry does not match what it claims to show."""
    images = spec()
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    problems = []
    on_disk = {p.name for p in IMG.glob("*.png")} | {p.name for p in IMG.glob("*.gif")}
    for name in sorted(on_disk - set(images)):
        problems.append(f"{name}: in docs/img but not in figures.toml (where does it come from?)")
    for name in sorted(images):
        entry = manifest.get(name)
        if entry is None:
            problems.append(f"{name}: no manifest entry (run make figures)")
        elif not (IMG / name).is_file() or _sha256(IMG / name) != entry["sha256"]:
            problems.append(f"{name}: the file is not the one the manifest records (edited by hand?)")
        elif fingerprint(images[name]) != entry["fingerprint"]:
            problems.append(f"{name}: what it shows changed since {entry['commit'][:10]} (recipe, model or probe "
                            "code); run make figures")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these images (default: all)")
    parser.add_argument("--check", action="store_true", help="only report stale images")
    args = parser.parse_args()
    if not args.check:
        build(args.names or None)
    problems = stale()
    print("\n".join(problems) or f"[figures] all {len(spec())} docs images match their manifest entries")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
