"""Where CLI commands send their work: in-process, or to a running imgscribe server.

When a server answers at ``IMGSCRIBE_HOST`` the CLI talks to it, so models stay warm between
commands (as the ``ollama`` CLI does); otherwise it works in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..types import ChatRequest, Chunk, ModelInfo


class Backend(Protocol):
    #: shown in ``--debug`` output: "in-process" or the server URL
    where: str

    def chat(self, request: ChatRequest) -> Iterator[Chunk]: ...

    def list(self) -> list[ModelInfo]: ...

    def show(self, model: str) -> ModelInfo: ...

    def ps(self) -> list[dict[str, Any]]:
        """Loaded models: name, size, expires_at (RFC 3339 or None), processor."""
        ...

    def stop(self, model: str) -> None: ...

    def delete(self, model: str) -> None: ...

    def copy(self, source: str, destination: str) -> None: ...

    def pull(self, model: str, insecure: bool = False) -> Iterator[dict[str, Any]]:
        """Ollama-shaped progress objects: {"status", "digest"?, "total"?, "completed"?}."""
        ...


class LocalBackend:
    where = "in-process"

    def __init__(self, scheduler=None):
        from ..scheduler import default_scheduler

        self.scheduler = scheduler or default_scheduler()
        self.store = self.scheduler.store

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        return self.scheduler.chat(request)

    def list(self) -> list[ModelInfo]:
        return self.store.list()

    def show(self, model: str) -> ModelInfo:
        return self.store.resolve(model).info

    def ps(self) -> list[dict[str, Any]]:
        return [
            {"name": r.info.name, "size": r.memory, "expires_at": None, "processor": "CPU"}
            for r in self.scheduler.loaded()
        ]

    def stop(self, model: str) -> None:
        self.scheduler.unload(model)

    def delete(self, model: str) -> None:
        self.store.delete(model)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def pull(self, model: str, insecure: bool = False) -> Iterator[dict[str, Any]]:
        return self.store.pull(model, insecure)


def get_backend(host_flag: str | None = None, local: bool = False) -> Backend:
    """A server's backend when one answers at IMGSCRIBE_HOST (or ``--host``), else in-process."""
    if not local:
        try:
            from .remote import find_server
        except ImportError:  # the client half arrives with the server
            find_server = None
        if find_server is not None:
            remote = find_server(host_flag)
            if remote is not None:
                return remote
    return LocalBackend()
