"""Parallel, resumable, verified downloads into the blob store (the shape of Ollama's download.go).

- **Parallel.** Every file of a pull downloads at once, and a large blob in up to ``MAX_PARTS``
  ranges of at least ``MIN_PART_SIZE`` bytes, over at most ``CONNECTIONS`` connections in all.
- **Resumable.** Bytes go to ``blobs/sha256-<hex>-partial``; ``...-partial.json`` records how far
  each range got. A dropped connection is retried from where it stopped (an HTTP ``Range``
  request), up to ``MAX_RETRIES`` times in a row without progress; a pull that is interrupted
  (Ctrl-C, a closed connection to the server, a crash) continues from the same files next time.
- **Verified.** A finished blob is hashed; only bytes that match the digest are renamed to
  ``blobs/sha256-<hex>``. A mismatch deletes the download and fetches it again once; a second
  mismatch is an error (:class:`DigestMismatch`) and nothing is kept.
- **One at a time per blob.** A lock file makes a second pull of the same blob (another model
  that shares it, another process) wait for the first and reuse its result.

Files whose digest is not known in advance (small non-LFS files of a Hugging Face repository) are
fetched whole, checked against their size and git object id, and stored under their SHA-256.

The HTTP client and what its answers mean are in ``http.py``; what to fetch and the progress
reported, in ``progress.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import errno
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ...errors import Cancelled
from ..blobs import BlobStore, sha256_file, write_atomic
from .errors import DigestMismatch, DiskError
from .http import _host, _Retry, _skip, check_response, new_client, transport_error
from .progress import Item, _Progress, human_bytes

try:  # POSIX: a lock that also holds between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: threads of this process only
    fcntl = None

__all__ = ["Downloader", "Item", "check_response", "new_client", "transport_error"]

MIN_PART_SIZE = 64 * 1024 * 1024
MAX_PARTS = 16
CONNECTIONS = 8
MAX_RETRIES = 6  # attempts in a row that make no progress
BACKOFF = 0.5  # seconds, doubled per failed attempt ...
MAX_BACKOFF = 8.0  # ... up to this
VERIFY_TRIES = 2  # a blob whose bytes do not match its digest is fetched once more
CHUNK = 256 * 1024
SAVE_EVERY = 8 * 1024 * 1024  # write the resume state after this many bytes per range
POLL = 0.1  # seconds between progress reports


class _Stopped(Exception):
    """The pull was cancelled, or another range of the same blob failed."""


@dataclass
class _Part:
    offset: int
    size: int
    completed: int = 0


class _State:
    """How far each range of a blob got; saved beside the partial file."""

    def __init__(self, path: Path, digest: str, size: int, parts: list[_Part]):
        self.path = path
        self.digest = digest
        self.size = size
        self.parts = parts
        self.lock = threading.Lock()
        self.failed = False

    @classmethod
    def load(cls, path: Path, digest: str, size: int) -> _State | None:
        try:
            data = json.loads(path.read_text())
            parts = [_Part(int(p["offset"]), int(p["size"]), int(p["completed"])) for p in data["parts"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("digest") != digest or data.get("size") != size:
            return None
        if sum(p.size for p in parts) != size or any(not 0 <= p.completed <= p.size for p in parts):
            return None
        return cls(path, digest, size, parts)

    @classmethod
    def plan(cls, path: Path, digest: str, size: int) -> _State:
        count = max(1, min(MAX_PARTS, -(-size // MIN_PART_SIZE)))
        step = -(-size // count) if size else 0
        parts = [_Part(o, min(step, size - o)) for o in range(0, size, step)] if size else []
        return cls(path, digest, size, parts)

    @property
    def completed(self) -> int:
        return sum(p.completed for p in self.parts)

    def body(self) -> str:
        return json.dumps({"digest": self.digest, "size": self.size,
                           "parts": [{"offset": p.offset, "size": p.size, "completed": p.completed} for p in self.parts]})  # fmt: skip

    def save(self) -> None:
        with self.lock:
            write_atomic(self.path, self.body())

    def save_on_full_disk(self) -> None:
        """After a failed write, so that the rerun resumes from here: on a full disk the old file is
        overwritten in place (its pages exist); a torn state file only makes the rerun start over."""
        try:
            return self.save()
        except OSError:
            pass
        with self.lock, contextlib.suppress(OSError), open(self.path, "r+b") as f:
            f.write(self.body().encode())
            f.truncate()


_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


@contextlib.contextmanager
def _blob_lock(path: Path, stop: Callable[[], bool], waiting: Callable[[], None]) -> Iterator[None]:
    """Exclusive use of one blob's partial files, between threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        with _local_guard:
            lock = _local_locks.setdefault(str(path), threading.Lock())
        while not lock.acquire(timeout=POLL):
            if stop():
                raise _Stopped
            waiting()
        try:
            yield
        finally:
            lock.release()
        return
    with open(path, "a+b") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop():
                    raise _Stopped from None
                waiting()
                time.sleep(POLL)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class Downloader:
    def __init__(self, blobs: BlobStore, client: httpx.Client):
        self.blobs = blobs
        self.client = client

    def run(self, items: list[Item], cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """Fetch every item, yielding progress objects; each item's ``result`` is set when done.

        Closing the generator early cancels the transfers and keeps what they got for next time.
        """
        cancel = cancel or threading.Event()
        progress = _Progress(items)
        firsts: dict[str, Item] = {}
        for item in items:
            firsts.setdefault(item.key, item)
        self.check_space(list(firsts.values()))
        parts = ThreadPoolExecutor(max_workers=CONNECTIONS, thread_name_prefix="imgscribe-pull-part")
        files = ThreadPoolExecutor(max_workers=max(1, min(len(firsts), CONNECTIONS)), thread_name_prefix="imgscribe-pull")
        futures: list[Future] = [files.submit(self._fetch, item, progress, parts, cancel) for item in firsts.values()]
        try:
            yield from progress.events(force=True)
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL, return_when=FIRST_EXCEPTION)
                for future in done:
                    try:
                        future.result()
                    except _Stopped:
                        raise Cancelled("the pull was cancelled; pull again to continue where it stopped") from None
                yield from progress.events()
            yield from progress.events()
        finally:
            if not all(f.done() for f in futures) or any(f.exception() for f in futures if f.done()):
                cancel.set()
            files.shutdown(wait=True, cancel_futures=True)
            parts.shutdown(wait=True, cancel_futures=True)
        for item in items:  # items that shared a digest with the one fetched
            item.result = firsts[item.key].result

    def check_space(self, items: list[Item]) -> None:
        """Refuse upfront a pull whose files do not fit on the store's disk (what a partial download
        already holds counts as there); files of unknown size are not counted."""
        needed = 0
        for item in items:
            if not item.digest or not item.size or self.blobs.has(item.digest, item.size):
                continue
            try:  # a partial file is sparse: its allocated blocks are what arrived
                have = min(item.size, self.blobs.partial(item.digest).stat().st_blocks * 512)
            except OSError:
                have = 0
            needed += item.size - have
        try:
            self.blobs.dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.blobs.dir).free
        except OSError:
            return  # cannot tell: the writes will say
        if needed > free:
            raise DiskError(
                f"not enough space for this pull in {self.blobs.dir}: it needs {human_bytes(needed)} more and "
                f"{human_bytes(free)} is free; free some space (or point IMGSCRIBE_MODELS at a bigger disk) and pull again"
            )

    # -- one file -------------------------------------------------------------------------------

    def _fetch(self, item: Item, progress: _Progress, parts: ThreadPoolExecutor, cancel: threading.Event) -> None:
        try:
            self._fetch_item(item, progress, parts, cancel)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                done, of = progress.completed.get(item.key, 0), f" of {human_bytes(item.size)}" if item.size else ""
                raise DiskError(
                    f"no space left on device while downloading {item.what} to {self.blobs.dir}: "
                    f"{human_bytes(done)}{of} written; free some space and run the pull again: it resumes"
                ) from None
            raise DiskError(
                f"cannot write {item.what} into {self.blobs.dir}: {exc.strerror or exc}; "
                "make room (or fix the folder's permissions) and pull again: what arrived is kept"
            ) from None

    def _fetch_item(self, item: Item, progress: _Progress, parts: ThreadPoolExecutor, cancel: threading.Event) -> None:
        if not item.digest or item.size is None:
            self._fetch_whole(item, progress, cancel)
            return
        digest, size = item.digest, item.size
        if self.blobs.has(digest, size):
            progress.set(item.key, size, size)
            item.result = digest
            return
        partial = self.blobs.partial(digest)
        state_path = partial.with_name(partial.name + ".json")
        lock_path = partial.with_name(partial.name + ".lock")

        def waiting() -> None:  # another pull holds this blob: show its progress
            state = _State.load(state_path, digest, size)
            if state is not None:
                progress.set(item.key, state.completed, size)

        with _blob_lock(lock_path, cancel.is_set, waiting):
            if self.blobs.has(digest, size):
                progress.set(item.key, size, size)
                item.result = digest
                lock_path.unlink(missing_ok=True)
                return
            for attempt in range(1, VERIFY_TRIES + 1):
                self._fetch_parts(item, partial, state_path, progress, parts, cancel)
                if sha256_file(partial) == digest:
                    self.blobs.commit(partial, digest)
                    state_path.unlink(missing_ok=True)
                    lock_path.unlink(missing_ok=True)
                    item.result = digest
                    return
                partial.unlink(missing_ok=True)  # corrupted: start over
                state_path.unlink(missing_ok=True)
                progress.set(item.key, 0, size)
            raise DigestMismatch(
                f"{item.what} from {_host(item.url)} does not match its sha256 digest, twice "
                "(the server or a proxy sent corrupted data); nothing was kept. Try the pull again later"
            )

    def _fetch_parts(
        self,
        item: Item,
        partial: Path,
        state_path: Path,
        progress: _Progress,
        pool: ThreadPoolExecutor,
        cancel: threading.Event,
    ) -> None:
        digest, size = item.digest, item.size
        assert digest is not None and size is not None
        state = None
        if partial.is_file() and partial.stat().st_size == size:
            state = _State.load(state_path, digest, size)
        if state is None:
            state = _State.plan(state_path, digest, size)
            with open(partial, "wb") as f:
                f.truncate(size)
            state.save()
        progress.set(item.key, state.completed, size)

        def stop() -> bool:
            return cancel.is_set() or state.failed

        futures = [pool.submit(self._fetch_part, item, partial, state, part, progress, stop)
                   for part in state.parts if part.completed < part.size]  # fmt: skip
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            state.failed = True
            wait(futures)
            errors = [f.exception() for f in futures if f.exception() and not isinstance(f.exception(), _Stopped)]
            raise errors[0] if errors else _Stopped()
        state.save()

    def _fetch_part(
        self, item: Item, partial: Path, state: _State, part: _Part, progress: _Progress, stop: Callable[[], bool]
    ) -> None:
        failures = 0
        while True:
            if stop():
                raise _Stopped
            start, end = part.offset + part.completed, part.offset + part.size  # end exclusive
            if start >= end:
                return
            before = part.completed
            try:
                headers = {**item.headers, "Range": f"bytes={start}-{end - 1}"}
                with self.client.stream("GET", item.url, headers=headers) as response:
                    check_response(response, item.what)
                    skip = _skip(response, start)
                    with open(partial, "r+b", buffering=0) as f:
                        f.seek(start)
                        unsaved = 0
                        for chunk in response.iter_bytes(CHUNK):
                            if stop():
                                raise _Stopped
                            if skip:
                                dropped = min(skip, len(chunk))
                                chunk, skip = chunk[dropped:], skip - dropped
                            chunk = chunk[: end - (part.offset + part.completed)]
                            if not chunk:
                                if part.offset + part.completed >= end:
                                    break
                                continue
                            _write_all(f, chunk)
                            part.completed += len(chunk)
                            progress.add(item.key, len(chunk))
                            unsaved += len(chunk)
                            if unsaved >= SAVE_EVERY:
                                state.save()
                                unsaved = 0
                state.save()
                if part.completed < part.size:
                    raise httpx.RemoteProtocolError("the server closed the connection early")
                return
            except _Stopped:
                state.save_on_full_disk()
                raise
            except OSError:  # the disk (full, failing): keep how far this range got
                state.save_on_full_disk()
                raise
            except (httpx.TransportError, _Retry) as exc:
                state.save()
                failures = 0 if part.completed > before else failures + 1
                if failures >= MAX_RETRIES:
                    raise transport_error(exc, item.url) from None
                _sleep(min(MAX_BACKOFF, BACKOFF * 2 ** max(0, failures - 1)), stop)

    def _fetch_whole(self, item: Item, progress: _Progress, cancel: threading.Event) -> None:
        """A file without a known digest or size: fetched in one piece, then stored by its hash."""
        self.blobs.dir.mkdir(parents=True, exist_ok=True)
        mismatches = failures = 0
        while True:
            if cancel.is_set():
                raise _Stopped
            fd, name = tempfile.mkstemp(dir=self.blobs.dir, prefix=".tmp-")
            tmp = Path(name)
            try:
                sha = hashlib.sha256()
                written = 0
                progress.set(item.key, 0, item.size)
                with os.fdopen(fd, "wb") as f, self.client.stream("GET", item.url, headers=item.headers) as response:
                    check_response(response, item.what)
                    for chunk in response.iter_bytes(CHUNK):
                        if cancel.is_set():
                            raise _Stopped
                        f.write(chunk)
                        sha.update(chunk)
                        written += len(chunk)
                        progress.add(item.key, len(chunk))
                digest = f"sha256:{sha.hexdigest()}"
                ok = (item.size is None or written == item.size) and (not item.digest or digest == item.digest)
                if ok and item.git_oid:
                    ok = _git_oid(tmp, written) == item.git_oid
                if ok:
                    if self.blobs.has(digest):
                        tmp.unlink()
                    else:
                        self.blobs.commit(tmp, digest)
                    item.result = digest
                    return
                tmp.unlink(missing_ok=True)
                mismatches += 1
                if mismatches >= VERIFY_TRIES:
                    raise DigestMismatch(
                        f"{item.what} from {_host(item.url)} does not match its listed size or checksum, twice; "
                        "nothing was kept. Try the pull again later"
                    )
            except (httpx.TransportError, _Retry) as exc:
                tmp.unlink(missing_ok=True)
                failures += 1
                if failures >= MAX_RETRIES:
                    raise transport_error(exc, item.url) from None
                _sleep(min(MAX_BACKOFF, BACKOFF * 2 ** (failures - 1)), cancel.is_set)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise


def _write_all(f, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n:]


def _git_oid(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop():
            raise _Stopped
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
