"""Names of a classifier's classes, for probes that show predicted or true classes.

A 1000-class model's class 381 means little to a reader; "goldfish" does. Names come from
whatever the user has at hand, most explicit first:

1. ``-o labels FILE``: a ``.txt`` with one name per line (line *i* names class *i*), or a ``.json``
   list of names, or a ``.json`` object ``{"381": "goldfish"}`` / ``{"381": ["n01443537",
   "goldfish"]}`` (the layout of torchvision's ImageNet index: the last item is the name);
2. the data file, when it is an ``.npz`` with a string array ``class_names`` (or a string array
   ``labels``; an integer ``labels``/``y`` holds per-example labels, not names);
3. the model's ``data_info["class_names"]``.

Without any of them classes are shown as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, OptionError
from .model import ProbeModel
from .paths import refuse_special

__all__ = ["class_names", "describe", "read_labels_file"]


def class_names(model: ProbeModel, data: str | None = None, labels: str | None = None,
                n_classes: int | None = None) -> list[str] | None:
    """Class names for ``model`` (see the module docstring for where they are looked for), or None.

    ``data`` is the probe's ``-o data`` (empty: the model's own data, whose recorded name is a
    path for user files). With ``n_classes``, names fewer than the classifier's outputs are
    refused: a short list is the wrong file, and naming half the classes would mislead.
    """
    if (labels or "").strip():
        names, origin = read_labels_file(Path(str(labels).strip()).expanduser()), f"labels file {labels}"
    else:
        origin = (data or "").strip() or str((model.data_info or {}).get("name") or "")
        names = _npz_names(Path(origin).expanduser()) if origin.lower().endswith(".npz") else None
        if names is None:
            recorded = (model.data_info or {}).get("class_names")
            names, origin = (None, "") if recorded is None else ([str(n) for n in recorded], "the model's data_info")
    if names is None:
        return None
    if n_classes is not None and len(names) < n_classes:
        error = OptionError if origin.startswith("labels file") else DataError
        raise error(f"{origin} names {len(names)} classes, but the classifier has {n_classes} outputs")
    return names


def read_labels_file(path: Path) -> list[str]:
    """The names in a ``.txt`` (one per line) or ``.json`` labels file; one-line OptionError if unreadable."""
    where = f"option 'labels': {path}"
    refuse_special(path, "labels file", OptionError)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"{where} cannot be read ({exc.__class__.__name__}: {exc})") from None
    if path.suffix.lower() == ".json":
        try:
            names = _json_names(json.loads(text))
        except (ValueError, TypeError) as exc:
            raise OptionError(f"{where} is not a JSON list of names or an index -> name object ({exc})") from None
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if not names:
        raise OptionError(f"{where} holds no class names")
    return names


def describe(cls: int, names: Sequence[str] | Mapping[int, str] | None, width: int = 18) -> str:
    """``"381 (goldfish)"``, or ``"381"`` without a name; long names are cut to ``width`` characters
    (a figure's key is narrow). ``names`` is the whole list or ``{class: name}`` for some classes."""
    if isinstance(names, Mapping):
        name = names.get(cls)
    else:
        name = names[cls] if names and 0 <= cls < len(names) else None
    if not name:
        return str(cls)
    return f"{cls} ({name if len(name) <= width else name[:width - 1] + '…'})"


def _json_names(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        indexed = {int(k): v[-1] if isinstance(v, list) else v for k, v in value.items()}
        if any(k < 0 for k in indexed):
            raise ValueError("negative class index")
        return [str(indexed.get(i, "")) for i in range(max(indexed, default=-1) + 1)]
    raise TypeError(f"found a JSON {type(value).__name__}")


def _npz_names(path: Path) -> list[str] | None:
    """A string ``class_names`` (or ``labels``) array of an ``.npz`` data file, or None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in ("class_names", "labels"):
                if key not in archive.files:
                    continue
                try:
                    arr = archive[key]
                except ValueError:  # an object array: refused without pickles
                    if key == "labels":
                        continue
                    raise DataError(f"{path}: 'class_names' must be a string array (np.array(names, dtype=str)), "
                                    "not an object array") from None
                if arr.dtype.kind in "US":
                    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.reshape(-1).tolist()]
                if key == "class_names":
                    raise DataError(f"{path}: 'class_names' holds {arr.dtype} values; expected a string array")
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return None
