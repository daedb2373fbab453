"""A tiny reader/writer for the IDX format that MNIST is distributed in.

Written here (a few lines of numpy) so that full MNIST needs no extra dependency and no network:
the user points ``data_dir`` at the four standard files, plain or gzipped.

Format: two zero bytes, a type code, the number of dimensions ``d``; then ``d`` big-endian uint32
sizes; then the values, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vizkit.errors import DataError
from vizkit.paths import refuse_special

__all__ = ["read_idx", "write_idx"]

_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open(path: Path, mode: str) -> BinaryIO:
    if "r" in mode:
        refuse_special(path, "IDX file", DataError)
    if path.name.endswith(".gz"):
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # type: ignore[return-value]


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (``.gz`` decompressed on the fly), in native byte order.

    A truncated or foreign file raises :class:`DataError` naming the file, so a corrupt download
    is reported as such and not as a shape error later on.
    """
    path = Path(path)
    try:
        with _open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _CODES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype = _CODES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"IDX file {path} has {len(raw) - header} data bytes, "
                        f"expected {expected} for shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``).

    Vizkit itself only reads IDX; the writer exists so tests and users can produce small
    MNIST-format files (e.g. a subset) that :func:`read_idx` reads back.
    """
    array = np.asarray(array)
    code = next((c for c, dt in _CODES.items()
                 if array.dtype.kind == dt.kind and array.dtype.itemsize == dt.itemsize), None)
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    dtype = _CODES[code]
    if array.ndim > 255:
        raise DataError("IDX stores at most 255 dimensions")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with _open(Path(path), "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=dtype).tobytes())
