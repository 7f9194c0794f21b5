"""Ollama's dialect (``/api/chat``, NDJSON), both ways: the request body a client sends, the stream
it reads back as :class:`Chunk`, the metric fields of the final object and error answers.

Used by the server (metric fields, error bodies), the CLI's client and the remote engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from typing import Any

from ..errors import (
    Busy,
    Cancelled,
    EngineFailed,
    ImageTooLarge,
    ImgscribeError,
    InvalidRequest,
    ModelNotFound,
)
from ..types import ChatRequest, Chunk, Image, Metrics, Options
from .common import done_reason, event_error, with_system
from .media import original
from .transport import ndjson

__all__ = ["METRICS", "chat_body", "chunks", "events", "error_body", "error_from", "messages", "metric_fields", "metrics"]

#: the final object's duration (ns) and count fields; ``image_encode_duration`` is imgscribe's own
METRICS = tuple(f.name for f in fields(Metrics))


def messages(request: ChatRequest, system: str = "", image: Callable[[Image], str] = original) -> list[dict[str, Any]]:
    """Ollama's messages; ``image(img)`` is the base64 sent for each image (default: its own bytes)."""
    out = []
    for m in with_system(request, system):
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            msg["images"] = [image(img) for img in m.images]
        out.append(msg)
    return out


def chat_body(request: ChatRequest, *, model: str | None = None, system: str = "", options: Options | None = None,
              image: Callable[[Image], str] = original) -> dict[str, Any]:  # fmt: skip
    """A streamed ``/api/chat`` body for ``request`` (``model``: the name there, default the
    request's; ``system``: a prompt put first unless the request has one; ``options``: default the
    request's). ``format``, ``keep_alive`` (forever as -1) and ``think`` go only when set."""
    body: dict[str, Any] = {
        "model": model or request.model,
        "messages": messages(request, system, image),
        "stream": True,
        "options": (options or request.options).model_dump(exclude_none=True),
    }
    if request.format is not None:
        body["format"] = request.format
    if request.keep_alive is not None:
        body["keep_alive"] = -1 if math.isinf(request.keep_alive) else request.keep_alive
    if request.think is not None:
        body["think"] = request.think
    return body


def metrics(event: dict[str, Any]) -> Metrics:
    """The final object's metrics."""
    return Metrics(**{k: int(event.get(k) or 0) for k in METRICS})


def metric_fields(metrics: Metrics | None) -> dict[str, int]:
    """The final object's metric fields, zero values left out (Go's ``omitempty``)."""
    if metrics is None:
        return {}
    return {k: v for k in METRICS if (v := getattr(metrics, k))}  # (not asdict: it deep-copies)


def events(lines: Iterable[str], peer: str = "") -> Iterator[dict[str, Any]]:
    """The objects of an NDJSON answer (``/api/chat``, ``/api/pull``...); an error object is an
    EngineFailed (its message after ``peer: ``, when given)."""
    for event in ndjson(lines):
        _check(event, peer)
        yield event


def _check(event: dict[str, Any], peer: str) -> None:
    message = event_error(event)
    if message is not None:
        raise EngineFailed(f"{peer}: {message}" if peer else message)


def chunks(events: Iterable[dict[str, Any]], peer: str = "", data: dict[str, Any] | None = None) -> Iterator[Chunk]:
    """An NDJSON stream (``/api/chat`` or ``/api/generate``) as chunks: one per piece of text, then
    the final one with the done object's text, reason, metrics and ``data`` (default: the object's
    own). An error event, or a stream that ends without a done object, is an EngineFailed (its
    message after ``peer: ``, when given)."""
    for event in events:
        _check(event, peer)
        text = (event.get("message") or {}).get("content") or event.get("response") or ""
        if event.get("done"):
            images = event.get("images")  # imgscribe's report of each image (another imgscribe, or a remote one)
            yield Chunk(text, True, done_reason(event.get("done_reason")), metrics(event),
                        event.get("data") if data is None else data,
                        images if isinstance(images, list) and all(isinstance(i, dict) for i in images) else None)  # fmt: skip
            return
        if text:
            yield Chunk(text=text)
    raise EngineFailed(f"{peer or 'the server'} ended its answer without a final message")


def error_body(message: str) -> dict[str, Any]:
    """Ollama's error answer."""
    return {"error": message}


_ERRORS: dict[int, type[ImgscribeError]] = {400: InvalidRequest, 413: ImageTooLarge, 499: Cancelled, 503: Busy}


def error_from(status: int, message: str, model: str = "") -> ImgscribeError:
    """An error answer of an imgscribe (or Ollama) server as the error it was there: the same class
    (by its status), the message verbatim."""
    if status == 404:
        err: ImgscribeError = ModelNotFound(model)
        err.args = (message,)
        return err
    err = _ERRORS.get(status, ImgscribeError)(message)
    err.status = status
    return err
