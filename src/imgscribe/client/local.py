"""The client contract in process: a scheduler and its store, no server."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..scheduler import Scheduler, default_scheduler, process_settings
from ..store import Store
from ..types import ChatRequest, ModelInfo, ModelManifest
from .protocol import Answer, Events

__all__ = ["LocalClient", "LocalRecipe"]


class LocalClient:
    """:class:`~imgscribe.client.protocol.Client` over a scheduler in this process (by default
    the process-wide one). ``own``: the client made the scheduler, and ``close()`` closes it."""

    where = "in-process"

    def __init__(self, scheduler: Scheduler | None = None, *, own: bool = False):
        self.scheduler = scheduler or default_scheduler()
        self.store = self.scheduler.store
        self._own = own

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Answer:
        return self.scheduler.chat(request, cancel)

    def info(self, model: str) -> ModelInfo:
        return self.scheduler.info(model)

    def manifest(self, model: str) -> ModelManifest | None:
        return self.store.resolve(model)

    def load(self, model: str) -> None:
        self.scheduler.load(model)

    def slots(self, model: str) -> int | None:
        self.scheduler.load(model)
        name = self.scheduler.info(model).name
        return next((row.slots for row in self.scheduler.ps() if row.info.name == name), 1)

    def list(self) -> list[ModelInfo]:
        return self.store.list()

    def ps(self) -> list[dict[str, Any]]:
        """As a server's ``/api/ps`` rows: ``expires_at`` in RFC 3339 (None: kept forever)."""
        return [
            {"name": r.info.name, "size": r.memory, "processor": "CPU",
             "expires_at": r.expires_at.isoformat().replace("+00:00", "Z") if r.expires_at else None}
            for r in self.scheduler.ps()
        ]  # fmt: skip

    def stop(self, model: str) -> None:
        self.scheduler.unload(model)

    def delete(self, model: str) -> None:
        self.store.delete(model)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def pull(self, model: str, insecure: bool = False, cancel: threading.Event | None = None) -> Events:
        return self.store.pull(model, insecure, cancel)

    def recipe(self) -> LocalRecipe:
        s = self.scheduler
        return LocalRecipe(self.store.root, s.keep_alive, s.max_loaded, s.num_parallel, s.max_queue, s.ignore_memory)

    def close(self) -> None:
        if self._own:
            self.scheduler.close()


@dataclass(frozen=True)
class LocalRecipe:
    """A scheduler of its own over the same models folder, with the same knobs (None: the settings
    where it opens; the memory budget is always that machine's)."""

    models_dir: Path
    keep_alive: float | None = None
    max_loaded: int | None = None
    num_parallel: int | None = None
    max_queue: int | None = None
    ignore_memory: bool = False  # the CLI's --force

    def open(self) -> LocalClient:
        config = replace(process_settings(), models_dir=self.models_dir, ignore_memory=self.ignore_memory)
        scheduler = Scheduler(Store(self.models_dir), keep_alive=self.keep_alive, max_loaded=self.max_loaded,
                              num_parallel=self.num_parallel, max_queue=self.max_queue, config=config)  # fmt: skip
        return LocalClient(scheduler, own=True)
