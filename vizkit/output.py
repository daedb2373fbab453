"""Atomic, reproducible writing of probe results.

Every file goes to a temporary name in the target directory and is renamed into place, so an
interrupted run never leaves a half-written file behind. Arrays and PNGs are written without
timestamps so equal inputs give identical bytes.
"""

from __future__ import annotations

import html
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OutputError

if TYPE_CHECKING:
    from .probe import Result

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def ensure_writable(out: str | Path, create: bool = False) -> Path:
    """Prove ``out`` can become a writable directory before any compute starts.

    Without ``create`` nothing is made on disk, so a run that fails validation leaves no trace.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write to --out {path}: it exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot write to --out {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to --out {path}: {probe} is not writable")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to --out {path}: {exc.strerror or exc}") from None
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive readable by ``np.load`` but with fixed timestamps (byte-identical)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG bytes without the varying metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def write_video(base: Path, frames: np.ndarray, fps: float) -> list[Path]:
    """Write ``frames`` [T, H, W, 3] uint8 as ``base.gif`` and ``base.mp4``."""
    import imageio.v2 as imageio

    written = []
    gif = base.with_suffix(".gif")
    atomic_write(
        gif,
        lambda tmp: imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0),
    )
    written.append(gif)
    mp4 = base.with_suffix(".mp4")

    def _mp4(tmp: Path) -> None:
        even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
        with imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
            ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p"],
        ) as writer:
            for frame in even:
                writer.append_data(frame)

    atomic_write(mp4, _mp4)
    written.append(mp4)
    return written


def write_result(result: Result, out: Path) -> list[Path]:
    """Write arrays, figures, videos, ``result.json`` and ``index.html`` into ``out``."""
    ensure_writable(out, create=True)
    files: list[Path] = []
    if result.arrays:
        files.append(atomic_write_bytes(out / "arrays.npz", npz_bytes(result.arrays)))
    for name, fig in result.figures.items():
        files.append(atomic_write_bytes(out / f"{name}.png", figure_png(fig)))
    for name, video in result.videos.items():
        files.extend(write_video(out / name, video.frames, video.fps))
    meta = dict(result.meta)
    meta["files"] = sorted(p.name for p in files) + ["index.html", "result.json"]
    files.append(
        atomic_write_bytes(
            out / "result.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        )
    )
    files.append(atomic_write_bytes(out / "index.html", index_html(result, meta).encode()))
    return files


def index_html(result: Result, meta: dict[str, Any]) -> str:
    """A self-contained page showing a result's figures, videos and metadata."""
    esc = html.escape
    probe = meta.get("probe", "probe")
    title = f"vizkit {probe} — {meta.get('model', {}).get('kind', '')} {meta.get('layer', '')}"
    rows = []
    for key in ("probe", "layer", "units_spec", "seed", "options", "data", "model", "timings", "versions"):
        if key in meta:
            value = meta[key]
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            rows.append(f"<tr><th>{esc(key)}</th><td><code>{esc(str(text))}</code></td></tr>")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "img{max-width:100%;border:1px solid #ccc}figure{margin:1.5em 0}"
        "figcaption{color:#333;margin-top:.3em}table{border-collapse:collapse;font-size:90%}"
        "th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #eee;vertical-align:top}"
        "code{white-space:pre-wrap;word-break:break-all}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for name in result.figures:
        caption = result.captions.get(name, name)
        parts.append(
            f'<figure><img src="{esc(name)}.png" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    for name in result.videos:
        caption = result.captions.get(name, name)
        parts.append(
            f'<figure><img src="{esc(name)}.gif" alt="{esc(caption)}">'
            f'<figcaption>{esc(caption)} (<a href="{esc(name)}.mp4">MP4</a>)</figcaption></figure>'
        )
    if result.arrays:
        items = "".join(
            f"<li><code>{esc(k)}</code> {esc(str(tuple(v.shape)))} {esc(str(v.dtype))}</li>"
            for k, v in sorted(result.arrays.items())
        )
        parts.append(f'<h2>Arrays (<a href="arrays.npz">arrays.npz</a>)</h2><ul>{items}</ul>')
    parts.append('<h2>Run (<a href="result.json">result.json</a>)</h2><table>')
    parts.extend(rows)
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
