"""A file that appears whole or not at all: written to a temporary name, fsync'd, renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from collections.abc import Iterable
from typing import IO, Any



class AtomicFile:
    def __init__(self, path: Path, mode: str = "w", **open_args: Any):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        if "b" not in mode:
            open_args.setdefault("encoding", "utf-8")
        self.handle: IO[Any] = os.fdopen(fd, mode, **open_args)
        self.done = False

    def _clean_stale(self) -> None:
        """Temporary files of a killed run (the manifest's lock says no other run is writing)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

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
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
