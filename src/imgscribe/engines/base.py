"""The one extension point for running models: an ``Engine`` loads, a ``Runner`` answers.

An engine knows nothing about HTTP or the CLI. The scheduler is the only caller of ``load`` and
``close``; everything else reaches a runner through the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..types import ChatRequest, Chunk, ModelInfo, ModelManifest


@runtime_checkable
class Runner(Protocol):
    """A loaded model."""

    info: ModelInfo
    #: how many requests it can serve at once (parallel slots); the scheduler respects it.
    parallel: int
    #: bytes of memory it holds (for ``ps`` and the memory budget); 0 if unknown.
    memory: int

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """Stream the answer to the last user message. Stops early when ``cancel`` is set.

        The last chunk has ``done=True``, ``done_reason`` and ``metrics``.
        """
        ...

    def close(self) -> None: ...


class Engine(Protocol):
    name: str

    def load(self, manifest: ModelManifest) -> Runner: ...
