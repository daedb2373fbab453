"""The one data-module class every vizkit dataset is, plus the small helpers the factories share.

Every dataset is loaded eagerly into float32 tensors when it is built, because probes and the
checkpoint need the input shape and statistics (mean input norm, pixel range) before any training
starts. Shuffling and per-epoch resampling are seeded by ``(seed, epoch)`` only, so a run is
reproducible from its seed, and a Lightning run resumed at epoch ``e`` sees the same data as an
uninterrupted one (Lightning calls ``set_epoch`` on our samplers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from vizkit.errors import DataError

__all__ = [
    "VizDataModule",
    "coerce_choice",
    "coerce_int",
    "coerce_optional_int",
    "coerce_path",
    "compute_stats",
    "numpy_rng",
    "split_indices",
]

Primitive = str | int | float | bool | None


# --------------------------------------------------------------------------------------------
# seeding


def _seed_words(seed: int, *streams: int) -> list[int]:
    return [int(seed), *(int(s) for s in streams)]


def numpy_rng(seed: int, *streams: int) -> np.random.Generator:
    """A numpy generator for one independent stream of ``seed``.

    Streams (e.g. "fixed training draw", "test draw", "epoch 7") are separated through
    ``SeedSequence`` entropy rather than ``seed + k`` so that seed 1's test draw is never seed 0's
    training draw.
    """
    return np.random.default_rng(np.random.SeedSequence(_seed_words(seed, *streams)))


def _torch_generator(seed: int, *streams: int) -> torch.Generator:
    state = np.random.SeedSequence(_seed_words(seed, *streams)).generate_state(2, dtype=np.uint32)
    gen = torch.Generator()
    gen.manual_seed(int(state[0]) << 32 | int(state[1]))
    return gen


def split_indices(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index split of ``range(n)``, each part kept in ascending order.

    Sorting each part keeps the original file order inside a split, so ``limit`` ("first N
    training examples") means the same thing for every seed's permutation.
    """
    if not 0 < n_test < n:
        raise DataError(f"cannot hold out {n_test} of {n} examples as a test split")
    perm = numpy_rng(seed, 0x5917).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# --------------------------------------------------------------------------------------------
# option coercion (options may arrive from the CLI as strings)


def coerce_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int within [minimum, maximum]; strings like "16" are accepted (CLI)."""
    if isinstance(value, bool):
        raise DataError(f"option {name} must be an integer, got {value!r}")
    if isinstance(value, int | np.integer):
        out = int(value)
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str):
        try:
            out = int(value.strip())
        except ValueError:
            raise DataError(f"option {name} must be an integer, got {value!r}") from None
    else:
        raise DataError(f"option {name} must be an integer, got {value!r}")
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        lo = "" if minimum is None else str(minimum)
        hi = "" if maximum is None else str(maximum)
        raise DataError(f"option {name} must be in [{lo}, {hi}], got {out}")
    return out


def coerce_optional_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """Like :func:`coerce_int`, but ``None`` / "" / "none" mean "not set"."""
    if value is None or isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return coerce_int(value, name, minimum=minimum, maximum=maximum)


def coerce_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` as one of ``choices`` (case-insensitive), or a DataError listing them."""
    text = str(value).strip().lower()
    if text not in choices:
        raise DataError(f"option {name} must be one of {', '.join(choices)}; got {value!r}")
    return text


def coerce_path(value: Any, name: str) -> Path:
    """``value`` as a user-expanded path (existence is checked by the caller, who knows the files)."""
    if not isinstance(value, str | Path) or not str(value).strip():
        raise DataError(f"option {name} must be a path, got {value!r}")
    return Path(value).expanduser()


# --------------------------------------------------------------------------------------------
# statistics


def compute_stats(train: torch.Tensor, n_test: int) -> dict[str, Primitive]:
    """The dataset statistics stored in checkpoints, as plain Python numbers.

    ``mean_norm`` is the mean L2 norm of the flattened training inputs (after preprocessing):
    activation maximisation constrains its stimuli to a sphere of that radius so they live at the
    scale the model was trained on. Sums run in float64 so the numbers do not depend on batch order.
    """
    flat = train.reshape(train.shape[0], -1).double()
    pmin = float(flat.min())
    pmax = float(flat.max())
    return {
        "mean_norm": float(flat.norm(dim=1).mean()),
        "pixel_min": pmin,
        "pixel_max": pmax,
        "pixel_mean": float(flat.mean()),
        "pixel_std": float(flat.std(unbiased=False)),
        "n_train": int(train.shape[0]),
        "n_test": int(n_test),
        "binary_like": bool(pmin >= 0.0 and pmax <= 1.0),
        # every value exactly 0 or 1: a binary RBM may train on it without --binarize
        "binary": bool(((flat == 0) | (flat == 1)).all()),
    }


# --------------------------------------------------------------------------------------------
# datasets and samplers


class _Rows(Dataset):
    """Rows of a tensor, fetched a whole batch at a time as plain ``[B, *shape]`` tensors.

    ``__getitems__`` (used by ``DataLoader`` for batched fetching) gathers a batch with one
    indexing call instead of B ``__getitem__`` calls and a stack; for small models that per-row
    Python work was a large share of each training step.
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.data = data
        self.labels = labels  # given only for models trained with labels: rows become (x, y)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> Any:
        return self.data[index] if self.labels is None else (self.data[index], self.labels[index])

    def __getitems__(self, indices: list[int]) -> Any:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.data[idx] if self.labels is None else (self.data[idx], self.labels[idx])


def _collate_rows(batch: Any) -> Any:
    """A batch gathered by ``_Rows.__getitems__`` is final; anything else collates as usual."""
    if isinstance(batch, torch.Tensor) or isinstance(batch, tuple) and all(torch.is_tensor(b) for b in batch):
        return batch
    return default_collate(batch)


class _ResampledRows(_Rows):
    """Rows that are redrawn for every epoch by ``draw(epoch)`` (fresh natural-image patches)."""

    def __init__(self, draw: Callable[[int], torch.Tensor], initial: torch.Tensor) -> None:
        super().__init__(initial)
        self._draw = draw
        self.epoch: int | None = None

    def resample(self, epoch: int) -> None:
        if epoch != self.epoch:
            data = self._draw(epoch)
            if data.shape != self.data.shape:
                raise RuntimeError(f"epoch draw has shape {tuple(data.shape)}, "
                                   f"expected {tuple(self.data.shape)}")
            self.data = data
            self.epoch = epoch


class _EpochSampler(Sampler[int]):
    """Order of the training rows for one epoch, a function of (seed, epoch) only.

    Lightning calls ``set_epoch(current_epoch)`` before each epoch; a plain ``for`` loop over the
    loader just counts epochs 0, 1, 2, ... For resampled datasets the sampler also triggers the
    epoch's fresh draw (single process: ``num_workers=0``, so the draw is seen by the loader).

    The sampler also knows where the stream is (:meth:`position`: the epoch being read and the rows
    handed out so far), which a checkpoint stores, and :meth:`resume_at` continues from there. After
    a resume the sampler counts epochs itself and ignores ``set_epoch``: Lightning, resuming a run
    stopped by ``max_steps``, first finishes an empty remainder of the old epoch and numbers the next
    one a step too far, which would hand the run another epoch's data than the uninterrupted run saw.
    """

    def __init__(self, dataset: _Rows, seed: int, shuffle: bool) -> None:
        self.dataset = dataset
        self.seed = seed
        self.shuffle = shuffle
        self._epoch = 0
        self._skip = 0
        self._resumed = False
        self._reading: int | None = None  # the epoch handed out last
        self._rows = 0  # rows of it handed out so far

    def set_epoch(self, epoch: int) -> None:
        if not self._resumed:
            self._epoch = int(epoch)

    def resume_at(self, epoch: int, rows: int) -> None:
        """Continue the stream at ``rows`` into ``epoch`` (a checkpoint's :meth:`position`)."""
        self._epoch, self._skip, self._resumed = int(epoch), int(rows), True

    def position(self) -> tuple[int, int]:
        """``(epoch, rows)``: where the next row comes from; with ``num_workers=0`` every row handed
        out has been trained on by the time Lightning writes a checkpoint."""
        if self._reading is None:
            return self._epoch, self._skip
        if self._rows >= len(self.dataset):
            return self._reading + 1, 0
        return self._reading, self._rows

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        epoch = self._epoch
        self._epoch += 1
        if isinstance(self.dataset, _ResampledRows):
            self.dataset.resample(epoch)
        n = len(self.dataset)
        skip, self._skip = min(self._skip, n), 0
        if self.shuffle:
            order = torch.randperm(n, generator=_torch_generator(self.seed, 0x5A3F, epoch)).tolist()[skip:]
        else:
            order = list(range(skip, n))
        self._reading, self._rows = epoch, skip
        return self._counted(order)

    def _counted(self, order: list[int]) -> Iterator[int]:
        for index in order:
            self._rows += 1
            yield index


# --------------------------------------------------------------------------------------------
# the data module


class VizDataModule(pl.LightningDataModule):
    """A dataset as vizkit knows it: tensors, input shape, statistics, and how to rebuild it.

    Batches are plain float32 tensors ``[B, *input_shape]`` (no labels, no tuples): most reference
    models are unsupervised and probes only ever need inputs. Labels, where the source has them,
    are available from :meth:`train_labels` / :meth:`test_labels`; a model trained with labels sets
    :attr:`with_labels` (in its ``setup``) and then gets ``(inputs, labels)`` batches.

    ``describe()`` is what a checkpoint stores; it holds only primitives plus tensors so it loads
    with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        name: str,
        train: torch.Tensor,
        test: torch.Tensor,
        *,
        options: Mapping[str, Primitive] | None = None,
        batch_size: Any = 100,
        seed: Any = 0,
        train_labels: torch.Tensor | None = None,
        test_labels: torch.Tensor | None = None,
        buffers: Mapping[str, torch.Tensor] | None = None,
        resample: Callable[[int], torch.Tensor] | None = None,
        extra_stats: Mapping[str, Primitive] | None = None,
        file_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
        file_names: Sequence[str] | None = None,
        file_size: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if train.ndim < 2 or test.ndim != train.ndim or train.shape[1:] != test.shape[1:]:
            raise DataError(f"dataset {name}: train {tuple(train.shape)} and test "
                            f"{tuple(test.shape)} must be [N, *input_shape] with the same shape")
        if train.shape[0] < 1 or test.shape[0] < 1:
            raise DataError(f"dataset {name}: needs at least one training and one test example")
        self.name: str = str(name)
        self.options: dict[str, Primitive] = {str(k): _primitive(k, v) for k, v in
                                              (options or {}).items()}
        self.batch_size: int = coerce_int(batch_size, "batch_size", minimum=1)
        self.seed: int = coerce_int(seed, "seed", minimum=0)
        self._resume_position: tuple[int, int] | None = None
        self._train_sampler: _EpochSampler | None = None
        self.num_workers: int = 0
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in train.shape[1:])
        self._train = train.detach().to(torch.float32).contiguous()
        self._test = test.detach().to(torch.float32).contiguous()
        self._train_labels = train_labels
        self._test_labels = test_labels
        self._buffers = {str(k): v.detach().clone() for k, v in (buffers or {}).items()}
        self._resample = resample
        self.stats: dict[str, Primitive] = compute_stats(self._train, int(test.shape[0]))
        if train_labels is not None:
            found = [t for t in (train_labels, test_labels) if t is not None and t.numel()]
            self.stats["n_classes"] = int(max(int(t.max()) for t in found)) + 1
        #: set by models trained with labels (the convnet): batches become ``(inputs, labels)``
        self.with_labels: bool = False
        for key, value in (extra_stats or {}).items():
            self.stats[str(key)] = _primitive(key, value)
        #: user data read from a file or folder: the file row of every (train, test) example, so
        #: probes report rows of the user's file rather than positions in a permuted split
        self.file_rows: tuple[torch.Tensor, torch.Tensor] | None = None
        if file_rows is not None:
            train_rows, test_rows = (torch.as_tensor(r, dtype=torch.long) for r in file_rows)
            if len(train_rows) != len(self._train) or len(test_rows) != len(self._test):
                raise DataError(f"dataset {name}: file_rows must give one row per training and test example")
            self.file_rows = (train_rows, test_rows)
        #: rows in the user's file (more than train + test when a ``limit`` option dropped some)
        self.file_size: int | None = None if file_rows is None else int(
            file_size if file_size is not None else len(self._train) + len(self._test))
        #: an image folder's file names in row order (row i is file_names[i]); None otherwise
        self.file_names: list[str] | None = None if file_names is None else [str(n) for n in file_names]
        #: the name of every class (class i is class_names[i]) where the dataset knows them; stored
        #: in :meth:`describe` so probes can name a classifier's classes (:mod:`vizkit.class_names`)
        self.class_names: list[str] | None = None if class_names is None else [str(n) for n in class_names]

    # ---- data access ---------------------------------------------------------------------

    def train_tensor(self) -> torch.Tensor:
        """All training inputs ``[N, *input_shape]`` (for resampled data: one fixed seeded draw)."""
        return self._train

    def test_tensor(self) -> torch.Tensor:
        """All test inputs ``[N, *input_shape]``; also what the validation loader yields."""
        return self._test

    def train_labels(self) -> torch.Tensor | None:
        """Integer class labels of :meth:`train_tensor` rows, or None when the data has none."""
        return self._train_labels

    def test_labels(self) -> torch.Tensor | None:
        """Integer class labels of :meth:`test_tensor` rows, or None when the data has none."""
        return self._test_labels

    @property
    def resampled(self) -> bool:
        """True when training batches are drawn fresh each epoch instead of reshuffled."""
        return self._resample is not None

    # ---- Lightning hooks -----------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or, for patches, freshly drawn) training batches, seeded by (seed, epoch)."""
        if self._resample is not None:
            if self.with_labels:
                raise DataError(f"dataset {self.name} is redrawn each epoch and has no labels")
            dataset: _Rows = _ResampledRows(self._resample, self._train)
            sampler = _EpochSampler(dataset, self.seed, shuffle=False)
        else:
            dataset = _Rows(self._train, self._labels(self._train_labels))
            sampler = _EpochSampler(dataset, self.seed, shuffle=True)
        if self._resume_position is not None:
            sampler.resume_at(*self._resume_position)
            self._resume_position = None
        self._train_sampler = sampler
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=_collate_rows,
                          num_workers=self.num_workers, generator=self._loader_generator())

    def data_position(self) -> tuple[int, int]:
        """``(epoch, rows)`` of the training stream, for a checkpoint (see :meth:`resume_data_at`)."""
        if self._train_sampler is None:
            return (0, 0) if self._resume_position is None else self._resume_position
        return self._train_sampler.position()

    def resume_data_at(self, epoch: int, rows: int) -> None:
        """Make the next training loader start ``rows`` into ``epoch``: a resumed run reads on where the
        checkpoint stopped, mid-epoch included, instead of where Lightning's epoch counter points."""
        self._resume_position = (int(epoch), int(rows))

    def _loader_generator(self) -> torch.Generator:
        """DataLoader draws a worker base seed from this generator each epoch instead of from torch's
        global one, which the model's noise draws from: data loading must not move the model's noise."""
        return _torch_generator(self.seed, 0x10AD)

    def val_dataloader(self) -> DataLoader:
        """The test split in order (vizkit has no separate validation split)."""
        return DataLoader(_Rows(self._test, self._labels(self._test_labels)), batch_size=self.batch_size,
                          shuffle=False, collate_fn=_collate_rows, num_workers=self.num_workers,
                          generator=self._loader_generator())

    def _labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels to pair with inputs when :attr:`with_labels` is set, else None."""
        if not self.with_labels:
            return None
        if labels is None:
            raise DataError(f"dataset {self.name} has no labels (mnist, digits and photos have)")
        return labels.to(torch.long)

    def test_dataloader(self) -> DataLoader:
        """Same batches as :meth:`val_dataloader`."""
        return self.val_dataloader()

    # ---- description ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What a checkpoint stores about the data: primitives, plus preprocessing tensors.

        ``buffers`` holds the arrays needed to reproduce preprocessing (e.g. the whitening matrix
        and mean of whitened patches); it is an empty dict for datasets without preprocessing.
        ``seed`` is included because some splits depend on it. ``class_names`` (a list of strings)
        is there only for datasets that name their classes.
        """
        described: dict[str, Any] = {
            "name": self.name,
            "options": dict(self.options),
            "input_shape": list(self.input_shape),
            "stats": dict(self.stats),
            "seed": self.seed,
            "buffers": {k: v.clone() for k, v in self._buffers.items()},
        }
        if self.class_names is not None:
            described["class_names"] = list(self.class_names)
        return described

    def __str__(self) -> str:
        # Lightning's __str__ builds every dataloader (a fresh patch draw); a summary is enough
        return self.__repr__()

    def __repr__(self) -> str:
        return (f"VizDataModule(name={self.name!r}, input_shape={self.input_shape}, "
                f"n_train={self.stats['n_train']}, n_test={self.stats['n_test']})")


def _primitive(key: Any, value: Any) -> Primitive:
    """Refuse anything a ``weights_only`` checkpoint could not hold as a plain value."""
    if value is None or isinstance(value, str | bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{key} must be finite, got {value!r}")
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise DataError(f"{key} must be a plain str/int/float/bool/None value, got {type(value).__name__}")
