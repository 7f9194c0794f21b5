"""Where work goes: the one client contract (:mod:`.protocol`), in process (:mod:`.local`) or a
running server (:mod:`.remote`). The CLI, batch, Ray and evaluation get their clients here.

    from imgscribe.client import connect
    client = connect()            # the server at IMGSCRIBE_HOST when one answers, else in-process
    for chunk in client.chat(request):
        ...

When a server answers at ``IMGSCRIBE_HOST`` the CLI talks to it, so models stay warm between
commands (as the ``ollama`` CLI does); otherwise it works in-process.
"""

from __future__ import annotations

from .local import LocalClient, LocalRecipe
from .protocol import Answer, Client, Events, Recipe, Stream
from .remote import RemoteClient, RemoteRecipe, find_server

__all__ = [
    "Answer", "Client", "Events", "LocalClient", "LocalRecipe", "Recipe", "RemoteClient", "RemoteRecipe",
    "Stream", "connect", "find_server",
]  # fmt: skip


def connect(host: str | None = None, local: bool = False) -> Client:
    """The server at ``host`` (``--host``; else ``IMGSCRIBE_HOST``) when one answers, else the
    process-wide scheduler; ``local``: always in-process. A ``host`` that does not answer is an error."""
    if not local:
        remote = find_server(host)
        if remote is not None:
            return remote
    return LocalClient()
