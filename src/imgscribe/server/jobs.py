"""One request's work on a thread of its own, its chunks handed to the event loop.

Everything blocking in a request (decoding images, fetching URLs, waiting in the scheduler's queue,
generating, downloading) runs on the job's thread, so the event loop only moves bytes. The threads
come from a pool kept by the server: starting a thread per request would make the event loop wait
until the operating system runs it.

The job watches the client's connection: when it goes away the job's ``cancel`` event is set, which
takes a waiting request out of the queue, stops a running one, and stops reading the work's items.

An error before the first item becomes a status code; after it, the last line of the stream.

The job's thread hands its items over in a deque, and wakes the event loop only when none is
pending already: a fast engine's burst of chunks costs the loop one wake-up, not one per chunk
(each ``call_soon_threadsafe`` writes to the loop's self-pipe and runs a loop iteration).

Backpressure: a client that reads slower than the engine writes (a stream read at a byte a second)
stops taking items once the socket's buffers are full; when :data:`MAX_BEHIND` items wait in the
deque the job's thread waits too (on a threading event, never on the loop), so the engine stops at
the client's pace and the memory a slow reader holds is bounded, not the whole answer. It goes on
when the loop has taken items, and stops when the client leaves (``cancel``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ..errors import Cancelled, EngineFailed, ImageTooLarge, RequestTimeout
from ..types import Stream
from .errors import log_error
from .render import Dialect, dump

# Chunks of an answer, or Ollama's progress objects (pull, create), given the cancel event: a
# Stream (a generator is one), closed when the client goes or the answer is complete.
Work = Callable[[threading.Event], Stream[Any]]
_END = object()
#: items the job's thread may be ahead of its client before it waits (chunks of a few tokens each)
MAX_BEHIND = 64
_SLICE = 0.25  # longest wait of a held-back thread between two looks at ``cancel``


class Job:
    def __init__(self, request: Request, work: Work, threads: Executor):
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._items: deque = deque()  # appended by the job's thread, taken by the event loop
        self._lock = threading.Lock()  # guards _wake_due against the thread's puts
        self._wake_due = False  # a wake-up is on its way to the loop
        self._room = threading.Event()  # set: the thread may put more (the client is not MAX_BEHIND behind)
        self._room.set()
        self._waiter: asyncio.Future | None = None
        self._watcher = asyncio.ensure_future(self._watch(request))
        threads.submit(self._run, work)

    async def next(self) -> Any:
        """The next item, None at the end; the work's error is raised here."""
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items[0]
        if item is not _END:  # the end stays, for every later call
            self._items.popleft()
            self._make_room()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def batch(self) -> list[Any]:
        """The next item and every one already waiting behind it (one write for a fast engine);
        an empty list at the end."""
        first = await self.next()
        if first is None:
            return []
        items = [first]
        while self._items:
            item = self._items[0]
            if item is _END or isinstance(item, BaseException):
                break  # for the next call
            items.append(self._items.popleft())
        self._make_room()
        return items

    @property
    def behind(self) -> int:
        """Items the job's thread has handed over that the client has not taken yet."""
        return len(self._items)

    def _make_room(self) -> None:
        """On the loop, after taking items: a held-back thread goes on. Under the lock: the thread
        counts and holds back under it, so a count made before these items were taken cannot hold
        it back after this look."""
        with self._lock:
            if len(self._items) < MAX_BEHIND and not self._room.is_set():
                self._room.set()

    def close(self) -> None:
        """Stop the work if it is still going (the client left, or the answer is complete)."""
        self.cancel.set()
        self._room.set()  # a held-back thread sees the cancel now
        self._watcher.cancel()

    def _run(self, work: Work) -> None:
        try:
            items = work(self.cancel)
            try:
                for item in items:
                    self._put(item)
                    if self.cancel.is_set():  # nobody is listening any more
                        break
            finally:
                items.close()
        except BaseException as exc:  # handed to the event loop, which answers with it
            self._put(exc, last=True)
        self._put(_END, last=True)

    def _put(self, item: object, last: bool = False) -> None:
        """On the job's thread: hand ``item`` over; wake the loop unless a wake-up is due already
        (the loop takes every item there when it comes). Then, unless it is the ``last``, wait
        while the client is MAX_BEHIND items behind (backpressure) and has not left."""
        with self._lock:
            self._items.append(item)
            if len(self._items) >= MAX_BEHIND and not last:
                self._room.clear()
            wake = not self._wake_due
            self._wake_due = True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is gone: the server is shutting down
                self.cancel.set()
                return
        if last:
            return
        while not self._room.wait(_SLICE):
            if self.cancel.is_set():
                return

    def _wake(self) -> None:
        """On the loop: a later put wakes it again; the waiting reader (if any) goes on."""
        with self._lock:
            self._wake_due = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _watch(self, request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self.cancel.set()


async def respond(request: Request, work: Work, dialect: Dialect, stream: bool, threads: Executor) -> Response:
    """Run ``work`` on one of ``threads`` and answer in ``dialect``: one JSON object, or a stream."""
    job = Job(request, work, threads)
    streaming = False
    try:
        first = await job.next()
        if first is None:
            raise EngineFailed("the model ended without an answer")
        if stream:
            streaming = True
            return _Streamed(_stream(job, first, dialect), media_type=dialect.media_type)
        chunks = [first]
        while (chunk := await job.next()) is not None:
            chunks.append(chunk)
        return Response(dump(dialect.whole(chunks)), media_type="application/json")
    finally:
        if not streaming:
            job.close()


class _Streamed(StreamingResponse):
    """A StreamingResponse without a disconnect listener of its own: the job watches the connection
    (``Job._watch``). Starlette adds one, in a task group, for servers of ASGI spec < 2.4 (uvicorn
    says 2.3): a second reader of ``receive`` and about a tenth of a streamed request's loop time."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.stream_response(send)
        except OSError:
            raise ClientDisconnect() from None


async def _stream(job: Job, first: Any, dialect: Dialect) -> AsyncIterator[bytes]:
    try:
        batch = [first]
        while batch:
            data = b"".join(dialect.encode(event) for item in batch for event in dialect.events(item))
            if data:
                yield data
            batch = await job.batch()
        if dialect.end:
            yield dialect.end
    except Exception as exc:  # the status line is sent: the error goes in the stream
        log_error(exc)
        yield dialect.encode(dialect.error(exc))
    finally:
        job.close()


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (0: no limit), and with
    408 when all of it has not arrived within ``timeout`` seconds (``IMGSCRIBE_BODY_TIMEOUT``; None:
    no limit). One limit for the whole body: a client sending a byte a second would pass any limit
    on the wait for each piece."""
    declared = request.headers.get("content-length", "")
    if limit > 0 and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for part in request.stream():
                size += len(part)
                if limit > 0 and size > limit:
                    raise _too_large(size, limit)
                parts.append(part)
    except ClientDisconnect:  # nobody to answer: a 499 that is not logged as a fault
        raise Cancelled("the client closed the connection before sending the whole request body") from None
    except TimeoutError:
        raise RequestTimeout(
            f"the request body took longer than {timeout:g}s to arrive (IMGSCRIBE_BODY_TIMEOUT)"
        ) from None
    return b"".join(parts)


def _too_large(size: int, limit: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"request body is {size:,} bytes or more, over the limit of {limit:,} bytes "
        "(room for four images of IMGSCRIBE_MAX_IMAGE_BYTES in base64; set it to change the limit)"
    )
