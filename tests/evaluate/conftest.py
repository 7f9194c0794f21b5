"""Helpers for the evaluation tests: echo models in the test's own store, and a client that counts."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from imgscribe.client import LocalClient
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.types import ModelInfo, ModelManifest


def make_echo(store: Store, name: str, **settings) -> None:
    """An echo-engine model (instant, deterministic: it repeats the prompt) that accepts images;
    ``settings``: the echo engine's (delay, tokens...)."""
    info = ModelInfo(name=name, engine="echo", capabilities=["completion", "vision"], family="echo")
    store.create(name, ModelManifest(name=name, engine="echo", engine_settings=settings, info=info))


class CountingClient(LocalClient):
    """The in-process client over the real scheduler, counting the requests each model gets;
    ``interrupt_after`` total requests it raises KeyboardInterrupt (as Ctrl-C in the middle of a run)."""

    def __init__(self, inner: Scheduler, interrupt_after: int | None = None):
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        self.interrupt_after = interrupt_after
        self._lock = threading.Lock()

    def chat(self, request, cancel=None):
        with self._lock:
            if self.interrupt_after is not None and sum(self.calls.values()) >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls[request.model] += 1
        return super().chat(request, cancel)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def store() -> Store:
    return Store()  # IMGSCRIBE_MODELS points at the test's own folder (tests/conftest.py)


@pytest.fixture
def scheduler(store):
    s = Scheduler(store)
    yield s
    s.close()
