"""A machine-wide budget of pixels being decoded or held, shared by every request.

A request asks for the room its images need (:func:`imgscribe.images.Header.cost`: a pixel being
decoded counts once per copy the decoder makes of it, a decoded pixel held until the answer once),
all at once, before it decodes anything: it never holds part of the budget while waiting for more,
so two requests cannot wait for each other. When the room is not free it waits its turn, first come
first served (a large request is not overtaken for ever by small ones); when ``max_waiting``
requests already wait, it is refused with :class:`~imgscribe.errors.Busy` (503); a waiting request
whose ``cancel`` event is set (its client left) leaves the queue. A request that needs more than the
whole budget (its images are within the request's limits, which are set apart) is given the whole
budget once nothing else holds any of it, and runs alone. A limit of 0 turns the budget off (nothing
waits, the counters still count).

The room is given back by :meth:`Lease.release`, which the server calls when the answer is finished
(the images live until then); :meth:`Lease.shrink` gives back what the decoder needed only while
decoding.

Counting pixels bounds what is allocated, not what the process keeps: glibc's malloc keeps freed
blocks for reuse in the arena (one per thread, up to eight per core) that freed them, and after the
first large block is freed it serves the next ones from those arenas instead of mapping them on
their own. With 300 requests on as many threads, RSS reached 6.5 GB while the budget held 1 GB at
most (``bench/hostile_memory.py``). :func:`map_large_blocks` (the server calls it once) makes every
block of 4 MiB or more (a Pillow image is allocated in blocks of up to 16 MiB) a mapping of its own,
returned to the system when it is freed: the same run peaked at 1.3 GB.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections import deque

from ..errors import Busy, Cancelled

_POLL = 0.1  # seconds between two looks at a waiting request's cancel event
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK = 4 * 2**20


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Have glibc map allocations of ``threshold`` bytes or more on their own, and unmap them when
    they are freed (a fixed ``M_MMAP_THRESHOLD``, instead of one that grows after the first large
    free). Whether it could (not on other C libraries or systems)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


class PixelBudget:
    def __init__(self, limit: int, max_waiting: int):
        self.limit = max(0, limit)
        self.max_waiting = max(0, max_waiting)
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        # What tests and the bench look at.
        self.held = 0  # pixels granted now
        self.peak = 0  # the most ever granted at once
        self.granted = 0  # leases given (waiting or not)
        self.waited = 0  # leases that had to wait
        self.refused = 0  # requests answered 503 because too many were waiting
        self.cancelled = 0  # requests that left the queue because their client went away

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, pixels: int, cancel: threading.Event | None = None) -> Lease:
        """Room for ``pixels``, waiting for it if need be (see the module docstring)."""
        pixels = max(0, int(pixels))
        if 0 < self.limit < pixels:
            pixels = self.limit  # more than the whole budget: it waits for all of it, and runs alone
        waiter = _Waiter(pixels)
        with self._lock:
            if not self._queue and self._fits(pixels):
                self._grant(waiter)
                return Lease(self, pixels)
            if len(self._queue) >= self.max_waiting:
                self.refused += 1
                raise Busy(
                    f"server busy: {len(self._queue)} requests are already waiting for room to decode their "
                    f"images (IMGSCRIBE_DECODE_PIXELS={self.limit:,} pixels, at most IMGSCRIBE_MAX_QUEUE="
                    f"{self.max_waiting} waiting); try again shortly"
                )
            self._queue.append(waiter)
            self.waited += 1
        try:
            while not waiter.event.wait(_POLL):
                if cancel is not None and cancel.is_set():
                    break
        except BaseException:
            if self._leave(waiter):
                self._give_back(pixels)
            raise
        granted = self._leave(waiter)
        if not granted or (cancel is not None and cancel.is_set()):
            if granted:
                self._give_back(pixels)
            with self._lock:
                self.cancelled += 1
            raise Cancelled("the client went away while its request waited for room to decode its images")
        return Lease(self, pixels)

    def _leave(self, waiter: _Waiter) -> bool:
        """Whether ``waiter`` was granted its room; if not, it leaves the queue."""
        with self._lock:
            if waiter.granted:
                return True
            self._queue.remove(waiter)
            self._wake()  # the requests behind it may fit now
            return False

    def _fits(self, pixels: int) -> bool:
        return self.limit == 0 or self.held + pixels <= self.limit

    def _grant(self, waiter: _Waiter) -> None:
        waiter.granted = True
        self.held += waiter.pixels
        self.peak = max(self.peak, self.held)
        self.granted += 1
        waiter.event.set()

    def _wake(self) -> None:
        """Grant the waiters at the head of the queue that fit now, in order (under the lock)."""
        while self._queue and self._fits(self._queue[0].pixels):
            self._grant(self._queue.popleft())

    def _give_back(self, pixels: int) -> None:
        if pixels <= 0:
            return
        with self._lock:
            self.held -= pixels
            self._wake()


class _Waiter:
    __slots__ = ("event", "granted", "pixels")

    def __init__(self, pixels: int):
        self.pixels = pixels
        self.granted = False
        self.event = threading.Event()


class Lease:
    """Room granted by a :class:`PixelBudget`; given back once, by :meth:`release` (or when it is
    garbage-collected, as a safety net for a request that failed before its answer started)."""

    def __init__(self, budget: PixelBudget | None, pixels: int):
        self._budget = budget
        self._lock = threading.Lock()
        self.pixels = pixels

    @classmethod
    def none(cls) -> Lease:
        """A lease of nothing (a request without images)."""
        return cls(None, 0)

    def shrink(self, pixels: int) -> None:
        """Keep only ``pixels`` of the room (what the decoded images hold); give back the rest."""
        with self._lock:
            extra = self.pixels - max(0, pixels)
            if extra <= 0:
                return
            self.pixels -= extra
        if self._budget is not None:
            self._budget._give_back(extra)

    def release(self) -> None:
        with self._lock:
            pixels, self.pixels = self.pixels, 0
        if self._budget is not None:
            self._budget._give_back(pixels)

    def __del__(self) -> None:
        if self.pixels:
            self.release()
