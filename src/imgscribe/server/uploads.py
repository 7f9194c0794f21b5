"""``POST /api/blobs/sha256:<hex>``: a model file streamed into the blob store, as Ollama's
``ollama create`` uploads the files a Modelfile names before it calls ``/api/create``.

A blob appears under its name only whole and verified: the bytes go to a temporary file of their
own beside the blobs (``.tmp-upload-*``, which the store never lists), are hashed on the way, and
the file is renamed into place only when the digest is the one named; otherwise (a mismatch, a
client that goes away, a body over ``IMGSCRIBE_MAX_BLOB_BYTES``, a client too slow) it is deleted.
A server killed mid-upload cannot delete it: the next ``create`` (or ``prune``) does
(``BlobStore.sweep_temporaries``; the upload's ``flock`` tells it the writer is gone).
Two uploads of the same file at once each write their own temporary file; the rename of identical
bytes makes one good blob whichever comes last.

Who may upload is decided before this runs, as for every route (``docs/security.md``): a page from
a foreign origin gets 403 and, with ``IMGSCRIBE_API_KEY`` set, a client without it 401, before the
body is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..errors import Cancelled, ImgscribeError, InvalidRequest, RequestTimeout
from ..store.blobs import BlobStore, check_digest, locked_temp

__all__ = ["MIN_RATE", "BlobTooLarge", "NoRoom", "receive_blob"]

#: After ``IMGSCRIBE_BODY_TIMEOUT`` has passed, an upload must have averaged this many bytes a
#: second: a model file may take long to arrive, a client that trickles it may not hold it open.
MIN_RATE = 1_000_000
_FLUSH = 4 << 20  # bytes gathered before a write (on a worker thread)


class BlobTooLarge(InvalidRequest):
    status = 413


class NoRoom(ImgscribeError):
    """The disk holding the store has no room for the file."""

    status = 507


async def receive_blob(request: Request, blobs: BlobStore, digest: str, limit: int, grace: float | None) -> bool:
    """Read the request body as the blob ``digest``; True when it was stored now, False when the
    store had it already (the body is still read and checked, so that the client, which sent it
    whole, gets an answer on a connection that stays usable). ``limit``: bytes (0: none);
    ``grace``: seconds before the :data:`MIN_RATE` floor applies (None: no deadline)."""
    digest = check_digest(digest)
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    if limit > 0 and size is not None and size > limit:
        raise _too_large(size, limit)
    exists = blobs.has(digest)
    tmp: Path | None = None
    out = None
    if not exists:
        blobs.dir.mkdir(parents=True, exist_ok=True)
        if size is not None and shutil.disk_usage(blobs.dir).free < size:
            raise NoRoom(f"no room on the server for a file of {size:,} bytes")
        fd, tmp = locked_temp(blobs.dir, ".tmp-upload-")  # locked: a server killed mid-upload leaves it to the sweep
        out = os.fdopen(fd, "wb")
    try:
        got = await _read(request, out, limit, grace)
        if out is not None:
            out.close()
        if got != digest:
            raise InvalidRequest(f"digest mismatch, expected {digest!r}, got {got!r}")
        if tmp is not None:
            await run_in_threadpool(os.replace, tmp, blobs.path(digest))
            tmp = None
        return not exists
    finally:
        if out is not None and not out.closed:
            out.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)


async def _read(request: Request, out, limit: int, grace: float | None) -> str:
    """The body's ``sha256:<hex>``, its bytes written to ``out`` (when given) as they come."""
    h = hashlib.sha256()
    received, pending, start = 0, [], time.monotonic()
    parts = request.stream().__aiter__()
    try:
        while True:
            left = None if grace is None else start + grace + received / MIN_RATE - time.monotonic()
            if left is not None and left <= 0:
                raise _too_slow(grace)
            try:
                async with asyncio.timeout(left):
                    part = await anext(parts)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise _too_slow(grace) from None
            received += len(part)
            if limit > 0 and received > limit:
                raise _too_large(received, limit)
            h.update(part)
            if out is not None:
                pending.append(part)
                if sum(map(len, pending)) >= _FLUSH:
                    await run_in_threadpool(out.writelines, pending)
                    pending = []
    except ClientDisconnect:  # nobody to answer: a 499, not logged as a fault; nothing is kept
        raise Cancelled("the client closed the connection before sending the whole file") from None
    if out is not None and pending:
        await run_in_threadpool(out.writelines, pending)
    return f"sha256:{h.hexdigest()}"


def _too_large(size: int, limit: int) -> BlobTooLarge:
    return BlobTooLarge(
        f"the file is {size:,} bytes or more, over the limit of {limit:,} bytes (IMGSCRIBE_MAX_BLOB_BYTES)"
    )


def _too_slow(grace: float | None) -> RequestTimeout:
    return RequestTimeout(
        f"the file arrived too slowly: after {grace:g}s (IMGSCRIBE_BODY_TIMEOUT) an upload must average "
        f"{MIN_RATE // 1_000_000} MB/s"
    )
