"""Dataset examples for probes that look at real inputs (topk, deconv, occlusion, invcurves, evolution).

Two ideas shared by those probes live here, once:

- :func:`load_examples`: the ``-o data NAME|PATH`` option → images (and labels when the data has
  them). Empty means the model's own data, rebuilt from the checkpoint's description (same
  options and seed, so the ``test`` split really is the held-out part).
- :func:`top_examples`: the k examples that drive each unit hardest, found in one pass over the
  data in batches with a running top-k per unit (never a sort of all N × units scores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import DataError, OptionError
from .model import LayerInfo, ProbeModel
from .options import Option

SPLITS = ("test", "train", "all")


@dataclass
class Examples:
    """Images ``[N, *input_shape]``, integer labels ``[N]`` (or None) and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str

    def batches(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(offset, images[offset:offset + size])`` over the whole set."""
        for start in range(0, self.images.shape[0], size):
            yield start, self.images[start:start + size]


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


def load_examples(model: ProbeModel, data: str | None = None, split: str = "test", limit: int = 0) -> Examples:
    """The images a probe runs on, checked against the model's input shape.

    ``data``: a registered dataset name or a path to user data (.npy/.npz/image folder); empty or
    None: the dataset recorded in the model's checkpoint. ``split``: ``test`` (default), ``train``
    or ``all`` (train then test). ``limit`` > 0 keeps the first ``limit`` examples.
    """
    from .registry import get_host
    from .training import build_data

    if split not in SPLITS:
        raise OptionError(f"option 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    reason = data_refusal(model, data)
    if reason is not None:
        raise DataError(f"{reason} (datasets: {', '.join(sorted(get_host().datasets))}, or a .npy/.npz/image folder)")
    info = dict(model.data_info or {})
    name = (data or "").strip() or info.get("name")
    own = name == info.get("name")
    options = dict(info.get("options") or {}) if own else {}
    options = {k: v for k, v in options.items() if v is not None}
    seed = int(info.get("seed", 0)) if own else 0
    dm = build_data(name, options, 100, seed)
    parts = {"test": [dm.test_tensor()], "train": [dm.train_tensor()],
             "all": [dm.train_tensor(), dm.test_tensor()]}[split]
    label_parts = {"test": [dm.test_labels()], "train": [dm.train_labels()],
                   "all": [dm.train_labels(), dm.test_labels()]}[split]
    images = torch.cat(parts) if len(parts) > 1 else parts[0]
    labels = None if any(lab is None for lab in label_parts) else torch.cat([lab.long() for lab in label_parts])
    if limit and limit > 0:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    shape = tuple(int(s) for s in model.input_shape)
    if tuple(images.shape[1:]) != shape:
        raise DataError(f"data {name!r} holds inputs of shape {tuple(images.shape[1:])}, but the model takes "
                        f"{shape}; choose matching images with -o data NAME|PATH")
    return Examples(images, labels, f"{dm.name} {split} split ({images.shape[0]} images)")


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
        raise OptionError(f"option 'k' is {k}, but the data holds only {n} examples")
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
        Option("split", str, "test", "which part of the data", choices=SPLITS),
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
