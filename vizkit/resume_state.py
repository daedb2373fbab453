"""What a Lightning checkpoint must carry so that a run cut into pieces is the run in one piece.

Lightning restores weights, optimiser state and its loop counters, but not the random generators
that training draws from (the ladder's corruption noise, an RBM's Gibbs samples, dropout), and a
checkpoint written mid-epoch (``--max-steps`` that stops inside an epoch) resumes with the epoch's
first batches again; resuming a ``--max-steps`` run, Lightning even numbers the next epoch one too
far. vizkit's data stream is a function of ``(seed, epoch)`` only (:mod:`vizkit.datasets.base`),
so its position is just "epoch e, r rows in", taken from the sampler itself; the generators' states
are saved as they were when the checkpoint was written. Both travel in the checkpoint, so
the pieces can run on different machines.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["ResumeState"]


def _capture() -> dict[str, Any]:
    """Every global generator, as plain tensors and numbers (checkpoints load with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():  # on other hardware the noise differs, the data does not
            torch.cuda.set_rng_state_all(cuda)


def ResumeState(pl: Any, datamodule: Any) -> Any:  # noqa: N802 - a class built on the lazily imported Lightning
    """A Lightning callback saving the generators' states in every checkpoint and, on ``--resume``,
    restoring them and telling ``datamodule`` where in its epoch the checkpoint stopped."""

    class _ResumeState(pl.Callback):
        #: set by a restored data position: the first epoch's end must put the stream back inside it
        _first_epoch = False

        @property
        def state_key(self) -> str:
            return "vizkit.ResumeState"

        def state_dict(self) -> dict[str, Any]:
            state: dict[str, Any] = {"rng": _capture()}
            position = getattr(datamodule, "data_position", None)
            if position is not None:
                state["data"] = torch.tensor(position(), dtype=torch.int64)
            return state

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            # Lightning restores callbacks after seed_everything and model building and before it
            # builds the data loaders (which draw nothing from the global generators: see
            # VizDataModule._loader_generator), so the run goes on from exactly the saved states
            if "rng" in state_dict:
                _restore(state_dict["rng"])
            resume_at = getattr(datamodule, "resume_data_at", None)
            if "data" in state_dict and resume_at is not None:
                resume_at(*(int(v) for v in state_dict["data"].tolist()))
                self._first_epoch = True

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # Resumed at an epoch's end, Lightning may take a batch or more of the next epoch's
            # stream as the rest of the old epoch and then begin a new one; the stream must read on
            # inside that epoch rather than start the one after it (the sampler counts every
            # iterator it hands out as an epoch)
            if not self._first_epoch:
                return
            self._first_epoch = False
            sampler = getattr(datamodule, "_train_sampler", None)  # the loader Lightning keeps using
            if sampler is not None:
                epoch, rows = datamodule.data_position()
                if rows:
                    sampler.resume_at(epoch, rows)

    return _ResumeState()
