"""The only place that loads and unloads models.

This first version loads a model on first use and keeps it for the life of the process; keep-alive,
LRU unloading, parallel slots, the queue and cancellation on disconnect grow here (server issue).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from .engines import Runner, get_engine
from .errors import Unsupported
from .store import Store
from .types import ChatRequest, Chunk, ModelInfo


class Scheduler:
    def __init__(self, store: Store | None = None):
        self.store = store or Store()
        self._runners: dict[str, Runner] = {}
        self._load_ns: dict[str, int] = {}
        self._lock = threading.Lock()

    def info(self, model: str) -> ModelInfo:
        return self.store.resolve(model).info

    def runner(self, model: str) -> Runner:
        manifest = self.store.resolve(model)
        with self._lock:
            runner = self._runners.get(manifest.name)
            if runner is None:
                start = time.perf_counter_ns()
                runner = get_engine(manifest.engine).load(manifest)
                self._runners[manifest.name] = runner
                self._load_ns[manifest.name] = time.perf_counter_ns() - start
            return runner

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        info = self.info(request.model)
        if request.images and not info.vision:
            raise Unsupported(f"model '{request.model}' does not support images (no vision capability)")
        runner = self.runner(request.model)
        return runner.chat(request, cancel)

    def loaded(self) -> list[Runner]:
        with self._lock:
            return list(self._runners.values())

    def unload(self, model: str) -> bool:
        name = self.store.resolve(model).name
        with self._lock:
            runner = self._runners.pop(name, None)
        if runner is not None:
            runner.close()
        return runner is not None

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler used by the Python API and the in-process CLI."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default
