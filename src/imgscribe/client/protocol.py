"""The one client contract: what the CLI, batch, Ray and evaluation ask of a model's home.

Two homes speak it: :class:`~imgscribe.client.local.LocalClient` (a scheduler in this process) and
:class:`~imgscribe.client.remote.RemoteClient` (a running server, over Ollama's REST API). Callers
never look at which one they hold (``where`` is for messages only).

Every stream a client returns (a chat's answer, a pull's progress) is a :class:`Stream`: an
iterator with ``close()``. Closing it ends the work behind it now (the model's slot goes back, the
server's response is closed, the transfers stop); it is safe to call twice and after the end.
Generators are streams.

A client is portable: :meth:`Client.recipe` is a small picklable value from which another process
(a Ray actor) makes the same client, without reading this process's environment.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ..types import ChatRequest, Chunk, ModelInfo, ModelManifest, Stream

__all__ = ["Answer", "Client", "Events", "Recipe", "Stream"]

#: a chat's answer: text pieces, the last one ``done`` with the metrics
Answer = Stream[Chunk]
#: a pull's progress: Ollama's objects {"status", "digest"?, "total"?, "completed"?}
Events = Stream[dict[str, Any]]


class Recipe(Protocol):
    """How another process makes the same client (picklable)."""

    def open(self) -> Client: ...


class Client(Protocol):
    #: shown in messages and ``--debug`` output: "in-process" or the server's URL
    where: str

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Answer:
        """Stream the answer. Errors before the first chunk (unknown model, full queue, failed
        load) are raised here or, from a server, at the first chunk; setting ``cancel`` stops a waiting or running request
        (:class:`~imgscribe.errors.Cancelled`)."""
        ...

    def info(self, model: str) -> ModelInfo:
        """What the model is and can do (ModelNotFound when there is no such model)."""
        ...

    def manifest(self, model: str) -> ModelManifest | None:
        """The model's manifest when this client sees the store (in process); None for a server."""
        ...

    def load(self, model: str) -> None:
        """Load the model now, without asking it anything."""
        ...

    def slots(self, model: str) -> int | None:
        """How many requests the model serves at once (loading it first, in process); None when
        a server does not say."""
        ...

    def list(self) -> list[ModelInfo]: ...

    def ps(self) -> list[dict[str, Any]]:
        """Loaded models: name, size, expires_at (RFC 3339 or None), processor."""
        ...

    def stop(self, model: str) -> None:
        """Unload the model now (or as soon as its running requests end)."""
        ...

    def delete(self, model: str) -> None: ...

    def copy(self, source: str, destination: str) -> None: ...

    def pull(self, model: str, insecure: bool = False, cancel: threading.Event | None = None) -> Events:
        """Download a model; closing the stream (or setting ``cancel``) stops the transfers."""
        ...

    def recipe(self) -> Recipe:
        """A picklable value from which another process (a Ray actor) makes the same client."""
        ...

    def close(self) -> None:
        """Free what the client holds (its connections; a scheduler it made itself)."""
        ...
