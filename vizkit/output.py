"""Writing probe results safely: atomically, verifiably, one run at a time, never over others' files.

The rules (README "Outputs"):

* **All or nothing.** Every file of a result is first written into a private temporary directory
  inside ``--out`` and only then renamed into place, ``result.json`` last. A run that is killed or
  hits a full disk leaves the previous result as it was (and its temporary files are removed by
  the next run).
* **Verified reuse.** ``result.json`` records the SHA-256 of every other file of the run; a re-run
  reuses a result only when each file is there with that hash (:func:`verified_result`).
* **One writer.** A run holds an exclusive lock on the directory (``flock``) from its reuse check to
  its last rename, so two runs into one directory never interleave: the second waits, then reuses
  or replaces.
* **Ownership.** vizkit replaces only files it wrote there itself (those ``result.json`` lists;
  while files are being renamed in, a provisional ``result.json`` without hashes lists the old
  and new names, so a killed run's files still count as vizkit's). A file
  of the same name that vizkit did not write, or the results of a *different* probe, make the run
  refuse with one line unless ``force`` (``--force``) is given. Files of the previous run that the
  new run does not write again are removed; any other file is left alone.
* Files get the mode the umask allows (``0666 & ~umask``), so a web server can serve a gallery.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import OutputError, WriteError


# What the writer needs of a result, declared here rather than imported from vizkit.probe: the probe
# interface builds on this module (Result.save writes through it), so this one must not need that.
class VideoLike(Protocol):
    @property
    def frames(self) -> np.ndarray: ...

    @property
    def fps(self) -> float: ...


class ResultLike(Protocol):
    """A :class:`vizkit.Result`, as :func:`write_result` and :func:`index_html` read it."""

    @property
    def arrays(self) -> dict[str, Any]: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def figures(self) -> Mapping[str, Any]: ...

    @property
    def videos(self) -> Mapping[str, VideoLike]: ...

    @property
    def captions(self) -> Mapping[str, str]: ...

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
TMP_MARK = ".vizkit-tmp-"


# -- small pieces ----------------------------------------------------------------------------------
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_SLUG_DOTS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_slug(name: Any, what: str, allow_dots: bool = False) -> str:
    """``name`` when it is safe as one path segment and URL (letters, digits, ``-``, ``_``; no
    ``..``, ``/``, scheme or leading dot), else one :class:`OutputError` line saying what is allowed."""
    pattern = _SLUG_DOTS if allow_dots else _SLUG
    if not isinstance(name, str) or len(name) > 100 or not pattern.match(name) or ".." in name:
        allowed = "letters, digits, '-', '_'" + (" and '.'" if allow_dots else "")
        raise OutputError(f"{what} {name!r} cannot be used as a file name: use {allowed}, starting with a "
                          f"letter or digit")
    return name


def inside(root: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``root`` (a last guard after names are checked)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise OutputError(f"refusing to write {path}: it lies outside --out {root}")
    return path


def file_mode() -> int:
    """The mode a new file gets under the process's umask (``0o666 & ~umask``)."""
    try:  # Linux states the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_file(path: str | Path) -> str:
    """Read in 1 MiB blocks so a large checkpoint is never held whole in memory; the one file hash
    behind result verification, checkpoint provenance and the files that options name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _stale_temp(name: str) -> bool:
    """A temporary name of ours whose writing process is gone (``...vizkit-tmp-PID-xxxx``)."""
    _, _, rest = name.partition(TMP_MARK)
    pid = rest.split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))


def write_failure(path: Path | None, exc: OSError) -> WriteError:
    """One line for an OS error while writing (``ENOSPC`` says "disk full"); ``path`` is None when
    the failing library did not say which file it was writing."""
    what = f"cannot write {path}" if path is not None else "a write failed"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(f"{what}: the disk is full (no space left); nothing was changed there")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(f"{what}: {exc.strerror or 'permission denied'}")
    return WriteError(f"{what}: {exc.strerror or exc}")


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
    try:  # os.access says yes to root everywhere (even /proc): prove it by making and removing a directory
        made = tempfile.mkdtemp(dir=probe, prefix=f"{TMP_MARK}{os.getpid()}-check-")
    except OSError as exc:
        raise OutputError(f"cannot write to --out {path}: {probe}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        os.rmdir(made)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(path, exc) from None
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``path`` and rename it into place.

    The temporary name carries the writer's pid, so leftovers of a killed writer are recognised
    and removed by the next write of the same file. A full disk is one :class:`WriteError`; the
    previous file stays as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(f".{path.name}{TMP_MARK}*"):
            if _stale_temp(old.name):
                old.unlink(missing_ok=True)
        # the real suffix last: writers such as imageio choose the format by it
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}{os.getpid()}-",
                                        suffix=path.suffix)
        os.close(fd)
    except OSError as exc:
        raise write_failure(path, exc) from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
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


# -- one writer at a time --------------------------------------------------------------------------
_held = threading.local()  # directories this thread holds (re-entrant per thread, exclusive across threads)


@contextlib.contextmanager
def out_lock(out: str | Path, quiet: bool = False) -> Iterator[None]:
    """Hold the directory's exclusive lock (re-entrant within a process; waits for other processes).

    On a system without ``fcntl`` (Windows) runs are not serialised.
    """
    out = Path(out)
    key = str(out.resolve())
    held: set[str] = _held.__dict__.setdefault("dirs", set())
    if key in held:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    created = not out.exists()
    ensure_writable(out, create=True)
    try:
        fd = os.open(out, os.O_RDONLY)  # the directory itself: no lock file left behind
    except OSError as exc:
        raise write_failure(out, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"vizkit: another run is writing to {out}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        try:
            _remove_stale_temps(out)
            yield
        except BaseException:
            if created:  # a run that failed leaves no empty directory it made itself
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove_stale_temps(out: Path) -> None:
    """Under the lock every temporary directory of ours is a killed run's: remove it."""
    for old in out.glob(f"{TMP_MARK}*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


# -- ownership -------------------------------------------------------------------------------------
def owned_files(out: Path) -> set[str] | None:
    """Names of files vizkit wrote in ``out``: those its ``result.json`` lists.

    None when ``result.json`` is there but damaged (a killed run's, or a full disk's): vizkit is the
    only writer of that name there, so the run may replace files of its own names, but it cannot
    tell which other files were vizkit's and removes none.
    """
    path = out / "result.json"
    if not path.exists():
        return set()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    names = data.get("files") if isinstance(data, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return set(names) | {"result.json"}
    return None


def _previous_probe(out: Path) -> str | None:
    try:
        meta = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("probe") if isinstance(meta, dict) and isinstance(meta.get("probe"), str) else None


def check_overwrite(out: str | Path, names: Iterable[str], probe: str | None = None, force: bool = False) -> None:
    """Refuse to replace files vizkit did not write, or another probe's result, unless ``force``.

    ``names`` are the files the run will write; the check runs before compute (with the names
    known then) and again under the lock with every name.
    """
    out = Path(out)
    if force or not out.is_dir():
        return
    other = _previous_probe(out)
    if other is not None and other != probe:  # (``vizkit sample`` writes results of no probe)
        raise OutputError(
            f"--out {out} holds the result of probe {other!r}; give each probe its own directory, "
            f"or --force to replace it"
        )
    owned = owned_files(out)
    if owned is None:
        return
    for name in sorted(set(names)):
        if (out / name).exists() and name not in owned:
            raise OutputError(
                f"--out {out} already has {name}, which vizkit did not write; choose an empty "
                f"directory, or --force to replace it"
            )


# -- results -----------------------------------------------------------------------------------------
RESULT_FIXED = ("arrays.npz", "index.html", "result.json")


def write_result(result: ResultLike, out: Path, force: bool = False, back: str | None = None) -> list[Path]:
    """Write arrays, figures, videos, ``index.html`` and (last) ``result.json`` into ``out``.

    ``back`` is a relative link from the result page to a page above it (the gallery).
    """
    out = ensure_writable(out, create=True)
    with out_lock(out):
        staged = _stage(result, out, back)
        try:
            names = [p.name for p in sorted(staged.iterdir())]
            check_overwrite(out, names, result.meta.get("probe"), force)
            previous = owned_files(out) or set()
            # until the final result.json is in place the directory is not a finished run, but
            # every file in it (old or new) is recorded as vizkit's
            pending = {"probe": result.meta.get("probe"), "pending": True, "files": sorted(previous | set(names))}
            atomic_write_bytes(out / "result.json", json.dumps(pending).encode())
            for name in sorted(names, key=lambda n: n == "result.json"):
                os.replace(staged / name, out / name)
            for stale in previous - set(names):
                if "/" not in stale:
                    (out / stale).unlink(missing_ok=True)
        except OSError as exc:
            raise write_failure(out, exc) from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return [out / n for n in result.meta["files"] if n != "index.html" and n != "result.json"] + [
        out / "result.json", out / "index.html"]


def _stage(result: ResultLike, out: Path, back: str | None) -> Path:
    """Every file of the result in a private directory inside ``out``; hashes into result.json."""
    try:
        staged = Path(tempfile.mkdtemp(dir=out, prefix=f"{TMP_MARK}{os.getpid()}-"))
    except OSError as exc:
        raise write_failure(out, exc) from None
    try:
        written: list[Path] = []
        for name in [*result.figures, *result.videos]:
            check_slug(name, "figure name")
        if result.arrays:
            written.append(atomic_write_bytes(staged / "arrays.npz", npz_bytes(result.arrays)))
        for name, fig in result.figures.items():
            written.append(atomic_write_bytes(staged / f"{name}.png", figure_png(fig)))
        for name, video in result.videos.items():
            written.extend(write_video(staged / name, video.frames, video.fps))
        meta = result.meta
        meta.pop("reused", None)
        meta["files"] = sorted(p.name for p in written) + ["index.html", "result.json"]
        figures = list(result.figures) + list(result.videos)
        thumb = meta.get("thumbnail")
        if figures and thumb not in figures:
            meta["thumbnail"] = figures[0]
        if meta.get("thumbnail") in result.videos:
            meta["thumbnail_file"] = f"{meta['thumbnail']}.gif"
        elif meta.get("thumbnail") in result.figures:
            meta["thumbnail_file"] = f"{meta['thumbnail']}.png"
        atomic_write_bytes(staged / "index.html", index_html(result, meta, back).encode())
        written.append(staged / "index.html")
        meta["hashes"] = {p.name: sha256_file(p) for p in written}
        atomic_write_bytes(staged / "result.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def verified_meta(out: str | Path) -> dict[str, Any] | None:
    """``result.json`` of ``out`` when every file it lists is there with its recorded hash, else None.

    Anything missing, truncated, changed or unreadable means "no finished result here".
    """
    out = Path(out)
    try:
        meta = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("hashes"), dict):
        return None
    files = meta.get("files")
    if not isinstance(files, list):
        return None
    try:
        for name in files:
            if name == "result.json":
                continue
            if not isinstance(name, str) or "/" in name or meta["hashes"].get(name) != sha256_file(out / name):
                return None
    except OSError:
        return None
    return meta


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` file, or None when it is absent or unreadable."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


# -- pages -------------------------------------------------------------------------------------------
@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("vizkit", "templates"),
        autoescape=True,  # every page is HTML: escape all text
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_page(template: str, **context: Any) -> str:
    """Render one of vizkit's Jinja2 templates (``vizkit/templates``) with autoescaping."""
    from . import __version__

    return _environment().get_template(template).render(version=__version__, **context)


def safe_href(path: str) -> str:
    """A link target built from a relative path of safe segments only (never a scheme or ``..``)."""
    parts = path.split("/")
    for part in parts:
        check_slug(part, "link path segment", allow_dots=True)
    return "/".join(parts)


def index_html(result: ResultLike, meta: dict[str, Any], back: str | None = None) -> str:
    """A self-contained page showing a result's figures, videos and metadata."""
    probe = meta.get("probe", "probe")
    model = meta.get("model", {})
    title = f"vizkit {probe} — {model.get('kind', '') if isinstance(model, dict) else ''} {meta.get('layer', '')}"
    rows = []
    for key in ("probe", "layer", "units_spec", "seed", "options", "data", "model", "timings", "versions"):
        if key in meta:
            value = meta[key]
            rows.append((key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    figures = [{"src": safe_href(f"{name}.png"), "caption": result.captions.get(name, name)} for name in result.figures]
    videos = [{"src": safe_href(f"{name}.gif"), "mp4": safe_href(f"{name}.mp4"),
               "caption": result.captions.get(name, name)} for name in result.videos]
    arrays = [{"name": k, "shape": str(tuple(v.shape)), "dtype": str(v.dtype)} for k, v in sorted(result.arrays.items())]
    if back is not None:  # a relative link up the tree: '..' segments, then safe names
        parts = back.split("/")
        ups = len(parts) - len([p for p in parts if p != ".."])
        if parts[:ups] != [".."] * ups:
            raise OutputError(f"link back {back!r} must be '..' segments followed by file names")
        back = "/".join(parts[:ups] + ([safe_href("/".join(parts[ups:]))] if parts[ups:] else []))
    return render_page("result.html", title=title, figures=figures, videos=videos, arrays=arrays, rows=rows,
                       back=back)
