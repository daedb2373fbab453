"""Writing probe results safely: atomically, verifiably, one run at a time, never over others' files.

The rules (README "Outputs"):

* **All or nothing.** A new result is written whole into a private directory beside ``--out``
  (``.NAME.vizkit-tmp-…``), the user's other files in ``--out`` are hard-linked into it, and the
  two directories are swapped in one step (``renameat2(RENAME_EXCHANGE)`` on Linux,
  ``renamex_np(RENAME_SWAP)`` on macOS). A run killed at any moment leaves ``--out`` holding the
  old verified result or the new one, never a mix; what a killed run left beside it is tidied by
  the next run into that directory (:func:`dispose`). Where a swap is impossible (no such call,
  ``--out`` a mount point or the working directory, its parent not writable, a sub-directory of
  yours inside it) files are renamed in one by one, ``result.json`` last, under a provisional
  ``result.json`` that records the hashes of the old and the new files.
* **Verified reuse.** ``result.json`` records the SHA-256 of every other file of the run; a re-run
  reuses a result only when each file is there with that hash (:func:`verified_meta`).
* **One writer.** A run holds an exclusive lock on the directory (``flock``) from its reuse check to
  its last rename, so two runs into one directory never interleave: the second waits, then reuses
  or replaces. The lock is taken on the new directory too before the swap, so it carries over.
* **Ownership is proved, not assumed.** vizkit deletes or replaces a file only when a
  ``result.json`` it wrote records that file's SHA-256 and the file still has it. A ``result.json``
  that is not vizkit's (``{"mine": true}``), or files of vizkit's names in a directory without one
  (your own ``index.html``), or another probe's result, make the run refuse with one line unless
  ``force`` (``--force``). A file in the way that vizkit cannot prove it wrote (damaged, edited,
  listed by a tampered ``result.json``) is never deleted: it is moved to ``NAME.vizkit-kept/``
  beside ``--out`` (inside it, as ``.vizkit-kept/``, where the parent is not writable). Any other
  file in the directory is left alone.
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
import stat
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    # encoded in memory, then written by us: imageio's GIF writer, when the disk fills, retries the
    # write from its destructor and prints a 20-line "Exception ignored" after the real error
    encoded = io.BytesIO()
    imageio.mimsave(encoded, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    atomic_write(gif, lambda tmp: tmp.write_bytes(encoded.getvalue()))
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
_held = threading.local()  # directories this thread holds, with their lock fds (re-entrant per thread)


@contextlib.contextmanager
def out_lock(out: str | Path, quiet: bool = False) -> Iterator[None]:
    """Hold the directory's exclusive lock (re-entrant within a process; waits for other processes).

    On a system without ``fcntl`` (Windows) runs are not serialised.
    """
    out = Path(out)
    key = str(out.resolve())
    held: dict[str, list[int]] = _held.__dict__.setdefault("dirs", {})
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
    held[key] = [_lock_dir(out, quiet)]
    try:
        _remove_stale_temps(out)
        yield
    except BaseException:
        if created:  # a run that failed leaves no empty directory it made itself
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        for fd in held.pop(key):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _lock_dir(out: Path, quiet: bool) -> int:
    """An fd of ``out`` holding its lock; the directory itself is locked, so no lock file is left.

    A writer swaps a new directory in under the old one's lock, so after waiting the lock taken may
    be the old directory's: then the one now at ``out`` is locked instead.
    """
    import fcntl

    told = quiet
    while True:
        try:
            fd = os.open(out, os.O_RDONLY)
        except OSError as exc:
            raise write_failure(out, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    print(f"vizkit: another run is writing to {out}; waiting for it to finish", file=sys.stderr)
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_dir(fd, out):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _same_dir(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _also_lock(path: Path, out: Path) -> None:
    """Lock ``path`` (the directory about to be swapped in) for as long as ``out``'s lock is held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    fds = _held.__dict__.get("dirs", {}).get(str(out.resolve()))
    if fds is None:
        return
    fd = os.open(path, os.O_RDONLY)
    fds.append(fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows its name: never waits


#: vizkit's own working directories inside --out (vizkit.shard's parts); never the user's
OWN_DIRS = (".vizkit-shards",)
_STAGING = ".vizkit-staging"  # in a private directory while it holds nothing but files vizkit is writing


def _own_temp(name: str) -> bool:
    return TMP_MARK in name or name in OWN_DIRS


def _remove_stale_temps(out: Path) -> None:
    """Under the lock every temporary of ours is a killed run's: tidy it (see :func:`dispose`)."""
    with contextlib.suppress(OSError):
        for old in list(out.iterdir()):
            if old.name.startswith(TMP_MARK) and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)  # a staging directory: only files vizkit wrote
            elif TMP_MARK in old.name and old.is_file() and _stale_temp(old.name):
                old.unlink(missing_ok=True)  # a killed atomic write
    for old in _siblings(out):
        dispose(old, out)


def _siblings(out: Path) -> list[Path]:
    """The private directories beside ``out`` that runs into it made (``.NAME.vizkit-tmp-…``)."""
    real = out.resolve()
    prefix = f".{real.name}{TMP_MARK}"
    try:
        return [p for p in real.parent.iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


# -- ownership: what vizkit can prove it wrote --------------------------------------------------------
GENERATOR = "vizkit"  # result.json's "generator": the mark of a record vizkit wrote


@dataclass(frozen=True)
class Record:
    """What a directory's ``result.json`` is: ``absent``, ``vizkit`` (a record vizkit wrote, final
    or provisional), ``damaged`` (not JSON) or ``foreign`` (JSON that is not vizkit's)."""

    state: str
    meta: dict[str, Any]

    def hashes(self) -> dict[str, set[str]]:
        """The SHA-256 values the record accepts for each file (a provisional one lists old and new)."""
        recorded = self.meta.get("hashes") if self.state == "vizkit" else None
        if not isinstance(recorded, dict):
            return {}
        accepted = {}
        for name, value in recorded.items():
            values = value if isinstance(value, list) else [value]
            if isinstance(name, str) and _plain_name(name):
                accepted[name] = {v for v in values if isinstance(v, str)}
        return accepted


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _is_vizkit_record(data: Any) -> bool:
    """Written by vizkit: marked so, or (results from before the mark) a file list with hashes, or
    an older vizkit's provisional record."""
    if not isinstance(data, dict):
        return False
    if data.get("generator") == GENERATOR:
        return True
    files = data.get("files")
    listed = isinstance(files, list) and all(isinstance(n, str) for n in files)
    return listed and (isinstance(data.get("hashes"), dict) or (data.get("pending") is True and "probe" in data))


def read_record(folder: str | Path) -> Record:
    """The :class:`Record` of ``folder``'s ``result.json``."""
    path = Path(folder) / "result.json"
    if not os.path.lexists(path):
        return Record("absent", {})
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Record("damaged", {})
    if path.is_symlink() or not _is_vizkit_record(data):
        return Record("foreign", {})
    return Record("vizkit", data)


def proven_files(folder: str | Path, record: Record | None = None) -> set[str]:
    """Names in ``folder`` that vizkit provably wrote: regular files whose SHA-256 is one its
    ``result.json`` records for them (and that ``result.json`` itself). Being listed proves nothing."""
    folder = Path(folder)
    record = read_record(folder) if record is None else record
    if record.state != "vizkit":
        return set()
    proven = {"result.json"}
    for name, accepted in record.hashes().items():
        path = folder / name
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and sha256_file(path) in accepted:
                proven.add(name)
    return proven


def is_vizkit_page(path: str | Path) -> bool:
    """Whether ``path`` is an HTML page vizkit wrote (its head names vizkit as the generator)."""
    try:
        with open(path, errors="replace") as fh:
            return '<meta name="generator" content="vizkit' in fh.read(2000)
    except OSError:
        return False


def check_overwrite(out: str | Path, names: Iterable[str], probe: str | None = None, force: bool = False) -> None:
    """Refuse, unless ``force``, a directory that is not vizkit's to write: a ``result.json`` vizkit
    did not write, files of the result's names without a vizkit ``result.json``, another probe's result.

    ``names`` are the files the run will write; the check runs before compute (with the names
    known then) and again under the lock with every name.
    """
    out = Path(out)
    if force or not out.is_dir():
        return
    record = read_record(out)
    if record.state == "foreign":
        raise OutputError(f"--out {out} has a result.json that vizkit did not write; choose another directory, "
                          f"or --force to replace it")
    if record.state == "damaged" and not is_vizkit_page(out / "index.html"):
        raise OutputError(f"--out {out} has a result.json that is not vizkit's (it is not JSON); choose another "
                          f"directory, or --force to replace it")
    other = record.meta.get("probe")
    if isinstance(other, str) and other != probe:  # (``vizkit sample`` writes results of no probe)
        raise OutputError(
            f"--out {out} holds the result of probe {other!r}; give each probe its own directory, "
            f"or --force to replace it"
        )
    if record.state == "absent":
        for name in sorted(set(names)):
            if os.path.lexists(out / name):
                raise OutputError(
                    f"--out {out} already has {name}, which vizkit did not write; choose an empty "
                    f"directory, or --force to replace it"
                )


def _kept_dir(out: Path) -> Path:
    """Where files vizkit cannot prove it wrote go when a result needs their names."""
    real = out.resolve()
    if os.access(real.parent, os.W_OK | os.X_OK) and _same_device(real, real.parent):
        return real.parent / f"{real.name}.vizkit-kept"
    return real / ".vizkit-kept"


def _keep(path: Path, out: Path) -> Path:
    """Move ``path`` into the kept directory under a free name, and say so (it is never deleted)."""
    kept = _kept_dir(out)
    kept.mkdir(exist_ok=True)
    target, n = kept / path.name, 1
    while os.path.lexists(target):
        target, n = kept / f"{path.name}.{n}", n + 1
    os.rename(path, target)
    print(f"vizkit: {path.name} in {out} was not provably vizkit's; moved to {target}", file=sys.stderr)
    return target


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


# -- results -----------------------------------------------------------------------------------------
RESULT_FIXED = ("arrays.npz", "index.html", "result.json")


def write_result(result: ResultLike, out: Path, force: bool = False, back: str | None = None,
                 heading: str | None = None) -> list[Path]:
    """Write arrays, figures, videos, ``index.html`` and ``result.json`` into ``out``, replacing the
    previous result in one step where the system allows (else file by file; see the module notes).

    ``back`` is a relative link from the result page to a page above it (the gallery), and
    ``heading`` the page's heading.
    """
    out = ensure_writable(out, create=True)
    with out_lock(out):
        probe = result.meta.get("probe")
        check_overwrite(out, RESULT_FIXED, probe, force)
        beside = _swap_place(out)
        staged = _stage(result, out, back, beside, heading)
        try:
            names = list(result.meta["files"])
            check_overwrite(out, names, probe, force)
            if _inside_out(staged, out) or not _swap_in(staged, out, names):
                _replace_in_place(staged, out, names)
        except OSError as exc:
            raise write_failure(out, exc) from None
        finally:
            _discard(staged, out)
    return [out / n for n in result.meta["files"] if n != "index.html" and n != "result.json"] + [
        out / "result.json", out / "index.html"]


def _stage(result: ResultLike, out: Path, back: str | None, beside: bool = False,
           heading: str | None = None) -> Path:
    """Every file of the result in a private directory (beside ``out`` when it is to be swapped in,
    else inside it), result.json with their hashes last. It is marked as holding only vizkit's
    files until result.json can prove them."""
    staged = _staging_dir(out, beside)
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
        meta["generator"] = GENERATOR
        meta["files"] = sorted(p.name for p in written) + ["index.html", "result.json"]
        figures = list(result.figures) + list(result.videos)
        thumb = meta.get("thumbnail")
        if figures and thumb not in figures:
            meta["thumbnail"] = figures[0]
        if meta.get("thumbnail") in result.videos:
            meta["thumbnail_file"] = f"{meta['thumbnail']}.gif"
        elif meta.get("thumbnail") in result.figures:
            meta["thumbnail_file"] = f"{meta['thumbnail']}.png"
        atomic_write_bytes(staged / "index.html", index_html(result, meta, back, heading).encode())
        written.append(staged / "index.html")
        meta["hashes"] = {p.name: sha256_file(p) for p in written}
        atomic_write_bytes(staged / "result.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        (staged / _STAGING).unlink()
        return staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _staging_dir(out: Path, beside: bool) -> Path:
    """A new private directory, marked as staging: beside ``out`` when asked and possible, else in it."""
    real = out.resolve()
    places = [(real.parent, f".{real.name}{TMP_MARK}")] if beside else []
    for where, prefix in [*places, (out, TMP_MARK)]:
        try:
            staged = Path(tempfile.mkdtemp(dir=where, prefix=f"{prefix}{os.getpid()}-"))
        except OSError as exc:
            if where == out:
                raise write_failure(out, exc) from None
            continue
        try:
            (staged / _STAGING).touch()
        except OSError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            raise write_failure(out, exc) from None
        return staged
    raise AssertionError("unreachable")  # pragma: no cover


def _inside_out(staged: Path, out: Path) -> bool:
    return staged.resolve().parent == out.resolve()


def _swap_place(out: Path) -> bool:
    """Whether a new ``out`` can be built beside it and swapped in: the system can exchange two
    directories, the parent is writable and on the same device (``out`` is no mount point), and the
    new directory can have ``out``'s owner and group. Not while this process works inside ``out``
    (its working directory would be left in the old one)."""
    if _exchange_call() is None:
        return False
    real = out.resolve()
    try:
        st = os.stat(real)
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    if real == real.parent or not _same_device(real, real.parent) or not os.access(real.parent, os.W_OK | os.X_OK):
        return False
    if cwd == real or real in cwd.parents:
        return False
    euid = os.geteuid()
    return euid == 0 or (st.st_uid == euid and st.st_gid in {os.getegid(), *os.getgroups()})


def _swap_in(staged: Path, out: Path, names: list[str]) -> bool:
    """Swap the staged directory in for ``out`` with the user's files of ``out`` hard-linked into
    it; False (``out`` untouched) when one of them cannot be linked (a directory, a file system
    without hard links) or the system refuses the exchange. Afterwards ``staged`` names the old
    directory, which :func:`dispose` empties."""
    real = out.resolve()
    proven = proven_files(real)
    for entry in sorted(os.listdir(real)):
        if _own_temp(entry) or entry in proven or entry in names:
            continue  # stays behind: vizkit's old files, and (kept aside later) unproven ones in the way
        try:
            os.link(real / entry, staged / entry, follow_symlinks=False)
        except OSError:
            return False
    try:
        _like(staged, real)
        _also_lock(staged, out)
        _exchange(staged, real)
    except OSError:
        return False
    return True


def _like(new: Path, old: Path) -> None:
    """Give the directory to be swapped in the mode, owner and group of the one it replaces."""
    st = os.stat(old)
    os.chmod(new, stat.S_IMODE(st.st_mode))
    mine = os.stat(new)
    if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
        os.chown(new, st.st_uid, st.st_gid)


@cache
def _exchange_call() -> Callable[[bytes, bytes], int] | None:
    """The system call that swaps two paths in one step, or None where there is none."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError, TypeError):
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        renameat2 = libc.renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        at_fdcwd, rename_exchange = -100, 2
        return lambda a, b: renameat2(at_fdcwd, a, at_fdcwd, b, rename_exchange)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        renamex_np = libc.renamex_np
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        rename_swap = 2
        return lambda a, b: renamex_np(a, b, rename_swap)
    return None


def _exchange(a: Path, b: Path) -> None:
    """Swap directories ``a`` and ``b``: no moment exists where either name is missing or mixed."""
    call = _exchange_call()
    if call is None:
        raise OSError(errno.ENOSYS, "exchanging directories is not supported here", str(b))
    if call(os.fsencode(a), os.fsencode(b)) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(b))


def _replace_in_place(staged: Path, out: Path, names: list[str]) -> None:
    """The fallback without a swap: rename the new files in, result.json last, under a provisional
    result.json that accepts the old and the new hash of each name, so a killed run's files are
    still provably vizkit's (and the half-written result is recomputed, never reused)."""
    record = read_record(out)
    proven = proven_files(out, record)
    for name in names:
        if os.path.lexists(out / name) and name not in proven:
            _keep(out / name, out)
    accepted: dict[str, list[str]] = {}
    old = record.hashes()
    for name in proven - {"result.json"}:
        accepted[name] = sorted(old.get(name, ()))
    new = json.loads((staged / "result.json").read_text())
    for name, digest in new["hashes"].items():
        accepted.setdefault(name, []).append(digest)
    pending = {"generator": GENERATOR, "pending": True, "probe": new.get("probe"),
               "files": sorted(proven | set(names)), "hashes": accepted}
    atomic_write_bytes(out / "result.json", json.dumps(pending).encode())
    for name in names:
        if name != "result.json":
            os.replace(staged / name, out / name)
    for name in proven - set(names):  # while the provisional record still proves them
        path = out / name
        if path.is_file() and not path.is_symlink() and sha256_file(path) in old.get(name, ()):
            path.unlink()
    os.replace(staged / "result.json", out / "result.json")


def _discard(staged: Path, out: Path) -> None:
    """Remove what a write leaves of its private directory (after a swap: the old directory)."""
    if _inside_out(staged, out):
        shutil.rmtree(staged, ignore_errors=True)  # staged inside out: it only ever held vizkit's files
    else:
        dispose(staged, out)


def dispose(old: Path, out: Path) -> None:
    """Empty and remove a private directory beside ``out`` (a staging one, or the old ``out``
    after a swap, also a killed run's), deleting only what is provably vizkit's.

    Still marked as staging: all vizkit's. Otherwise each entry goes: vizkit's temporaries, links
    to files now in ``out`` and files its own result.json proves are removed; anything else returns
    to ``out`` when its name is free there, or is kept (:func:`_keep`). What cannot be moved stays,
    and the directory with it (hidden, never shown as a result).
    """
    if not old.is_dir() or old.is_symlink():
        return
    if (old / _STAGING).exists():
        shutil.rmtree(old, ignore_errors=True)
        return
    record = read_record(old)
    proven = proven_files(old, record)
    for name in sorted(os.listdir(old), key=lambda n: n == "result.json"):
        with contextlib.suppress(OSError):
            _dispose_entry(old / name, out, name in proven)
    with contextlib.suppress(OSError):
        old.rmdir()


def _dispose_entry(path: Path, out: Path, proven: bool) -> None:
    here = out / path.name
    if _own_temp(path.name):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    elif proven or _same_file(path, here):
        path.unlink()
    elif not os.path.lexists(here):
        os.rename(path, here)  # the user's, not carried over (a kill came first): put it back
    else:
        _keep(path, out)


def _same_file(a: Path, b: Path) -> bool:
    try:
        x, y = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino) and not stat.S_ISDIR(x.st_mode)


def verified_meta(out: str | Path) -> dict[str, Any] | None:
    """``result.json`` of ``out`` when every file it lists is there with its recorded hash, else None.

    Anything missing, truncated, changed or unreadable means "no finished result here", and so
    does a provisional record (a killed run's).
    """
    out = Path(out)
    try:
        meta = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("hashes"), dict) or meta.get("pending"):
        return None
    files = meta.get("files")
    if not isinstance(files, list):
        return None
    try:
        for name in files:
            if name == "result.json":
                continue
            if not isinstance(name, str) or not _plain_name(name) or meta["hashes"].get(name) != sha256_file(out / name):
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


def index_html(result: ResultLike, meta: dict[str, Any], back: str | None = None,
               heading: str | None = None) -> str:
    """A self-contained page showing a result's figures, videos and metadata. ``heading`` names the
    page (a gallery passes its model's name and the entry's title); by default the probe, model
    kind and layer."""
    probe = meta.get("probe", "probe")
    model = meta.get("model", {})
    title = heading or f"vizkit {probe} — {model.get('kind', '') if isinstance(model, dict) else ''} {meta.get('layer', '')}"
    rows = [(label, text) for label, key in _RUN_ROWS if key in meta for text in [_readable(key, meta[key])] if text]
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


#: the run table of a result page: (what a reader calls it, result.json key)
_RUN_ROWS = (("probe", "probe"), ("layer", "layer"), ("units", "units_spec"), ("seed", "seed"),
             ("options", "options"), ("model", "model"), ("data", "data_source"), ("notes", "notes"),
             ("timings", "timings"), ("versions", "versions"))


def _readable(key: str, value: Any) -> str:
    """One table cell as a person reads it: ``name = value`` pairs, a model as what it is and where
    it came from, never raw JSON."""
    if key == "model" and isinstance(value, dict):
        return _model_text(value)
    if key == "timings" and isinstance(value, dict):
        return ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_scalar(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return "; ".join(_scalar(v) for v in value)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _model_text(model: dict[str, Any]) -> str:
    parts = [str(model.get("kind", "model"))]
    source = model.get("checkpoint") or {}
    if isinstance(source, dict):
        where = source.get("module") or source.get("path")
        if source.get("module") and source.get("path"):
            where = f"{source['module']} with weights {source['path']}"
        if where:
            parts.append(f"from {where}")
        if source.get("sha256"):
            parts.append(f"(sha256 {str(source['sha256'])[:12]}…)")
    hparams = model.get("hparams") or {}
    if isinstance(hparams, dict) and hparams:
        parts.append("; " + ", ".join(f"{k} = {_scalar(v)}" for k, v in hparams.items() if k != "input_shape"))
    data = model.get("data") or {}
    if isinstance(data, dict) and data.get("name"):
        parts.append(f"; trained on {data['name']}")
    if model.get("input_shape"):
        parts.append(f"; input {'x'.join(str(d) for d in model['input_shape'])}")
    return " ".join(parts).replace(" ;", ";")
