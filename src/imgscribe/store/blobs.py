"""Content-addressed files: ``<root>/blobs/sha256-<hex>``, as Ollama lays them out.

A blob's name is the SHA-256 of its bytes, so two models that share a file store it once. A blob
only appears under its final name once its bytes are complete and verified (written beside it as
``sha256-<hex>-partial`` and renamed), so a reader never sees half a blob.

Folder models (a Hugging Face checkpoint, a split GGUF) are *snapshots*: ``<root>/snapshots/<key>/``
holds the repository's file names as hard links to blobs (a copy where links are impossible), and
``<root>/snapshots/<key>.json`` records which blob each name is. ``key`` is derived from that
mapping, so the same files make the same snapshot.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ..errors import InvalidRequest

__all__ = ["BlobStore", "check_digest", "locked_temp", "safe_relative", "sha256_file", "write_atomic"]

_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
CHUNK = 1 << 20
LOCKED_PREFIXES = (".tmp-upload-", ".tmp-put-")  # their writers hold an flock: see locked_temp
STALE_AFTER = 3600.0  # seconds untouched after which another .tmp-* file in blobs/ is abandoned


def check_digest(digest: str) -> str:
    """``sha256:<hex>`` from ``sha256:<hex>`` or ``sha256-<hex>``; anything else is refused."""
    match = _DIGEST.match(digest.strip().lower()) if isinstance(digest, str) else None
    if not match:
        raise InvalidRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return f"sha256:{match.group(1)}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write through a temporary file and a rename: a reader sees the old file or the new one (the
    bytes reach the disk before the rename, so that a power cut cannot leave an empty manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def locked_temp(folder: Path, prefix: str) -> tuple[int, Path]:
    """A new temporary file in ``folder`` (descriptor, path) under an exclusive ``flock`` held while
    the descriptor is open; the kernel drops the lock when the writer dies, however it dies. (A sweep
    that took the file between its creation and the lock has deleted it: then another one.)"""
    while True:
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_unlocked(path: Path) -> bool:
    """Delete the file unless someone holds its flock (its writer lives); unlinked under the lock,
    so that a writer that locks it just now sees it gone (:func:`locked_temp`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


NAME_MAX = 255  # bytes in one file name part on common file systems


def safe_relative(name: str) -> PurePosixPath:
    """A relative path from a remote listing (``processor/config.json``) that stays inside its folder."""
    raw = name.replace("\\", "/")
    path = PurePosixPath(raw)
    if not name or raw.startswith("/") or any(p in ("", ".", "..") for p in raw.split("/")) or ":" in name:
        raise InvalidRequest(f"refusing file name {name!r}: it would leave the model's folder")
    if any(ord(c) < 32 for c in name) or any(len(p.encode()) > NAME_MAX for p in raw.split("/")):
        raise InvalidRequest(f"refusing file name {name[:80]!r}: a control character, or a part over {NAME_MAX} bytes")
    return path


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / "blobs"
        self.snapshots = self.root / "snapshots"

    # -- blobs ------------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        return self.dir / check_digest(digest).replace(":", "-")

    def partial(self, digest: str) -> Path:
        return self.dir / (check_digest(digest).replace(":", "-") + "-partial")

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or size < 0 or st.st_size == size

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def commit(self, source: Path, digest: str) -> Path:
        """Move a verified file into place under its digest."""
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, dest)
        return dest

    def put_bytes(self, data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if not self.has(digest, len(data)):
            write_atomic(self.path(digest), data)
        return digest

    def put_file(self, source: str | os.PathLike) -> str:
        """Copy a file into the store (hashing it on the way) and return its digest."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = locked_temp(self.dir, ".tmp-put-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            digest = f"sha256:{h.hexdigest()}"
            if self.has(digest):
                Path(tmp).unlink()
            else:
                self.commit(Path(tmp), digest)
            return digest
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def sweep_temporaries(self, stale_after: float = STALE_AFTER) -> int:
        """Delete the temporary files writers left in ``blobs/`` (killed mid-upload, mid-copy); the
        bytes freed. A file still being written is left alone (see the module's docstring)."""
        freed = 0
        try:
            found = [p for p in self.dir.iterdir() if p.name.startswith(".tmp-")]
        except OSError:
            return 0
        now = time.time()
        for path in found:
            try:
                st = path.stat()
                if not path.is_file():
                    continue
                if path.name.startswith(LOCKED_PREFIXES):
                    freed += st.st_size if _remove_unlocked(path) else 0
                elif now - st.st_mtime > stale_after:
                    path.unlink()
                    freed += st.st_size
            except OSError:
                continue
        return freed

    def verify(self, digest: str) -> bool:
        return sha256_file(self.path(digest)) == check_digest(digest)

    def digest_of(self, path: Path) -> str | None:
        """The digest a path inside ``blobs/`` stands for, else None."""
        try:
            if path.parent.resolve() != self.dir.resolve():
                return None
            return check_digest(path.name)
        except (InvalidRequest, OSError):
            return None

    def remove(self, digests: Iterable[str]) -> int:
        """Delete blobs; returns the bytes freed."""
        freed = 0
        for digest in digests:
            path = self.path(digest)
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                pass
        return freed

    def all(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            if _DIGEST.match(p.name):
                found.append(check_digest(p.name))
        return found

    # -- snapshots --------------------------------------------------------------------------------

    @staticmethod
    def snapshot_key(files: dict[str, str]) -> str:
        canon = json.dumps({k: check_digest(v) for k, v in sorted(files.items())}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def snapshot(self, files: dict[str, str]) -> Path:
        """A folder with these names (relative paths) holding these blobs; made once per mapping."""
        key = self.snapshot_key(files)
        final = self.snapshots / key
        index = self.snapshots / f"{key}.json"
        if final.is_dir() and index.is_file():
            return final
        self.snapshots.mkdir(parents=True, exist_ok=True)
        write_atomic(index, json.dumps({"files": {k: check_digest(v) for k, v in sorted(files.items())}}, indent=1))
        tmp = Path(tempfile.mkdtemp(dir=self.snapshots, prefix=".tmp-"))
        try:
            for name, digest in files.items():
                dest = tmp.joinpath(*safe_relative(name).parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link(self.path(digest), dest)
            try:
                os.rename(tmp, final)
            except OSError:  # made meanwhile by another pull of the same files
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def snapshot_files(self, key: str) -> dict[str, str]:
        """name -> digest of a snapshot, from its index; {} when it has none."""
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            return {}
        try:
            return dict(json.loads((self.snapshots / f"{key}.json").read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def snapshot_of(self, path: Path) -> str | None:
        """The snapshot key a path inside ``snapshots/<key>[/...]`` belongs to, else None."""
        try:
            rel = path.resolve().relative_to(self.snapshots.resolve())
        except (ValueError, OSError):
            return None
        key = rel.parts[0] if rel.parts else ""
        return key if re.fullmatch(r"[0-9a-f]{64}", key) else None

    def snapshot_keys(self) -> list[str]:
        if not self.snapshots.is_dir():
            return []
        return [p.stem for p in self.snapshots.glob("*.json") if re.fullmatch(r"[0-9a-f]{64}", p.stem)]

    def remove_snapshot(self, key: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            return
        shutil.rmtree(self.snapshots / key, ignore_errors=True)
        (self.snapshots / f"{key}.json").unlink(missing_ok=True)


def _link(blob: Path, dest: Path) -> None:
    """A hard link (no extra space, no dangling link); a copy on file systems without them."""
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)
