"""Published numbers from the papers vizkit reproduces, read from ``paper_numbers.toml``.

Probes print them beside their own results and benchmarks beside theirs; reading them from one
data file keeps the copies from drifting apart. Typed accessors, so a misspelt key or a missing
row fails where it is read, not as a wrong number in a caption.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@cache
def _numbers() -> dict[str, Any]:
    return tomllib.loads(resources.files("vizkit").joinpath("paper_numbers.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Table1Row:
    """One row of Rasmus et al. (2015), Table 1."""

    data: str
    model: str
    sizes: str
    cost: float
    gamma_translation: tuple[float, ...] | None

    @property
    def label(self) -> str:
        return f"{self.data} {self.model} {self.sizes}"

    @property
    def hidden_layers(self) -> int:
        return self.sizes.count("-")


@dataclass(frozen=True)
class CapsuleThesis:
    """Tieleman (2014), ch. 2: the capsule autoencoder on full MNIST."""

    train_mse: float
    test_mse: float
    train_pct_var: float
    test_pct_var: float
    train_mse_dropout: float
    test_mse_dropout: float
    train_pct_var_dropout: float
    test_pct_var_dropout: float
    cluster_error_pct: float
    cluster_error_spread_pct: float
    cluster_seeds: int
    max_y_ge_099_pct: float
    max_y_ge_09_pct: float
    entropy_pct_of_log_k: float


@cache
def rasmus2015_table1() -> tuple[Table1Row, ...]:
    rows = []
    for row in _numbers()["rasmus2015"]["table1"]:
        gamma = row.get("gamma_translation")
        rows.append(Table1Row(data=row["data"], model=row["model"], sizes=row["sizes"], cost=float(row["cost"]),
                              gamma_translation=None if gamma is None else tuple(float(g) for g in gamma)))
    return tuple(rows)


def rasmus2015_row(data: str, model: str, hidden_layers: int | None = None) -> Table1Row:
    """The row of one decoder (``"Mod"``) on one data set (``"CIFAR-10"`` or ``"O&F"``), with
    ``hidden_layers`` layers (default: the paper's analysed depth, 2; none for the Linear model).
    With one layer Add and Mod are the same model, the paper's row "Add/Mod"."""
    if hidden_layers is None:
        hidden_layers = 0 if model == "Linear" else 2
    for row in rasmus2015_table1():
        if row.data == data and model in (row.model, *row.model.split("/")) and row.hidden_layers == hidden_layers:
            return row
    raise KeyError(f"Rasmus et al. (2015) Table 1 has no row {data} {model} with {hidden_layers} hidden layers")


@cache
def tieleman2014_capsule_mnist() -> CapsuleThesis:
    return CapsuleThesis(**_numbers()["tieleman2014"]["capsule_mnist"])
