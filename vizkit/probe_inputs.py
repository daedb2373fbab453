"""Dataset examples for probes that look at real inputs (topk, deconv, occlusion, invcurves, evolution).

Two ideas shared by those probes live here, once:

- :func:`load_examples`: the ``-o data NAME|PATH`` option → images (and labels when the data has
  them). Empty means the model's own data, rebuilt from the checkpoint's description (same
  options and seed, so the ``test`` split really is the held-out part).
- :func:`top_examples`: the k examples that drive each unit hardest, found in one pass over the
  data in batches with a running top-k per unit (never a sort of all N × units scores).

The user's data is the user's data: a ``.npy``/``.npz``/image folder (given with ``-o data`` or
recorded as the model's own training data) is used *whole, in file order* by default (``-o split
auto``), and every index a probe reports is a row of that file (``Examples.rows``), never a
position in the seeded 90/10 split that training uses. A registered dataset keeps its held-out
``test`` split by default, because there the split is what makes the examples unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import DataError, OptionError
from .model import LayerInfo, ProbeModel
from .options import Option

#: ``auto``: ``test`` for a registered dataset, ``all`` (in file order) for a user's file or folder
SPLITS = ("auto", "test", "train", "all")


@dataclass
class Examples:
    """Images ``[N, *input_shape]``, integer labels ``[N]`` (or None) and where they came from.

    ``rows[i]`` is the row of the source that example i is (for a user's file: its row in the
    file, or its position in the folder's sorted file list; for a registered dataset: its position
    in the split), so probes report ``rows[idx]`` and the user can look the example up.
    ``names[i]`` is example i's file name when the source is an image folder. ``notes`` collects
    one-line remarks (fewer examples used than asked for) that probes put in ``meta["notes"]``.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str
    rows: torch.Tensor = None  # type: ignore[assignment]  # default: 0..N-1, filled in __post_init__
    names: list[str] | None = None
    #: every file name of the source folder in row order (``file_names[row]``), or None
    file_names: list[str] | None = None
    #: how many examples the source holds in all, and the split and limit that chose these
    held: int = 0
    split: str = ""
    limit: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = int(self.images.shape[0])
        self.rows = torch.arange(n) if self.rows is None else torch.as_tensor(self.rows, dtype=torch.long)
        if self.rows.shape != (n,):
            raise ValueError(f"Examples: rows has shape {tuple(self.rows.shape)}, expected ({n},)")
        self.held = self.held or n

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(offset, images[offset:offset + size])`` over the whole set."""
        for start in range(0, self.images.shape[0], size):
            yield start, self.images[start:start + size]

    def rows_of(self, positions: Any) -> np.ndarray:
        """Source rows (int64, same shape) of examples at ``positions`` (a tensor, array or list):
        what a probe reports as its ``indices``."""
        idx = torch.as_tensor(np.asarray(positions.cpu() if torch.is_tensor(positions) else positions),
                              dtype=torch.long)
        return self.rows[idx].numpy().astype(np.int64)

    def shortage(self, wanted: str, fewer: str = "") -> str:
        """One line for ``wanted`` (e.g. "option 'k' is 9") when the examples are too few: how many
        were used, how many the data holds, which split/limit chose them and how to change it
        (``fewer``: the smaller request that would do, e.g. "-o k 2 or less")."""
        n = len(self)
        how = []
        if self.limit and self.limit == n:
            how.append("raise -o limit (0: no limit)")
        if self.split in ("test", "train") and self.held > n:
            how.append(f"-o split all uses all {self.held}")
        if not how:
            how.append("the data holds no more (-o data NAME|PATH chooses other data)")
        if fewer:
            how.append(fewer)
        tail = "; ".join(how)
        return f"{wanted}, but only {n} examples were used: {self.source}; {tail}"

    def pick(self, text: str, count: int, option: str = "images") -> list[int]:
        """:func:`pick` over these examples, noting (in :attr:`notes`) when an empty ``option``
        found fewer than the ``count`` examples it spreads over the data."""
        out = pick(text, len(self), count)
        if not str(text or "").strip() and len(out) < count:
            self.notes.append(f"used {len(out)} of {count} examples (option '{option}'): {self.source}")
        return out

    def meta(self) -> dict[str, Any]:
        """result.json entries every example-based probe writes: ``data_source``, the folder's
        ``example_names`` (file name of every row, so ``example_names[index]`` names a reported
        example) and ``notes`` when there are any."""
        out: dict[str, Any] = {"data_source": self.source}
        if self.file_names is not None:
            out["example_names"] = list(self.file_names)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def example_labels(meta: dict[str, Any], rows: Any, values: Any = None) -> list[str]:
    """Tile labels for examples a result reports: the file name for a folder (``example_names``),
    else ``#N`` (the row of a user's file, the example of a dataset's split), with the activation
    under it when ``values`` are given."""
    names = meta.get("example_names")
    out = []
    for i, row in enumerate(int(r) for r in rows):
        label = names[row] if names and 0 <= row < len(names) else f"#{row}"
        out.append(label if values is None else f"{label}\n{float(values[i]):.3g}")
    return out


def data_refusal(model: ProbeModel, data: str | None) -> str | None:
    """Why a probe that reads examples has none to read (one line), or None: no ``-o data`` and no
    training data on record (a wrapped module). Probes return it from ``refusal``, so listings do
    not offer them where they cannot run with their defaults."""
    if (data or "").strip() or (model.data_info or {}).get("name"):
        return None
    return "the model has no training data on record; choose images with -o data NAME|PATH"


class NeedsExamples:
    """Mixin for a probe with a ``data`` option that reads examples: it is offered (and runs) only
    where there are examples to read. Put it before :class:`vizkit.Probe` in the bases."""

    @classmethod
    def refusal(cls, model: ProbeModel, layer: str, options: dict[str, Any]) -> str | None:
        return data_refusal(model, options.get("data"))


def model_data(model: ProbeModel, data: str | None) -> tuple[str, Any, bool]:
    """``(name, data module, own)``: the data ``-o data`` names, else the model's own data rebuilt
    from its checkpoint description (same options and seed, so its test split is held out)."""
    from .registry import get_host
    from .training import build_data

    reason = data_refusal(model, data)
    if reason is not None:
        raise DataError(f"{reason} (datasets: {', '.join(sorted(get_host().datasets))}, or a .npy/.npz/image folder)")
    info = dict(model.data_info or {})
    name = (data or "").strip() or info.get("name")
    own = name == info.get("name")
    options = dict(info.get("options") or {}) if own else {}
    options = {k: v for k, v in options.items() if v is not None}
    seed = int(info.get("seed", 0)) if own else 0
    return name, build_data(name, options, 100, seed), own


def split_examples(dm: Any, split: str = "auto", limit: int = 0, auto: str = "test") -> Examples:
    """The examples of data module ``dm`` for ``split`` (``auto``: ``auto`` for registered data,
    ``all`` for a user's file), the first ``limit`` of them when ``limit`` > 0.

    A user's file (``dm.file_rows`` set) keeps file order in every split and reports file rows;
    a registered dataset's ``all`` is its train split then its test split.
    """
    if split not in SPLITS:
        raise OptionError(f"option 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    file_rows = getattr(dm, "file_rows", None)
    chosen = ("all" if file_rows is not None else auto) if split == "auto" else split
    tensors = {"test": [dm.test_tensor()], "train": [dm.train_tensor()],
               "all": [dm.train_tensor(), dm.test_tensor()]}[chosen]
    label_parts = {"test": [dm.test_labels()], "train": [dm.train_labels()],
                   "all": [dm.train_labels(), dm.test_labels()]}[chosen]
    images = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
    labels = None if any(lab is None for lab in label_parts) else torch.cat([lab.long() for lab in label_parts])
    if file_rows is not None:
        rows = {"test": file_rows[1], "train": file_rows[0], "all": torch.cat(file_rows)}[chosen]
        order = torch.argsort(rows, stable=True)
        rows, images = rows[order], images[order]
        labels = labels[order] if labels is not None else None
        held = int(getattr(dm, "file_size", None) or images.shape[0])
    else:
        rows = torch.arange(images.shape[0])
        held = int(dm.train_tensor().shape[0] + dm.test_tensor().shape[0])
    if limit and limit > 0:
        images, rows = images[:limit], rows[:limit]
        labels = labels[:limit] if labels is not None else None
    names_all = getattr(dm, "file_names", None)
    names = [names_all[int(r)] for r in rows] if names_all is not None else None
    return Examples(images, labels, _describe(dm, chosen, int(images.shape[0]), held, limit, file_rows is not None),
                    rows=rows, names=names, file_names=names_all, held=held, split=split, limit=int(limit or 0))


def _describe(dm: Any, split: str, n: int, held: int, limit: int, user: bool) -> str:
    """Where examples came from, readable after "the k examples of the ...": for a user's file how
    many of its rows and in which order, since its indices are rows of that file."""
    if not user:
        return f"{dm.name} {split} split ({n} images)"
    unit = "images" if getattr(dm, "file_names", None) is not None else "rows"
    order = "sorted by file name" if unit == "images" else "in file order"
    if split == "all":
        which = f"all {n} {unit}" if n == held else f"the first {n} of its {held} {unit} (-o limit {limit})"
        return f"data in {dm.name} ({which}, {order})"
    lim = f", first {n} (-o limit {limit})" if limit and limit > 0 else ""
    return f"{split} split of {dm.name} ({n} of its {held} {unit}, -o split {split}{lim}; indices are rows of the file)"


def load_examples(model: ProbeModel, data: str | None = None, split: str = "auto", limit: int = 0,
                  auto: str = "test") -> Examples:
    """The images a probe runs on, checked against the model's input shape.

    ``data``: a registered dataset name or a path to user data (.npy/.npz/image folder); empty or
    None: the dataset recorded in the model's checkpoint. ``split``: ``auto`` (default: the split
    named by ``auto`` for a registered dataset, all of a user's file in file order), ``test``,
    ``train`` or ``all``. ``limit`` > 0 keeps the first ``limit`` examples. ``Examples.rows``
    maps every example to its row of the source.
    """
    if split not in SPLITS:
        raise OptionError(f"option 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    name, dm, _ = model_data(model, data)
    examples = split_examples(dm, split, limit, auto)
    shape = tuple(int(s) for s in model.input_shape)
    if tuple(examples.images.shape[1:]) != shape:
        raise DataError(f"data {name!r} holds inputs of shape {tuple(examples.images.shape[1:])}, but the model "
                        f"takes {shape}; choose matching images with -o data NAME|PATH")
    return examples


def unit_scores(out: torch.Tensor, units: torch.Tensor, info: LayerInfo, position: tuple[int, int] | None = None,
                reduce: str = "mean") -> torch.Tensor:
    """[B, len(units)] scores from a layer output: a conv unit is its channel's spatial ``mean``
    (vizkit's usual notion), its ``max``, or the value at ``position``; other units are themselves."""
    if info.is_map:
        out = out.index_select(1, units.to(out.device))
        if position is not None:
            return out[:, :, position[0], position[1]]
        return out.amax(dim=(2, 3)) if reduce == "max" else out.mean(dim=(2, 3))
    return out.reshape(out.shape[0], -1).index_select(1, units.to(out.device))


def top_examples(
    score: Callable[[torch.Tensor], torch.Tensor],
    examples: Examples,
    k: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: Callable[[Any, str], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)``, each ``[units, k]``, best first: the k examples with the highest
    ``score(batch)`` ([B, units]) for every unit, in one pass with a running top-k.

    Ties are broken by the lower example index (a stable sort of the candidates, which are kept
    in that order), so the answer equals a full sort by (value descending, index ascending).
    """
    n = examples.images.shape[0]
    if k > n:
        raise OptionError(examples.shortage(f"option 'k' is {k}", f"choose -o k {n} or less"))
    best_v: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    batches = examples.batches(batch_size)
    if progress is not None:
        batches = progress(batches, "examples")
    with torch.no_grad():
        for start, batch in batches:
            vals = score(batch.to(device)).detach().double()  # [B, units]
            idx = torch.arange(start, start + batch.shape[0], device=vals.device).unsqueeze(1).expand_as(vals)
            if best_v is not None:
                vals, idx = torch.cat([best_v, vals]), torch.cat([best_i, idx])
            order = torch.sort(vals, dim=0, descending=True, stable=True).indices[:k]
            best_v, best_i = vals.gather(0, order), idx.gather(0, order)
    assert best_v is not None and best_i is not None
    return best_v.T.contiguous(), best_i.T.contiguous()


def _options() -> tuple[Option, ...]:
    return (
        Option("data", str, "", "images to use: a dataset name or a .npy/.npz/image-folder path "
               "(empty: the model's own data)"),
        Option("split", str, "auto", "which part of the data: auto (a registered dataset's held-out test split; "
               "all of a user's file or folder, in file order), test, train or all; indices are rows of the "
               "source", choices=SPLITS),
        Option("limit", int, 0, "use only the first N examples (0: all)", min=0),
    )


#: the ``-o data/split/limit`` options every example-based probe declares (same names, same help)
DATA_OPTIONS: tuple[Option, ...] = _options()

#: how a conv unit's activation is read: channel mean (default), its max, or one position
UNIT_OPTIONS: tuple[Option, ...] = (
    Option("position", str, "", "conv maps: 'row,col' reads the unit at that position instead of the channel mean"),
    Option("max", bool, False, "conv maps: a unit's activation is its channel's maximum instead of its mean"),
)


def pick(text: str, n: int, count: int) -> list[int]:
    """Indices into ``n`` examples from an ``images`` option: ``"a:b"``, ``"i,j,k"``, or empty for
    ``count`` indices spread evenly over the data (the built-in test splits are sorted by label,
    so the first few would all be one class)."""
    text = str(text or "").strip()
    try:
        if not text:
            out = sorted({int(round(v)) for v in torch.linspace(0, n - 1, min(count, n)).tolist()})
        elif ":" in text:
            lo, hi = (int(p) if p.strip() else d for p, d in zip(text.split(":", 1), (0, n), strict=True))
            out = list(range(lo, min(hi, n)))
        else:
            out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise OptionError(f"option 'images' must be 'a:b' or comma-separated indices, got {text!r}") from None
    if not out or any(not 0 <= i < n for i in out):
        raise OptionError(f"option 'images' {text!r} must pick examples 0..{n - 1} of the data")
    return out


def classifier_layer(model: ProbeModel, name: str, probe: str) -> str:
    """The layer whose softmax gives class probabilities: ``name`` when given (``-o output``), else
    ``logits`` or the model's last layer if it is flat; a conv map there is refused."""
    infos = model.layer_infos()
    if name.strip():
        if name not in infos:
            raise OptionError(f"option 'output': unknown layer {name!r}; valid layers: {', '.join(infos)}")
        return name
    if "logits" in infos:
        return "logits"
    last = list(infos)[-1]
    if infos[last].is_map:
        raise OptionError(f"{probe} needs the classifier's output layer for its probabilities; name it with "
                          "-o output LAYER")
    return last


def true_classes(labels: torch.Tensor | None, probs: torch.Tensor, layer: str) -> torch.Tensor:
    """The class whose probability a probe follows: the data's labels, or, without labels, the
    model's prediction ``probs.argmax(1)``; labels the layer has no output for are refused."""
    if labels is None:
        return probs.argmax(1)
    labels = labels.to(probs.device).long()
    if int(labels.max()) >= probs.shape[1]:
        raise OptionError(f"layer {layer!r} has {probs.shape[1]} outputs, too few for class labels up to "
                          f"{int(labels.max())}; name the classifier layer with -o output LAYER")
    return labels
