"""Paths the user names: refuse special files before anything opens them.

Opening a FIFO blocks until some other process writes to it, a character device such as
``/dev/zero`` or ``/dev/urandom`` never ends, and a socket cannot be opened at all; none of them is
data, a checkpoint or a recipe. So every place where vizkit reads a path the user gave (data files
and image folders, checkpoints, ``--weights``, labels files, recipes, IDX files) asks
:func:`refuse_special` first. The check uses ``os.stat``, which never blocks on a FIFO (only
``open`` does), and follows symbolic links, so a link to a pipe is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import VizkitError

__all__ = ["refuse_special", "special_kind"]

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is a pipe, device or socket (e.g. ``"a named pipe (FIFO)"``), else None.

    A path that does not exist (or cannot be stat'ed) is None: saying it is missing is the caller's job.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((text for test, text in _KINDS if test(mode)), None)


def refuse_special(path: str | Path, what: str, error: type[VizkitError]) -> Path:
    """``path`` unchanged, or ``error`` with one line when it is a special file (see the module docstring).

    ``what`` names the path's role in the message, e.g. ``"data file"`` or ``"--weights"``.
    """
    kind = special_kind(path)
    if kind is not None:
        raise error(f"refusing to read {what} {path}: it is {kind}, not a regular file")
    return Path(path)
