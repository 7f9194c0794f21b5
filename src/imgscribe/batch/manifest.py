"""Resume: an append-only, fsync'd JSON-lines file of finished records.

The manifest is the run's memory, and for a ``.jsonl`` output it *is* the output: one record per
line, each with its ``id`` (work key + path) and ``key`` (image sha256 + model digest + prompts +
options). How it stays exactly-once when the process dies at any moment (SIGKILL included):

- A record is appended with one ``write`` of one line, after its side effects (sidecar, XMP) are
  on disk; the line is the commit. Lines go to the OS at once (a killed process loses nothing)
  and are fsync'd at least every :data:`SYNC_EVERY` seconds and at the end (a power cut loses at
  most that much work, which the rerun redoes).
- A run appends only ids the file does not hold, except to *update* a record (a side effect
  written later, e.g. ``--sidecar`` added on a rerun); the later line wins.
- Opening repairs and compacts: a torn last line is cut off, unreadable lines are dropped, and so
  are error rows (this run retries them), rows that a later line updates, and with
  ``--overwrite`` the rows of the paths about to be redone. Closing compacts again when the run
  updated rows. Compaction writes a temporary file and renames it over the old one, so a kill
  during it leaves the old file or the new one, never a mix.
- One run at a time per manifest: an exclusive lock on ``.NAME.lock`` next to it.

Memory: about 200 bytes per record for the index (ids, keys and where each line is).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ImgscribeError
from .records import Index
from .writers.atomic import write_atomic

SYNC_EVERY = 0.5  # seconds


class Manifest:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._rows: dict[str, tuple[int, int]] = {}  # id -> (offset, length) of its line
        self._by_key: dict[str, str] = {}  # key -> an id with a good answer for it
        self.ids: set[str] = set()
        self.keys: set[str] = set()
        self.aliases: dict[str, str] = {}
        self.dropped = {"torn": 0, "unreadable": 0, "updated": 0, "error": 0, "overwrite": 0}
        self._size = 0
        self._synced = time.monotonic()
        self._dirty = False
        self._updated = False
        self._garbage = 0  # lines that are not JSON at all

    # -- opening ---------------------------------------------------------------------------------

    def open(self, redo_paths: Iterable[str] = ()) -> Index:
        """Lock, repair and compact; the index of what is done. ``redo_paths``: rows to forget."""
        try:
            return self._open(redo_paths)
        except OSError as exc:
            self.close()
            raise ImgscribeError(
                f"cannot use {self.path} as the run's manifest: {exc.strerror or exc}; "
                "choose another --out or --manifest"
            ) from None

    def _open(self, redo_paths: Iterable[str]) -> Index:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        redo = set(redo_paths)
        foreign: list[tuple[int, int]] = []  # lines that are not our records: kept as they are
        changed = False
        if self.path.exists():
            with open(self.path, "rb") as f:
                offset = 0
                for line in f:
                    start, offset = offset, offset + len(line)
                    why = self._scan(line, (start, len(line)), redo, foreign)
                    if why:
                        self.dropped[why] += 1
                        changed = True
        if self._garbage and not (self._rows or foreign or self.dropped["error"] or self.dropped["overwrite"]):
            self.close()
            raise ImgscribeError(
                f"{self.path} is not an imgscribe manifest or JSON-lines output (it holds lines that are not JSON), "
                "so it is left alone; choose another --out or --manifest"
            )
        if changed:
            self._compact(foreign)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        return Index(ids=self.ids, keys=self.keys, aliases=self.aliases)

    def _scan(self, line: bytes, where: tuple[int, int], redo: set[str], foreign: list) -> str | None:
        """Why a line is dropped, or None (then it is indexed, or kept as foreign)."""
        if not line.endswith(b"\n"):
            self._garbage += not line.lstrip().startswith(b"{")  # a cut-short record starts like one
            return "torn"  # the last write was cut short
        if not line.strip():
            return "unreadable"
        try:
            record = json.loads(line)
        except ValueError:
            self._garbage += 1
            return "unreadable"
        rid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(rid, str):
            foreign.append(where)  # not ours (an older output?): kept, not indexed
            return None
        if record.get("error"):
            return "error"  # retried by this run
        if record.get("path") in redo:
            return "overwrite"
        updated = rid in self._rows
        self._index(record, where)
        return "updated" if updated else None

    def _index(self, record: dict[str, Any], where: tuple[int, int]) -> None:
        rid = record["id"]
        self._rows[rid] = where
        self.ids.add(rid)
        if record.get("key"):
            self.keys.add(record["key"])
            self._by_key.setdefault(record["key"], rid)
        written = (record.get("written") or {}).get("sha256")
        if written and record.get("sha256") and written != record["sha256"]:
            self.aliases[written] = record["sha256"]

    def _compact(self, foreign: list[tuple[int, int]]) -> None:
        """Rewrite the file with the indexed lines (the last of each id) and the foreign ones."""
        order = sorted([(where, rid) for rid, where in self._rows.items()] + [(w, None) for w in foreign])
        moved: dict[str, tuple[int, int]] = {}

        def lines() -> Iterator[bytes]:
            offset = 0
            with open(self.path, "rb") as f:
                for (start, length), rid in order:
                    f.seek(start)
                    line = f.read(length)
                    if rid is not None:
                        moved[rid] = (offset, length)
                    offset += length
                    yield line

        write_atomic(self.path, lines())
        self._rows = moved

    def _lock(self) -> None:
        import fcntl

        lock = self.path.with_name(f".{self.path.name}.lock")
        self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ImgscribeError(
                f"another 'imgscribe describe' is writing {self.path} (locked); wait for it or use another --out"
            ) from None

    # -- a run -----------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Commit one record. Its id is new, or this is an update of that id (the later line wins)."""
        if self._fd is None:
            raise RuntimeError("manifest is not open")
        self._updated |= record["id"] in self._rows
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:  # a full disk: cut the half line, so that every line stays a whole record
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise ImgscribeError(
                f"cannot write to {self.path}: {exc.strerror or exc}; the {len(self.ids)} record(s) done so far "
                "are saved there; free some space and run the same command again: it resumes"
            ) from None
        if not record.get("error"):
            self._index(record, (self._size, len(line)))
        else:
            self.ids.add(record["id"])
        self._size += len(line)
        self._dirty = True
        if time.monotonic() - self._synced >= SYNC_EVERY:
            self.sync()

    def get(self, rid: str) -> dict[str, Any] | None:
        """The finished record with this id."""
        where = self._rows.get(rid)
        if where is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(where[0])
            return json.loads(f.read(where[1]))

    def get_key(self, key: str) -> dict[str, Any] | None:
        """A finished record for this work key (the same image at another path)."""
        rid = self._by_key.get(key)
        return self.get(rid) if rid is not None else None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record in the file, in order (for outputs rebuilt from it)."""
        with open(self.path, "rb") as f:
            for line in f:
                if line.endswith(b"\n") and line.strip():
                    record = json.loads(line)
                    if isinstance(record, dict):
                        yield record

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._synced = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
            if self._updated:  # leave each id once in the file
                with contextlib.suppress(OSError):
                    self._compact_on_close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _compact_on_close(self) -> None:
        foreign: list[tuple[int, int]] = []
        rows, self._rows = self._rows, {}
        with open(self.path, "rb") as f:
            offset = 0
            for line in f:
                start, offset = offset, offset + len(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                rid = record.get("id") if isinstance(record, dict) else None
                if not isinstance(rid, str):
                    foreign.append((start, len(line)))
                elif rows.get(rid) == (start, len(line)) or (rid not in rows and record.get("error")):
                    self._rows[rid] = (start, len(line))
        self._compact(foreign)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
