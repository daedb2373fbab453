"""An optimiser step compiled into one fused loop, for long runs of small models.

A ladder's ADADELTA update is about a dozen elementwise passes over every parameter tensor, each its
own kernel: on one CPU core that costs as much as the step's matrix products (``benchmarks/
train_step_rate.py``). ``torch.compile`` fuses the passes into one loop per tensor; compiling takes
tens of seconds, so it pays only on long runs, and where it cannot work (no C compiler, an exotic
backend) the step stays eager with one line said.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import torch

__all__ = ["COMPILE_FROM", "CompiledStep", "wants_compile"]

#: runs of at least this many optimiser updates compile their step under ``compile = "auto"``
COMPILE_FROM = 20_000


def wants_compile(mode: str, planned_updates: float) -> bool:
    """``auto``: compile when the run is long enough to repay the compile time."""
    if mode == "off":
        return False
    if mode == "on":
        return True
    return planned_updates != float("inf") and planned_updates >= COMPILE_FROM


class CompiledStep:
    """Replaces ``optimizer.step`` with the compiled update; eager again after a failed compile.

    Installed on the optimiser object itself, so whoever steps it (Lightning's loop, with its step
    counting and closure) goes through the fused update unchanged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._eager_step = type(optimizer).step.__get__(optimizer)  # the class's own, bound
        # the optimiser's profiler annotations are dropped when compiled, which dynamo says on
        # every run; that is expected here, not a warning for the user
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
        self._compiled: Any = torch.compile(self._eager_step, fullgraph=False, dynamic=False)
        self.eager = False
        optimizer.step = self.step  # type: ignore[method-assign]

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.eager:
            self._eager_step()
            return loss
        try:
            self._compiled()
        except Exception as exc:  # inductor raises many types (no compiler, unsupported op); they are
            # raised while compiling, before any parameter is touched, so the eager step is not a repeat
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"note: the compiled optimiser step failed ({first[:160]}); going on with the eager one",
                  file=sys.stderr, flush=True)
            self.eager = True
            self._eager_step()
        return loss
