"""Tiled convolutional neural network (Le, Ngiam, Chen, Chia, Koh & Ng 2010), one layer, pretrained by TICA.

Simple units look at local receptive fields (``field``×``field`` pixels, stride 1) of a grey image.
Their weights are *tiled*: units ``tile`` positions apart (in rows and in columns) share weights,
so every map holds tile² different filters, and ``tile = 1`` is an ordinary convolution. Pooling
units take the square root of the summed squares of a ``pool``×``pool`` neighbourhood of simple
units of the same map — the L2 pooling that lets a pooling unit respond to a feature wherever it
sits in the neighbourhood, and, when the pooled filters differ (tile > 1), to several features.

Pretraining is topographic ICA: minimise Σ pooling activations over the data subject to
orthonormal filters. Only simple units with *the same receptive field* can be redundant, so, as in
the paper, orthonormality is imposed per tile position: the ``maps`` filters at tile offset
(a, b) form a matrix W_ab whose rows are orthonormalised after every optimiser step by the
symmetric projection W ← (WWᵀ)^-½ W (computed as UVᵀ from the SVD W = USVᵀ). TICA needs whitened
input: on ``--data patches`` the model sets its own data defaults (``data_defaults``), ZCA whitening
(which keeps whitened patches local) and 100,000 fresh patches per epoch, so that the plain
``vizkit train tcnn --data patches`` (one epoch, 1,000 updates) learns localized, oriented Gabor-like
filters (most of them by the gabor probe's measure; docs/models/tcnn.md has the numbers). Why these values:
without whitening the objective (minimise pooled energy subject to orthonormal filters) simply picks
the lowest-variance, highest-frequency directions (checkerboards); with whitening every direction has
equal variance and only sparseness is left to choose, which is what yields Gabors. The learning rate
5e-3 (SGD, momentum 0.9) moves orthonormal random filters to Gabors within 1,000 updates; the
earlier 5e-4 left them near their random start (0% Gabor-like after 5 epochs of 20,000). The
objective sums over pooling positions, so the step scales with their number: on 16×16 patches (25
positions per map instead of 1) use ``--lr 5e-4`` (5e-3 left the filters as noise there).

Layers: ``simple`` and ``pool``, both flat, so that every simple or pooling unit can be probed on
its own (the paper visualises single pooling units). Unit index = map·(rows·cols) + row·cols + col.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import capabilities as caps
from ..errors import OptionError
from ..model import LayerInfo, Weights, layer_info
from ..options import Option
from .base import ReferenceModel


def orthonormalise_rows(w: torch.Tensor) -> torch.Tensor:
    """(WWᵀ)^-½ W for a batch of matrices [..., rows, cols] (rows ≤ cols): the nearest orthonormal rows."""
    u, _, vh = torch.linalg.svd(w, full_matrices=False)
    return u @ vh


class TCNN(ReferenceModel):
    kind = "tcnn"
    summary = "tiled CNN: local fields untied within a tile, sqrt (L2) pooling, topographic ICA pretraining"
    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS})
    #: dataset options this model kind uses unless ``-D`` says otherwise (see the module docstring)
    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {"patches": {"whiten": "zca", "n_train": 100000}}
    train_options = (
        Option("maps", int, 16, "maps (filters per tile position); the paper: 16", min=1, max=4096),
        Option("field", int, 10, "receptive field side of a simple unit, pixels", min=1, max=256),
        Option("tile", int, 2, "tile size k: simple units k positions apart share weights (1: convolution)",
               min=1, max=256),
        Option("pool", int, 3, "pooling neighbourhood side (simple units of one map)", min=1, max=256),
        Option("epsilon", float, 1e-3, "smoothing in sqrt(epsilon + sum of squares) (keeps the gradient finite)",
               min=0.0),
        Option("optimizer", str, "sgd", "optimiser, re-orthonormalising after every step (adam's per-coordinate "
               "steps favour single-pixel filters)", choices=("sgd", "adam")),
        Option("lr", float, 5e-3, "learning rate (sgd with momentum 0.9)", min=0.0),
    )

    def __init__(
        self,
        input_shape: list[int],
        maps: int = 16,
        field: int = 10,
        tile: int = 2,
        pool: int = 3,
        epsilon: float = 1e-3,
        optimizer: str = "sgd",
        lr: float = 5e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        channels, height, width = _check_geometry(input_shape, maps, field, tile, pool)
        self.simple_size = (height - field + 1, width - field + 1)
        self.pool_size = (self.simple_size[0] - pool + 1, self.simple_size[1] - pool + 1)
        gen = torch.Generator().manual_seed(0)
        init = torch.randn(tile * tile, maps, channels * field * field, generator=gen)
        self.weight = nn.Parameter(orthonormalise_rows(init).reshape(tile, tile, maps, channels * field * field))
        rows = torch.arange(self.simple_size[0]) % tile
        cols = torch.arange(self.simple_size[1]) % tile
        self.register_buffer("tile_row", rows, persistent=False)
        self.register_buffer("tile_col", cols, persistent=False)

    # -- the model ------------------------------------------------------------------------------
    def simple(self, x: torch.Tensor) -> torch.Tensor:
        """Simple-unit responses [B, maps, rows, cols]: each position uses its tile offset's filters."""
        field = self.hparams["field"]
        patches = F.unfold(x, field)  # [B, C·f·f, rows·cols], position p = row·cols + col
        per_position = self.weight[self.tile_row][:, self.tile_col]  # [rows, cols, maps, C·f·f]
        per_position = per_position.reshape(-1, self.hparams["maps"], patches.shape[1])  # [positions, maps, d]
        out = torch.bmm(patches.permute(2, 0, 1), per_position.transpose(1, 2))  # [positions, B, maps]
        return out.permute(1, 2, 0).reshape(x.shape[0], self.hparams["maps"], *self.simple_size)

    def pooled(self, simple: torch.Tensor) -> torch.Tensor:
        """sqrt(ε + Σ over pool×pool neighbours of one map of simple²) [B, maps, rows', cols']."""
        pool = self.hparams["pool"]
        energy = F.avg_pool2d(simple * simple, pool, stride=1) * (pool * pool)
        return torch.sqrt(energy + self.hparams["epsilon"])

    def tica_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Topographic ICA objective: mean over the batch of the summed pooling activations."""
        return self.pooled(self.simple(x)).flatten(1).sum(1).mean()

    @torch.no_grad()
    def orthonormalise_(self) -> None:
        """Project the filters of every tile offset back onto orthonormal rows."""
        w = self.weight.reshape(-1, *self.weight.shape[2:])
        self.weight.copy_(orthonormalise_rows(w).reshape(self.weight.shape))

    def filter_bank(self) -> torch.Tensor:
        """The distinct filters [maps, tile, tile, C, field, field] (map, tile row offset, tile column offset)."""
        k, f = self.hparams["tile"], self.hparams["field"]
        w = self.weight.detach().reshape(k, k, self.hparams["maps"], -1, f, f)
        return w.permute(2, 0, 1, 3, 4, 5)

    def unit_index(self, layer: str, map_index: int, row: int, col: int) -> int:
        """Flat unit index of ``(map, row, col)`` in ``layer`` (``simple`` or ``pool``)."""
        rows, cols = self.simple_size if layer == "simple" else self.pool_size
        layer_info(self, layer)
        if not (0 <= map_index < self.hparams["maps"] and 0 <= row < rows and 0 <= col < cols):
            raise OptionError(f"({map_index}, {row}, {col}) is outside {layer} ({self.hparams['maps']} maps of "
                              f"{rows}x{cols})")
        return (map_index * rows + row) * cols + col

    # -- probe protocol -------------------------------------------------------------------------
    def layer_infos(self) -> dict[str, LayerInfo]:
        maps = self.hparams["maps"]
        return {
            "simple": LayerInfo("simple", (maps * self.simple_size[0] * self.simple_size[1],)),
            "pool": LayerInfo("pool", (maps * self.pool_size[0] * self.pool_size[1],)),
        }

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        layer_info(self, layer)
        x = x.reshape(x.shape[0], *self.input_shape)
        simple = self.simple(x)
        out = simple if layer == "simple" else self.pooled(simple)
        return out.flatten(1)

    def weights(self, layer: str) -> Weights:
        """``simple``: each simple unit's filter placed in input space [units, C, H, W] (zero outside
        its field); ``pool``: the fixed 0/1 pooling matrix [pool units, simple units]."""
        layer_info(self, layer)
        dims = int(torch.tensor(self.input_shape).prod())
        if layer == "simple":
            # the simple layer is linear, so its responses to the pixel basis are its filters
            with torch.no_grad():
                basis = torch.eye(dims, dtype=self.weight.dtype, device=self.weight.device)
                responses = self.simple(basis.reshape(dims, *self.input_shape)).flatten(1)  # [D, units]
            return Weights(responses.T.reshape(-1, *self.input_shape).contiguous(), "input")
        positions = self.simple_size[0] * self.simple_size[1]
        pool = self.hparams["pool"]
        one_hot = torch.eye(positions).reshape(positions, 1, *self.simple_size)
        per_map = (F.avg_pool2d(one_hot, pool, stride=1) * (pool * pool)).reshape(positions, -1).T
        return Weights(torch.kron(torch.eye(self.hparams["maps"]), per_map.round().contiguous()), "simple")

    # -- Lightning ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.tica_loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.orthonormalise_()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.tica_loss(batch), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.hparams["optimizer"] == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"], momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])

    def after_stage(self, stage: int, trainer: Any, datamodule: Any) -> None:
        """Record the held-out TICA objective and how orthonormal the filters are."""
        with torch.no_grad():
            test = datamodule.test_tensor().to(self.weight.device)
            w = self.weight.reshape(-1, *self.weight.shape[2:])
            gram = w @ w.transpose(1, 2)
            self.metrics["tica"] = {
                "test_objective": float(self.tica_loss(test)),
                "orthonormality_error": float((gram - torch.eye(gram.shape[1], device=gram.device)).abs().max()),
            }

    @classmethod
    def hparams_from_options(cls, options, *, input_shape, data, lr):  # type: ignore[override]
        hp = super().hparams_from_options(options, input_shape=input_shape, data=data, lr=lr)
        _check_geometry(hp["input_shape"], hp["maps"], hp["field"], hp["tile"], hp["pool"])
        return hp


def _check_geometry(input_shape: list[int], maps: int, field: int, tile: int, pool: int) -> tuple[int, int, int]:
    """Refuse shapes the layer cannot have, with the numbers that would fit, before any training."""
    if len(input_shape) != 3:
        raise OptionError(f"tcnn needs image inputs [channels, height, width], got shape {list(input_shape)}")
    channels, height, width = (int(s) for s in input_shape)
    if field > min(height, width):
        raise OptionError(f"--field {field} does not fit {height}x{width} inputs (use -D size=... or a smaller field)")
    rows, cols = height - field + 1, width - field + 1
    if pool > min(rows, cols):
        raise OptionError(f"--pool {pool} exceeds the {rows}x{cols} simple units per map (field {field} on "
                          f"{height}x{width} inputs); use a larger input (-D size=...) or a smaller pool")
    if tile > min(rows, cols):
        raise OptionError(f"--tile {tile} exceeds the {rows}x{cols} simple units per map")
    if maps > channels * field * field:
        raise OptionError(f"--maps {maps} cannot be orthonormal in {channels * field * field} dimensions "
                          f"(field {field}); use at most that many maps")
    return channels, height, width
