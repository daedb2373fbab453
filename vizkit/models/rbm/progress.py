"""Progress of an RBM's long steps while ``vizkit train`` runs (AIS, the exact log-likelihood).

They run after the last epoch, when Lightning's own display is done: without this, a terminal
shows nothing for minutes. They follow what the training run already does with its display —
Lightning draws a bar on a terminal, prints one line per epoch elsewhere, and nothing under
``-q`` — so a log file gets a few lines with an ETA rather than a bar's carriage returns. The
functions have :data:`vizkit.optim.Progress`'s signature, the one probes get from
:meth:`vizkit.ProbeContext.progress`, so the same numerical code serves both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ...optim import Progress

#: Line mode prints at these fractions of the work (and at the start).
LINE_MARKS = (0.25, 0.5, 0.75, 1.0)


def training_progress(trainer: Any) -> Progress | None:
    """The display the training run chose: a bar when Lightning draws one, lines when it prints
    epoch lines instead (``vizkit.training``'s ``EpochLines`` callback), None under ``-q``."""
    if trainer is None or not getattr(trainer, "is_global_zero", True):
        return None
    if getattr(trainer, "progress_bar_callback", None) is not None:
        return bar
    if any(type(cb).__name__ == "EpochLines" for cb in getattr(trainer, "callbacks", ())):
        return lines
    return None


def bar(items: Iterable[int], desc: str, total: int) -> Iterator[int]:
    """A tqdm bar on stderr, with its rate and ETA, gone once the step ends."""
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True, file=sys.stderr)


def lines(items: Iterable[int], desc: str, total: int) -> Iterator[int]:
    """A stderr line at the start and at each quarter of ``total``, with the time left."""
    print(f"{desc}: 0/{total}", file=sys.stderr, flush=True)
    marks = sorted({max(1, round(f * total)) for f in LINE_MARKS})
    start = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        if marks and done >= marks[0]:
            while marks and done >= marks[0]:
                marks.pop(0)
            elapsed = time.perf_counter() - start
            left = elapsed * (total - done) / done
            print(f"{desc}: {done}/{total}, {duration(elapsed)} elapsed, about {duration(left)} left",
                  file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s`` or ``1 h 2 min``: an ETA is read, not parsed."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
