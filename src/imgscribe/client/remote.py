"""The client contract over a running server (imgscribe or Ollama), so models stay warm between
commands.

:func:`find_server` probes ``GET /`` briefly. Without ``--host`` it only accepts an imgscribe server
(the ``X-Imgscribe-Version`` header): a real Ollama on the same default port must not take over
commands meant to run in-process. With ``--host`` the user named the server: an Ollama server is
fine there, and no answer is an error rather than a silent fallback.

Requests carry ``IMGSCRIBE_API_KEY`` (or the key given) as a Bearer token, as the server checks it.
A request with a ``cancel`` event goes through its own :class:`~imgscribe.wire.transport.DeadlineClient`,
whose reads look at the event: setting it closes the response (``Cancelled``).

Ollama's dialect (the ``/api/chat`` body, its NDJSON stream, error answers) is
:mod:`imgscribe.wire.ollama`'s, which the server and the remote engine speak too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import parse_host, settings
from ..errors import (
    Cancelled,
    ImgscribeError,
    InvalidRequest,
)
from ..types import ChatRequest, ModelInfo, ModelManifest
from .protocol import Answer, Events

if TYPE_CHECKING:
    import httpx

    from ..wire.transport import DeadlineClient

# httpx and the wire format load with the first request (or the probe of a port something listens
# on): a command with no server to talk to starts without them.

__all__ = ["RemoteClient", "RemoteRecipe", "find_server"]

PROBE_TIMEOUT = 0.3
# Generous: a cold model can take minutes to load before its first token; never infinite.
TIMEOUT_SECONDS = {"connect": 5.0, "read": 600.0, "write": 60.0, "pool": 5.0}


def _listening(url: str, timeout: float) -> bool:
    """Whether anything accepts a TCP connection at ``url``'s host and port (what httpx's request
    would connect to first; trust_env=False, so never through a proxy)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def find_server(host_flag: str | None = None, api_key: str | None = None) -> RemoteClient | None:
    """The server at ``host_flag`` (or ``IMGSCRIBE_HOST``) when one answers, else None."""
    try:
        address = parse_host(host_flag) if host_flag else settings().host
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    url = address.client_url
    # a server named with --host gets time to answer (a busy one is still the one asked for);
    # the implicit probe stays short so commands without a server start at once
    timeout = 10.0 if host_flag else PROBE_TIMEOUT
    response = None
    if _listening(url, timeout):  # a closed port: no answer, known without importing httpx
        import httpx

        try:
            response = httpx.get(url + "/", timeout=timeout, trust_env=False)
        except httpx.HTTPError:
            response = None
    answered = response is not None and response.status_code == 200
    if answered and (host_flag or "x-imgscribe-version" in response.headers):
        return RemoteClient(url, api_key)
    if host_flag:
        raise ImgscribeError(f"no server answers at {url} (--host); start one with 'imgscribe serve'")
    return None


class RemoteClient:
    """:class:`~imgscribe.client.protocol.Client` over Ollama's REST API. ``api_key`` None: the
    settings' ``IMGSCRIBE_API_KEY``."""

    def __init__(self, url: str, api_key: str | None = None):
        self.where = url
        self._key = settings().api_key if api_key is None else api_key
        # IMGSCRIBE_API_KEY, as the server checks it
        self._headers = {"Authorization": f"Bearer {self._key}"} if self._key else None
        self._http = self._client()

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Answer:
        from ..wire import ollama

        with contextlib.closing(self._stream("POST", "/api/chat", ollama.chat_body(request), request.model, cancel)) as lines:
            yield from ollama.chunks(lines)

    def info(self, model: str) -> ModelInfo:
        shown = self._call("POST", "/api/show", {"model": model}, model).json()
        return info_from({"name": model, **shown})

    def manifest(self, model: str) -> ModelManifest | None:
        return None  # the server keeps its store to itself

    def load(self, model: str) -> None:
        self._call("POST", "/api/generate", {"model": model, "stream": False}, model)  # Ollama: no prompt loads

    def slots(self, model: str) -> int | None:
        return None  # Ollama's API does not tell a model's parallel slots

    def list(self) -> list[ModelInfo]:
        return [info_from(entry) for entry in self._call("GET", "/api/tags").json()["models"]]

    def ps(self) -> list[dict[str, Any]]:
        return [ps_row(m) for m in self._call("GET", "/api/ps").json()["models"]]

    def stop(self, model: str) -> None:
        self._call("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False}, model)

    def delete(self, model: str) -> None:
        self._call("DELETE", "/api/delete", {"model": model}, model)

    def copy(self, source: str, destination: str) -> None:
        self._call("POST", "/api/copy", {"source": source, "destination": destination}, source)

    def pull(self, model: str, insecure: bool = False, cancel: threading.Event | None = None) -> Events:
        return self._stream("POST", "/api/pull", {"model": model, "insecure": insecure, "stream": True}, model, cancel)

    def recipe(self) -> RemoteRecipe:
        return RemoteRecipe(self.where, self._key)

    def close(self) -> None:
        self._http.close()

    # -- plumbing ----------------------------------------------------------------------------------

    def _client(self, cancel: threading.Event | None = None) -> DeadlineClient:
        import httpx

        from ..wire.transport import DeadlineClient

        return DeadlineClient(None, cancel=cancel, base_url=self.where, timeout=httpx.Timeout(**TIMEOUT_SECONDS),
                              trust_env=False, headers=self._headers)  # fmt: skip

    def _call(self, method: str, path: str, body: dict | None = None, model: str = "") -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ImgscribeError(f"the server at {self.where} did not answer: {exc}") from None
        if response.status_code >= 400:
            raise _error(response, model)
        return response

    def _stream(self, method: str, path: str, body: dict, model: str,
                cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        """The NDJSON objects of a streamed answer. With ``cancel``: a client of its own whose
        reads look at it (the shared one keeps its pooled connections for everything else)."""
        import httpx

        from ..wire import ollama

        with contextlib.ExitStack() as stack:
            http = self._http if cancel is None else stack.enter_context(self._client(cancel))
            try:
                with http.stream(method, path, json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error(response, model)
                    yield from ollama.events(response.iter_lines())
            except httpx.HTTPError as exc:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the request was cancelled") from None
                raise ImgscribeError(f"the server at {self.where} stopped answering: {exc}") from None


@dataclass(frozen=True)
class RemoteRecipe:
    """The same server, with the same key."""

    url: str
    api_key: str = field(default="", repr=False)

    def open(self) -> RemoteClient:
        return RemoteClient(self.url, self.api_key)


def _error(response: httpx.Response, model: str) -> ImgscribeError:
    """The server's error, as the same class it was on the server (its message verbatim)."""
    from ..wire import ollama
    from ..wire.transport import error_message

    return ollama.error_from(response.status_code, error_message(response.text, response.status_code), model)


# -- what the server tells about its models -----------------------------------------------------------
# (the /api/chat body, its stream and error answers are wire/ollama.py's)

def ps_row(m: dict[str, Any]) -> dict[str, Any]:
    """An ``/api/ps`` entry as a ``Client.ps`` row."""
    return {
        "name": m["name"],
        "size": m.get("size", 0),
        "expires_at": m.get("expires_at"),
        "processor": "GPU" if m.get("size_vram") else "CPU",
    }


def info_from(entry: dict[str, Any]) -> ModelInfo:
    """Our full description when the server is imgscribe; what Ollama tells otherwise."""
    if "imgscribe" in entry:
        return ModelInfo.model_validate(entry["imgscribe"])
    details = entry.get("details") or {}
    return ModelInfo(
        name=entry.get("name") or entry.get("model", ""),
        engine="ollama",
        family=details.get("family", ""),
        families=details.get("families") or [],
        parameter_size=details.get("parameter_size", ""),
        quantization_level=details.get("quantization_level", ""),
        format=details.get("format", ""),
        capabilities=entry.get("capabilities") or ["completion"],
        size=entry.get("size", 0),
        digest=entry.get("digest", ""),
        modified_at=entry.get("modified_at", ""),
        license=entry.get("license", ""),
        model_info=entry.get("model_info") or {},
    )
