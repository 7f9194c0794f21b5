"""The local pipelined runner: images are read and decoded ahead while the model works.

::

    items ──► readers (threads: read, hash, fill prompts, skip or decode) ──► ready queue (bounded)
          ──► N workers (each keeps one request in flight to the scheduler or a server) ──► records

N requests stay in flight, so a model with parallel slots (or a server with several) is kept busy,
and the next image is already decoded when a slot frees up. The bounded queues cap memory at
about ``readers + read_ahead + N`` decoded images. Records come out in the order they finish.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import CancelChatFn, Describer, Prepared
from .sources import Url

if TYPE_CHECKING:
    from ..client import Client

_END = object()
_POLL = 0.2


def pipeline(
    items: Iterable[Path | Url],
    describer: Describer,
    chats: list[CancelChatFn],
    *,
    parallel: int = 4,
    read_ahead: int = 4,
    readers: int = 2,
    cancel: threading.Event | None = None,
) -> Iterator[dict[str, Any]]:
    """Records (and skip/reuse stubs) for ``items``, as they finish; ``chats`` are used in turn."""
    cancel = cancel or threading.Event()
    parallel, readers = max(1, parallel), max(1, readers)
    todo: queue.Queue = queue.Queue(maxsize=readers * 2)
    ready: queue.Queue = queue.Queue(maxsize=max(1, read_ahead))
    done: queue.Queue = queue.Queue()
    lock = threading.Lock()
    left = {"readers": readers, "workers": parallel}

    def put(q: queue.Queue, value: Any) -> bool:
        while not cancel.is_set():
            try:
                q.put(value, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def take(q: queue.Queue) -> Any:
        while not cancel.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END

    def feed() -> None:
        try:
            for item in items:
                if not put(todo, item):
                    return
        except BaseException as exc:  # a list that cannot be read mid-way: end the run with it
            done.put(("crash", exc))
        finally:
            for _ in range(readers):
                put(todo, _END)

    def last_out(role: str) -> bool:
        """Count one reader or worker out; True for the last of them."""
        with lock:
            left[role] -= 1
            return left[role] == 0

    def read() -> None:
        try:
            while (item := take(todo)) is not _END:  # _END also once cancelled
                result = describer.prepare(item)
                if isinstance(result, Prepared):
                    if not put(ready, result):
                        break
                else:
                    done.put(result)
        except BaseException as exc:
            done.put(("crash", exc))
        finally:
            if last_out("readers"):
                for _ in range(parallel):
                    put(ready, _END)

    def work(chat: CancelChatFn) -> None:
        try:
            while (job := take(ready)) is not _END:
                done.put(describer.describe(job, chat, cancel))
        except BaseException as exc:
            done.put(("crash", exc))
        finally:
            if last_out("workers"):
                done.put(_END)

    threads = [threading.Thread(target=feed, name="imgscribe-feed", daemon=True)]
    threads += [threading.Thread(target=read, name=f"imgscribe-read-{i}", daemon=True) for i in range(readers)]
    cycle = itertools.cycle(chats)
    threads += [threading.Thread(target=work, args=(next(cycle),), name=f"imgscribe-work-{i}", daemon=True)
                for i in range(parallel)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        while True:
            try:
                result = done.get(timeout=_POLL)
            except queue.Empty:
                continue
            if result is _END:
                return
            if isinstance(result, tuple):
                raise result[1]
            yield result
    finally:
        cancel.set()  # on an early exit (Ctrl-C, an error): stop reading, let requests cancel
        _join(threads)


def default_parallel(clients: list[Client], model: str) -> int:
    """Load the model before the first image (one clear error instead of one per image); the
    number of requests to keep in flight by default: the model's slots + 1 in-process, else 4
    per server (a server does not tell its slots)."""
    slots = clients[0].slots(model)
    return 4 * len(clients) if slots is None else slots + 1


def chosen_slots(clients: list[Client], model: str, asked: int | None) -> tuple[int, str] | None:
    """The slots ``describe`` loads the model with in process when nothing chose them (neither
    ``IMGSCRIBE_NUM_PARALLEL``, nor whoever made the scheduler, nor the model's engine setting
    ``num_parallel``), and what they are, in words; None: as the settings say (a server, Ray, a
    model loaded already). An engine whose slots cost memory (llama.cpp): as many as it offers (4),
    or ``--parallel N``, that the memory allows (its ``fit_slots``); other engines: all of theirs
    (up to N)."""
    from ..client import LocalClient
    from ..config import PARALLEL_WHEN_UNSET, chosen

    client = clients[0]
    if len(clients) != 1 or not isinstance(client, LocalClient) or chosen("num_parallel"):
        return None
    scheduler = client.scheduler
    if scheduler.num_parallel_chosen or scheduler.loaded_runner(model) is not None:
        return None
    manifest = client.manifest(model)
    if manifest is None or manifest.engine_settings.get("num_parallel"):
        return None
    from ..engines import get_engine

    engine = get_engine(manifest.engine)
    if not hasattr(engine, "fit_slots"):  # slots that cost no memory of their own
        return asked or 0, "the model's slots"
    fit = engine.fit_slots(manifest, asked or PARALLEL_WHEN_UNSET)
    return fit.slots, engine.slot_name + (f": {fit.reason()}" if fit.limited else "")


@contextmanager
def slots_applied(client: Client, slots: int) -> Iterator[None]:
    """``slots`` for the models ``client``'s scheduler loads while the run lasts (the scheduler's,
    and the process's ``num_parallel`` that the engines read); as before afterwards."""
    from ..config import configure

    scheduler = client.scheduler  # type: ignore[attr-defined]  # a LocalClient (chosen_slots)
    before = scheduler.num_parallel
    configure(num_parallel=slots)
    scheduler.num_parallel = slots
    try:
        yield
    finally:
        configure(num_parallel=None)
        scheduler.num_parallel = before


def _join(threads: list[threading.Thread], timeout: float = 30.0) -> None:
    """Wait for the threads to see the cancel: one still inside a model call when the interpreter
    exits can abort the process ("terminate called without an active exception")."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
