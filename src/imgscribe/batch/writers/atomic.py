"""A file that appears whole or not at all: written to a temporary name, fsync'd, renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

NAME_MAX = 255  # bytes in one file name (ext4, xfs, tmpfs...)


def temp_prefix(path: Path) -> str:
    """``.NAME.``, the prefix of ``path``'s temporary files; for a name too long to take the
    temporary's 14 extra bytes, its start and a hash of the whole name instead (still one per name)."""
    name = path.name
    if len(name.encode()) + 14 <= NAME_MAX:
        return f".{name}."
    start = name.encode()[:200].decode(errors="ignore")
    return f".{start}~{hashlib.sha256(name.encode()).hexdigest()[:12]}."


def clean_stale(path: Path) -> None:
    """Temporary files of ``path`` left by a killed run (the manifest's lock says no other run is writing)."""
    for stale in path.parent.glob(f"{glob_escape(temp_prefix(path))}*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


class AtomicFile:
    def __init__(self, path: Path, mode: str = "w", **open_args: Any):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(self.path)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=temp_prefix(self.path), suffix=".tmp")
        if "b" not in mode:
            open_args.setdefault("encoding", "utf-8")
        self.handle: IO[Any] = os.fdopen(fd, mode, **open_args)
        self.done = False

    def commit(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.tmp, self._mode())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        self.done = True
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def _mode(self) -> int:
        try:
            return self.path.stat().st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            return 0o666 & ~umask


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes | Iterable[bytes], like: Path | None = None) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks of them) in one step, keeping the permissions
    of ``like`` (or ``path``): a reader, or a crash, sees the old file or the new one, never half."""
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [data] if isinstance(data, bytes) else data:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        source = like or path
        if source.exists():
            os.chmod(tmp, source.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
