"""The remote engine: a model that another server runs, used as if it were local.

Two dialects:

- ``ollama``: an Ollama server (or another imgscribe server): ``POST /api/chat``, NDJSON stream,
  metrics passed through as they come (nanoseconds).
- ``openai``: any OpenAI-compatible server (vLLM, llama-server, LM Studio, a cloud API):
  ``POST …/v1/chat/completions`` with images as base64 data URIs, SSE stream. Token counts come from
  ``usage``; durations from the server's ``timings`` when it sends them (llama-server), else from
  the clock (time to the first token = prompt evaluation).

Manifest ``engine_settings`` (:class:`RemoteSettings`, written by ``imgscribe create --remote``,
never by a request): ``url`` (base URL; for OpenAI-style servers it may end in ``/v1``), ``model``
(the remote model's name), ``api`` (``ollama`` | ``openai``), and optionally ``api_key`` (a bearer
token given at create time) or ``api_key_env`` (the name of an environment variable holding one;
over the API only a variable the owner listed in ``IMGSCRIBE_REMOTE_KEYS``), ``headers`` (extra HTTP headers),
``extra_body`` (extra fields for OpenAI-style requests), ``num_parallel`` (requests sent at once;
default 4), ``timeout`` (seconds to wait for data; default none). Manifest ``parameters``: default
options (``temperature``...).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field

from ..config import named_variable
from ..errors import Cancelled, EngineFailed
from ..types import ChatRequest, Chunk, Metrics, ModelInfo, ModelManifest
from ..wire import ollama, openai
from ..wire.common import merged_options, peer_error
from ..wire.media import decodable
from ..wire.transport import StreamedPost
from .base import EngineSettings

__all__ = ["ENGINE", "RemoteEngine", "RemoteRunner", "RemoteSettings", "openai_endpoint"]

APIS = ("ollama", "openai")


class RemoteSettings(EngineSettings):
    engine = "remote"

    url: str = ""  # the server's base URL
    model: str = ""  # the model's name there
    api: Literal["ollama", "openai"] = "ollama"
    api_key: str | None = None  # a bearer token given when the model was created (the manifest is 0600)
    api_key_env: str | None = None  # or an environment variable holding one (the owner's choice)
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # extra fields for OpenAI-style requests
    num_parallel: int | None = Field(None, ge=0)  # requests sent at once; default 4
    timeout: float | None = Field(None, gt=0)  # seconds to wait for data; default none


def openai_endpoint(url: str, path: str) -> str:
    """``/v1/<path>`` under a base URL that may already end in ``/v1``."""
    base = url.rstrip("/")
    return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"


def _headers(settings: RemoteSettings) -> dict[str, str]:
    headers = dict(settings.headers)
    key_env = settings.api_key_env
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    elif key_env:
        key = named_variable(str(key_env))
        if not key:
            raise EngineFailed(f"the remote model needs an API key in ${key_env}, which is not set")
        headers["Authorization"] = f"Bearer {key}"
    return headers


class RemoteRunner:
    memory = 0  # nothing held here

    def __init__(self, manifest: ModelManifest):
        s = RemoteSettings.of(manifest)
        self.manifest = manifest
        self.info: ModelInfo = manifest.info
        self.url = s.url.rstrip("/")
        self.model = s.model
        self.api = s.api
        if not self.url or not self.model:
            raise EngineFailed(f"model '{manifest.name}': a remote model needs 'url' and 'model' settings")
        self.parallel = s.num_parallel or 4
        self.timeout = s.timeout
        self.extra_body = dict(s.extra_body)
        self.headers = _headers(s)

    def close(self) -> None:
        pass

    def chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        options = merged_options(request, self.manifest.parameters)
        request = request.with_history(self.manifest.messages)
        system, peer, data = self.manifest.system, f"remote server {self.url}", {"remote": self.url}
        if self.api == "ollama":
            if request.keep_alive is not None and math.isinf(request.keep_alive):
                request = dataclasses.replace(request, keep_alive=None)  # kept here forever: the remote's own default
            body = ollama.chat_body(request, model=self.model, system=system, options=options, image=decodable)
            return _answer(self, self.url + "/api/chat", body, cancel,
                           lambda post, start: ollama.chunks(post.ndjson(), peer, data))  # fmt: skip
        body = openai.chat_body(request, model=self.model, system=system, options=options, extra=self.extra_body)
        return _answer(self, openai_endpoint(self.url, "chat/completions"), body, cancel,
                       lambda post, start: openai.chunks(post.sse(), start, peer, data))  # fmt: skip


Dialect = Callable[[StreamedPost, int], Iterator[Chunk]]


def _answer(runner: RemoteRunner, url: str, body: dict[str, Any], cancel: threading.Event | None,
            dialect: Dialect) -> Iterator[Chunk]:  # fmt: skip
    start = time.perf_counter_ns()
    post = StreamedPost(url, body, cancel, headers=runner.headers, read_timeout=runner.timeout)
    try:
        post.open()
    except ConnectionError as exc:
        raise EngineFailed(f"cannot reach the remote server at {runner.url}: {exc}") from None
    try:
        if post.status != 200:
            raise peer_error(post.status, post.error_text(), f"the remote server {runner.url}", runner.model, gateway=True)
    except BaseException:
        post.close()
        raise
    return _Stream(post, dialect(post, start), runner.url)


class _Stream(Iterator[Chunk]):
    """The answer's chunks; ``close()`` cuts the connection (the remote server stops)."""

    def __init__(self, post: StreamedPost, chunks: Iterator[Chunk], url: str):
        self._post, self._chunks, self._url = post, chunks, url
        self._open = True

    def __next__(self) -> Chunk:
        if not self._open:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except Cancelled:  # cancel set: the connection is cut, the remote server stops
            self.close()
            return Chunk(done=True, done_reason="cancel", metrics=Metrics())
        except ConnectionError as exc:
            self.close()
            raise EngineFailed(f"the connection to the remote server {self._url} broke: {exc}") from None
        except BaseException:
            self.close()
            raise
        if chunk.done:
            self.close()
        return chunk

    def close(self) -> None:
        if self._open:
            self._open = False
            self._post.close()


class RemoteEngine:
    name = "remote"
    settings = RemoteSettings

    def load(self, manifest: ModelManifest) -> RemoteRunner:
        return RemoteRunner(manifest)


ENGINE = RemoteEngine()
