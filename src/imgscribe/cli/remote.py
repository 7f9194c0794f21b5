"""The CLI as a client of a running server, so models stay warm between commands.

:func:`find_server` probes ``GET /`` briefly. Without ``--host`` it only accepts an imgscribe server
(the ``X-Imgscribe-Version`` header): a real Ollama on the same default port must not take over
commands meant to run in-process. With ``--host`` the user named the server: an Ollama server is
fine there, and no answer is an error rather than a silent fallback.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import httpx

from ..config import parse_host, settings
from ..errors import Busy, Cancelled, EngineFailed, ImageTooLarge, ImgscribeError, InvalidRequest, ModelNotFound
from ..types import ChatRequest, Chunk, Metrics, ModelInfo

PROBE_TIMEOUT = 0.3
# Generous: a cold model can take minutes to load before its first token; never infinite.
TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=5.0)
_METRICS = [f.name for f in fields(Metrics)]


def find_server(host_flag: str | None = None) -> RemoteBackend | None:
    """The server at ``host_flag`` (or ``IMGSCRIBE_HOST``) when one answers, else None."""
    try:
        address = parse_host(host_flag) if host_flag else settings().host
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    url = address.client_url
    try:
        # a server named with --host gets time to answer (a busy one is still the one asked for);
        # the implicit probe stays short so commands without a server start at once
        timeout = 10.0 if host_flag else PROBE_TIMEOUT
        response = httpx.get(url + "/", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        response = None
    answered = response is not None and response.status_code == 200
    if answered and (host_flag or "x-imgscribe-version" in response.headers):
        return RemoteBackend(url)
    if host_flag:
        raise ImgscribeError(f"no server answers at {url} (--host); start one with 'imgscribe serve'")
    return None


class RemoteBackend:
    """The :class:`~imgscribe.cli.backend.Backend` protocol over Ollama's REST API."""

    def __init__(self, url: str, api_key: str | None = None):
        self.where = url
        key = settings().api_key if api_key is None else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else None  # IMGSCRIBE_API_KEY, as the server checks it
        self._http = httpx.Client(base_url=url, timeout=TIMEOUT, trust_env=False, headers=headers)

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        body = {
            "model": request.model,
            "messages": [
                {"role": m.role, "content": m.content, "images": [base64.b64encode(i.data).decode() for i in m.images]}
                for m in request.messages
            ],
            "stream": True,
            "options": request.options.model_dump(exclude_none=True),
            "format": request.format,
            "keep_alive": _keep_alive(request.keep_alive),
            "think": request.think,
        }
        for obj in self._stream("POST", "/api/chat", body, request.model):
            if not obj.get("done"):
                yield Chunk(text=obj["message"]["content"])
                continue
            metrics = Metrics(**{k: int(obj.get(k) or 0) for k in _METRICS})
            yield Chunk(obj["message"]["content"], True, obj.get("done_reason") or "stop", metrics, obj.get("data"))

    def list(self) -> list[ModelInfo]:
        return [_info(entry) for entry in self._call("GET", "/api/tags").json()["models"]]

    def show(self, model: str) -> ModelInfo:
        shown = self._call("POST", "/api/show", {"model": model}, model).json()
        return _info({"name": model, **shown})

    def ps(self) -> list[dict[str, Any]]:
        return [
            {
                "name": m["name"],
                "size": m.get("size", 0),
                "expires_at": m.get("expires_at"),
                "processor": "GPU" if m.get("size_vram") else "CPU",
            }  # fmt: skip
            for m in self._call("GET", "/api/ps").json()["models"]
        ]

    def stop(self, model: str) -> None:
        self._call("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False}, model)

    def delete(self, model: str) -> None:
        self._call("DELETE", "/api/delete", {"model": model}, model)

    def copy(self, source: str, destination: str) -> None:
        self._call("POST", "/api/copy", {"source": source, "destination": destination}, source)

    def pull(self, model: str, insecure: bool = False) -> Iterator[dict[str, Any]]:
        yield from self._stream("POST", "/api/pull", {"model": model, "insecure": insecure, "stream": True}, model)

    # -- plumbing ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None, model: str = "") -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ImgscribeError(f"the server at {self.where} did not answer: {exc}") from None
        if response.status_code >= 400:
            raise _error(response, model)
        return response

    def _stream(self, method: str, path: str, body: dict, model: str) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream(method, path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response, model)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    if obj.get("error"):
                        raise EngineFailed(obj["error"])
                    yield obj
        except httpx.HTTPError as exc:
            raise ImgscribeError(f"the server at {self.where} stopped answering: {exc}") from None


_ERRORS: dict[int, type[ImgscribeError]] = {400: InvalidRequest, 413: ImageTooLarge, 499: Cancelled, 503: Busy}


def _error(response: httpx.Response, model: str) -> ImgscribeError:
    """The server's error, as the same class it was on the server (its message verbatim)."""
    try:
        message = response.json()["error"]
        message = message["message"] if isinstance(message, dict) else str(message)
    except (ValueError, KeyError, TypeError):
        message = response.text or response.reason_phrase
    if response.status_code == 404:
        err: ImgscribeError = ModelNotFound(model)
        err.args = (message,)
        return err
    err = _ERRORS.get(response.status_code, ImgscribeError)(message)
    err.status = response.status_code
    return err


def _keep_alive(seconds: float | None) -> float | None:
    return -1 if seconds is not None and math.isinf(seconds) else seconds


def _info(entry: dict[str, Any]) -> ModelInfo:
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
