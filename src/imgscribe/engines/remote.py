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

import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..config import named_variable
from ..errors import EngineFailed, InvalidRequest, ModelNotFound
from ..types import ChatRequest, Chunk, Metrics, ModelInfo, ModelManifest
from .base import EngineSettings
from .llamacpp.wire import (
    StreamedPost,
    merged_options,
    ollama_messages,
    openai_messages,
    openai_sampling,
    response_format,
)

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
        if self.api == "ollama":
            body: dict[str, Any] = {
                "model": self.model,
                "messages": ollama_messages(request, self.manifest.system),
                "stream": True,
                "options": options.model_dump(exclude_none=True),
            }
            if request.format is not None:
                body["format"] = request.format
            if request.keep_alive is not None and request.keep_alive != float("inf"):
                body["keep_alive"] = request.keep_alive
            return _answer(self, self.url + "/api/chat", body, cancel, self._ollama)
        body = {
            "model": self.model,
            "messages": openai_messages(request, self.manifest.system),
            "stream": True,
            "stream_options": {"include_usage": True},
            **openai_sampling(options, llama=False),
            **self.extra_body,
        }
        fmt = response_format(request.format)
        if fmt is not None:
            body["response_format"] = fmt
        return _answer(self, openai_endpoint(self.url, "chat/completions"), body, cancel, self._openai)

    # -- dialects: each yields text chunks, then one done chunk ----------------------------------

    def _ollama(self, post: StreamedPost, start: int) -> Iterator[Chunk]:
        for event in post.ndjson():
            if "error" in event:
                raise EngineFailed(f"remote server {self.url}: {event['error']}")
            text = (event.get("message") or {}).get("content") or event.get("response") or ""
            if text:
                yield Chunk(text=text)
            if event.get("done"):
                metrics = Metrics(**{k: int(event.get(k) or 0) for k in (
                    "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                    "eval_count", "eval_duration")})  # fmt: skip
                reason = event.get("done_reason") or "stop"
                yield Chunk(done=True, done_reason=reason if reason in ("stop", "length") else "stop", metrics=metrics,
                            data={"remote": self.url})  # fmt: skip
                return
        raise EngineFailed(f"remote server {self.url} ended its answer without a final message")

    def _openai(self, post: StreamedPost, start: int) -> Iterator[Chunk]:
        first = 0
        finish = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        for event in post.sse():
            if "error" in event:
                err = event["error"]
                raise EngineFailed(f"remote server {self.url}: {err.get('message', err) if isinstance(err, dict) else err}")
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter_ns()
                    yield Chunk(text=piece)
                finish = choice.get("finish_reason") or finish
        end = time.perf_counter_ns()
        first = first or end
        metrics = Metrics(
            total_duration=end - start,
            prompt_eval_count=int(usage.get("prompt_tokens") or 0),
            eval_count=int(usage.get("completion_tokens") or 0),
            prompt_eval_duration=int(float(timings["prompt_ms"]) * 1e6) if "prompt_ms" in timings else first - start,
            eval_duration=int(float(timings["predicted_ms"]) * 1e6) if "predicted_ms" in timings else end - first,
        )
        yield Chunk(done=True, done_reason="length" if finish == "length" else "stop", metrics=metrics,
                    data={"remote": self.url})  # fmt: skip


def _answer(runner: RemoteRunner, url: str, body: dict[str, Any], cancel: threading.Event | None, dialect) -> Iterator[Chunk]:
    cancel = cancel or threading.Event()
    start = time.perf_counter_ns()
    try:
        post = StreamedPost(url, body, cancel, headers=runner.headers, read_timeout=runner.timeout).__enter__()
    except ConnectionError as exc:
        raise EngineFailed(f"cannot reach the remote server at {runner.url}: {exc}") from None
    try:
        if post.status != 200:
            message = post.error_text()
            if post.status == 404 and "not found" in message.lower():
                raise ModelNotFound(runner.model, f"on the remote server {runner.url} ({message})")
            if 400 <= post.status < 500:
                raise InvalidRequest(f"the remote server {runner.url} refused the request ({post.status}): {message}")
            raise EngineFailed(f"the remote server {runner.url} failed ({post.status}): {message}")
    except BaseException:
        post.__exit__()
        raise
    return _Stream(post, dialect(post, start), cancel, runner.url)


class _Stream(Iterator[Chunk]):
    """The answer's chunks; ``close()`` cuts the connection (the remote server stops)."""

    def __init__(self, post: StreamedPost, chunks: Iterator[Chunk], cancel: threading.Event, url: str):
        self._post, self._chunks, self._cancel, self._url = post, chunks, cancel, url
        self._open = True

    def __next__(self) -> Chunk:
        if not self._open:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except ConnectionError as exc:
            self.close()
            if self._post.cancelled:
                return Chunk(done=True, done_reason="cancel", metrics=Metrics())
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
            self._post.abort()
            self._post.__exit__()


class RemoteEngine:
    name = "remote"
    settings = RemoteSettings

    def load(self, manifest: ModelManifest) -> RemoteRunner:
        return RemoteRunner(manifest)


ENGINE = RemoteEngine()
